import { describe, expect, it } from 'vitest'
import { isVeloSyncError } from '../errors.js'
import type { CollectionSchema } from './collection.js'
import { inverseNorm, newVector, toStoredVector } from './vector.js'

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
