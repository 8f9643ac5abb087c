import {
  incrementVersionVector,
  isVeloSyncError,
  replicaIdOf,
  type CollectionSchema,
  type ConflictResolver,
  type DocumentVersion,
  type ErrorCode,
  type PulledVersion,
  type PushOp,
  type ReplicaId,
  type ReplicaRef,
  type ServerStore,
  type VersionVector,
} from '@velosync/core'
import { LocalStore } from '@velosync/client'
import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { seededRandom } from './random.js'

/** What {@link describeServerStore} needs per test: a fresh, empty store. */
export interface ServerStoreFixture {
  readonly store: ServerStore
  /** Closes the store (it may already be closed) and removes its data. */
  teardown(): Promise<void>
}

/** fast-check runs, scaled like the other property tests (`PROP_RUNS`, default 300). */
const PROP_RUNS = Number(process.env.PROP_RUNS ?? 300)

const NOTES: CollectionSchema = {
  name: 'notes',
  dims: 4,
  metric: 'cosine',
  dtype: 'float32',
}
const WIDE: CollectionSchema = {
  name: 'wide',
  dims: 3,
  metric: 'l2',
  dtype: 'float64',
}

const DEVICE_A: ReplicaRef = { deviceId: 'dev-a', epoch: '00000000000000a1' }
const DEVICE_B: ReplicaRef = { deviceId: 'dev-b', epoch: '00000000000000b1' }
const DEVICE_C: ReplicaRef = { deviceId: 'dev-c', epoch: '00000000000000c1' }
/** Pulls but never pushes or acks: sees every stored version, skips nothing. */
const OBSERVER: ReplicaRef = { deviceId: 'observer', epoch: '00000000000000f0' }

/**
 * A device's replication log in miniature: hands out increasing LSNs and builds the
 * versions a real device would push (its own counter raised, origin = itself).
 */
class Writer {
  readonly replicaId: ReplicaId
  #lsn = 0
  #wallMs = 1_000

  constructor(readonly ref: ReplicaRef) {
    this.replicaId = replicaIdOf(ref.deviceId, ref.epoch)
  }

  /** A live version of `id` in `notes` with a body derived from `value`. */
  put(
    id: string,
    value: number,
    base: VersionVector = {},
    options: { wallMs?: number; collection?: string } = {},
  ): PushOp {
    return this.op(options.collection ?? NOTES.name, {
      id,
      deleted: false,
      vector:
        options.collection === WIDE.name
          ? new Float64Array([value, 1, -value])
          : new Float32Array([value, 1, 0.5, -1]),
      metadataJson: `{"v":${value}}`,
      versionVector: incrementVersionVector(base, this.replicaId),
      hlc: { wallMs: options.wallMs ?? ++this.#wallMs, counter: 0 },
      origin: this.replicaId,
    })
  }

  /** A tombstone of `id` written over `base`. */
  del(id: string, base: VersionVector, wallMs?: number): PushOp {
    return this.op(NOTES.name, {
      id,
      deleted: true,
      vector: null,
      metadataJson: null,
      versionVector: incrementVersionVector(base, this.replicaId),
      hlc: { wallMs: wallMs ?? ++this.#wallMs, counter: 0 },
      origin: this.replicaId,
    })
  }

  /** An op with the next LSN (or a chosen one, to replay or reuse). */
  op(collection: string, version: DocumentVersion, lsn?: number): PushOp {
    const next = lsn ?? ++this.#lsn
    this.#lsn = Math.max(this.#lsn, next)
    return { lsn: next, collection, version }
  }
}

/** Everything observable about a store: compared before and after calls that must change nothing. */
async function observe(store: ServerStore) {
  const collections = await store.listCollections()
  const digests: Record<string, string> = {}
  for (const { name } of collections) digests[name] = await store.digest(name)
  return {
    head: await store.head(),
    collections,
    digests,
    feed: await pullAll(store, OBSERVER),
    conflicts: await store.conflicts({ limit: 10_000 }),
  }
}

/** Every version after `cursor`, following `hasMore`. */
async function pullAll(
  store: ServerStore,
  replica: ReplicaRef,
  cursor = 0,
  limit = 1_000,
): Promise<PulledVersion[]> {
  const out: PulledVersion[] = []
  for (;;) {
    const page = await store.pull(replica, cursor, limit)
    out.push(...page.versions)
    cursor = page.cursor
    if (!page.hasMore) return out
  }
}

/** `op` with some fields of its version replaced. */
function withVersion(op: PushOp, fields: Partial<DocumentVersion>): PushOp {
  return { ...op, version: { ...op.version, ...fields } }
}

/** The fields every replica must agree on (all but the id). */
function content(version: DocumentVersion | undefined) {
  if (version === undefined) return undefined
  return {
    deleted: version.deleted,
    vector: version.vector === null ? null : Array.from(version.vector),
    metadataJson: version.metadataJson,
    versionVector: Object.entries(version.versionVector).sort(),
    hlc: version.hlc,
    origin: version.origin,
  }
}

async function expectCode(
  promise: Promise<unknown>,
  code: ErrorCode,
): Promise<void> {
  let caught: unknown
  try {
    await promise
  } catch (error) {
    caught = error
  }
  if (!isVeloSyncError(caught, code)) {
    throw new Error(
      `expected a VeloSyncError with code ${code}, got ${caught instanceof Error ? `${caught.name} ${(caught as { code?: string }).code ?? ''}: ${caught.message}` : String(caught)}`,
    )
  }
}

/** A LocalStore's identity as the server sees it. */
function refOf(device: LocalStore): ReplicaRef {
  return { deviceId: device.deviceId, epoch: device.epoch }
}

/**
 * One sync round of a real device, as the sync engine will run it: push the whole outbox
 * in small batches (confirming what the server applied), then pull to the head in small
 * pages and acknowledge the cursor. Pulled versions of collections the device lacks are
 * ignored (the feed is global).
 */
async function syncDevice(
  store: ServerStore,
  device: LocalStore,
  cursors: Map<LocalStore, number>,
): Promise<void> {
  for (;;) {
    const batch = device.outbox.takeBatch({ maxOps: 7 })
    if (batch === undefined) break
    const result = await store.push(
      refOf(device),
      batch.ops.map((op) => ({
        lsn: op.lsn,
        collection: op.collection,
        version: op.version,
      })),
    )
    device.outbox.confirm(batch, result.appliedThroughLsn)
  }
  let cursor = cursors.get(device) ?? 0
  for (;;) {
    const page = await store.pull(refOf(device), cursor, 5)
    for (const { collection, version } of page.versions) {
      if (device.getCollection(collection) !== undefined) {
        device.applyRemoteVersions(collection, [version])
      }
    }
    cursor = page.cursor
    if (!page.hasMore) break
  }
  cursors.set(device, cursor)
  await store.ack(refOf(device), cursor)
}

/** A device action in the convergence property. */
type Command =
  | {
      readonly kind: 'put'
      readonly device: number
      readonly doc: number
      readonly value: number
    }
  | { readonly kind: 'delete'; readonly device: number; readonly doc: number }
  | { readonly kind: 'sync'; readonly device: number }

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    kind: fc.constant('put' as const),
    device: fc.nat({ max: 2 }),
    doc: fc.nat({ max: 5 }),
    value: fc.integer({ min: 1, max: 1000 }),
  }),
  fc.record({
    kind: fc.constant('delete' as const),
    device: fc.nat({ max: 2 }),
    doc: fc.nat({ max: 5 }),
  }),
  fc.record({ kind: fc.constant('sync' as const), device: fc.nat({ max: 2 }) }),
)

/**
 * The conformance suite of the `ServerStore` port: every implementation must pass it.
 * Each test title starts with `name` and cites the guarantee it checks (S1–S12 in the
 * port's documentation).
 *
 * @param name - the backend's name, e.g. `sqlite`.
 * @param setup - makes a fresh, empty store for each test.
 * @param options - `skipReason`: the backend cannot run here (e.g. no PostgreSQL); every
 *   test is reported as skipped, with the reason in the suite's title.
 *
 * @example
 * ```ts
 * describeServerStore('sqlite', async () => {
 *   const dir = mkdtempSync(join(tmpdir(), 'vs-'))
 *   const store = SqliteServerStore.open({ path: join(dir, 'server.db') })
 *   return { store, teardown: async () => { await store.close(); rmSync(dir, { recursive: true }) } }
 * })
 * ```
 */
export function describeServerStore(
  name: string,
  setup: () => Promise<ServerStoreFixture>,
  options: { readonly skipReason?: string | undefined } = {},
): void {
  const { skipReason } = options
  const suite = skipReason === undefined ? describe : describe.skip
  const title =
    skipReason === undefined
      ? `ServerStore conformance: ${name}`
      : `ServerStore conformance: ${name} (SKIPPED: ${skipReason})`
  suite(title, () => {
    let fixture: ServerStoreFixture
    let store: ServerStore
    let a: Writer
    let b: Writer

    beforeEach(async () => {
      fixture = await setup()
      store = fixture.store
      a = new Writer(DEVICE_A)
      b = new Writer(DEVICE_B)
      await store.ensureCollection(NOTES)
    })
    afterEach(async () => {
      await fixture.teardown()
    })

    it(`${name}: S10 ensureCollection creates once, returns the same schema again, refuses a different one`, async () => {
      expect(await store.ensureCollection(NOTES)).toEqual(NOTES)
      expect(await store.ensureCollection(WIDE)).toEqual(WIDE)
      expect(await store.getCollection('wide')).toEqual(WIDE)
      expect(await store.getCollection('missing')).toBeUndefined()
      expect(await store.listCollections()).toEqual([NOTES, WIDE])
      await expectCode(
        store.ensureCollection({ ...NOTES, dims: 5 }),
        'already_exists',
      )
      await expectCode(
        store.ensureCollection({ ...NOTES, name: 'bad name!' }),
        'invalid_argument',
      )
      expect(await store.listCollections()).toEqual([NOTES, WIDE])
      expect(await store.digest('wide')).toBe('0'.repeat(64))
    })

    it(`${name}: S3 outcomes: new → applied, newer → applied, equal vector → duplicate, older → stale`, async () => {
      const v1 = a.put('x', 1)
      const first = await store.push(DEVICE_A, [v1])
      expect(first.results).toEqual([
        { lsn: 1, id: 'x', collection: 'notes', outcome: 'applied', seq: 1 },
      ])
      expect(first).toMatchObject({ appliedThroughLsn: 1, head: 1 })
      const v2 = a.put('x', 2, v1.version.versionVector)
      const second = await store.push(DEVICE_A, [v2])
      expect(second.results[0]).toMatchObject({ outcome: 'applied', seq: 2 })
      const digest = await store.digest('notes')

      const same = a.op('notes', v2.version)
      const older = a.op('notes', v1.version)
      const third = await store.push(DEVICE_A, [same, older])
      expect(third.results.map((r) => r.outcome)).toEqual([
        'duplicate',
        'stale',
      ])
      expect(third.results[0]?.seq).toBeUndefined()
      expect(content(third.results[1]?.version)).toEqual(content(v2.version))
      expect(third).toMatchObject({ appliedThroughLsn: 4, head: 2 })
      expect(await store.digest('notes')).toBe(digest)
      const feed = await pullAll(store, OBSERVER)
      expect(feed.map((p) => [p.seq, p.version.metadataJson])).toEqual([
        [2, '{"v":2}'],
      ])
    })

    it(`${name}: S3 concurrent versions: later HLC wins, merged vector stored, conflict_won / conflict_lost`, async () => {
      const ax = a.put('x', 1, {}, { wallMs: 100 })
      const bx = b.put('x', 2, {}, { wallMs: 200 })
      await store.push(DEVICE_A, [ax])
      const won = await store.push(DEVICE_B, [bx])
      expect(won.results[0]).toMatchObject({
        outcome: 'conflict_won',
        seq: 2,
      })
      const merged = { [a.replicaId]: 1, [b.replicaId]: 1 }
      expect(content(won.results[0]?.version)).toEqual(
        content({ ...bx.version, versionVector: merged }),
      )

      const bz = b.put('z', 3, {}, { wallMs: 500 })
      const az = a.put('z', 4, {}, { wallMs: 400 })
      await store.push(DEVICE_B, [bz])
      const lost = await store.push(DEVICE_A, [az])
      expect(lost.results[0]).toMatchObject({
        outcome: 'conflict_lost',
        seq: 4,
      })
      expect(content(lost.results[0]?.version)).toEqual(
        content({ ...bz.version, versionVector: merged }),
      )

      // Same HLC: the larger replica id wins ('dev-b.…' > 'dev-a.…').
      const at = a.put('t', 5, {}, { wallMs: 700 })
      const bt = b.put('t', 6, {}, { wallMs: 700 })
      await store.push(DEVICE_B, [bt])
      expect((await store.push(DEVICE_A, [at])).results[0]?.outcome).toBe(
        'conflict_lost',
      )
    })

    it(`${name}: S13 a far-future HLC competes at acceptance time + maxClockLeadMs, for as long as it is stored`, async () => {
      const bound = { maxClockLeadMs: 60_000 }
      const year2099 = Date.UTC(2099, 0, 1)
      // A's clock says 2099; B writes concurrently two minutes later, by the server's clock.
      const ax = a.put('x', 1, {}, { wallMs: year2099 })
      await store.push(DEVICE_A, [ax], { ...bound, nowMs: 1_000_000 })
      const bx = b.put('x', 2, {}, { wallMs: 1_120_000 })
      const later = await store.push(DEVICE_B, [bx], {
        ...bound,
        nowMs: 1_120_000,
      })
      expect(later.results[0]?.outcome).toBe('conflict_won')
      // Within the bound the future clock still wins: it competes at 1_060_000.
      const ay = a.put('y', 3, {}, { wallMs: year2099 })
      await store.push(DEVICE_A, [ay], { ...bound, nowMs: 1_000_000 })
      const by = b.put('y', 4, {}, { wallMs: 1_030_000 })
      const within = await store.push(DEVICE_B, [by], {
        ...bound,
        nowMs: 1_030_000,
      })
      expect(within.results[0]?.outcome).toBe('conflict_lost')
      // Without a bound the HLC competes as it is.
      const az = a.put('z', 5, {}, { wallMs: year2099 })
      await store.push(DEVICE_A, [az], { nowMs: 1_000_000 })
      const bz = b.put('z', 6, {}, { wallMs: 1_120_000 })
      const unbounded = await store.push(DEVICE_B, [bz], { nowMs: 1_120_000 })
      expect(unbounded.results[0]?.outcome).toBe('conflict_lost')
      await expect(
        store.push(DEVICE_B, [b.put('w', 7)], { maxClockLeadMs: -1 }),
      ).rejects.toMatchObject({ code: 'invalid_argument' })
    })

    it(`${name}: S13 acceptance times never go back, so a successor never competes earlier than its ancestor`, async () => {
      const bound = { maxClockLeadMs: 60 }
      const year2099 = Date.UTC(2099, 0, 1)
      // A (clock in 2099) writes s, accepted at 10_000: it competes at 10_060.
      const first = a.put('s', 1, {}, { wallMs: year2099 })
      await store.push(DEVICE_A, [first], { ...bound, nowMs: 10_000 })
      // B's concurrent write competes at 10_055 and loses; the stored vector merges both.
      const other = b.put('s', 2, {}, { wallMs: 10_055 })
      const lost = await store.push(DEVICE_B, [other], {
        ...bound,
        nowMs: 10_001,
      })
      expect(lost.results[0]?.outcome).toBe('conflict_lost')
      // A overwrites its own write (it has not seen B's) and pushes after the server's
      // clock stepped back to 4_000. Accepted at 10_001, not 4_000, it competes at 10_061
      // and beats its own ancestor's 10_060; at 4_060 the ancestor would win.
      const successor = a.put('s', 3, first.version.versionVector, {
        wallMs: year2099 + 1,
      })
      const pushed = await store.push(DEVICE_A, [successor], {
        ...bound,
        nowMs: 4_000,
      })
      expect(pushed.results[0]?.outcome).toBe('conflict_won')
      const stored = await pullAll(store, DEVICE_C, 0)
      expect(stored.map((v) => v.version.metadataJson)).toEqual(['{"v":3}'])
    })

    const resolvers: Array<[string, ConflictResolver | undefined]> = [
      ['default rule', undefined],
      [
        'custom resolver (lower HLC wins)',
        (x, y) => (x.hlc.wallMs < y.hlc.wallMs ? x : y),
      ],
    ]
    for (const [label, resolver] of resolvers) {
      it(`${name}: S3 the same winner whatever the push order (${label})`, async () => {
        const options = resolver === undefined ? {} : { resolver }
        // Document p sees A then B; document q sees B then A; bodies and clocks are equal.
        const ap = a.put('p', 1, {}, { wallMs: 300 })
        const bp = b.put('p', 2, {}, { wallMs: 200 })
        const aq = a.op('notes', { ...ap.version, id: 'q' })
        const bq = b.op('notes', { ...bp.version, id: 'q' })
        await store.push(DEVICE_A, [ap], options)
        await store.push(DEVICE_B, [bp, bq], options)
        await store.push(DEVICE_A, [aq], options)
        const feed = await pullAll(store, OBSERVER)
        const p = feed.find((v) => v.version.id === 'p')?.version
        const q = feed.find((v) => v.version.id === 'q')?.version
        expect(content(p)).toEqual(content(q))
        expect(p?.metadataJson).toBe(
          resolver === undefined ? '{"v":1}' : '{"v":2}',
        )
      })
    }

    it(`${name}: S3 the loser is recorded and listed by conflicts() in seq order`, async () => {
      await store.ensureCollection(WIDE)
      const ax = a.put('x', 1, {}, { wallMs: 100 })
      const bx = b.put('x', 2, {}, { wallMs: 200 })
      const aw = a.put('w', 3, {}, { wallMs: 900, collection: 'wide' })
      const bw = b.put('w', 4, {}, { wallMs: 800, collection: 'wide' })
      await store.push(DEVICE_A, [ax, aw], { nowMs: 5_000 })
      const pushed = await store.push(DEVICE_B, [bx, bw], { nowMs: 6_000 })
      expect(pushed.results.map((r) => r.outcome)).toEqual([
        'conflict_won',
        'conflict_lost',
      ])
      const all = await store.conflicts({ limit: 10 })
      expect(all.map((c) => [c.seq, c.collection, c.id])).toEqual([
        [3, 'notes', 'x'],
        [4, 'wide', 'w'],
      ])
      const [x, w] = all
      expect(content(x?.loser)).toEqual(content(ax.version))
      expect(content(x?.winner)).toEqual(content(pushed.results[0]?.version))
      expect(content(w?.loser)).toEqual(content(bw.version))
      expect(w?.winner.vector).toBeInstanceOf(Float64Array)
      expect(x?.resolvedAtMs).toBe(6_000)
      expect(await store.conflicts({ limit: 1, afterSeq: 3 })).toEqual([w])
      expect(await store.conflicts({ limit: 10, collection: 'notes' })).toEqual(
        [x],
      )
      expect(await store.conflicts({ limit: 1 })).toEqual([x])
    })

    it(`${name}: S2 a replayed batch is all duplicate and changes nothing`, async () => {
      const batch = [1, 2, 3, 4, 5].map((i) => a.put(`d${i}`, i))
      await store.push(DEVICE_A, batch)
      const before = await observe(store)
      const replay = await store.push(DEVICE_A, batch)
      expect(replay.results.map((r) => r.outcome)).toEqual(
        Array(5).fill('duplicate'),
      )
      expect(replay.results.every((r) => r.seq === undefined)).toBe(true)
      expect(replay).toMatchObject({ appliedThroughLsn: 5, head: 5 })
      expect(await observe(store)).toEqual(before)
      // A retry that also carries newer entries: old ones duplicate, the new one applied.
      const next = a.put('d6', 6)
      const mixed = await store.push(DEVICE_A, [...batch.slice(3), next])
      expect(mixed.results.map((r) => r.outcome)).toEqual([
        'duplicate',
        'duplicate',
        'applied',
      ])
      expect(mixed).toMatchObject({ appliedThroughLsn: 6, head: 6 })
    })

    it(`${name}: S2 the push before the latest one still replays as duplicate`, async () => {
      const first = [1, 2].map((i) => a.put(`d${i}`, i))
      const second = [3, 4].map((i) => a.put(`d${i}`, i))
      await store.push(DEVICE_A, first)
      await store.push(DEVICE_A, second)
      // A device sends a batch before its confirm of the answer to the one before is on
      // disk; after a crash there, it sends that one again.
      const before = await observe(store)
      const outcomes = async (ops: PushOp[]) =>
        (await store.push(DEVICE_A, ops)).results.map((r) => r.outcome)
      // The latest request delivered twice first: a push of replays only moves nothing.
      expect(await outcomes(second)).toEqual(['duplicate', 'duplicate'])
      expect(await outcomes(first)).toEqual(['duplicate', 'duplicate'])
      expect(await outcomes(second)).toEqual(['duplicate', 'duplicate'])
      expect(await observe(store)).toEqual(before)
    })

    it(`${name}: S2 replays cut into other batches after a restart still replay as duplicate`, async () => {
      const ops = Array.from({ length: 14 }, (_, i) =>
        a.put(`d${i + 1}`, i + 1),
      )
      const outcomes = async (batch: PushOp[]) =>
        (await store.push(DEVICE_A, batch)).results.map((r) => r.outcome)
      await store.push(DEVICE_A, ops.slice(0, 7))
      await store.push(DEVICE_A, ops.slice(7, 14))
      // After a crash the device compacts (LSN 5 was superseded) and cuts its batches
      // anew: one of replays only, then the next, with a new write, before the first's
      // confirm is on disk; then another crash.
      const replays = [...ops.slice(0, 4), ...ops.slice(5, 8)]
      expect(await outcomes(replays)).toEqual(Array(7).fill('duplicate'))
      const mixed = [...ops.slice(8, 14), a.put('d15', 15)]
      expect(await outcomes(mixed)).toEqual([
        ...Array<string>(6).fill('duplicate'),
        'applied',
      ])
      expect(await outcomes(replays)).toEqual(Array(7).fill('duplicate'))
    })

    it(`${name}: S2 a replay whose document changed since carries the stored version`, async () => {
      const pushed = [
        a.put('x', 1, {}, { wallMs: 100 }),
        a.put('y', 2, {}, { wallMs: 100 }),
      ]
      await store.push(DEVICE_A, pushed)
      // B, not having seen A's x, writes it later: B wins, the merged version is stored.
      const won = await store.push(DEVICE_B, [
        b.put('x', 3, {}, { wallMs: 200 }),
      ])
      expect(won.results.map((r) => r.outcome)).toEqual(['conflict_won'])
      const before = await observe(store)
      // A lost the answer to its push, and a pull meanwhile brought x while A's write of
      // it was still pending, so A skipped it: the replay's answer is the only way back.
      const replay = await store.push(DEVICE_A, pushed)
      expect(replay.results.map((r) => r.outcome)).toEqual([
        'duplicate',
        'duplicate',
      ])
      expect(content(replay.results[0]!.version)).toEqual(
        content(won.results[0]!.version),
      )
      // y is still stored as A pushed it: nothing to send back (no echo).
      expect(replay.results[1]!.version).toBeUndefined()
      expect(replay.results.every((r) => r.seq === undefined)).toBe(true)
      expect(await observe(store)).toEqual(before)
    })

    it(`${name}: S2 a replay followed by a new write of the same document in one push carries no version`, async () => {
      const first = a.put('x', 1, {}, { wallMs: 100 })
      await store.push(DEVICE_A, [first])
      await store.push(DEVICE_B, [b.put('x', 2, {}, { wallMs: 200 })])
      // The stored x changed since A's first write, but A's newer write answers for x:
      // the version from before the push would undo that write on the device.
      const pushed = await store.push(DEVICE_A, [
        first,
        a.put('x', 3, first.version.versionVector, { wallMs: 300 }),
      ])
      expect(pushed.results.map((r) => r.outcome)).toEqual([
        'duplicate',
        'conflict_won',
      ])
      expect(pushed.results[0]!.version).toBeUndefined()
    })

    it(`${name}: S2 the same LSN with different content is lsn_reused and stores nothing`, async () => {
      const batch = [a.put('x', 1), a.put('y', 2), a.put('z', 3)]
      await store.push(DEVICE_A, batch)
      const before = await observe(store)
      const reused = a.op('notes', a.put('other', 9).version, 3)
      const fresh = a.put('fresh', 4)
      await expectCode(store.push(DEVICE_A, [reused, fresh]), 'lsn_reused')
      expect(await observe(store)).toEqual(before)
      // An LSN the replica skipped is below its applied LSN: also a reuse.
      const gap = await store.push(
        DEVICE_A,
        [a.put('g', 5, {}), a.put('h', 6)].map((op, i) => ({
          ...op,
          lsn: 10 + i * 2,
        })),
      )
      expect(gap.appliedThroughLsn).toBe(12)
      await expectCode(
        store.push(DEVICE_A, [{ ...a.put('gap', 7), lsn: 11 }]),
        'lsn_reused',
      )
      // The same content under a new epoch is a new replica and is accepted.
      const epoch2: ReplicaRef = { ...DEVICE_A, epoch: '00000000000000a2' }
      const a2 = new Writer(epoch2)
      const result = await store.push(epoch2, [a2.put('other', 9)])
      expect(result.results[0]?.outcome).toBe('applied')
    })

    it(`${name}: S2 ops must come in strictly increasing LSN order`, async () => {
      const one = a.put('x', 1)
      const two = a.put('y', 2)
      await expectCode(store.push(DEVICE_A, [two, one]), 'invalid_argument')
      await expectCode(
        store.push(DEVICE_A, [one, { ...two, lsn: one.lsn }]),
        'invalid_argument',
      )
      await expectCode(
        store.push(DEVICE_A, [{ ...one, lsn: 0 }]),
        'invalid_argument',
      )
      expect(await store.head()).toBe(0)
    })

    it(`${name}: S1 push is atomic: a failure in the middle of a batch stores nothing`, async () => {
      const ax = a.put('x', 1, {}, { wallMs: 100 })
      await store.push(DEVICE_A, [ax])
      const before = await observe(store)
      const batch = [b.put('new', 2), b.put('x', 3, {}, { wallMs: 200 })]
      const failing: ConflictResolver = () => {
        throw new Error('resolver exploded')
      }
      await expectCode(
        store.push(DEVICE_B, batch, { resolver: failing }),
        'internal',
      )
      expect(await observe(store)).toEqual(before)
      // Nothing of B was recorded, not even its applied LSN: the retry applies afresh.
      const retry = await store.push(DEVICE_B, batch)
      expect(retry.results.map((r) => r.outcome)).toEqual([
        'applied',
        'conflict_won',
      ])
      expect(retry.results.map((r) => r.seq)).toEqual([2, 3])
    })

    it(`${name}: S4 seqs are gap-free and ascending across many pushes`, async () => {
      const random = seededRandom(42)
      const writers = [a, b, new Writer(DEVICE_C)]
      const known = new Map<string, VersionVector>() // writer/doc → its last vector
      const seqs: number[] = []
      for (let round = 0; round < 30; round++) {
        const writer = writers[Math.floor(random() * writers.length)] as Writer
        const ops: PushOp[] = []
        const size = 1 + Math.floor(random() * 5)
        for (let i = 0; i < size; i++) {
          const doc = `doc${Math.floor(random() * 8)}`
          const key = `${writer.replicaId}/${doc}`
          const base = known.get(key) ?? {}
          const op =
            random() < 0.2 && Object.keys(base).length > 0
              ? writer.del(doc, base)
              : writer.put(doc, round * 10 + i, base)
          known.set(key, op.version.versionVector)
          ops.push(op)
        }
        const result = await store.push(writer.ref, ops)
        const pushSeqs = result.results.flatMap((r) =>
          r.seq === undefined ? [] : [r.seq],
        )
        expect(pushSeqs).toEqual([...pushSeqs].sort((x, y) => x - y))
        seqs.push(...pushSeqs)
        expect(result.head).toBe(seqs.length)
      }
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1))
      expect(await store.head()).toBe(seqs.length)
      const feed = await pullAll(store, OBSERVER, 0, 3)
      const feedSeqs = feed.map((p) => p.seq)
      expect(feedSeqs).toEqual([...feedSeqs].sort((x, y) => x - y))
      expect(new Set(feed.map((p) => p.version.id)).size).toBe(feed.length)
      expect(feedSeqs.at(-1)).toBe(seqs.length)
    })

    it(`${name}: S5 pull pages through the feed with limit and hasMore`, async () => {
      const ops = Array.from({ length: 25 }, (_, i) => a.put(`d${i}`, i + 1))
      await store.push(DEVICE_A, ops)
      const pages = []
      let cursor = 0
      for (;;) {
        const page = await store.pull(OBSERVER, cursor, 10)
        pages.push(page)
        cursor = page.cursor
        if (!page.hasMore) break
      }
      expect(
        pages.map((p) => [p.versions.length, p.cursor, p.hasMore]),
      ).toEqual([
        [10, 10, true],
        [10, 20, true],
        [5, 25, false],
      ])
      const all = pages.flatMap((p) => p.versions)
      expect(all.map((p) => p.seq)).toEqual(
        Array.from({ length: 25 }, (_, i) => i + 1),
      )
      expect(all[7]?.version).toEqual(ops[7]?.version)
      expect(all[7]?.collection).toBe('notes')
      expect(await store.pull(OBSERVER, 25, 10)).toEqual({
        versions: [],
        cursor: 25,
        hasMore: false,
        skippedEchoes: 0,
      })
      await expectCode(store.pull(OBSERVER, 0, 0), 'invalid_argument')
      await expectCode(store.pull(OBSERVER, -1, 10), 'invalid_argument')
    })

    it(`${name}: S6 checkCursor refuses exactly the cursors pull refuses`, async () => {
      await store.checkCursor(0)
      await store.push(DEVICE_A, [a.put('a1', 1), a.put('a2', 2)])
      await store.checkCursor(2)
      await expect(store.checkCursor(3)).rejects.toMatchObject({
        code: 'resync_required',
      })
      await expect(store.pull(DEVICE_A, 3, 10)).rejects.toMatchObject({
        code: 'resync_required',
      })
    })

    it(`${name}: S2/S7 replicaProgress reports each replica's applied LSN and highest acknowledged cursor (0 before any)`, async () => {
      const none = { appliedLsn: 0, ackedCursor: 0 }
      expect(await store.replicaProgress(DEVICE_A)).toEqual(none)
      await store.push(DEVICE_A, [a.put('a1', 1), a.put('a2', 2)])
      expect(await store.replicaProgress(DEVICE_A)).toEqual({
        appliedLsn: 2,
        ackedCursor: 0,
      })
      await store.ack(DEVICE_A, 1)
      expect(await store.replicaProgress(DEVICE_A)).toEqual({
        appliedLsn: 2,
        ackedCursor: 1,
      })
      await store.ack(DEVICE_A, 2)
      await store.ack(DEVICE_A, 1) // a late duplicate of an older ack
      expect(await store.replicaProgress(DEVICE_A)).toEqual({
        appliedLsn: 2,
        ackedCursor: 2,
      })
      await store.ack(DEVICE_B, 2) // acknowledged without pushing
      expect(await store.replicaProgress(DEVICE_B)).toEqual({
        appliedLsn: 0,
        ackedCursor: 2,
      })
      expect(
        await store.replicaProgress({ ...DEVICE_A, epoch: 'ffffffffffffffff' }),
      ).toEqual(none)
    })

    it(`${name}: S5 echo suppression: the pusher pulls none of its own unchanged versions, its cursor advances, others get them`, async () => {
      await store.push(
        DEVICE_A,
        [1, 2, 3, 4, 5].map((i) => a.put(`a${i}`, i)),
      )
      await store.push(DEVICE_A, [a.put('a0', 9)])
      const own = await store.pull(DEVICE_A, 5, 100)
      expect(own).toEqual({
        versions: [],
        cursor: 6,
        hasMore: false,
        skippedEchoes: 1,
      })
      // A full resync asks for everything, its own versions included.
      const everything = await store.pull(DEVICE_A, 0, 100, {
        includeEchoes: true,
      })
      expect(everything.versions).toHaveLength(6)
      expect(everything.skippedEchoes).toBe(0)
      const other = await store.pull(DEVICE_B, 0, 100)
      expect(other.versions.map((v) => v.version.id)).toEqual([
        'a1',
        'a2',
        'a3',
        'a4',
        'a5',
        'a0',
      ])
      expect(other.skippedEchoes).toBe(0)
      await store.push(DEVICE_B, [b.put('b1', 6), b.put('b2', 7)])
      await store.push(DEVICE_A, [a.put('a6', 8)])
      const next = await store.pull(DEVICE_A, own.cursor, 1)
      expect(next.versions.map((v) => v.version.id)).toEqual(['b1'])
      const rest = await store.pull(DEVICE_A, next.cursor, 1)
      expect(rest).toMatchObject({
        cursor: 9,
        hasMore: false,
        skippedEchoes: 1,
      })
      expect(rest.versions.map((v) => v.version.id)).toEqual(['b2'])
    })

    it(`${name}: S5 a page skips the echoes before and after it, and counts them`, async () => {
      await store.push(
        DEVICE_A,
        [1, 2, 3].map((i) => a.put(`a${i}`, i)),
      )
      await store.push(DEVICE_B, [b.put('b1', 4)])
      await store.push(DEVICE_A, [a.put('a4', 5), a.put('a5', 6)])
      // Seqs 1-3 and 5-6 are A's echoes: one page of B's version takes all of them.
      const page = await store.pull(DEVICE_A, 0, 1)
      expect(page.versions.map((v) => [v.seq, v.version.id])).toEqual([
        [4, 'b1'],
      ])
      expect(page).toMatchObject({
        cursor: 6,
        hasMore: false,
        skippedEchoes: 5,
      })
      // Nothing but echoes after the cursor: an empty page that still moves past them.
      expect(await store.pull(DEVICE_A, 4, 10)).toEqual({
        versions: [],
        cursor: 6,
        hasMore: false,
        skippedEchoes: 2,
      })
      // B's page is full at a1; the rest waits.
      const forB = await store.pull(DEVICE_B, 0, 1)
      expect(forB).toMatchObject({ cursor: 1, hasMore: true, skippedEchoes: 0 })
    })

    it(`${name}: S5 after conflict_won or conflict_lost the pusher does receive the merged version`, async () => {
      await store.push(DEVICE_A, [
        a.put('x', 1, {}, { wallMs: 100 }),
        a.put('y', 2, {}, { wallMs: 100 }),
      ])
      const { cursor } = await store.pull(DEVICE_B, 0, 100)
      const pushed = await store.push(DEVICE_B, [
        b.put('x', 3, {}, { wallMs: 50 }),
        b.put('y', 4, {}, { wallMs: 200 }),
      ])
      expect(pushed.results.map((r) => r.outcome)).toEqual([
        'conflict_lost',
        'conflict_won',
      ])
      const pulled = await store.pull(DEVICE_B, cursor, 100)
      expect(pulled.skippedEchoes).toBe(0)
      expect(pulled.versions.map((v) => content(v.version))).toEqual(
        pushed.results.map((r) => content(r.version)),
      )
      // A's own x was replaced by a merged version: A receives it too.
      const forA = await pullAll(store, DEVICE_A, 2)
      expect(forA.map((v) => v.version.id)).toEqual(['x', 'y'])
    })

    it(`${name}: S8 the digest equals that of LocalStores that pushed and pulled everything`, async () => {
      await store.ensureCollection(WIDE)
      const devices = ['dev-a', 'dev-b'].map((deviceId) => {
        const device = LocalStore.open({ path: ':memory:', deviceId })
        device.createCollection(NOTES)
        device.createCollection(WIDE)
        return device
      })
      const [da, db] = devices as [LocalStore, LocalStore]
      const cursors = new Map<LocalStore, number>()
      const sync = (device: LocalStore) => syncDevice(store, device, cursors)
      try {
        for (let i = 0; i < 20; i++) {
          da.put('notes', {
            id: `n${i}`,
            vector: [i + 1, 1, 0, 0.5],
            metadata: { i, from: 'a' },
          })
          da.put('wide', { id: `w${i}`, vector: [i, -i, 0.25], metadata: {} })
        }
        db.put('notes', {
          id: 'b-only',
          vector: [1, 2, 3, 4],
          metadata: { from: 'b' },
        })
        await sync(da)
        await sync(db)
        // Concurrent edits of the same documents, deletes on both sides, then sync.
        da.put('notes', {
          id: 'n1',
          vector: [9, 9, 9, 9],
          metadata: { edit: 'a' },
        })
        db.put('notes', {
          id: 'n1',
          vector: [8, 8, 8, 8],
          metadata: { edit: 'b' },
        })
        db.delete('notes', 'n2')
        da.delete('wide', 'w3')
        db.put('wide', {
          id: 'w3',
          vector: [1, 1, 1],
          metadata: { revived: true },
        })
        await sync(da)
        await sync(db)
        await sync(da)
        expect((await store.conflicts({ limit: 100 })).length).toBeGreaterThan(
          0,
        )

        const fresh = LocalStore.open({
          path: ':memory:',
          deviceId: 'dev-fresh',
        })
        devices.push(fresh)
        for (const schema of await store.listCollections()) {
          fresh.createCollection(schema)
        }
        await sync(fresh)
        for (const collection of ['notes', 'wide']) {
          const server = await store.digest(collection)
          expect(server).not.toBe('0'.repeat(64))
          for (const device of devices) {
            expect(device.digest(collection)).toBe(server)
          }
        }
        expect(fresh.count('notes')).toBe(20)
        expect(fresh.get('notes', 'n2')).toBeUndefined()
      } finally {
        for (const device of devices) device.close()
      }
    })

    it(`${name}: S8 property: three devices converge on the server digest whatever they write and however syncs interleave`, async () => {
      let run = 0
      await fc.assert(
        fc.asyncProperty(
          fc.array(commandArb, { minLength: 1, maxLength: 40 }),
          async (commands) => {
            // One collection per run: the store lives for the whole test.
            const schema = { ...NOTES, name: `run${run++}` }
            await store.ensureCollection(schema)
            const start = await store.head()
            const devices = [0, 1, 2].map((i) => {
              const device = LocalStore.open({
                path: ':memory:',
                deviceId: `prop-${i}`,
              })
              device.createCollection(schema)
              return device
            })
            const cursors = new Map(devices.map((d) => [d, start]))
            try {
              for (const command of commands) {
                const device = devices[command.device] as LocalStore
                if (command.kind === 'sync') {
                  await syncDevice(store, device, cursors)
                } else if (command.kind === 'put') {
                  device.put(schema.name, {
                    id: `doc${command.doc}`,
                    vector: [command.value, 1, command.device, -1],
                    metadata: { value: command.value },
                  })
                } else {
                  device.delete(schema.name, `doc${command.doc}`)
                }
              }
              for (let round = 0; round < 2; round++) {
                for (const device of devices) {
                  await syncDevice(store, device, cursors)
                }
              }
              const server = await store.digest(schema.name)
              for (const device of devices) {
                expect(device.digest(schema.name)).toBe(server)
              }
            } finally {
              for (const device of devices) device.close()
            }
          },
        ),
        { numRuns: Math.max(5, Math.round(PROP_RUNS / 10)) },
      )
    })

    it(`${name}: S7 collectGarbage removes tombstones every active replica acked; S6 older cursors must resync`, async () => {
      const x = a.put('x', 1)
      await store.push(DEVICE_A, [x, a.put('y', 2)])
      await store.push(DEVICE_A, [a.del('x', x.version.versionVector)])
      await store.push(DEVICE_A, [a.put('z', 3)])
      const nowMs = Date.now()
      const gc = { nowMs, retentionMs: 3_600_000 }
      // A is active and acked nothing: it holds every tombstone back.
      expect(await store.collectGarbage(gc)).toEqual({
        removedTombstones: 0,
        horizon: 0,
      })
      await store.checkCursor(0, { pushedBefore: true }) // nothing collected yet
      await store.ack(DEVICE_A, 4)
      await store.ack(DEVICE_B, 2)
      expect((await store.collectGarbage(gc)).removedTombstones).toBe(0)
      await store.ack(DEVICE_B, 3)
      expect(await store.collectGarbage(gc)).toEqual({
        removedTombstones: 1,
        horizon: 3,
      })
      await expectCode(
        store.checkCursor(0, { pushedBefore: true }),
        'resync_required',
      )
      await store.checkCursor(0)
      await expectCode(store.pull(DEVICE_B, 2, 10), 'resync_required')
      expect(
        (await store.pull(DEVICE_B, 3, 10)).versions.map((v) => v.version.id),
      ).toEqual(['z'])
      const full = await store.pull(DEVICE_B, 0, 10)
      expect(full.versions.map((v) => v.version.id)).toEqual(['y', 'z'])
      // Live documents are never collected.
      expect(
        await store.collectGarbage({ nowMs: nowMs + 1e10, retentionMs: 0 }),
      ).toEqual({
        removedTombstones: 0,
        horizon: 3,
      })
      await expectCode(store.ack(DEVICE_B, 99), 'invalid_argument')
    })

    it(`${name}: S7 tombstones older than the retention window go even when a replica never acked`, async () => {
      const longAgo = Date.now() - 10 * 3_600_000
      const x = a.put('x', 1)
      await store.push(DEVICE_A, [x, a.put('y', 2)], { nowMs: longAgo })
      await store.push(DEVICE_A, [a.del('x', x.version.versionVector)], {
        nowMs: longAgo,
      })
      await store.ack(DEVICE_B, 0) // active now, acked nothing
      const result = await store.collectGarbage({
        nowMs: Date.now(),
        retentionMs: 3_600_000,
      })
      expect(result).toEqual({ removedTombstones: 1, horizon: 3 })
      await expectCode(store.pull(DEVICE_A, 1, 10), 'resync_required')
    })

    it(`${name}: S6 a cursor above the head must resync; cursor 0 never does`, async () => {
      await store.push(DEVICE_A, [a.put('x', 1)])
      await expectCode(store.pull(DEVICE_B, 2, 10), 'resync_required')
      expect((await store.pull(DEVICE_B, 0, 10)).versions).toHaveLength(1)
    })

    it(`${name}: S11 device tokens: stored by hash, found until revoked, never duplicated`, async () => {
      const hash1 = 'a'.repeat(64)
      const hash2 = 'b'.repeat(64)
      await store.createDeviceToken('dev-a', hash1)
      await store.createDeviceToken('dev-a', hash2)
      await store.createDeviceToken('dev-b', 'c'.repeat(64))
      expect(await store.findDeviceByTokenHash(hash1)).toBe('dev-a')
      expect(await store.findDeviceByTokenHash('d'.repeat(64))).toBeUndefined()
      await expectCode(
        store.createDeviceToken('dev-b', hash1),
        'already_exists',
      )
      expect(await store.findDeviceByTokenHash(hash1)).toBe('dev-a')
      expect(await store.revokeDeviceTokens('dev-a')).toBe(2)
      expect(await store.revokeDeviceTokens('dev-a')).toBe(0)
      expect(await store.findDeviceByTokenHash(hash2)).toBeUndefined()
      expect(await store.findDeviceByTokenHash('c'.repeat(64))).toBe('dev-b')
      await expectCode(
        store.createDeviceToken('bad id!', hash1),
        'invalid_argument',
      )
      await expectCode(store.createDeviceToken('dev-c', ''), 'invalid_argument')
    })

    it(`${name}: S9 bad input (unknown collection, wrong dims or dtype, NaN, forged origin, …) changes nothing`, async () => {
      const x = a.put('x', 1)
      await store.push(DEVICE_A, [x])
      await store.ack(DEVICE_A, 1)
      const before = await observe(store)
      const valid = a.put('ok', 2)
      const bad: Array<[string, PushOp, ErrorCode]> = [
        ['unknown collection', { ...valid, collection: 'nope' }, 'not_found'],
        [
          'wrong dims',
          withVersion(valid, { vector: new Float32Array(3).fill(1) }),
          'invalid_argument',
        ],
        [
          'wrong dtype',
          withVersion(valid, { vector: new Float64Array(4).fill(1) }),
          'invalid_argument',
        ],
        [
          'NaN',
          withVersion(valid, { vector: new Float32Array([1, NaN, 0, 0]) }),
          'invalid_argument',
        ],
        [
          'Infinity',
          withVersion(valid, { vector: new Float32Array([1, Infinity, 0, 0]) }),
          'invalid_argument',
        ],
        [
          'all-zero cosine vector',
          withVersion(valid, { vector: new Float32Array(4) }),
          'invalid_argument',
        ],
        [
          'forged origin',
          withVersion(valid, { origin: b.replicaId }),
          'invalid_argument',
        ],
        [
          'vector without own entry',
          withVersion(valid, { versionVector: { [b.replicaId]: 1 } }),
          'invalid_argument',
        ],
        [
          'non-canonical metadata',
          withVersion(valid, { metadataJson: '{ "v": 2 }' }),
          'invalid_argument',
        ],
        [
          'metadata not JSON',
          withVersion(valid, { metadataJson: '{' }),
          'invalid_argument',
        ],
        [
          'live without vector',
          withVersion(valid, { vector: null }),
          'invalid_argument',
        ],
        [
          'tombstone with a body',
          withVersion(valid, { deleted: true }),
          'invalid_argument',
        ],
        ['bad id', withVersion(valid, { id: '' }), 'invalid_argument'],
        [
          'bad HLC',
          withVersion(valid, { hlc: { wallMs: -1, counter: 0 } }),
          'invalid_argument',
        ],
        ['bad LSN', { ...valid, lsn: 101.5 }, 'invalid_argument'],
      ]
      for (const [label, op, code] of bad) {
        // The bad op comes second: the valid op before it must not be stored either.
        const first = {
          ...a.put(`first-${label.replaceAll(' ', '-')}`, 3),
          lsn: 100,
        }
        const second = { ...op, lsn: op.lsn === 101.5 ? op.lsn : 101 }
        try {
          await expectCode(store.push(DEVICE_A, [first, second]), code)
        } catch (error) {
          throw new Error(`${label}: ${(error as Error).message}`)
        }
      }
      await expectCode(
        store.push({ deviceId: 'dev-a', epoch: 'not hex' }, [valid]),
        'invalid_argument',
      )
      await expectCode(store.digest('nope'), 'not_found')
      await expectCode(store.conflicts({ limit: 0 }), 'invalid_argument')
      expect(await observe(store)).toEqual(before)
      // The same replica can still push the valid op afterwards.
      const ok = await store.push(DEVICE_A, [valid])
      expect(ok.results[0]?.outcome).toBe('applied')
    })

    it(`${name}: S12 close is idempotent and later calls throw closed`, async () => {
      await store.close()
      await store.close()
      await expectCode(store.head(), 'closed')
      await expectCode(store.push(DEVICE_A, [a.put('x', 1)]), 'closed')
      await expectCode(store.pull(DEVICE_A, 0, 1), 'closed')
    })
  })
}
