import type { DocumentVersion } from '@velosync/core'
import fc from 'fast-check'
import { describe, expect } from 'vitest'
import type { OutboxOp } from '../src/index.js'
import { test, vec } from './fixtures.js'

describe('Outbox: push hooks', () => {
  test('takeBatch hands out the oldest entries with their bodies; confirm removes them', ({
    store,
  }) => {
    store.putMany(
      'docs',
      [1, 2, 3].map((i) => ({ id: `d${i}`, vector: vec(i), metadata: { i } })),
    )
    const batch = store.outbox.takeBatch({ maxOps: 2 })!
    expect(batch.ops.map((op) => [op.lsn, op.version.id, op.op])).toEqual([
      [1, 'd1', 'put'],
      [2, 'd2', 'put'],
    ])
    expect(batch.ops[0]!.version.metadataJson).toBe('{"i":1}')
    expect(batch.ops[0]!.version.origin).toBe(store.replicaId)
    expect(() => store.outbox.takeBatch()).toThrow(/still in flight/)
    expect(store.outbox.confirm(batch)).toBe(2)
    expect(store.outbox.entries().map((e) => e.lsn)).toEqual([3])
    expect(store.outbox.inFlight).toBeUndefined()
  })

  test('release returns a failed batch unchanged; a partial confirm keeps the rest', ({
    store,
  }) => {
    store.putMany(
      'docs',
      [1, 2, 3].map((i) => ({ id: `d${i}`, vector: vec(i) })),
    )
    const first = store.outbox.takeBatch()!
    store.outbox.release(first)
    const again = store.outbox.takeBatch()!
    expect(again.ops.map((op) => op.lsn)).toEqual(first.ops.map((op) => op.lsn))
    expect(store.outbox.confirm(again, 2)).toBe(2)
    expect(store.outbox.entries().map((e) => e.lsn)).toEqual([3])
    expect(() => store.outbox.confirm(again)).toThrow(
      /not the oldest in-flight/,
    )
    expect(
      store.outbox.takeBatch({ maxOps: 10 })!.ops.map((op) => op.lsn),
    ).toEqual([3])
  })

  test('the next batch can be taken while one is in flight; it follows the first', ({
    store,
  }) => {
    store.putMany(
      'docs',
      [1, 2, 3, 4, 5].map((i) => ({ id: `d${i}`, vector: vec(i) })),
    )
    const first = store.outbox.takeBatch({ maxOps: 2 })!
    expect(() => store.outbox.takeBatch()).toThrow(/still in flight/)
    const second = store.outbox.takeBatch({ maxOps: 2, after: first })!
    expect(second.ops.map((op) => op.lsn)).toEqual([3, 4])
    // Two at most, and the second cannot be confirmed before the first.
    expect(() => store.outbox.takeBatch({ after: second })).toThrow(
      /still in flight/,
    )
    expect(() => store.outbox.confirm(second)).toThrow(
      /not the oldest in-flight/,
    )
    store.outbox.confirm(first)
    expect(store.outbox.inFlight).toBe(second)
    store.outbox.confirm(second)
    expect(store.outbox.entries().map((e) => e.lsn)).toEqual([5])
  })

  test('releasing or partly confirming a batch returns the batch taken after it', ({
    store,
  }) => {
    store.putMany(
      'docs',
      [1, 2, 3, 4].map((i) => ({ id: `d${i}`, vector: vec(i) })),
    )
    let first = store.outbox.takeBatch({ maxOps: 2 })!
    store.outbox.takeBatch({ maxOps: 2, after: first })
    store.outbox.release(first)
    expect(store.outbox.inFlight).toBeUndefined()
    first = store.outbox.takeBatch({ maxOps: 2 })!
    const second = store.outbox.takeBatch({ maxOps: 2, after: first })!
    store.outbox.confirm(first, 1)
    expect(store.outbox.inFlight).toBeUndefined()
    expect(() => store.outbox.release(second)).toThrow(/not an in-flight/)
    expect(store.outbox.takeBatch()!.ops.map((op) => op.lsn)).toEqual([2, 3, 4])
  })

  test('a batch taken after another is marked maybe-sent at once: it may go out before that one is confirmed', ({
    store,
  }) => {
    store.putMany(
      'docs',
      [1, 2, 3, 4, 5].map((i) => ({ id: `d${i}`, vector: vec(i) })),
    )
    const first = store.outbox.takeBatch({ maxOps: 2 })!
    store.outbox.takeBatch({ maxOps: 2, after: first })
    store.outbox.release(first)
    // d4 was in the second batch, which the server may have: its delete must be sent.
    // d5 was never taken: its create-then-delete sends nothing.
    store.delete('docs', 'd4')
    store.delete('docs', 'd5')
    expect(
      store.outbox
        .takeBatch({ maxOps: 10 })!
        .ops.map((op) => `${op.op} ${op.version.id}`),
    ).toEqual(['put d1', 'put d2', 'put d3', 'delete d4'])
  })

  test('entries in flight are never rewritten; later edits wait for the next batch', ({
    store,
  }) => {
    store.put('docs', { id: 'a', vector: vec(1), metadata: { v: 1 } })
    const batch = store.outbox.takeBatch()!
    store.put('docs', { id: 'a', vector: vec(2), metadata: { v: 2 } })
    store.put('docs', { id: 'a', vector: vec(3), metadata: { v: 3 } })
    expect(store.outbox.compact()).toEqual({ removed: 1, purged: 0 })
    expect(batch.ops[0]!.version.metadataJson).toBe('{"v":1}')
    expect(store.outbox.entries().map((e) => e.lsn)).toEqual([1, 3])
    store.outbox.confirm(batch)
    const next = store.outbox.takeBatch()!
    expect(next.ops.map((op) => [op.lsn, op.version.metadataJson])).toEqual([
      [3, '{"v":3}'],
    ])
  })

  test('compaction: many offline edits send one version; create-then-delete sends nothing', ({
    store,
  }) => {
    store.put('docs', { id: 'kept', vector: vec(1) })
    store.outbox.confirm(store.outbox.takeBatch()!) // "kept" is now on the server
    for (let i = 0; i < 5; i++)
      store.put('docs', { id: 'edited', vector: vec(i), metadata: { i } })
    store.put('docs', { id: 'temp', vector: vec(9) })
    store.put('docs', { id: 'temp', vector: vec(8) })
    store.delete('docs', 'temp')
    store.delete('docs', 'kept')
    const digest = store.digest('docs')
    expect(store.outbox.compact()).toEqual({ removed: 7, purged: 1 })
    expect(store.outbox.compact()).toEqual({ removed: 0, purged: 0 })
    const batch = store.outbox.takeBatch()!
    expect(batch.ops.map((op) => [op.version.id, op.op])).toEqual([
      ['edited', 'put'],
      ['kept', 'delete'],
    ])
    expect(batch.ops[0]!.version.metadataJson).toBe('{"i":4}')
    expect(store.digest('docs')).toBe(digest)
    expect(store.verify().ok).toBe(true)
  })

  test('a collection with entries in flight cannot be dropped', ({ store }) => {
    store.put('docs', { id: 'a', vector: vec(1) })
    const batch = store.outbox.takeBatch()!
    expect(() => store.dropCollection('docs')).toThrow(/in-flight push/)
    store.outbox.release(batch)
    expect(store.dropCollection('docs')).toBe(true)
  })

  test('validates its arguments', ({ store }) => {
    expect(() => store.outbox.takeBatch({ maxOps: 0 })).toThrow(/maxOps/)
    expect(store.outbox.takeBatch()).toBeUndefined()
  })
})

describe('LocalStore.applyRemoteVersions', () => {
  const remote = (id: string, seed: number, counter = 1): DocumentVersion => ({
    id,
    deleted: false,
    vector: new Float32Array(vec(seed)),
    metadataJson: `{"from":"server","seed":${seed}}`,
    versionVector: { 'server-dev.00000001': counter },
    hlc: { wallMs: 1_000, counter },
    origin: 'server-dev.00000001',
  })

  test('writes remote versions without logging them, and search follows', ({
    store,
  }) => {
    expect(
      store.applyRemoteVersions('docs', [remote('r1', 1), remote('r2', 2)]),
    ).toEqual({ applied: 2, skipped: [] })
    expect(store.outbox.size).toBe(0)
    expect(store.lastLsn).toBe(0)
    expect(store.search('docs', vec(2), { k: 1 })[0]?.id).toBe('r2')
    store.applyRemoteVersions('docs', [
      {
        ...remote('r2', 2, 2),
        deleted: true,
        vector: null,
        metadataJson: null,
      },
    ])
    expect(store.get('docs', 'r2')).toBeUndefined()
    expect(store.search('docs', vec(2), { k: 5 }).map((h) => h.id)).toEqual([
      'r1',
    ])
    expect(store.verify().ok).toBe(true)
  })

  test('never overwrites an unpushed local write', ({ store }) => {
    store.put('docs', { id: 'mine', vector: vec(1), metadata: { local: true } })
    expect(
      store.applyRemoteVersions('docs', [
        remote('other', 4),
        remote('mine', 5),
      ]),
    ).toEqual({ applied: 1, skipped: [1] })
    expect(store.get('docs', 'mine')?.metadata).toEqual({ local: true })
  })

  test('rejects a malformed version and writes nothing', ({ store }) => {
    const digest = store.digest('docs')
    const bad = [
      remote('ok', 1),
      { ...remote('bad', 2), vector: new Float32Array(3) },
    ]
    expect(() => store.applyRemoteVersions('docs', bad)).toThrow(/8 dimensions/)
    expect(() =>
      store.applyRemoteVersions('docs', [
        { ...remote('x', 1), metadataJson: '{' },
      ]),
    ).toThrow(/not JSON/)
    expect(() =>
      store.applyRemoteVersions('docs', [
        { ...remote('x', 1), versionVector: { a: -1 } },
      ]),
    ).toThrow(/positive integer/)
    expect(() =>
      store.applyServerUpdate({
        versions: [{ collection: 'docs', version: remote('x', 1) }],
        durability: 'later' as 'deferred',
      }),
    ).toThrow(/durability must be 'full' or 'deferred'/)
    expect(store.digest('docs')).toBe(digest)
    expect(store.count('docs')).toBe(0)
  })

  test('a version with a seq skipped for a pending write holds the stored cursor below it', ({
    store,
  }) => {
    store.put('docs', { id: 'x', vector: vec(1) }) // pending
    expect(
      store.applyServerUpdate({
        versions: [
          { collection: 'docs', version: remote('y', 1), seq: 5 },
          { collection: 'docs', version: remote('x', 2), seq: 6 },
          { collection: 'docs', version: remote('z', 3), seq: 7 },
        ],
        cursor: 9,
      }),
    ).toEqual({ applied: 2, skipped: [1] })
    expect(store.syncCursor).toBe(5)
    // Without a seq nothing says where the version sits in the feed: the cursor is stored.
    store.applyServerUpdate({
      versions: [{ collection: 'docs', version: remote('x', 4) }],
      cursor: 12,
    })
    expect(store.syncCursor).toBe(12)
    for (const seq of [0, 1.5, -2, Number.NaN]) {
      expect(() =>
        store.applyServerUpdate({
          versions: [{ collection: 'docs', version: remote('w', 5), seq }],
          cursor: 20,
        }),
      ).toThrow(/versions\[0\]\.seq must be a positive integer/)
    }
    expect(store.syncCursor).toBe(12)
    expect(store.get('docs', 'w')).toBeUndefined()
  })

  test('a deferred update is applied like any other', ({ store }) => {
    store.applyServerUpdate({
      versions: [{ collection: 'docs', version: remote('d', 1) }],
      cursor: 7,
      durability: 'deferred',
    })
    expect(store.syncCursor).toBe(7)
    expect(store.get('docs', 'd')?.metadata).toEqual({
      from: 'server',
      seed: 1,
    })
    expect(store.verify().ok).toBe(true)
  })
})

describe('Outbox: model-based', () => {
  type Step =
    | { kind: 'put'; doc: number; seed: number }
    | { kind: 'delete'; doc: number }
    | { kind: 'push'; maxOps: number; outcome: 'confirm' | 'lost' | 'partial' }
  const stepArb: fc.Arbitrary<Step> = fc.oneof(
    fc.record({
      kind: fc.constant('put' as const),
      doc: fc.nat(5),
      seed: fc.nat(50),
    }),
    fc.record({ kind: fc.constant('delete' as const), doc: fc.nat(5) }),
    fc.record({
      kind: fc.constant('push' as const),
      maxOps: fc.integer({ min: 1, max: 4 }),
      outcome: fc.constantFrom(
        'confirm' as const,
        'lost' as const,
        'partial' as const,
      ),
    }),
  )

  test('a server that applies confirmed batches ends with exactly the device state', ({
    openStore,
  }) => {
    let run = 0
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 60 }), (steps) => {
        const store = openStore(`model-${run++}.db`)
        store.createCollection({ name: 'docs', dims: 8 })
        const server = new Map<string, string>() // id → metadata of the newest applied version
        const applied = new Set<number>() // LSNs the server applied: each at most once
        const applyOps = (ops: readonly OutboxOp[]) => {
          for (const op of ops) {
            expect(applied.has(op.lsn)).toBe(false)
            applied.add(op.lsn)
            if (op.op === 'delete') server.delete(op.version.id)
            else server.set(op.version.id, op.version.metadataJson!)
          }
        }
        for (const step of steps) {
          if (step.kind === 'put')
            store.put('docs', {
              id: `d${step.doc}`,
              vector: vec(step.seed),
              metadata: { seed: step.seed },
            })
          else if (step.kind === 'delete') store.delete('docs', `d${step.doc}`)
          else {
            const batch = store.outbox.takeBatch({ maxOps: step.maxOps })
            if (batch === undefined) continue
            if (step.outcome === 'lost') store.outbox.release(batch)
            else if (step.outcome === 'confirm') {
              applyOps(batch.ops)
              store.outbox.confirm(batch)
            } else {
              const upTo = batch.ops[0]!.lsn
              applyOps(batch.ops.filter((op) => op.lsn <= upTo))
              store.outbox.confirm(batch, upTo)
            }
          }
        }
        // Flush: push until the outbox is empty.
        for (
          let batch = store.outbox.takeBatch();
          batch;
          batch = store.outbox.takeBatch()
        ) {
          applyOps(batch.ops)
          store.outbox.confirm(batch)
        }
        const local = new Map(
          [...store.documents('docs')].map((d) => [
            d.id,
            JSON.stringify(d.metadata),
          ]),
        )
        expect(server).toEqual(local)
        expect(store.outbox.size).toBe(0)
        store.close()
      }),
      { numRuns: Number(process.env.PROP_RUNS ?? 60) },
    )
  })
})

describe('Outbox: a push whose outcome is unknown', () => {
  test('a later delete is still sent: the server may have committed the create', ({
    store,
  }) => {
    store.put('docs', { id: 'x', vector: vec(1) })
    const lost = store.outbox.takeBatch()! // sent; the server commits, the response is lost
    store.outbox.release(lost)
    store.delete('docs', 'x')
    const batch = store.outbox.takeBatch()!
    expect(batch.ops.map((op) => [op.version.id, op.op])).toEqual([
      ['x', 'delete'],
    ])
  })

  test('the mark survives a restart', ({ openStore }) => {
    const store = openStore('unknown.db')
    store.createCollection({ name: 'docs', dims: 8 })
    store.put('docs', { id: 'x', vector: vec(1) })
    store.outbox.takeBatch() // then the process dies before any confirm or release
    store.close()
    const reopened = openStore('unknown.db')
    reopened.delete('docs', 'x')
    expect(reopened.outbox.takeBatch()!.ops.map((op) => op.op)).toEqual([
      'delete',
    ])
  })
})

describe('Outbox: review findings', () => {
  const remote = (id: string): DocumentVersion => ({
    id,
    deleted: false,
    vector: new Float32Array(vec(3)),
    metadataJson: '{"from":"b"}',
    versionVector: { 'b.00000001': 1 },
    hlc: { wallMs: 1_000, counter: 0 },
    origin: 'b.00000001',
  })

  test('a remote version skipped for a pending write makes a later delete of it be sent', ({
    store,
  }) => {
    store.put('docs', { id: 'x', vector: vec(1) }) // never sent
    expect(
      store.applyServerUpdate({
        versions: [{ collection: 'docs', version: remote('x') }],
      }),
    ).toEqual({
      applied: 0,
      skipped: [0],
    })
    store.delete('docs', 'x')
    // The server has b's x: dropping the delete would leave this device without x forever.
    expect(
      store.outbox.takeBatch()!.ops.map((op) => [op.version.id, op.op]),
    ).toEqual([['x', 'delete']])
  })

  test('compact() while a batch is in flight leaves the released entries compactable', ({
    store,
  }) => {
    store.put('docs', { id: 'x', vector: vec(1) })
    const batch = store.outbox.takeBatch()!
    store.put('docs', { id: 'x', vector: vec(2) })
    store.outbox.compact()
    store.outbox.release(batch)
    expect(store.outbox.takeBatch()!.ops.map((op) => op.lsn)).toEqual([2])
  })
})
