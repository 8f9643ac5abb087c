/*
 * End-to-end: real LocalStores (SQLite files) syncing through a real HTTP server on
 * 127.0.0.1 backed by a real SqliteServerStore. Each test names the DESIGN.md invariant
 * it demonstrates.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  HttpTransport,
  LocalStore,
  SyncClient,
  type SyncTransport,
} from '@velosync/client'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import { PROTOCOL_VERSION, type SyncRequest } from '@velosync/core'
import { seededRandom } from '@velosync/testkit'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createSyncServer, createToken, hashToken } from '../src/index.js'

const DIMS = 8

interface Device {
  readonly name: string
  readonly store: LocalStore
  readonly sync: SyncClient
  readonly transport: SyncTransport
}

let dir: string
let serverStore: SqliteServerStore
let listening: { port: number; close(): Promise<void> }
let url: string
const opened: LocalStore[] = []

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'velosync-e2e-'))
  serverStore = SqliteServerStore.open({ path: join(dir, 'server.db') })
  listening = await createSyncServer({
    store: serverStore,
    auth: { mode: 'token' },
  }).listen({
    port: 0,
    host: '127.0.0.1',
  })
  url = `http://127.0.0.1:${listening.port}`
})

afterEach(async () => {
  for (const store of opened.splice(0)) store.close()
  await listening.close()
  await serverStore.close()
  rmSync(dir, { recursive: true, force: true })
})

async function device(
  name: string,
  format: 'json' | 'msgpack' = 'msgpack',
  wallClock?: () => number,
): Promise<Device> {
  const token = createToken()
  await serverStore.createDeviceToken(name, hashToken(token))
  const store = LocalStore.open({
    path: join(dir, `${name}.db`),
    deviceId: name,
    ...(wallClock === undefined ? {} : { wallClock }),
  })
  opened.push(store)
  if (store.getCollection('notes') === undefined) {
    store.createCollection({ name: 'notes', dims: DIMS, metric: 'cosine' })
  }
  const transport = new HttpTransport({ url, token, format })
  return {
    name,
    store,
    transport,
    sync: new SyncClient(store, { transport, maxOpsPerPush: 7 }),
  }
}

/**
 * A device whose store file is closed and reopened (or replaced by a backup) during the
 * test: `open()` opens `path` again with a fresh sync client, under one token.
 */
async function reopenable(name: string): Promise<{
  path: string
  open: () => { store: LocalStore; sync: SyncClient }
}> {
  const token = createToken()
  await serverStore.createDeviceToken(name, hashToken(token))
  const path = join(dir, `${name}.db`)
  const open = () => {
    const store = LocalStore.open({ path, deviceId: name })
    opened.push(store)
    return {
      store,
      sync: new SyncClient(store, {
        transport: new HttpTransport({ url, token }),
      }),
    }
  }
  return { path, open }
}

/**
 * `transport`, but once, after the answer to the first request that `matches` arrived,
 * `then` runs before the answer is handed on (and may throw it away).
 */
function afterFirstAnswer(
  transport: SyncTransport,
  matches: (request: SyncRequest) => boolean,
  then: () => void | Promise<void>,
): SyncTransport {
  let armed = true
  return {
    async sync(request, options) {
      const response = await transport.sync(request, options)
      if (armed && matches(request)) {
        armed = false
        await then()
      }
      return response
    },
    ack: (request, options) => transport.ack(request, options),
  }
}

/** `transport`, but the answer to its `nth` push is lost after the server committed it. */
function losingPushAnswer(transport: SyncTransport, nth = 1): SyncTransport {
  let pushes = 0
  return afterFirstAnswer(
    transport,
    (request) => request.push.length > 0 && ++pushes === nth,
    () => {
      throw new Error('connection reset after the server committed')
    },
  )
}

/** Device `alpha` with documents a0–a5, all pushed (seqs 1–6). */
async function alphaWithSixPushed(): Promise<Device> {
  const a = await device('alpha')
  a.store.putMany(
    'notes',
    [0, 1, 2, 3, 4, 5].map((i) => ({ id: `a${i}`, vector: vec(i) })),
  )
  await a.sync.sync()
  return a
}

/**
 * A client for `d` that pulls in pages of two, while its app edits `id` (a new version
 * of it) as soon as the answer to the round's first request arrives.
 */
function editingDuringPagedPull(d: Device, id: string): SyncClient {
  return new SyncClient(d.store, {
    transport: afterFirstAnswer(
      d.transport,
      () => true,
      () => {
        d.store.put('notes', { id, vector: vec(50) })
      },
    ),
    pullLimit: 2,
  })
}

function vec(seed: number): number[] {
  return Array.from(
    { length: DIMS },
    (_, i) => Math.sin(seed * 3.7 + i) + (i === seed % DIMS ? 2 : 0),
  )
}

async function syncAll(devices: readonly Device[]): Promise<void> {
  // Two passes: the first pushes everything, the second pulls what others pushed after.
  for (let pass = 0; pass < 2; pass++)
    for (const d of devices) await d.sync.sync()
}

async function serverDigest(collection = 'notes'): Promise<string> {
  return serverStore.digest(collection)
}

describe('sync over HTTP', () => {
  it('I3: two devices converge (every device digest = server digest), JSON and MessagePack', async () => {
    const a = await device('alpha', 'json')
    const b = await device('beta', 'msgpack')
    a.store.putMany(
      'notes',
      [1, 2, 3].map((i) => ({
        id: `a${i}`,
        vector: vec(i),
        metadata: { by: 'a', i },
      })),
    )
    b.store.putMany(
      'notes',
      [4, 5].map((i) => ({
        id: `b${i}`,
        vector: vec(i),
        metadata: { by: 'b', i },
      })),
    )
    b.store.delete('notes', 'b5')
    await syncAll([a, b])
    const digest = await serverDigest()
    expect(a.store.digest('notes')).toBe(digest)
    expect(b.store.digest('notes')).toBe(digest)
    expect(a.store.count('notes')).toBe(4)
    expect(b.store.get('notes', 'a2')?.metadata).toEqual({ by: 'a', i: 2 })
    expect(a.store.outbox.size).toBe(0)
    expect(b.store.search('notes', vec(1), { k: 1 })[0]?.id).toBe('a1')
  })

  it('I3: five devices with random writes and deletes converge', async () => {
    const devices = await Promise.all(
      [0, 1, 2, 3, 4].map((i) => device(`dev${i}`)),
    )
    const random = seededRandom(42)
    for (let round = 0; round < 3; round++) {
      for (const d of devices) {
        for (let op = 0; op < 12; op++) {
          const id = `doc${Math.floor(random() * 20)}`
          if (random() < 0.25) d.store.delete('notes', id)
          else
            d.store.put('notes', {
              id,
              vector: vec(Math.floor(random() * 100)),
              metadata: { by: d.name, round },
            })
        }
        await d.sync.sync()
      }
    }
    await syncAll(devices)
    const digest = await serverDigest()
    for (const d of devices) {
      expect(d.store.digest('notes'), d.name).toBe(digest)
      expect(d.store.verify().ok).toBe(true)
    }
  })

  it('I4: a concurrent edit ends with the same winner everywhere and the loser recorded', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    a.store.put('notes', {
      id: 'shared',
      vector: vec(1),
      metadata: { v: 'base' },
    })
    await syncAll([a, b])
    a.store.put('notes', {
      id: 'shared',
      vector: vec(2),
      metadata: { v: 'from a' },
    })
    b.store.put('notes', {
      id: 'shared',
      vector: vec(3),
      metadata: { v: 'from b' },
    }) // later HLC
    const conflictsSeen: string[] = []
    a.sync.on('conflict', (c) => conflictsSeen.push(`a:${c.outcome}`))
    b.sync.on('conflict', (c) => {
      conflictsSeen.push(`b:${c.outcome}`)
      // A listener owns what it is given: scribbling on it changes nothing stored.
      c.version?.vector?.fill(Number.NaN)
    })
    await a.sync.sync()
    await b.sync.sync()
    await a.sync.sync()
    expect(conflictsSeen).toEqual(['b:conflict_won'])
    const winner = a.store.get('notes', 'shared')!
    expect(winner.metadata).toEqual({ v: 'from b' })
    expect(b.store.get('notes', 'shared')).toEqual(winner)
    expect(Object.keys(winner.versionVector).sort()).toEqual(
      [a.store.replicaId, b.store.replicaId].sort(),
    )
    expect(a.store.digest('notes')).toBe(await serverDigest())
    expect(b.store.digest('notes')).toBe(await serverDigest())
    const conflicts = await serverStore.conflicts({ limit: 10 })
    expect(conflicts).toHaveLength(1)
    expect(conflicts[0]!.loser.metadataJson).toBe('{"v":"from a"}')
    expect(conflicts[0]!.winner.metadataJson).toBe('{"v":"from b"}')
  })

  it('I6: a device pulls none of its own accepted versions', async () => {
    const a = await device('alpha')
    a.store.putMany(
      'notes',
      [1, 2, 3, 4, 5].map((i) => ({ id: `d${i}`, vector: vec(i) })),
    )
    const first = await a.sync.sync()
    expect(first.pushed).toBe(5)
    const second = await a.sync.sync()
    expect(first.pulled + second.pulled).toBe(0)
    expect(first.skippedEchoes).toBe(5)
    expect(a.store.syncCursor).toBe(await serverStore.head())
  })

  it('I1/I2: a response dropped after the server committed, then retried, applies exactly once', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    const flaky = new SyncClient(a.store, {
      transport: losingPushAnswer(a.transport),
    })
    a.store.put('notes', { id: 'x', vector: vec(1), metadata: { n: 1 } })
    await expect(flaky.sync()).rejects.toThrow(/connection reset/)
    expect(a.store.outbox.size).toBe(1) // not confirmed: the answer never arrived
    const headAfterFirst = await serverStore.head()
    await flaky.sync()
    expect(a.store.outbox.size).toBe(0)
    expect(await serverStore.head()).toBe(headAfterFirst) // the replay stored nothing new
    await b.sync.sync()
    expect(b.store.get('notes', 'x')?.metadata).toEqual({ n: 1 })
    expect(b.store.digest('notes')).toBe(await serverDigest())
    expect(a.store.digest('notes')).toBe(await serverDigest())
  })

  it('I3: a replay cut into two pushes still brings the version its first answer skipped', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    a.store.putMany(
      'notes',
      [0, 1, 2, 3].map((i) => ({ id: `x${i}`, vector: vec(i) })),
    )
    const flaky = new SyncClient(a.store, {
      transport: losingPushAnswer(a.transport),
    })
    await expect(flaky.sync()).rejects.toThrow(/connection reset/)
    // B writes x3 without having seen A's: a conflict, and a merged version at a new seq.
    b.store.put('notes', { id: 'x3', vector: vec(9), metadata: { by: 'b' } })
    expect((await b.sync.sync()).conflicts).toBe(1)
    // A replays in smaller batches (as after a restart). The answer to the first pulls the
    // merged x3 while A's write of it still waits in the second, so A skips it there.
    const recut = new SyncClient(a.store, {
      transport: a.transport,
      maxOpsPerPush: 2,
    })
    const round = await recut.sync()
    expect(round.requests).toBe(2)
    expect(a.store.outbox.size).toBe(0)
    const digest = await serverDigest()
    expect(a.store.digest('notes')).toBe(digest)
    expect(a.store.get('notes', 'x3')).toEqual(b.store.get('notes', 'x3'))
    await b.sync.sync()
    expect(b.store.digest('notes')).toBe(digest)
  })

  it('I5: a version skipped for a write whose answer was lost holds the cursor, so a delete collected meanwhile still reaches the device', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    a.store.putMany(
      'notes',
      ['p0', 'p1', 'x'].map((id, i) => ({ id, vector: vec(i) })),
    )
    const flaky = new SyncClient(a.store, {
      transport: losingPushAnswer(a.transport),
    })
    await expect(flaky.sync()).rejects.toThrow(/connection reset/)
    await b.sync.sync()
    b.store.delete('notes', 'x')
    await b.sync.sync()
    const tombstoneSeq = await serverStore.head()
    // A replays in two pushes: the first one's answer brings B's delete of x while A's
    // replay of x waits in the second, whose answer is lost too.
    const recut = new SyncClient(a.store, {
      transport: losingPushAnswer(a.transport, 2),
      maxOpsPerPush: 2,
    })
    await expect(recut.sync()).rejects.toThrow(/connection reset/)
    expect(a.store.get('notes', 'x')).toBeDefined()
    expect(a.store.syncCursor).toBe(tombstoneSeq - 1)
    // A stays away past the retention window: the tombstone goes. Its cursor, still below
    // the tombstone, is below the collected horizon, so A rebuilds and drops x.
    const gc = await serverStore.collectGarbage({
      nowMs: Date.now() + 1000,
      retentionMs: 0,
    })
    expect(gc.removedTombstones).toBe(1)
    const round = await a.sync.sync()
    expect(round.resynced).toBe(true)
    expect(a.store.get('notes', 'x')).toBeUndefined()
    expect(a.store.outbox.size).toBe(0)
    expect(a.store.digest('notes')).toBe(await serverDigest())
  })

  it('I5: a write made during a paged pull holds back the ack, not the cursor, once the round ends', async () => {
    await alphaWithSixPushed()
    const b = await device('beta')
    const store = b.store
    // The app edits a5 (on the last page) while the first page is on its way.
    const client = editingDuringPagedPull(b, 'a5')
    const round = await client.sync()
    expect(round.requests).toBe(3)
    expect(store.outbox.size).toBe(1)
    // Every request of the round was answered: the cursor is the head. The edit was never
    // sent, so its first push changes the stored a5 at a new seq, past this cursor. The ack
    // stays below a5's version until the edit has met it at the server.
    expect(store.syncCursor).toBe(6)
    const ackedCursor = async () =>
      (
        await serverStore.replicaProgress({
          deviceId: 'beta',
          epoch: store.epoch,
        })
      ).ackedCursor
    expect(await ackedCursor()).toBe(5)
    const next = await client.sync()
    expect(next.conflicts).toBe(1)
    expect(store.syncCursor).toBe(7)
    expect(await ackedCursor()).toBe(7)
    expect(store.digest('notes')).toBe(await serverDigest())
  })

  it('I5: a write made during a paged pull whose first answer is lost still learns of the delete it lost to, collected or not', async () => {
    await alphaWithSixPushed()
    // D's clock leads by an hour: its delete wins the conflict below.
    const d = await device('delta', 'msgpack', () => Date.now() + 3_600_000)
    await d.sync.sync()
    d.store.delete('notes', 'a5')
    await d.sync.sync()
    const b = await device('beta')
    await editingDuringPagedPull(b, 'a5').sync() // skips the tombstone of a5: the edit is pending
    expect(b.store.outbox.size).toBe(1)
    const flaky = new SyncClient(b.store, {
      transport: losingPushAnswer(b.transport),
    })
    await expect(flaky.sync()).rejects.toThrow(/connection reset/)
    const gc = await serverStore.collectGarbage({
      nowMs: Date.now() + 7_200_000,
      retentionMs: 0,
    })
    expect(gc.removedTombstones).toBe(1)
    // The conflict stored the winning tombstone at a new seq, past B's cursor: collected,
    // it puts B below the horizon.
    const round = await b.sync.sync()
    expect(round.resynced).toBe(true)
    expect(b.store.get('notes', 'a5')).toBeUndefined()
    expect(b.store.outbox.size).toBe(0)
    expect(b.store.digest('notes')).toBe(await serverDigest())
  })

  it('I5: a device whose first answer was lost resyncs, so a delete collected meanwhile still reaches it', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    const flaky = new SyncClient(a.store, {
      transport: losingPushAnswer(a.transport),
    })
    a.store.put('notes', { id: 'x', vector: vec(1) })
    await expect(flaky.sync()).rejects.toThrow(/connection reset/)
    expect(a.store.syncCursor).toBe(0) // pushed, but never heard back
    await b.sync.sync()
    b.store.delete('notes', 'x')
    await b.sync.sync()
    const gc = await serverStore.collectGarbage({
      nowMs: Date.now() + 1000,
      retentionMs: 0,
    })
    expect(gc.removedTombstones).toBe(1)
    a.store.put('notes', { id: 'offline', vector: vec(2) })
    const round = await flaky.sync()
    expect(round.resynced).toBe(true)
    expect(a.store.get('notes', 'x')).toBeUndefined()
    expect(a.store.get('notes', 'offline')).toBeDefined()
    await b.sync.sync()
    expect(a.store.digest('notes')).toBe(await serverDigest())
    expect(b.store.digest('notes')).toBe(await serverDigest())
  })

  it('a push round that fails mid-way keeps the batch it read ahead, and the next round sends it once', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    let requests = 0
    const seen: number[][] = []
    const failSecond: SyncTransport = {
      sync(request, options) {
        seen.push(request.push.map((op) => op.lsn))
        if (++requests === 2) {
          return Promise.reject(new Error('connection refused'))
        }
        return a.transport.sync(request, options)
      },
      ack: (request, options) => a.transport.ack(request, options),
    }
    const client = new SyncClient(a.store, {
      transport: failSecond,
      maxOpsPerPush: 7,
    })
    a.store.putMany(
      'notes',
      Array.from({ length: 20 }, (_, i) => ({ id: `r${i}`, vector: vec(i) })),
    )
    await expect(client.sync()).rejects.toThrow(/connection refused/)
    // The first batch is confirmed; the second failed, and the third, read while the
    // second was at the "server", went back to the log with it.
    expect(a.store.outbox.inFlight).toBeUndefined()
    expect(a.store.outbox.size).toBe(13)
    const result = await client.sync()
    expect(result.pushed).toBe(13)
    expect(seen.slice(0, 4).map((lsns) => [lsns[0], lsns.length])).toEqual([
      [1, 7],
      [8, 7],
      [8, 7],
      [15, 6],
    ])
    expect(a.store.outbox.size).toBe(0)
    expect(await serverStore.head()).toBe(20)
    await b.sync.sync()
    expect(b.store.count('notes')).toBe(20)
    expect(a.store.digest('notes')).toBe(await serverDigest())
    expect(b.store.digest('notes')).toBe(await serverDigest())
  })

  it('each batch read ahead is encoded ahead, and the request that pushes it sends those bytes', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    const http = a.transport as HttpTransport
    const encodedAhead: unknown[] = []
    let spliced = 0
    const spy: SyncTransport = {
      encodeAhead(push) {
        encodedAhead.push(push)
        http.encodeAhead(push)
      },
      sync(request, options) {
        if (encodedAhead.includes(request.push)) spliced++
        return http.sync(request, options)
      },
      ack: (request, options) => http.ack(request, options),
    }
    const client = new SyncClient(a.store, { transport: spy, maxOpsPerPush: 7 })
    a.store.putMany(
      'notes',
      Array.from({ length: 20 }, (_, i) => ({ id: `e${i}`, vector: vec(i) })),
    )
    expect((await client.sync()).pushed).toBe(20)
    // Batches 2 and 3 were read (and encoded) while the one before was at the server.
    expect(encodedAhead).toHaveLength(2)
    expect(spliced).toBe(2)
    await b.sync.sync()
    expect(b.store.count('notes')).toBe(20)
    expect(a.store.digest('notes')).toBe(await serverDigest())
    expect(b.store.digest('notes')).toBe(await serverDigest())
  })

  it('a round ends with its last push when that answer pulled to the head and nothing waits', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    b.store.put('notes', { id: 'from-b', vector: vec(1) })
    await b.sync.sync()
    a.store.putMany(
      'notes',
      Array.from({ length: 20 }, (_, i) => ({ id: `t${i}`, vector: vec(i) })),
    )
    // 20 ops in batches of 7: three requests, the last of which pulled b's write too.
    const round = await a.sync.sync()
    expect(round).toMatchObject({ pushed: 20, pulled: 1, requests: 3 })
    expect(a.store.get('notes', 'from-b')).toBeDefined()
    expect(a.store.digest('notes')).toBe(await serverDigest())
    // A write that arrives during the round is still pushed by it.
    const during: SyncTransport = {
      sync: async (request, options) => {
        const answer = await a.transport.sync(request, options)
        if (
          request.push.length > 0 &&
          a.store.get('notes', 'late') === undefined
        )
          a.store.put('notes', { id: 'late', vector: vec(3) })
        return answer
      },
      ack: (request, options) => a.transport.ack(request, options),
    }
    a.store.put('notes', { id: 'first', vector: vec(2) })
    const withLate = await new SyncClient(a.store, { transport: during }).sync()
    expect(withLate).toMatchObject({ pushed: 2, requests: 2 })
    expect(a.store.outbox.size).toBe(0)
    await b.sync.sync()
    expect(b.store.digest('notes')).toBe(await serverDigest())
    expect(a.store.digest('notes')).toBe(await serverDigest())
  })

  it('a local apply that fails after its confirm ran leaves nothing taken, and the next round pushes', async () => {
    const a = await device('alpha')
    a.store.putMany(
      'notes',
      Array.from({ length: 20 }, (_, i) => ({ id: `f${i}`, vector: vec(i) })),
    )
    // A disk error late in the apply transaction, after the outbox confirmed the batch in
    // memory (the transaction rolls back; the in-memory marks must follow).
    const outbox = a.store.outbox
    const confirm = outbox.confirm.bind(outbox)
    let fail = true
    outbox.confirm = (batch, upToLsn) => {
      const removed = confirm(batch, upToLsn)
      if (fail) {
        fail = false
        throw new Error('disk I/O error')
      }
      return removed
    }
    await expect(a.sync.sync()).rejects.toThrow(/disk I\/O error/)
    expect(outbox.inFlight).toBeUndefined()
    expect(outbox.size).toBe(20)
    const result = await a.sync.sync()
    expect(result.pushed).toBe(20)
    expect(outbox.size).toBe(0)
    expect(a.store.digest('notes')).toBe(await serverDigest())
  })

  it('I2: the next batch goes out before the answer to the last is confirmed; a crash between replays both, once', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    a.store.putMany(
      'notes',
      Array.from({ length: 20 }, (_, i) => ({ id: `o${i}`, vector: vec(i) })),
    )
    const epoch = a.store.epoch
    const logSizes: number[] = []
    const answers: Promise<unknown>[] = []
    const transport: SyncTransport = {
      encodeAhead: (push) => a.transport.encodeAhead?.(push),
      sync(request) {
        if (request.push.length > 0) logSizes.push(a.store.outbox.size)
        // Runs to the end even when the round stops waiting: the server gets it all.
        const answer = a.transport.sync(request, {})
        answers.push(answer.catch(() => undefined))
        return answer
      },
      ack: (request, options) => a.transport.ack(request, options),
    }
    // The confirm of the first answer fails, as a crash before it reached the disk would.
    const outbox = a.store.outbox
    const confirm = outbox.confirm.bind(outbox)
    outbox.confirm = () => {
      outbox.confirm = confirm
      throw new Error('power cut')
    }
    const client = new SyncClient(a.store, { transport, maxOpsPerPush: 7 })
    await expect(client.sync()).rejects.toThrow(/power cut/)
    await Promise.all(answers)
    // The second batch was sent while the first was still in the log, and was applied.
    expect(logSizes.slice(0, 2)).toEqual([20, 20])
    expect(await serverStore.head()).toBe(14)
    expect(outbox.size).toBe(20)
    // Meanwhile B writes o10 (in the second batch) unaware of A's: a merged version. The
    // answer to A's first replay brings it while A's o10 waits in the second, so A skips
    // it there; the second replay's answer brings it back.
    b.store.put('notes', { id: 'o10', vector: vec(99) })
    expect((await b.sync.sync()).conflicts).toBe(1)

    const again = await client.sync()
    expect(again.pushed).toBe(20)
    // Both replays were recognized (no lsn_reused, so no new epoch), and nothing doubled.
    expect(a.store.epoch).toBe(epoch)
    expect(await serverStore.head()).toBe(21)
    expect(outbox.size).toBe(0)
    expect(a.store.digest('notes')).toBe(await serverDigest())
    expect(a.store.get('notes', 'o10')).toEqual(b.store.get('notes', 'o10'))
  })

  it.each(['an abort', 'a transport that throws'] as const)(
    'a round stopped by %s after a batch went out ahead leaves nothing taken',
    async (how) => {
      const a = await device('alpha')
      a.store.putMany(
        'notes',
        Array.from({ length: 20 }, (_, i) => ({ id: `s${i}`, vector: vec(i) })),
      )
      const stop = new AbortController()
      let pushes = 0
      const transport: SyncTransport = {
        encodeAhead: (push) => a.transport.encodeAhead?.(push),
        sync(request, options) {
          if (request.push.length > 0 && ++pushes === 2) {
            if (how === 'a transport that throws')
              throw new Error('transport bug')
            // Stops the round between this request and its next turn.
            const answer = a.transport.sync(request, options)
            stop.abort()
            return answer
          }
          return a.transport.sync(request, options)
        },
        ack: (request, options) => a.transport.ack(request, options),
      }
      const client = new SyncClient(a.store, { transport, maxOpsPerPush: 7 })
      await expect(client.sync({ signal: stop.signal })).rejects.toThrow()
      // The first batch was confirmed; the one sent ahead is back in the log.
      expect(a.store.outbox.inFlight).toBeUndefined()
      expect(a.store.outbox.size).toBe(13)
      expect((await a.sync.sync()).pushed).toBe(13)
      expect(await serverStore.head()).toBe(20)
      expect(a.store.digest('notes')).toBe(await serverDigest())
    },
  )

  it.each([
    ['its first byte (it no longer decodes)', 0],
    ['a byte in the middle (it still decodes)', 0.5],
  ])(
    'I7: a sync answer with %s altered in transit is refused, and nothing is applied',
    async (_, where) => {
      const b = await device('beta')
      b.store.putMany(
        'notes',
        [1, 2, 3].map((i) => ({ id: `c${i}`, vector: vec(i) })),
      )
      await b.sync.sync()
      const token = createToken()
      await serverStore.createDeviceToken('gamma', hashToken(token))
      const store = LocalStore.open({ path: join(dir, 'gamma.db') })
      opened.push(store)
      const altering = async (request: Request): Promise<Response> => {
        const headers = new Headers(request.headers)
        headers.set('accept-encoding', 'identity')
        const answer = await fetch(new Request(request, { headers }))
        const body = new Uint8Array(await answer.arrayBuffer())
        if (new URL(request.url).pathname === '/v1/sync')
          body[Math.floor((body.length - 1) * where)]! ^= 0xff
        return new Response(body, {
          status: answer.status,
          headers: answer.headers,
        })
      }
      const client = new SyncClient(store, {
        transport: new HttpTransport({ url, token, fetch: altering }),
      })
      await expect(client.sync()).rejects.toMatchObject({
        code: 'digest_mismatch',
      })
      expect(store.syncCursor).toBe(0)
      expect(store.listCollections()).toEqual([])
    },
  )

  it('I5: a device older than the tombstone horizon resyncs and keeps its unpushed writes', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    b.store.putMany(
      'notes',
      [1, 2, 3].map((i) => ({ id: `d${i}`, vector: vec(i) })),
    )
    await syncAll([a, b])
    a.store.put('notes', { id: 'mine', vector: vec(7) }) // a's own, stored unchanged: an echo for a
    await a.sync.sync()
    expect(a.store.count('notes')).toBe(4)
    // a goes offline; b deletes, and the server collects the tombstones.
    b.store.delete('notes', 'd1')
    b.store.put('notes', { id: 'd4', vector: vec(4) })
    await b.sync.sync()
    const gc = await serverStore.collectGarbage({
      nowMs: Date.now() + 1000,
      retentionMs: 0,
    })
    expect(gc.removedTombstones).toBe(1)
    a.store.put('notes', {
      id: 'offline',
      vector: vec(9),
      metadata: { kept: true },
    })
    const round = await a.sync.sync()
    expect(round.resynced).toBe(true)
    expect(a.store.get('notes', 'd1')).toBeUndefined()
    expect(a.store.get('notes', 'd4')).toBeDefined()
    expect(a.store.get('notes', 'mine')).toBeDefined()
    expect(a.store.get('notes', 'offline')?.metadata).toEqual({ kept: true })
    await b.sync.sync()
    expect(b.store.get('notes', 'offline')).toBeDefined()
    expect(a.store.digest('notes')).toBe(await serverDigest())
    expect(b.store.digest('notes')).toBe(await serverDigest())
  })

  it('I5: a pulled delete skipped for an unpushed edit is not acknowledged until the edit meets it', async () => {
    // a's clock runs a minute behind, so b's delete wins the conflict by HLC time.
    const a = await device('alpha', 'msgpack', () => Date.now() - 60_000)
    const b = await device('beta')
    a.store.put('notes', { id: 'x', vector: vec(1) })
    await syncAll([a, b])
    b.store.delete('notes', 'x')
    await b.sync.sync()
    // a edits x while its pull of the delete is on the wire: the delete is skipped.
    const editing = afterFirstAnswer(
      a.transport,
      (request) => request.push.length === 0,
      () => {
        a.store.put('notes', { id: 'x', vector: vec(2), metadata: { e: 1 } })
      },
    )
    await new SyncClient(a.store, { transport: editing }).sync()
    expect(a.store.outbox.size).toBe(1) // the edit waits for the next round
    // Every device has seen the delete's seq; only a's ack can keep its tombstone alive.
    const early = await serverStore.collectGarbage({
      nowMs: Date.now(),
      retentionMs: 3_600_000,
    })
    expect(early.removedTombstones).toBe(0)
    await a.sync.sync()
    expect(a.store.get('notes', 'x')).toBeUndefined() // the delete won
    const conflicts = await serverStore.conflicts({ limit: 10 })
    expect(conflicts).toHaveLength(1)
    expect(conflicts[0]!.loser.metadataJson).toBe('{"e":1}')
    await b.sync.sync()
    expect(a.store.digest('notes')).toBe(await serverDigest())
    expect(b.store.digest('notes')).toBe(await serverDigest())
    // Once the edit has met the delete, the acks let the tombstone go.
    await a.sync.sync()
    const late = await serverStore.collectGarbage({
      nowMs: Date.now(),
      retentionMs: 3_600_000,
    })
    expect(late.removedTombstones).toBe(1)
  })

  it('I2: a device restored from a backup that reuses LSNs for other content starts a new epoch and loses nothing', async () => {
    const { path, open } = await reopenable('phone')
    let phone = open()
    phone.store.createCollection({ name: 'notes', dims: DIMS })
    phone.store.put('notes', { id: 'x', vector: vec(1) })
    await phone.sync.sync()
    phone.store.close()
    copyFileSync(path, join(dir, 'backup.db'))
    phone = open()
    phone.store.put('notes', {
      id: 'y',
      vector: vec(2),
      metadata: { lost: 'in the restore' },
    }) // LSN 2
    await phone.sync.sync()
    phone.store.close()
    copyFileSync(join(dir, 'backup.db'), path) // the restore: LSN 2 is free again locally
    phone = open()
    const oldEpoch = phone.store.epoch
    phone.store.put('notes', {
      id: 'z',
      vector: vec(3),
      metadata: { after: 'restore' },
    }) // LSN 2, other content
    await phone.sync.sync()
    expect(phone.store.epoch).not.toBe(oldEpoch)
    expect(phone.store.get('notes', 'y')?.metadata).toEqual({
      lost: 'in the restore',
    })
    expect(
      (
        await serverStore.pull(
          { deviceId: 'other', epoch: '0000000000000000' },
          0,
          100,
        )
      ).versions
        .map((v) => v.version.id)
        .sort(),
    ).toEqual(['x', 'y', 'z'])
    expect(phone.store.digest('notes')).toBe(await serverDigest())
  })

  it('I2/I3: a device restored from a backup with nothing pending gets back what its lost incarnation pushed', async () => {
    const { path, open } = await reopenable('tablet')
    let tablet = open()
    tablet.store.createCollection({ name: 'notes', dims: DIMS })
    tablet.store.put('notes', { id: 'x', vector: vec(1), metadata: { v: 1 } })
    await tablet.sync.sync()
    tablet.store.close()
    copyFileSync(path, join(dir, 'tablet-backup.db'))
    tablet = open()
    tablet.store.put('notes', { id: 'x', vector: vec(1), metadata: { v: 2 } })
    tablet.store.put('notes', { id: 'z', vector: vec(2) })
    await tablet.sync.sync()
    tablet.store.close()
    copyFileSync(join(dir, 'tablet-backup.db'), path) // restored; nothing pending
    tablet = open()
    const round = await tablet.sync.sync()
    expect(round.resynced).toBe(true)
    expect(tablet.store.get('notes', 'x')?.metadata).toEqual({ v: 2 })
    expect(tablet.store.get('notes', 'z')).toBeDefined()
    expect(tablet.store.digest('notes')).toBe(await serverDigest())
  })

  it("I2/I3: a restored device whose writes outnumber its lost incarnation's is noticed by its old cursor", async () => {
    const { path, open } = await reopenable('laptop')
    let laptop = open()
    laptop.store.createCollection({ name: 'notes', dims: DIMS })
    laptop.store.put('notes', { id: 'x', vector: vec(1), metadata: { v: 0 } })
    await laptop.sync.sync()
    laptop.store.close()
    copyFileSync(path, join(dir, 'laptop-backup.db'))
    laptop = open()
    laptop.store.put('notes', { id: 'x', vector: vec(2), metadata: { v: 1 } }) // LSN 2
    laptop.store.put('notes', { id: 'y', vector: vec(3) }) // LSN 3
    await laptop.sync.sync()
    laptop.store.close()
    copyFileSync(join(dir, 'laptop-backup.db'), path)
    laptop = open()
    const oldEpoch = laptop.store.epoch
    // LSNs 2–4, compacted to 4: no LSN the server applied is pushed again.
    for (const v of [2, 3, 4])
      laptop.store.put('notes', { id: 'x', vector: vec(4), metadata: { v } })
    const round = await laptop.sync.sync()
    expect(round.resynced).toBe(true)
    expect(laptop.store.epoch).not.toBe(oldEpoch)
    expect(laptop.store.get('notes', 'y')).toBeDefined() // its lost incarnation's write
    expect(laptop.store.get('notes', 'x')?.metadata).toEqual({ v: 4 })
    expect(laptop.store.digest('notes')).toBe(await serverDigest())
  })

  it('a paged pull asks for the next page before applying this one, and a failed apply keeps the cursor', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    a.store.putMany(
      'notes',
      Array.from({ length: 12 }, (_, i) => ({ id: `p${i}`, vector: vec(i) })),
    )
    await a.sync.sync()
    const sent: Array<{ cursor: number; appliedCursor: number }> = []
    let responses = 0
    const watched: SyncTransport = {
      async sync(request, options) {
        sent.push({ cursor: request.cursor, appliedCursor: b.store.syncCursor })
        const response = await b.transport.sync(request, options)
        // The second page claims a collection shape this device contradicts: its apply fails.
        return ++responses === 2
          ? {
              ...response,
              collections: [
                { name: 'notes', dims: DIMS, metric: 'l2', dtype: 'float32' },
              ],
            }
          : response
      },
      ack: (request, options) => b.transport.ack(request, options),
    }
    const paged = new SyncClient(b.store, { transport: watched, pullLimit: 3 })
    await expect(paged.sync()).rejects.toThrow(/differs from this device/)
    // Page 3 was asked for (from cursor 6) while page 2 was still unapplied.
    expect(sent.slice(0, 3)).toEqual([
      { cursor: 0, appliedCursor: 0 },
      { cursor: 3, appliedCursor: 0 },
      { cursor: 6, appliedCursor: 3 },
    ])
    expect(b.store.syncCursor).toBe(3)
    expect(b.store.count('notes')).toBe(3)
    await paged.sync()
    expect(b.store.count('notes')).toBe(12)
    expect(b.store.digest('notes')).toBe(await serverDigest())
  })

  it('two clients of one store take turns, so neither looks like a restored store', async () => {
    const writer = await device('alpha')
    writer.store.putMany(
      'notes',
      Array.from({ length: 40 }, (_, i) => ({ id: `d${i}`, vector: vec(i) })),
    )
    await writer.sync.sync()
    const reader = await device('beta')
    const epoch = reader.store.epoch
    const slow = afterFirstAnswer(
      reader.transport,
      () => true,
      () => new Promise<void>((resolve) => setTimeout(resolve, 200)),
    )
    const background = new SyncClient(reader.store, {
      transport: slow,
      pullLimit: 10,
    })
    const button = new SyncClient(reader.store, {
      transport: reader.transport,
      pullLimit: 10,
    })
    const rounds = await Promise.all([background.sync(), button.sync()])
    expect(rounds.map((round) => round.resynced)).toEqual([false, false])
    expect(reader.store.epoch).toBe(epoch)
    expect(reader.store.count('notes')).toBe(40)
    expect(reader.store.digest('notes')).toBe(await serverDigest())
  })

  it("a round waiting for another client's rounds on its store gets its turn", async () => {
    const d = await device('alpha')
    const busy = new SyncClient(d.store, { transport: d.transport })
    const other = new SyncClient(d.store, { transport: d.transport })
    // "Sync now" pressed again and again: the busy client always has a round queued.
    let stop = false
    const pressing = (async () => {
      while (!stop) {
        void busy.sync().catch(() => undefined)
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
    })()
    try {
      await new Promise((resolve) => setTimeout(resolve, 20))
      d.store.put('notes', { id: 'x', vector: vec(1) })
      const round = await other.sync({ signal: AbortSignal.timeout(3000) })
      expect(round.pushed).toBeLessThanOrEqual(1)
    } finally {
      stop = true
      await pressing
      await busy.sync()
    }
    expect(d.store.outbox.size).toBe(0)
  })

  it('a caller aborting its wait for a queued round does not abort the round for the others', async () => {
    const a = await device('alpha')
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const slow: SyncTransport = {
      async sync(request, options) {
        await gate
        return a.transport.sync(request, options)
      },
      ack: (request, options) => a.transport.ack(request, options),
    }
    const client = new SyncClient(a.store, { transport: slow })
    a.store.put('notes', { id: 'first', vector: vec(1) })
    const running = client.sync()
    a.store.put('notes', { id: 'second', vector: vec(2) })
    const controller = new AbortController()
    const impatient = client.sync({ signal: controller.signal })
    const patient = client.sync()
    controller.abort(new Error('gave up waiting'))
    await expect(impatient).rejects.toThrow(/gave up waiting/)
    release()
    expect((await running).pushed + (await patient).pushed).toBe(2)
    expect(a.store.outbox.size).toBe(0)
    expect(a.store.digest('notes')).toBe(await serverDigest())
  })

  it('a failed local apply releases the batch, so the next round pushes it', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    b.store.createCollection({ name: 'shared', dims: 4, metric: 'l2' })
    b.store.put('shared', { id: 's', vector: [1, 2, 3, 4] })
    await b.sync.sync()
    a.store.createCollection({ name: 'shared', dims: 4, metric: 'cosine' }) // contradicts the server
    a.store.put('notes', { id: 'x', vector: vec(1) })
    await expect(a.sync.sync()).rejects.toThrow(/differs from this device/)
    expect(a.store.outbox.inFlight).toBeUndefined()
    a.store.dropCollection('shared')
    await a.sync.sync()
    expect(a.store.outbox.size).toBe(0)
    expect(a.store.digest('notes')).toBe(await serverDigest())
  })

  it('I7: a rejected request creates none of the collections it declares', async () => {
    const a = await device('alpha')
    const declare = (name: string) => [
      { name, dims: 4, metric: 'cosine' as const, dtype: 'float32' as const },
    ]
    const base = {
      protocol: PROTOCOL_VERSION,
      epoch: a.store.epoch,
      pullLimit: 10,
    } as const
    const foreignVector = {
      lsn: 1,
      collection: 'evil1',
      version: {
        id: 'a',
        deleted: false,
        vector: new Float32Array([1, 0, 0, 0]),
        metadataJson: '{}',
        versionVector: { 'someone.0123456789abcdef': 1 }, // no entry for the pusher
        hlc: { wallMs: 1, counter: 0 },
        origin: 'ignored',
      },
    }
    await expect(
      a.transport.sync({
        ...base,
        collections: declare('evil1'),
        push: [foreignVector],
        cursor: 0,
      }),
    ).rejects.toMatchObject({ code: 'invalid_argument' })
    await expect(
      a.transport.sync({
        ...base,
        collections: declare('evil2'),
        push: [],
        cursor: 999,
      }),
    ).rejects.toMatchObject({ code: 'resync_required' })
    expect((await serverStore.listCollections()).map((c) => c.name)).toEqual([])
  })

  it('I8: a token of device A cannot act as device B; a bad token is refused', async () => {
    const a = await device('alpha')
    await device('beta')
    a.store.put('notes', { id: 'x', vector: vec(1) })
    await a.sync.sync()
    const origin = a.store.get('notes', 'x')!.origin
    expect(origin.startsWith('alpha.')).toBe(true)
    const before = await serverDigest()
    const stranger = new SyncClient(a.store, {
      transport: new HttpTransport({ url, token: 'not-a-token' }),
    })
    a.store.put('notes', { id: 'y', vector: vec(2) })
    await expect(stranger.sync()).rejects.toMatchObject({
      code: 'unauthorized',
    })
    expect(await serverDigest()).toBe(before)
  })

  it('startSync re-arms after a failure without waiting for a local write', async () => {
    const a = await device('alpha')
    let failuresLeft = 2
    const flaky: SyncTransport = {
      sync(request, options) {
        if (failuresLeft-- > 0)
          return Promise.reject(new Error('server unreachable'))
        return a.transport.sync(request, options)
      },
      ack: (request, options) => a.transport.ack(request, options),
    }
    const client = new SyncClient(a.store, {
      transport: flaky,
      random: () => 0,
    })
    a.store.put('notes', { id: 'x', vector: vec(1) })
    const errors: string[] = []
    client.on('error', (e) => errors.push(e.message))
    const synced = new Promise<void>((resolve) =>
      client.on('synced', () => resolve()),
    )
    client.startSync({ intervalMs: 60_000, minBackoffMs: 5, maxBackoffMs: 20 })
    await synced
    await client.stopSync()
    expect(errors).toEqual(['server unreachable', 'server unreachable'])
    expect(client.status()).toMatchObject({
      pendingOps: 0,
      lastError: undefined,
      consecutiveFailures: 0,
    })
    expect(a.store.digest('notes')).toBe(await serverDigest())
  })
})
