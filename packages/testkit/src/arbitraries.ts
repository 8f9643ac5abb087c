import fc from 'fast-check'
import type { JsonObject, VersionVector } from '@velosync/core'

/** Replica ids drawn from a small pool so that vectors overlap often. */
export const replicaIdArb = fc.constantFrom(
  'a.00000001',
  'b.00000001',
  'c.00000001',
  'd.00000002',
)

/** Version vectors over a few replicas, counters 1..5 (zeros are never stored). */
export const versionVectorArb: fc.Arbitrary<VersionVector> = fc
  .dictionary(replicaIdArb, fc.integer({ min: 1, max: 5 }), { maxKeys: 4 })
  .map((entries) => Object.fromEntries(Object.entries(entries)))

/** Small metadata objects with filterable fields. */
export const metadataArb: fc.Arbitrary<JsonObject> = fc.record({
  lang: fc.constantFrom('en', 'de', 'fr'),
  year: fc.integer({ min: 2000, max: 2030 }),
  score: fc.double({
    min: -100,
    max: 100,
    noNaN: true,
    noDefaultInfinity: true,
  }),
  tags: fc.array(fc.constantFrom('x', 'y', 'z'), { maxLength: 3 }),
})

/** A finite vector of `dims` elements in [-1, 1], not all zero. */
export function vectorArb(dims: number): fc.Arbitrary<number[]> {
  return fc
    .array(
      fc.double({ min: -1, max: 1, noNaN: true, noDefaultInfinity: true }),
      {
        minLength: dims,
        maxLength: dims,
      },
    )
    .filter((v) => v.some((x) => Math.abs(x) > 1e-3))
}
