import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  isWasmSimdSupported,
  VectorMatrix,
  type KernelBackend,
  type ScoreKind,
} from './vector-matrix.js'

const BACKENDS: readonly KernelBackend[] = ['wasm-simd', 'js']
const KINDS: readonly ScoreKind[] = ['dot', 'l2']
/** Float32 machine epsilon. */
const EPSILON_F32 = 2 ** -23

/** Deterministic uniform numbers in [-1, 1) (mulberry32), so failures reproduce. */
function randomSource(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1
  }
}

function randomVectors(
  random: () => number,
  count: number,
  dims: number,
): Float32Array[] {
  return Array.from({ length: count }, () =>
    Float32Array.from({ length: dims }, random),
  )
}

/** The oracle: the float32 inputs combined in float64, one term at a time. */
function reference(
  row: ArrayLike<number>,
  query: ArrayLike<number>,
  kind: ScoreKind,
) {
  let value = 0
  let magnitude = 0
  for (let i = 0; i < row.length; i++) {
    const a = row[i] as number
    const b = query[i] as number
    const term = kind === 'dot' ? a * b : (a - b) * (a - b)
    value += term
    magnitude += Math.abs(term)
  }
  return { value, magnitude }
}

/**
 * Asserts float32 accumulation stays within a few ulps per term of the float64 sum.
 * The bound scales with the sum of |terms| because cancellation is allowed to lose
 * relative precision in a dot product.
 */
function expectCloseToReference(
  got: ArrayLike<number>,
  rows: readonly ArrayLike<number>[],
  query: ArrayLike<number>,
  kind: ScoreKind,
): void {
  expect(got.length).toBe(rows.length)
  rows.forEach((row, i) => {
    const { value, magnitude } = reference(row, query, kind)
    const tolerance = 2 * EPSILON_F32 * (row.length + 4) * magnitude + 1e-30
    const actual = got[i] as number
    if (Math.abs(actual - value) > tolerance) {
      expect.fail(
        `${kind} row ${i}: got ${actual}, reference ${value} (tolerance ${tolerance})`,
      )
    }
  })
}

describe('isWasmSimdSupported', () => {
  it('is true on Node 20, and auto then picks wasm-simd', () => {
    expect(isWasmSimdSupported()).toBe(true)
    expect(new VectorMatrix({ dims: 4 }).backend).toBe('wasm-simd')
  })
})

describe.each(BACKENDS)('VectorMatrix (%s)', (backend) => {
  const create = (dims: number, initialCapacity?: number) =>
    new VectorMatrix(
      initialCapacity === undefined
        ? { dims, backend }
        : { dims, backend, initialCapacity },
    )

  it.each([1, 3, 16, 17, 384])(
    'scores match the float64 reference at %i dims',
    (dims) => {
      const random = randomSource(dims)
      const rows = randomVectors(random, 53, dims)
      const matrix = create(dims, 8)
      for (const row of rows) matrix.append(row)
      expect(matrix.backend).toBe(backend)
      expect(matrix.size).toBe(53)
      for (const query of randomVectors(random, 3, dims)) {
        for (const kind of KINDS) {
          expectCloseToReference(
            matrix.scoreAll(query, kind),
            rows,
            query,
            kind,
          )
        }
      }
    },
  )

  it('scoreSlots returns the score of slots[i] at i, in any order and with repeats', () => {
    const random = randomSource(7)
    const dims = 17
    const rows = randomVectors(random, 40, dims)
    const matrix = create(dims)
    for (const row of rows) matrix.append(row)
    const query = randomVectors(random, 1, dims)[0] as Float32Array
    const slots = new Uint32Array([39, 0, 5, 5, 12, 38, 1, 99])
    const count = 7 // the trailing 99 is beyond count and must be ignored
    for (const kind of KINDS) {
      const all = Array.from(matrix.scoreAll(query, kind))
      const picked = matrix.scoreSlots(query, kind, slots, count)
      expect(picked).toHaveLength(count)
      for (let i = 0; i < count; i++) {
        expect(picked[i]).toBe(all[slots[i] as number])
      }
      expect(matrix.scoreSlots(query, kind, slots, 0)).toHaveLength(0)
    }
  })

  it('scoreSlots accepts more slots than the matrix has rows', () => {
    const matrix = create(3, 2)
    matrix.append([1, 2, 3])
    matrix.append([0, 1, 0])
    const slots = new Uint32Array(Array.from({ length: 1000 }, (_, i) => i % 2))
    const scores = matrix.scoreSlots([1, 1, 1], 'dot', slots, slots.length)
    expect(scores).toHaveLength(1000)
    expect(scores[998]).toBe(6)
    expect(scores[999]).toBe(1)
    // Rows survive the scratch growth.
    expect(Array.from(matrix.row(0))).toEqual([1, 2, 3])
  })

  it('keeps every row when growing from capacity 1, with scans in between', () => {
    const random = randomSource(11)
    const dims = 3
    const rows = randomVectors(random, 700, dims)
    const matrix = create(dims, 1)
    const query = [0.5, -0.25, 1]
    rows.forEach((row, i) => {
      matrix.append(row)
      // Growth turns the old query and score scratch into row space; rows must be
      // written with zero padding or l2 picks up the leftovers.
      if (i % 97 === 0) matrix.scoreAll(query, 'l2')
    })
    rows.forEach((row, i) => expect(matrix.row(i)).toEqual(row))
    expectCloseToReference(matrix.scoreAll(query, 'l2'), rows, query, 'l2')
    expectCloseToReference(matrix.scoreAll(query, 'dot'), rows, query, 'dot')
  })

  it('append returns consecutive slots; set overwrites; row returns a copy', () => {
    const matrix = create(2)
    expect(matrix.append([1, 2])).toBe(0)
    expect(matrix.append(new Float64Array([3, 4]))).toBe(1)
    matrix.set(0, [5, 6])
    const copy = matrix.row(0)
    copy[0] = 42
    expect(Array.from(matrix.row(0))).toEqual([5, 6])
    expect(Array.from(matrix.row(1))).toEqual([3, 4])
    expect(matrix.row(1)).toHaveLength(2)
  })

  it('append and set scale the row by an optional factor', () => {
    const matrix = create(3)
    matrix.append([3, 0, 4], 0.2)
    matrix.append([1, 2, 3])
    matrix.set(1, new Float32Array([2, 4, 6]), 0.5)
    expect(Array.from(matrix.row(0))).toEqual([
      Math.fround(0.6),
      0,
      Math.fround(0.8),
    ])
    expect(Array.from(matrix.row(1))).toEqual([1, 2, 3])
  })

  it('swapRemove moves the last row into the hole and reports where it came from', () => {
    const matrix = create(2)
    for (let i = 0; i < 4; i++) matrix.append([i, i])
    expect(matrix.swapRemove(1)).toBe(3)
    expect(matrix.size).toBe(3)
    expect(Array.from(matrix.row(1))).toEqual([3, 3])
    expect(matrix.swapRemove(2)).toBe(-1)
    expect(matrix.size).toBe(2)
    expect(Array.from(matrix.scoreAll([1, 0], 'dot'))).toEqual([0, 3])
    expect(matrix.swapRemove(0)).toBe(1)
    expect(matrix.swapRemove(0)).toBe(-1)
    expect(matrix.size).toBe(0)
    expect(matrix.scoreAll([1, 0], 'dot')).toHaveLength(0)
  })

  it('clear empties the matrix and it can be refilled', () => {
    const matrix = create(5, 2)
    for (let i = 0; i < 10; i++) matrix.append([i, 0, 0, 0, 1])
    matrix.clear()
    expect(matrix.size).toBe(0)
    expect(matrix.append([0, 0, 0, 0, 2])).toBe(0)
    expect(Array.from(matrix.scoreAll([0, 0, 0, 0, 1], 'l2'))).toEqual([1])
  })

  it('throws RangeError on misuse', () => {
    expect(() => create(0)).toThrow(RangeError)
    expect(() => create(2.5)).toThrow(RangeError)
    expect(() => create(4, -1)).toThrow(RangeError)
    const matrix = create(3)
    expect(() => matrix.append([1, 2])).toThrow(RangeError)
    matrix.append([1, 2, 3])
    expect(() => matrix.set(1, [1, 2, 3])).toThrow(RangeError)
    expect(() => matrix.set(0, [1, 2, 3, 4])).toThrow(RangeError)
    expect(() => matrix.row(-1)).toThrow(RangeError)
    expect(() => matrix.row(0.5)).toThrow(RangeError)
    expect(() => matrix.swapRemove(1)).toThrow(RangeError)
    expect(() => matrix.scoreAll([1, 2], 'dot')).toThrow(RangeError)
    expect(() =>
      matrix.scoreSlots([1, 2, 3], 'dot', new Uint32Array([0]), 2),
    ).toThrow(RangeError)
    expect(() =>
      matrix.scoreSlots([1, 2, 3], 'dot', new Uint32Array([0, 1]), 2),
    ).toThrow(/slot 1 is out of range/)
  })

  it('behaves like an array of rows under any sequence of operations (property)', () => {
    const dims = 5
    const vector = fc
      .array(fc.integer({ min: -8, max: 8 }), {
        minLength: dims,
        maxLength: dims,
      })
      .map((values) => values.map((v) => v / 4))
    const operation = fc.oneof(
      {
        arbitrary: fc.record({ op: fc.constant('append' as const), vector }),
        weight: 4,
      },
      {
        arbitrary: fc.record({
          op: fc.constant('set' as const),
          at: fc.nat(),
          vector,
        }),
        weight: 1,
      },
      {
        arbitrary: fc.record({
          op: fc.constant('remove' as const),
          at: fc.nat(),
        }),
        weight: 2,
      },
      {
        arbitrary: fc.record({ op: fc.constant('clear' as const) }),
        weight: 1,
      },
    )
    fc.assert(
      fc.property(
        fc.array(operation, { maxLength: 60 }),
        vector,
        (operations, query) => {
          const matrix = create(dims, 1)
          const model: number[][] = []
          for (const operation of operations) {
            switch (operation.op) {
              case 'append':
                expect(matrix.append(operation.vector)).toBe(model.length)
                model.push(operation.vector)
                break
              case 'set':
                if (model.length === 0) break
                matrix.set(operation.at % model.length, operation.vector)
                model[operation.at % model.length] = operation.vector
                break
              case 'remove': {
                if (model.length === 0) break
                const slot = operation.at % model.length
                const last = model.length - 1
                expect(matrix.swapRemove(slot)).toBe(slot === last ? -1 : last)
                model[slot] = model[last] as number[]
                model.pop()
                break
              }
              case 'clear':
                matrix.clear()
                model.length = 0
                break
            }
          }
          expect(matrix.size).toBe(model.length)
          model.forEach((row, slot) =>
            expect(Array.from(matrix.row(slot))).toEqual(row),
          )
          // Quarter-integers are exact in float32, so small sums are exact in any order.
          for (const kind of KINDS) {
            const expected = model.map(
              (row) => reference(row, query, kind).value,
            )
            expect(Array.from(matrix.scoreAll(query, kind))).toEqual(expected)
          }
        },
      ),
    )
  })
})

describe.skipIf(!isWasmSimdSupported())('wasm-simd and js backends', () => {
  it('agree on random data within float32 rounding (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 0, max: 40 }),
        fc.integer(),
        (dims, count, seed) => {
          const random = randomSource(seed)
          const rows = randomVectors(random, count, dims)
          const query = randomVectors(random, 1, dims)[0] as Float32Array
          const wasm = new VectorMatrix({
            dims,
            backend: 'wasm-simd',
            initialCapacity: 4,
          })
          const js = new VectorMatrix({
            dims,
            backend: 'js',
            initialCapacity: 4,
          })
          for (const row of rows) {
            wasm.append(row)
            js.append(row)
          }
          for (const kind of KINDS) {
            expectCloseToReference(
              wasm.scoreAll(query, kind),
              rows,
              query,
              kind,
            )
            expectCloseToReference(js.scoreAll(query, kind), rows, query, kind)
          }
        },
      ),
    )
  })
})
