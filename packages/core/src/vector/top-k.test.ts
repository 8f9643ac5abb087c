import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { topK } from './top-k.js'

/** The specification: sort every index by score (direction-aware), ties by index. */
function sortReference(
  scores: Float32Array,
  count: number,
  k: number,
  higherIsBetter: boolean,
): number[] {
  const indices = Array.from({ length: count }, (_, i) => i)
  indices.sort((a, b) => {
    const sa = scores[a] as number
    const sb = scores[b] as number
    // Explicit comparisons: `sb - sa` is NaN for two equal infinities.
    if (sa !== sb) return sa > sb === higherIsBetter ? -1 : 1
    return a - b
  })
  return indices.slice(0, k)
}

describe('topK', () => {
  it('returns the best indices first', () => {
    const scores = new Float32Array([0.2, 0.9, 0.5, -1, 0.7])
    expect(Array.from(topK(scores, 5, 3, true))).toEqual([1, 4, 2])
    expect(Array.from(topK(scores, 5, 3, false))).toEqual([3, 0, 2])
  })

  it('breaks ties by the lower index in both directions', () => {
    const scores = new Float32Array([1, 3, 3, 2, 3, 1, 1])
    expect(Array.from(topK(scores, 7, 2, true))).toEqual([1, 2])
    expect(Array.from(topK(scores, 7, 4, true))).toEqual([1, 2, 4, 3])
    expect(Array.from(topK(scores, 7, 2, false))).toEqual([0, 5])
  })

  it('returns an empty result for k = 0 or count = 0', () => {
    const scores = new Float32Array([1, 2, 3])
    expect(topK(scores, 3, 0, true)).toHaveLength(0)
    expect(topK(scores, 0, 5, true)).toHaveLength(0)
  })

  it('returns every index when k > count, and ignores scores past count', () => {
    const scores = new Float32Array([5, 1, 4, 100])
    expect(Array.from(topK(scores, 3, 10, true))).toEqual([0, 2, 1])
  })

  it('rejects a count beyond the array or a bad k with RangeError', () => {
    const scores = new Float32Array(4)
    expect(() => topK(scores, 5, 1, true)).toThrow(RangeError)
    expect(() => topK(scores, -1, 1, true)).toThrow(RangeError)
    expect(() => topK(scores, 1.5, 1, true)).toThrow(RangeError)
    expect(() => topK(scores, 4, -1, true)).toThrow(RangeError)
    expect(() => topK(scores, 4, 0.5, true)).toThrow(RangeError)
  })

  it('agrees with a full sort on arbitrary floats (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noNaN: true }), { maxLength: 200 }),
        fc.nat(),
        fc.nat({ max: 210 }),
        fc.boolean(),
        (values, countSeed, k, higherIsBetter) => {
          const scores = new Float32Array(values)
          const count =
            values.length === 0 ? 0 : countSeed % (values.length + 1)
          expect(Array.from(topK(scores, count, k, higherIsBetter))).toEqual(
            sortReference(scores, count, k, higherIsBetter),
          )
        },
      ),
    )
  })

  it('agrees with a full sort when most scores tie (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -3, max: 3 }), { maxLength: 300 }),
        fc.nat({ max: 40 }),
        fc.boolean(),
        (values, k, higherIsBetter) => {
          const scores = new Float32Array(values.map((v) => v / 2))
          expect(
            Array.from(topK(scores, scores.length, k, higherIsBetter)),
          ).toEqual(sortReference(scores, scores.length, k, higherIsBetter))
        },
      ),
    )
  })
})
