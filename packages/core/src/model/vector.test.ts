import { describe, expect, it, vi } from 'vitest'
import { isVeloSyncError } from '../errors.js'
import type { CollectionSchema } from './collection.js'
import {
  VectorSlab,
  inverseNorm,
  newVector,
  toStoredVector,
  vectorFromBytes,
} from './vector.js'

const schema = (
  dtype: 'float32' | 'float64',
  metric: 'cosine' | 'l2' = 'l2',
): CollectionSchema => ({ name: 'c', dims: 3, metric, dtype })

describe('toStoredVector', () => {
  it('copies into the given view, leaving the rest of its array alone', () => {
    const shared = newVector('float32', 9).fill(7)
    const view = shared.subarray(3, 6)
    const stored = toStoredVector(schema('float32'), [1, 2, 3], 'v', view)
    expect(stored).toBe(view)
    expect(Array.from(shared)).toEqual([7, 7, 7, 1, 2, 3, 7, 7, 7])
  })

  it.each([
    ['float32', [1, Number.NaN, 2], /element 1 is NaN/],
    ['float32', [1, 2, 1e39], /element 2 is 1e\+39 overflows float32/],
    ['float64', [Number.POSITIVE_INFINITY, 0, 0], /element 0 is Infinity/],
    [
      'float64',
      new Float64Array([0, 0, Number.NEGATIVE_INFINITY]),
      /-Infinity/,
    ],
  ] as const)(
    'names the first non-finite element (%s, %s)',
    (dtype, input, message) => {
      let thrown: unknown
      try {
        toStoredVector(schema(dtype), input)
      } catch (error) {
        thrown = error
      }
      expect(isVeloSyncError(thrown, 'invalid_argument')).toBe(true)
      expect((thrown as Error).message).toMatch(message)
    },
  )

  it('rejects an all-zero vector only for cosine', () => {
    expect(() =>
      toStoredVector(schema('float32', 'cosine'), [0, 0, 0]),
    ).toThrow(/all-zero/)
    expect(Array.from(toStoredVector(schema('float64'), [0, 0, 0]))).toEqual([
      0, 0, 0,
    ])
  })
})

describe('inverseNorm', () => {
  it('is 1 / the Euclidean norm, or 0 for a zero vector', () => {
    expect(inverseNorm(new Float64Array([3, 4]))).toBe(0.2)
    expect(inverseNorm(new Float32Array([0, 0]))).toBe(0)
  })
})

describe('vectorFromBytes with a slab', () => {
  it('copies vectors at odd offsets into aligned, separate memory', () => {
    const slab = new VectorSlab()
    const message = new Uint8Array(1 + 3 * 12 + 2 * 24)
    const view = new DataView(message.buffer)
    for (let i = 0; i < 3; i++) view.setFloat32(1 + i * 4, i + 0.5, true)
    for (let i = 0; i < 3; i++) view.setFloat64(13 + i * 8, -i, true)
    const a = vectorFromBytes(message.subarray(1, 13), 'float32', 3, slab)
    const b = vectorFromBytes(message.subarray(13, 37), 'float64', 3, slab)
    const c = vectorFromBytes(message.subarray(1, 13), 'float32', 3, slab)
    expect([...a]).toEqual([0.5, 1.5, 2.5])
    expect([...b]).toEqual([-0, -1, -2])
    expect(b.byteOffset % 8).toBe(0)
    // Shared chunk, separate bytes: writing one leaves the others and the message alone.
    expect(a.buffer).toBe(c.buffer)
    a[0] = 9
    expect([...c]).toEqual([0.5, 1.5, 2.5])
    expect(view.getFloat32(1, true)).toBe(0.5)
  })

  it('gives a request larger than a chunk a chunk of its own', () => {
    const slab = new VectorSlab()
    const small = slab.take(16)
    const large = slab.take(3 << 20)
    expect(large.byteLength).toBe(3 << 20)
    expect(large.buffer).not.toBe(small.buffer)
  })
})

describe('vectorFromBytes on a big-endian host', () => {
  it('reads each vector from its own bytes, slab or not', async () => {
    // The module tells the byte order by how a Uint16Array stores 1: make it say "big".
    const RealUint16Array = Uint16Array
    vi.stubGlobal(
      'Uint16Array',
      class extends RealUint16Array {
        constructor(values: number[]) {
          super(values)
          if (values[0] === 1) this[0] = 0x0100
        }
      },
    )
    vi.resetModules()
    const bigEndian = await import('./vector.js')
    vi.unstubAllGlobals()
    const misaligned = (...values: number[]) => {
      const message = new Uint8Array(values.length * 4 + 1)
      const view = new DataView(message.buffer)
      values.forEach((value, i) => view.setFloat32(1 + i * 4, value, true))
      return message.subarray(1)
    }
    const slab = new bigEndian.VectorSlab()
    const read = (...values: number[]) => [
      ...bigEndian.vectorFromBytes(misaligned(...values), 'float32', 2, slab),
    ]
    expect(read(1, 2)).toEqual([1, 2])
    expect(read(3, 4)).toEqual([3, 4])
  })
})
