import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { versionVectorArb as vv } from '@velosync/testkit'
import {
  compareVersionVectors as compare,
  incrementVersionVector,
  mergeVersionVectors as merge,
  parseVersionVector,
  versionVectorToJson,
  type VersionVector,
} from './version-vector.js'

const runs = { numRuns: Number(process.env.PROP_RUNS ?? 300) }
const INVERSE = {
  equal: 'equal',
  dominates: 'dominated',
  dominated: 'dominates',
  concurrent: 'concurrent',
}
const atLeast = (a: VersionVector, b: VersionVector) =>
  ['equal', 'dominates'].includes(compare(a, b))

describe('version vectors: a partial order', () => {
  it('every vector equals itself (reflexive)', () => {
    fc.assert(
      fc.property(vv, (a) => compare(a, a) === 'equal'),
      runs,
    )
  })
  it('compare(b, a) is the inverse of compare(a, b) (antisymmetric)', () => {
    fc.assert(
      fc.property(vv, vv, (a, b) => compare(b, a) === INVERSE[compare(a, b)]),
      runs,
    )
  })
  it('a >= b and b >= c imply a >= c (transitive)', () => {
    fc.assert(
      fc.property(vv, vv, vv, (a, b, c) => {
        const ab = merge(a, b)
        const abc = merge(ab, c)
        return atLeast(abc, ab) && atLeast(ab, a) && atLeast(abc, a)
      }),
      runs,
    )
  })
  it('equal means same canonical form', () => {
    fc.assert(
      fc.property(
        vv,
        vv,
        (a, b) =>
          (compare(a, b) === 'equal') ===
          (versionVectorToJson(a) === versionVectorToJson(b)),
      ),
      runs,
    )
  })
})

describe('version vectors: merge is a join', () => {
  it('is commutative', () => {
    fc.assert(
      fc.property(
        vv,
        vv,
        (a, b) => compare(merge(a, b), merge(b, a)) === 'equal',
      ),
      runs,
    )
  })
  it('is associative', () => {
    fc.assert(
      fc.property(
        vv,
        vv,
        vv,
        (a, b, c) =>
          compare(merge(merge(a, b), c), merge(a, merge(b, c))) === 'equal',
      ),
      runs,
    )
  })
  it('is idempotent', () => {
    fc.assert(
      fc.property(vv, (a) => compare(merge(a, a), a) === 'equal'),
      runs,
    )
  })
  it('is an upper bound of both inputs', () => {
    fc.assert(
      fc.property(
        vv,
        vv,
        (a, b) => atLeast(merge(a, b), a) && atLeast(merge(a, b), b),
      ),
      runs,
    )
  })
  it('concurrent vectors merge into one that dominates both', () => {
    fc.assert(
      fc.property(vv, vv, (a, b) => {
        fc.pre(compare(a, b) === 'concurrent')
        const m = merge(a, b)
        return compare(m, a) === 'dominates' && compare(m, b) === 'dominates'
      }),
      runs,
    )
  })
})

describe('version vectors: local writes', () => {
  it('increment dominates its base', () => {
    fc.assert(
      fc.property(
        vv,
        (a) =>
          compare(incrementVersionVector(a, 'z.00000001'), a) === 'dominates',
      ),
      runs,
    )
  })
  it('two devices writing from the same base are concurrent', () => {
    fc.assert(
      fc.property(
        vv,
        (base) =>
          compare(
            incrementVersionVector(base, 'x.00000001'),
            incrementVersionVector(base, 'y.00000001'),
          ) === 'concurrent',
      ),
      runs,
    )
  })
  it('parses only positive integer counters', () => {
    expect(parseVersionVector('{"a.1":2}')).toEqual({ 'a.1': 2 })
    expect(() => parseVersionVector({ a: 0 })).toThrow(/positive integer/)
    expect(() => parseVersionVector({ a: 1.5 })).toThrow(/positive integer/)
    expect(() => parseVersionVector([1])).toThrow(/must be an object/)
  })
  it('keeps a "__proto__" replica id as data', () => {
    const parsed = parseVersionVector('{"__proto__":3}')
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype)
    expect(compare(parsed, {})).toBe('dominates')
  })
})
