import { compileFilter, isVeloSyncError } from '@velosync/core'
import {
  bruteForceSearch,
  clusteredEmbeddings,
  sameRanking,
} from '@velosync/testkit'
import Database from 'better-sqlite3'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect } from 'vitest'
import { LocalStore } from '../src/index.js'
import { test, vec } from './fixtures.js'

describe('LocalStore: documents', () => {
  test('put, get, count, delete and iterate', ({ store }) => {
    const receipt = store.put('docs', {
      id: 'a',
      vector: vec(1),
      metadata: { lang: 'en' },
    })
    store.put('docs', { id: 'b', vector: new Float32Array(vec(2)) })
    expect(receipt.lsn).toBe(1)
    expect(receipt.versionVector).toEqual({ [store.replicaId]: 1 })
    const a = store.get('docs', 'a')
    expect(a?.metadata).toEqual({ lang: 'en' })
    expect(Array.from(a!.vector)).toEqual(Array.from(new Float32Array(vec(1))))
    expect(a?.origin).toBe(store.replicaId)
    expect(store.get('docs', 'b')?.metadata).toEqual({})
    expect(store.count('docs')).toBe(2)

    expect(store.delete('docs', 'a')?.lsn).toBe(3)
    expect(store.delete('docs', 'a')).toBeUndefined()
    expect(store.delete('docs', 'never')).toBeUndefined()
    expect(store.get('docs', 'a')).toBeUndefined()
    expect(store.count('docs')).toBe(1)
    expect(
      [...store.documents('docs', { batchSize: 1 })].map((d) => d.id),
    ).toEqual(['b'])
    expect(store.lastLsn).toBe(3)
  })

  test('an update increments only this replica in the version vector', ({
    store,
  }) => {
    store.put('docs', { id: 'a', vector: vec(1) })
    const second = store.put('docs', { id: 'a', vector: vec(2) })
    expect(second.versionVector).toEqual({ [store.replicaId]: 2 })
  })

  test('every write appends one outbox entry with its LSN, vector and HLC, in order', ({
    store,
  }) => {
    const receipts = store.putMany('docs', [
      { id: 'a', vector: vec(1) },
      { id: 'b', vector: vec(2) },
      { id: 'a', vector: vec(3) },
    ])
    store.delete('docs', 'b')
    const entries = store.outbox.entries()
    expect(entries.map((e) => [e.lsn, e.docId, e.op, e.priorExists])).toEqual([
      [1, 'a', 'put', false],
      [2, 'b', 'put', false],
      [3, 'a', 'put', true],
      [4, 'b', 'delete', true],
    ])
    expect(entries[2]!.versionVector).toEqual(receipts[2]!.versionVector)
    expect(entries[2]!.hlc).toEqual(receipts[2]!.hlc)
    for (let i = 1; i < entries.length; i++) {
      const [prev, next] = [entries[i - 1]!.hlc, entries[i]!.hlc]
      expect(
        next.wallMs > prev.wallMs ||
          (next.wallMs === prev.wallMs && next.counter > prev.counter),
      ).toBe(true)
    }
  })

  test('state, LSNs, device id and digest survive reopening the file', ({
    openStore,
    tmpDir,
  }) => {
    const first = openStore('persist.db', { deviceId: 'phone-1' })
    first.createCollection({
      name: 'docs',
      dims: 8,
      metric: 'l2',
      dtype: 'float64',
    })
    first.putMany(
      'docs',
      [0, 1, 2, 3].map((i) => ({
        id: `d${i}`,
        vector: vec(i),
        metadata: { i },
      })),
    )
    first.delete('docs', 'd2')
    const { digest, epoch } = {
      digest: first.digest('docs'),
      epoch: first.epoch,
    }
    first.close()
    expect(() => first.count('docs')).toThrow(/closed/)

    const again = openStore('persist.db')
    expect(again.deviceId).toBe('phone-1')
    expect(again.epoch).toBe(epoch)
    expect(again.lastLsn).toBe(5)
    expect(again.digest('docs')).toBe(digest)
    expect(again.count('docs')).toBe(3)
    expect(again.getCollection('docs')).toEqual({
      name: 'docs',
      dims: 8,
      metric: 'l2',
      dtype: 'float64',
    })
    expect(again.get('docs', 'd1')?.vector).toBeInstanceOf(Float64Array)
    expect(again.put('docs', { id: 'd9', vector: vec(9) }).lsn).toBe(6)
    expect(again.verify()).toEqual({ ok: true, problems: [] })

    const db = new Database(join(tmpDir, 'persist.db'), { readonly: true })
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    db.close()
    expect(() => openStore('persist.db', { deviceId: 'phone-2' })).toThrow(
      /belongs to device "phone-1"/,
    )
  })

  test('refuses a server store file and leaves it unchanged', ({
    openStore,
    tmpDir,
  }) => {
    const path = join(tmpDir, 'server.db')
    const db = new Database(path)
    db.exec('CREATE TABLE vs_meta (key TEXT PRIMARY KEY, value INTEGER)')
    db.close()
    const before = readFileSync(path)
    expect(() => openStore('server.db')).toThrow(
      /is a VeloSync server store, not a device store/,
    )
    expect(readFileSync(path).equals(before)).toBe(true)
    expect(existsSync(`${path}-wal`)).toBe(false)
  })

  test('opens a device store that an older server store gave a vs_schema_migrations table', ({
    openStore,
    tmpDir,
  }) => {
    const store = openStore('damaged.db')
    store.createCollection({ name: 'docs', dims: 8 })
    store.put('docs', { id: 'kept', vector: vec(1) })
    store.close()
    const db = new Database(join(tmpDir, 'damaged.db'))
    db.exec('CREATE TABLE vs_schema_migrations (version INTEGER PRIMARY KEY)')
    db.close()
    expect(openStore('damaged.db').outbox.size).toBe(1)
  })

  test('shares a file with tables of the app', ({ openStore, tmpDir }) => {
    const db = new Database(join(tmpDir, 'app.db'))
    db.exec('CREATE TABLE app_notes (id INTEGER PRIMARY KEY)')
    db.close()
    const store = openStore('app.db')
    store.createCollection({ name: 'docs', dims: 8 })
    expect(store.listCollections()).toHaveLength(1)
  })

  test('a new file gets a new device epoch', ({ openStore }) => {
    const a = openStore('a.db', { deviceId: 'same' })
    const b = openStore('b.db', { deviceId: 'same' })
    expect(a.epoch).not.toBe(b.epoch)
    expect(a.replicaId).not.toBe(b.replicaId)
  })

  test('collections: create, list, drop', ({ store }) => {
    store.createCollection({ name: 'other', dims: 3, metric: 'dot' })
    expect(store.listCollections().map((c) => c.name)).toEqual([
      'docs',
      'other',
    ])
    store.put('other', { id: 'x', vector: [1, 2, 3] })
    expect(() => store.createCollection({ name: 'other', dims: 3 })).toThrow(
      /already exists/,
    )
    expect(store.dropCollection('other')).toBe(true)
    expect(store.dropCollection('other')).toBe(false)
    expect(store.outbox.size).toBe(0)
    expect(() => store.count('other')).toThrow(/does not exist/)
  })
})

describe('LocalStore: bad input is rejected and changes nothing', () => {
  const cases: Array<[string, (s: LocalStore) => unknown, string]> = [
    [
      'a vector of the wrong length',
      (s) => s.put('docs', { id: 'x', vector: [1, 2] }),
      'invalid_argument',
    ],
    [
      'NaN in a vector',
      (s) =>
        s.put('docs', { id: 'x', vector: [...vec(1).slice(0, 7), Number.NaN] }),
      'invalid_argument',
    ],
    [
      'Infinity in a vector',
      (s) => s.put('docs', { id: 'x', vector: [Infinity, ...vec(1).slice(1)] }),
      'invalid_argument',
    ],
    [
      'a float32 overflow',
      (s) => s.put('docs', { id: 'x', vector: [1e39, ...vec(1).slice(1)] }),
      'invalid_argument',
    ],
    [
      'an all-zero cosine vector',
      (s) => s.put('docs', { id: 'x', vector: new Array(8).fill(0) }),
      'invalid_argument',
    ],
    [
      'a string in a vector',
      (s) =>
        s.put('docs', { id: 'x', vector: ['1', ...vec(1).slice(1)] as never }),
      'invalid_argument',
    ],
    [
      'array metadata',
      (s) => s.put('docs', { id: 'x', vector: vec(1), metadata: [1] as never }),
      'invalid_argument',
    ],
    [
      'string metadata',
      (s) =>
        s.put('docs', { id: 'x', vector: vec(1), metadata: 'meta' as never }),
      'invalid_argument',
    ],
    [
      'an empty id',
      (s) => s.put('docs', { id: '', vector: vec(1) }),
      'invalid_argument',
    ],
    [
      'a non-string id',
      (s) => s.put('docs', { id: 7 as never, vector: vec(1) }),
      'invalid_argument',
    ],
    [
      'an unknown collection',
      (s) => s.put('nope', { id: 'x', vector: vec(1) }),
      'not_found',
    ],
    [
      'a bad collection name',
      (s) => s.put('no spaces', { id: 'x', vector: vec(1) }),
      'invalid_argument',
    ],
    [
      'one bad document in a batch',
      (s) =>
        s.putMany('docs', [
          { id: 'ok', vector: vec(1) },
          { id: 'bad', vector: [1] },
        ]),
      'invalid_argument',
    ],
    [
      'a non-array batch',
      (s) => s.putMany('docs', { id: 'x' } as never),
      'invalid_argument',
    ],
    [
      'a bad filter',
      (s) => s.search('docs', vec(1), { filter: { year: { $near: 1 } } }),
      'invalid_argument',
    ],
    [
      'a NaN query',
      (s) => s.search('docs', new Array(8).fill(Number.NaN)),
      'invalid_argument',
    ],
    ['a short query', (s) => s.search('docs', [1]), 'invalid_argument'],
    ['k = 0', (s) => s.search('docs', vec(1), { k: 0 }), 'invalid_argument'],
    [
      'fractional k',
      (s) => s.search('docs', vec(1), { k: 2.5 }),
      'invalid_argument',
    ],
    [
      'a bad schema',
      (s) => s.createCollection({ name: 'z', dims: 0 }),
      'invalid_argument',
    ],
    [
      'an unknown metric',
      (s) =>
        s.createCollection({ name: 'z', dims: 3, metric: 'hamming' as never }),
      'invalid_argument',
    ],
  ]
  test.for(cases)('%s', ([, act, code], { store }) => {
    store.put('docs', {
      id: 'existing',
      vector: vec(5),
      metadata: { keep: true },
    })
    const before = {
      digest: store.digest('docs'),
      lsn: store.lastLsn,
      outbox: store.outbox.size,
      count: store.count('docs'),
    }
    let thrown: unknown
    try {
      act(store)
    } catch (error) {
      thrown = error
    }
    expect(isVeloSyncError(thrown, code as never), String(thrown)).toBe(true)
    expect({
      digest: store.digest('docs'),
      lsn: store.lastLsn,
      outbox: store.outbox.size,
      count: store.count('docs'),
    }).toEqual(before)
    expect(store.getCollection('z')).toBeUndefined()
    expect(store.verify().ok).toBe(true)
  })

  test('rejects bad options', ({ tmpDir }) => {
    expect(() => LocalStore.open({ path: '' })).toThrow(/path/)
    expect(() =>
      LocalStore.open({ path: join(tmpDir, 'x.db'), deviceId: 'has space' }),
    ).toThrow(/device id/)
    expect(() =>
      LocalStore.open({
        path: join(tmpDir, 'x.db'),
        synchronous: 'off' as never,
      }),
    ).toThrow(/synchronous/)
    expect(() =>
      LocalStore.open({ path: join(tmpDir, 'no-such-dir', 'x.db') }),
    ).toThrow(/cannot open store/)
  })
})

describe('LocalStore: search', () => {
  for (const metric of ['cosine', 'dot', 'l2'] as const) {
    for (const backend of ['wasm-simd', 'js'] as const) {
      test(`${metric} with ${backend} equals the brute-force oracle, with and without filters`, ({
        openStore,
      }) => {
        const store = openStore(`${metric}-${backend}.db`, {
          vectorBackend: backend,
        })
        store.createCollection({ name: 'c', dims: 24, metric })
        const data = clusteredEmbeddings({ count: 600, dims: 24, seed: 7 })
        const docs = Array.from({ length: 600 }, (_, i) => ({
          id: `d${i}`,
          // Scale rows so that dot and l2 differ from cosine.
          vector: Array.from(data.row(i), (x) => x * (1 + (i % 5))),
          metadata: { bucket: i % 10, even: i % 2 === 0 },
        }))
        store.putMany('c', docs)
        for (let i = 0; i < 40; i++) store.delete('c', `d${i * 7}`)
        const live = docs.filter((d) => store.get('c', d.id) !== undefined)
        expect(store.searchBackend('c')).toBe(backend)
        for (let q = 0; q < 10; q++) {
          const query = Array.from(data.row(q * 13), (x) => x + 0.01 * q)
          for (const filter of [
            undefined,
            { bucket: 3 },
            { bucket: { $in: [1, 2] }, even: true },
          ]) {
            const expected = bruteForceSearch(live, query, {
              k: 10,
              metric,
              ...(filter ? { predicate: compileFilter(filter) } : {}),
            })
            const actual = store.search('c', query, {
              k: 10,
              ...(filter ? { filter } : {}),
            })
            expect(
              sameRanking(actual, expected),
              JSON.stringify({ actual, expected }),
            ).toBe(true)
          }
        }
      })
    }
  }

  test('a filtered search returns k hits whenever at least k documents match', ({
    store,
  }) => {
    // 1000 documents; only 12 match, and they are far from the query.
    store.putMany(
      'docs',
      Array.from({ length: 1000 }, (_, i) => ({
        id: `d${i}`,
        vector: vec(i),
        metadata: { rare: i % 83 === 0 },
      })),
    )
    const matching = [...store.documents('docs')].filter(
      (d) => d.metadata.rare === true,
    ).length
    expect(matching).toBe(13)
    expect(
      store.search('docs', vec(1), { k: 10, filter: { rare: true } }),
    ).toHaveLength(10)
    expect(
      store.search('docs', vec(1), { k: 50, filter: { rare: true } }),
    ).toHaveLength(13)
    expect(
      store.search('docs', vec(1), { k: 5, filter: { rare: 'no such value' } }),
    ).toHaveLength(0)
  })

  test('returns metadata and, on request, stored vectors', ({ store }) => {
    store.put('docs', { id: 'a', vector: vec(1), metadata: { t: 'x' } })
    const [hit] = store.search('docs', vec(1), { k: 1, includeVector: true })
    expect(hit?.id).toBe('a')
    expect(hit?.score).toBeCloseTo(1, 5)
    expect(hit?.metadata).toEqual({ t: 'x' })
    expect(Array.from(hit!.vector!)).toEqual(
      Array.from(new Float32Array(vec(1))),
    )
    expect(store.search('docs', vec(1), { includeMetadata: false })[0]).toEqual(
      { id: 'a', score: hit!.score },
    )
  })

  test('the index follows updates, deletes and a reopen', ({ openStore }) => {
    const store = openStore('follow.db')
    store.createCollection({ name: 'docs', dims: 8 })
    store.putMany(
      'docs',
      [1, 2, 3].map((i) => ({ id: `d${i}`, vector: vec(i) })),
    )
    store.put('docs', { id: 'd1', vector: vec(3) })
    store.delete('docs', 'd3')
    const ids = store.search('docs', vec(3), { k: 3 }).map((h) => h.id)
    expect(ids[0]).toBe('d1')
    expect(ids).toHaveLength(2)
    store.close()
    const reopened = openStore('follow.db')
    expect(reopened.search('docs', vec(3), { k: 3 }).map((h) => h.id)).toEqual(
      ids,
    )
  })
})

describe('LocalStore.startNewEpoch', () => {
  test('re-stamps unpushed writes under a new replica id; content and search stay', ({
    store,
  }) => {
    store.put('docs', { id: 'pushed', vector: vec(1) })
    store.outbox.confirm(store.outbox.takeBatch()!)
    store.put('docs', { id: 'a', vector: vec(2), metadata: { v: 1 } })
    store.delete('docs', 'pushed')
    const oldReplica = store.replicaId
    const before = store.get('docs', 'a')!
    const lastLsn = store.lastLsn

    const epoch = store.startNewEpoch()
    expect(store.epoch).toBe(epoch)
    expect(store.replicaId).not.toBe(oldReplica)
    const entries = store.outbox.entries()
    expect(entries.map((e) => [e.lsn, e.docId, e.op])).toEqual([
      [lastLsn + 1, 'a', 'put'],
      [lastLsn + 2, 'pushed', 'delete'],
    ])
    const after = store.get('docs', 'a')!
    expect(after.metadata).toEqual(before.metadata)
    expect(after.origin).toBe(store.replicaId)
    expect(after.versionVector).toEqual({
      [oldReplica]: 1,
      [store.replicaId]: 1,
    })
    expect(entries[0]!.versionVector).toEqual(after.versionVector)
    expect(store.search('docs', vec(2), { k: 1 })[0]?.id).toBe('a')
    expect(store.verify()).toEqual({ ok: true, problems: [] })
  })

  test('persists the new epoch and refuses while a batch is in flight', ({
    openStore,
  }) => {
    const store = openStore('epoch.db')
    store.createCollection({ name: 'docs', dims: 8 })
    store.put('docs', { id: 'a', vector: vec(1) })
    const batch = store.outbox.takeBatch()!
    expect(() => store.startNewEpoch()).toThrow(/in flight/)
    store.outbox.release(batch)
    const epoch = store.startNewEpoch()
    store.close()
    const reopened = openStore('epoch.db')
    expect(reopened.epoch).toBe(epoch)
    expect(reopened.lastLsn).toBe(2)
    expect(reopened.put('docs', { id: 'b', vector: vec(2) }).lsn).toBe(3)
  })
})

describe('LocalStore: clock', () => {
  test('a write after a restart is later than a remote version applied before it', ({
    openStore,
  }) => {
    const wallClock = () => 1_000_000
    const store = openStore('clock.db', { wallClock })
    store.createCollection({ name: 'docs', dims: 8 })
    store.applyRemoteVersions('docs', [
      {
        id: 'x',
        deleted: false,
        vector: new Float32Array(vec(1)),
        metadataJson: '{}',
        versionVector: { 'peer.00000001': 1 },
        hlc: { wallMs: 1_030_000, counter: 0 },
        origin: 'peer.00000001',
      },
    ])
    store.close()
    const reopened = openStore('clock.db', { wallClock })
    expect(reopened.put('docs', { id: 'x', vector: vec(2) }).hlc).toEqual({
      wallMs: 1_030_000,
      counter: 1,
    })
  })

  test('a write replacing a far-future version is later than it, and the clock stays bounded', ({
    openStore,
  }) => {
    const wallClock = () => 1_000_000
    const store = openStore('future.db', { wallClock })
    store.createCollection({ name: 'docs', dims: 8 })
    const year2099 = Date.UTC(2099, 0, 1)
    store.applyRemoteVersions('docs', [
      {
        id: 'x',
        deleted: false,
        vector: new Float32Array(vec(1)),
        metadataJson: '{}',
        versionVector: { 'peer.00000001': 1 },
        hlc: { wallMs: year2099, counter: 7 },
        origin: 'peer.00000001',
      },
    ])
    // The document's timeline stays causal: the replacing write is stamped after 2099.
    expect(store.put('docs', { id: 'x', vector: vec(2) }).hlc).toEqual({
      wallMs: year2099,
      counter: 8,
    })
    // Other documents use the clock, which absorbed the peer only up to its 60 s bound.
    expect(store.put('docs', { id: 'y', vector: vec(3) }).hlc.wallMs).toBe(
      1_060_000,
    )
    // Re-stamping under a new epoch keeps that order too.
    store.startNewEpoch()
    expect(store.get('docs', 'x')?.hlc).toEqual({
      wallMs: year2099,
      counter: 9,
    })
  })
})
