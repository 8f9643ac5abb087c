import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  CollectionDigest,
  EMPTY_COLLECTION_DIGEST,
} from './collection-digest.js'

const runs = { numRuns: Number(process.env.PROP_RUNS ?? 200) }
const sha = (s: string) =>
  new Uint8Array(createHash('sha256').update(s).digest())
const hashesArb = fc
  .array(fc.string(), { maxLength: 30 })
  .map((xs) => xs.map(sha))

/** The definition, with BigInt: the sum of the hashes modulo 2^256. */
function reference(hashes: readonly Uint8Array[]): string {
  let sum = 0n
  for (const h of hashes)
    sum = (sum + BigInt(`0x${Buffer.from(h).toString('hex')}`)) % (1n << 256n)
  return sum.toString(16).padStart(64, '0')
}

describe('CollectionDigest', () => {
  it('equals the sum of hashes modulo 2^256', () => {
    fc.assert(
      fc.property(hashesArb, (hashes) => {
        const digest = new CollectionDigest()
        for (const h of hashes) digest.add(h)
        return digest.toHex() === reference(hashes)
      }),
      runs,
    )
  })

  it('does not depend on the order of additions', () => {
    fc.assert(
      fc.property(
        hashesArb.chain((h) =>
          fc.tuple(
            fc.constant(h),
            fc.shuffledSubarray(h, { minLength: h.length }),
          ),
        ),
        ([a, b]) => {
          const x = new CollectionDigest()
          const y = new CollectionDigest()
          a.forEach((h) => x.add(h))
          b.forEach((h) => y.add(h))
          return x.toHex() === y.toHex()
        },
      ),
      runs,
    )
  })

  it('remove undoes add, including across the 2^256 wrap', () => {
    fc.assert(
      fc.property(hashesArb, hashesArb, (keep, transient) => {
        const digest = new CollectionDigest()
        keep.forEach((h) => digest.add(h))
        const before = digest.toHex()
        transient.forEach((h) => digest.add(h))
        transient.forEach((h) => digest.remove(h))
        return digest.toHex() === before
      }),
      runs,
    )
    const wrap = new CollectionDigest('f'.repeat(64))
    wrap.add(new Uint8Array(32).fill(0).map((_, i) => (i === 31 ? 1 : 0)))
    expect(wrap.toHex()).toBe(EMPTY_COLLECTION_DIGEST)
  })

  it('round-trips through hex and clones independently', () => {
    const a = new CollectionDigest()
    a.add(sha('x'))
    const b = new CollectionDigest(a.toHex())
    const c = b.clone()
    c.add(sha('y'))
    expect(b.toHex()).toBe(a.toHex())
    expect(c.toHex()).not.toBe(a.toHex())
  })

  it('rejects malformed input', () => {
    expect(() => new CollectionDigest('xyz')).toThrow(/64 lowercase hex/)
    expect(() => new CollectionDigest().add(new Uint8Array(31))).toThrow(
      /32 bytes/,
    )
  })
})
