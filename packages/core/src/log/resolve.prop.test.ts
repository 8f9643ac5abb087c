import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { replicaIdArb, versionVectorArb } from '@velosync/testkit'
import { isVeloSyncError } from '../errors.js'
import type { DocumentVersion } from '../model/document-version.js'
import { compareVersionVectors } from '../model/version-vector.js'
import {
  compareByDefaultRule,
  resolveIncoming,
  type ConflictResolver,
} from './resolve.js'

const runs = { numRuns: Number(process.env.PROP_RUNS ?? 300) }

/** Versions of one document; a small HLC range so that time ties happen often. */
const versionArb: fc.Arbitrary<DocumentVersion> = fc
  .record({
    deleted: fc.boolean(),
    value: fc.integer({ min: 1, max: 50 }),
    versionVector: versionVectorArb.filter((v) => Object.keys(v).length > 0),
    wallMs: fc.integer({ min: 1, max: 3 }),
    counter: fc.integer({ min: 0, max: 1 }),
    origin: replicaIdArb,
  })
  .map((r) => ({
    id: 'doc',
    deleted: r.deleted,
    vector: r.deleted ? null : new Float32Array([r.value, 1]),
    metadataJson: r.deleted ? null : `{"v":${r.value}}`,
    versionVector: r.versionVector,
    hlc: { wallMs: r.wallMs, counter: r.counter },
    origin: r.origin,
  }))

/** The stored state after `versions` arrive in order, starting from nothing. */
function storeAll(
  versions: readonly DocumentVersion[],
  resolver?: ConflictResolver,
): DocumentVersion | undefined {
  let stored: DocumentVersion | undefined
  for (const version of versions) {
    stored = resolveIncoming(stored, version, resolver).stored ?? stored
  }
  return stored
}

/** Content and vector: what the digest sees (HLC and origin follow the content). */
const snapshot = (v: DocumentVersion | undefined) =>
  v === undefined
    ? undefined
    : {
        deleted: v.deleted,
        vector: v.vector === null ? null : Array.from(v.vector),
        metadataJson: v.metadataJson,
        vv: JSON.stringify(Object.entries(v.versionVector).sort()),
        hlc: v.hlc,
        origin: v.origin,
      }

/** Two versions that a correct fleet can produce: equal vectors only with equal content. */
const pairArb = fc
  .tuple(versionArb, versionArb)
  .filter(
    ([a, b]) =>
      compareVersionVectors(a.versionVector, b.versionVector) !== 'equal',
  )

const resolvers: Record<string, ConflictResolver | undefined> = {
  default: undefined,
  'always first': (a) => a,
  'always second': (_a, b) => b,
  'tombstones win': (a, b) => (b.deleted && !a.deleted ? b : a),
}

describe('resolveIncoming: DESIGN 4 conflict rule', () => {
  for (const [name, resolver] of Object.entries(resolvers)) {
    it(`is deterministic and symmetric: A-then-B equals B-then-A (${name} resolver)`, () => {
      fc.assert(
        fc.property(pairArb, ([a, b]) => {
          expect(snapshot(storeAll([a, b], resolver))).toEqual(
            snapshot(storeAll([b, a], resolver)),
          )
          expect(snapshot(storeAll([a, b], resolver))).toEqual(
            snapshot(storeAll([a, b], resolver)),
          )
        }),
        runs,
      )
    })
  }

  it('stores a vector that dominates or equals both inputs', () => {
    fc.assert(
      fc.property(pairArb, ([a, b]) => {
        const stored = storeAll([a, b]) as DocumentVersion
        for (const input of [a, b]) {
          expect(['equal', 'dominates']).toContain(
            compareVersionVectors(stored.versionVector, input.versionVector),
          )
        }
        if (
          compareVersionVectors(a.versionVector, b.versionVector) ===
          'concurrent'
        ) {
          expect(
            compareVersionVectors(stored.versionVector, a.versionVector),
          ).toBe('dominates')
          expect(
            compareVersionVectors(stored.versionVector, b.versionVector),
          ).toBe('dominates')
        }
      }),
      runs,
    )
  })

  it('never applies a version whose vector is older than or equal to the stored one', () => {
    fc.assert(
      fc.property(versionArb, versionArb, (current, incoming) => {
        const order = compareVersionVectors(
          incoming.versionVector,
          current.versionVector,
        )
        const { outcome, stored, loser } = resolveIncoming(current, incoming)
        if (order === 'dominated' || order === 'equal') {
          expect(outcome).toBe(order === 'equal' ? 'duplicate' : 'stale')
          expect(stored).toBeUndefined()
          expect(loser).toBeUndefined()
        } else if (order === 'dominates') {
          expect(outcome).toBe('applied')
          expect(stored).toBe(incoming)
        } else {
          expect(['conflict_won', 'conflict_lost']).toContain(outcome)
        }
      }),
      runs,
    )
  })

  it('a conflict keeps the winner content, HLC and origin and reports the loser as it was', () => {
    fc.assert(
      fc.property(versionArb, versionArb, (current, incoming) => {
        fc.pre(
          compareVersionVectors(
            incoming.versionVector,
            current.versionVector,
          ) === 'concurrent',
        )
        const { outcome, stored, loser } = resolveIncoming(current, incoming)
        const incomingWins = compareByDefaultRule(incoming, current) > 0
        expect(outcome).toBe(incomingWins ? 'conflict_won' : 'conflict_lost')
        const winner = incomingWins ? incoming : current
        expect(loser).toBe(incomingWins ? current : incoming)
        expect(stored?.vector).toBe(winner.vector)
        expect(stored?.metadataJson).toBe(winner.metadataJson)
        expect(stored?.deleted).toBe(winner.deleted)
        expect(stored?.hlc).toBe(winner.hlc)
        expect(stored?.origin).toBe(winner.origin)
      }),
      runs,
    )
  })
})

describe('resolveIncoming: examples', () => {
  const base: DocumentVersion = {
    id: 'n1',
    deleted: false,
    vector: new Float32Array([1, 0]),
    metadataJson: '{}',
    versionVector: { 'a.01': 1 },
    hlc: { wallMs: 100, counter: 0 },
    origin: 'a.01',
  }

  it('applies the first version of a document', () => {
    expect(resolveIncoming(undefined, base)).toEqual({
      outcome: 'applied',
      stored: base,
    })
  })

  it('later HLC wins; on a tie the larger origin wins', () => {
    const x = {
      ...base,
      versionVector: { 'a.01': 2 },
      hlc: { wallMs: 200, counter: 0 },
    }
    const y = {
      ...base,
      versionVector: { 'a.01': 1, 'b.01': 1 },
      origin: 'b.01',
    }
    const r1 = resolveIncoming(x, y)
    expect(r1.outcome).toBe('conflict_lost')
    expect(r1.loser).toBe(y)
    expect(r1.stored).toEqual({ ...x, versionVector: { 'a.01': 2, 'b.01': 1 } })
    const tie = { ...y, hlc: x.hlc }
    expect(resolveIncoming(x, tie).outcome).toBe('conflict_won')
  })

  it('a resolver that returns a copy instead of an argument is an internal error', () => {
    const x = { ...base, versionVector: { 'a.01': 2 } }
    const y = { ...base, versionVector: { 'b.01': 1 }, origin: 'b.01' }
    let caught: unknown
    try {
      resolveIncoming(x, y, (a) => ({ ...a }))
    } catch (error) {
      caught = error
    }
    expect(isVeloSyncError(caught, 'internal')).toBe(true)
  })
})

describe('resolveIncoming with a clock bound', () => {
  const at = (
    origin: string,
    wallMs: number,
    value: number,
  ): DocumentVersion => ({
    id: 'doc',
    deleted: false,
    vector: new Float32Array([value, 1]),
    metadataJson: `{"v":${value}}`,
    versionVector: { [origin]: 1 },
    hlc: { wallMs, counter: 0 },
    origin,
  })
  const year2099 = Date.UTC(2099, 0, 1)

  it('a far-future version competes at acceptance + bound, and keeps that effective time', () => {
    const future = at('a.01', year2099, 1)
    const accepted = resolveIncoming(undefined, future, undefined, {
      nowMs: 1_000,
      maxLeadMs: 60,
    })
    expect(accepted.storedEffectiveMs).toBe(1_060)
    // A concurrent write later than the bound wins; without the bound 2099 would.
    const later = at('b.01', 1_100, 2)
    expect(resolveIncoming(future, later).outcome).toBe('conflict_lost')
    const bounded = resolveIncoming(future, later, undefined, {
      nowMs: 1_100,
      maxLeadMs: 60,
      currentEffectiveMs: 1_060,
    })
    expect(bounded).toMatchObject({
      outcome: 'conflict_won',
      storedEffectiveMs: 1_100,
    })
    // Inside the bound the earlier-accepted future version still wins, and keeps its time.
    const inside = resolveIncoming(future, at('b.01', 1_050, 3), undefined, {
      nowMs: 1_050,
      maxLeadMs: 60,
      currentEffectiveMs: 1_060,
    })
    expect(inside).toMatchObject({
      outcome: 'conflict_lost',
      storedEffectiveMs: 1_060,
    })
  })

  it('a successor that ties its ancestor on effective time still outranks it, in any arrival order', () => {
    // The 2099 device writes B, then C over it; both are accepted at 1_000, so both
    // compete at 1_060. A (another device, concurrent with both) competes at 1_000.
    const a = at('z.01', 1_000, 1)
    const b = {
      ...at('a.01', year2099, 2),
      versionVector: { 'a.01': 9 },
    }
    const c = {
      ...at('a.01', year2099, 3),
      versionVector: { 'a.01': 10 },
      hlc: { wallMs: year2099, counter: 1 },
    }
    const arriveInOrder = (versions: readonly DocumentVersion[]) => {
      let stored: DocumentVersion | undefined
      let effectiveMs: number | undefined
      for (const version of versions) {
        const resolution = resolveIncoming(stored, version, undefined, {
          nowMs: 1_000,
          maxLeadMs: 60,
          ...(effectiveMs === undefined
            ? {}
            : { currentEffectiveMs: effectiveMs }),
        })
        if (resolution.stored === undefined) continue
        stored = resolution.stored
        effectiveMs = resolution.storedEffectiveMs
      }
      return stored?.metadataJson
    }
    expect(arriveInOrder([b, c, a])).toBe('{"v":3}')
    expect(arriveInOrder([a, b, c])).toBe('{"v":3}')
    expect(arriveInOrder([b, a, c])).toBe('{"v":3}')
  })

  it('changes nothing for HLCs within the bound', () => {
    fc.assert(
      fc.property(versionArb, versionArb, (current, incoming) => {
        const bound = { nowMs: 10, maxLeadMs: 0 }
        const { storedEffectiveMs, ...withBound } = resolveIncoming(
          current,
          incoming,
          undefined,
          bound,
        )
        expect(withBound).toEqual(resolveIncoming(current, incoming))
        if (withBound.stored !== undefined)
          expect(storedEffectiveMs).toBe(withBound.stored.hlc.wallMs)
      }),
      runs,
    )
  })
})
