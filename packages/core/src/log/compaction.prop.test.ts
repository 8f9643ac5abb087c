import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  planCompaction,
  type CompactableEntry,
  type CompactionPlan,
} from './compaction.js'

const runs = { numRuns: Number(process.env.PROP_RUNS ?? 300) }

interface Entry extends CompactableEntry {
  /** The document body this write produced (a version tag stands in for vector + metadata). */
  readonly body: string | null
}
type State = ReadonlyMap<string, string | null> // key → body, null = tombstone

const key = (e: { collection: string; docId: string }) =>
  `${e.collection}/${e.docId}`

/** A synced device's starting state (= the server's), then local writes logged against it. */
const scenarioArb = fc
  .record({
    initial: fc.dictionary(
      fc.constantFrom('c/a', 'c/b', 'd/a', 'd/c'),
      fc.option(fc.constant('v0'), { nil: null }),
    ),
    ops: fc.array(
      fc.record({
        doc: fc.constantFrom('c/a', 'c/b', 'c/x', 'd/a', 'd/c', 'd/y'),
        put: fc.boolean(),
      }),
      { maxLength: 40 },
    ),
    inFlight: fc.nat({ max: 40 }),
  })
  .map(({ initial, ops, inFlight }) => {
    const local = new Map<string, string | null>(Object.entries(initial))
    const log: Entry[] = []
    ops.forEach((op, i) => {
      const [collection, docId] = op.doc.split('/') as [string, string]
      const prior = local.get(op.doc)
      if (!op.put && (prior === undefined || prior === null)) return // deleting nothing logs nothing
      const body = op.put ? `v${i + 1}` : null
      log.push({
        lsn: log.length + 1,
        collection,
        docId,
        op: op.put ? 'put' : 'delete',
        priorExists: prior !== undefined,
        body,
      })
      local.set(op.doc, body)
    })
    const split = Math.min(inFlight, log.length)
    return {
      initial: new Map(Object.entries(initial)),
      log,
      taken: log.slice(0, split),
      pending: log.slice(split),
    }
  })

function apply(state: State, entries: readonly Entry[]): Map<string, string> {
  const next = new Map(state)
  for (const e of [...entries].sort((a, b) => a.lsn - b.lsn))
    next.set(key(e), e.body)
  return new Map(
    [...next].filter((kv): kv is [string, string] => kv[1] !== null),
  )
}

function applyPlan(entries: readonly Entry[], plan: CompactionPlan): Entry[] {
  const removed = new Set(plan.removeLsns)
  const cleared = new Set(plan.clearPriorExists)
  return entries
    .filter((e) => !removed.has(e.lsn))
    .map((e) => (cleared.has(e.lsn) ? { ...e, priorExists: false } : e))
}

describe('log compaction', () => {
  it('is reduce-equivalent: the compacted log yields the same live documents', () => {
    fc.assert(
      fc.property(scenarioArb, ({ initial, log, taken, pending }) => {
        const compacted = [
          ...taken,
          ...applyPlan(pending, planCompaction(pending)),
        ]
        expect(apply(initial, compacted)).toEqual(apply(initial, log))
      }),
      runs,
    )
  })

  it('is idempotent', () => {
    fc.assert(
      fc.property(scenarioArb, ({ pending }) => {
        const once = applyPlan(pending, planCompaction(pending))
        const again = planCompaction(once)
        expect(again).toEqual({
          removeLsns: [],
          clearPriorExists: [],
          purgeDocuments: [],
        })
      }),
      runs,
    )
  })

  it('leaves at most one entry per document and never touches taken entries', () => {
    fc.assert(
      fc.property(scenarioArb, ({ taken, pending }) => {
        const plan = planCompaction(pending)
        const takenLsns = new Set(taken.map((e) => e.lsn))
        expect(plan.removeLsns.some((lsn) => takenLsns.has(lsn))).toBe(false)
        const survivors = applyPlan(pending, plan)
        expect(new Set(survivors.map(key)).size).toBe(survivors.length)
      }),
      runs,
    )
  })

  it('sends nothing for a never-sent document that was created and deleted', () => {
    const log: Entry[] = [
      {
        lsn: 1,
        collection: 'c',
        docId: 'n',
        op: 'put',
        priorExists: false,
        body: 'v1',
      },
      {
        lsn: 2,
        collection: 'c',
        docId: 'n',
        op: 'put',
        priorExists: true,
        body: 'v2',
      },
      {
        lsn: 3,
        collection: 'c',
        docId: 'n',
        op: 'delete',
        priorExists: true,
        body: null,
      },
    ]
    expect(planCompaction(log)).toEqual({
      removeLsns: [1, 2, 3],
      clearPriorExists: [],
      purgeDocuments: [{ collection: 'c', docId: 'n' }],
    })
  })

  it('keeps the delete of a document the server already has', () => {
    const log: Entry[] = [
      {
        lsn: 1,
        collection: 'c',
        docId: 'old',
        op: 'put',
        priorExists: true,
        body: 'v1',
      },
      {
        lsn: 2,
        collection: 'c',
        docId: 'old',
        op: 'delete',
        priorExists: true,
        body: null,
      },
    ]
    expect(planCompaction(log)).toEqual({
      removeLsns: [1],
      clearPriorExists: [],
      purgeDocuments: [],
    })
  })

  it('lets the survivor inherit "never sent" from the oldest entry', () => {
    const log: Entry[] = [
      {
        lsn: 4,
        collection: 'c',
        docId: 'n',
        op: 'put',
        priorExists: false,
        body: 'v1',
      },
      {
        lsn: 9,
        collection: 'c',
        docId: 'n',
        op: 'put',
        priorExists: true,
        body: 'v2',
      },
    ]
    expect(planCompaction(log)).toEqual({
      removeLsns: [4],
      clearPriorExists: [9],
      purgeDocuments: [],
    })
  })
})
