/*
 * S4 under concurrency (DESIGN 5): a pull must never skip a version, even while pushes from
 * several processes are in flight. One scenario, run against two feeds on the same
 * PostgreSQL, with real transactions on separate connections:
 *
 *   1. a slow writer takes its number and stays uncommitted;
 *   2. a fast writer writes and tries to commit;
 *   3. a reader pulls and keeps the cursor it was given;
 *   4. the slow writer commits, the fast one finishes, the reader pulls from its cursor.
 *
 * The reader must end up with both versions (`expectNoSkippedVersion`). The naive feed (a
 * bigserial column, numbers taken at insert time) fails that check: the fast writer commits
 * number 2 while number 1 is still open, the reader's cursor moves to 2, and version 1 is
 * never pulled; its test asserts exactly that loss. The real store passes because the fast push waits for the push lock (the head counter
 * row) and takes the number after the slow one's.
 */
import pg from 'pg'
import {
  incrementVersionVector,
  replicaIdOf,
  type PushOp,
  type ReplicaRef,
} from '@velosync/core'
import { afterEach, describe, expect, it } from 'vitest'
import { PostgresServerStore } from '../src/index.js'
import {
  dropSchema,
  postgres,
  uniqueSchema,
  withClient,
} from './test-database.js'

/** A change feed as the scenario drives it. */
interface Feed {
  /** Starts a write of `id` that has taken its number but not committed; `finish` commits. */
  startSlowWrite(id: string): Promise<{ finish(): Promise<void> }>
  /** Starts a write of `id`; resolves once it committed or is waiting for a lock. */
  startWrite(id: string): Promise<{ done: Promise<void> }>
  /** The ids after `cursor` in feed order, and the cursor to pull from next. */
  pull(cursor: number): Promise<{ ids: string[]; cursor: number }>
  close(): Promise<void>
}

/** Runs the scenario; returns every id the reader pulled. */
async function slowEarlierWriteScenario(feed: Feed): Promise<string[]> {
  const pulled: string[] = []
  const slow = await feed.startSlowWrite('slow')
  const fast = await feed.startWrite('fast')
  let page = await feed.pull(0)
  pulled.push(...page.ids)
  await slow.finish()
  await fast.done
  page = await feed.pull(page.cursor)
  pulled.push(...page.ids)
  return pulled
}

/** The check both feeds face: the reader got every version written. */
function expectNoSkippedVersion(pulled: readonly string[]): void {
  expect([...pulled].sort()).toEqual(['fast', 'slow'])
}

const APP = `vs-ordering-${process.pid}`

/** Resolves when `count` sessions of this test wait for a lock (polls pg_stat_activity). */
async function lockWaiters(
  count: number,
  orDone: Promise<unknown>,
): Promise<void> {
  let done = false
  void orDone.then(
    () => (done = true),
    () => (done = true),
  )
  await withClient(async (client) => {
    for (;;) {
      if (done) return
      const { rows } = await client.query<{ n: number }>(
        `SELECT count(*)::int4 AS n FROM pg_stat_activity
         WHERE application_name = $1 AND wait_event_type = 'Lock'`,
        [APP],
      )
      if ((rows[0]?.n ?? 0) >= count) return
      await new Promise((resolve) => setImmediate(resolve))
    }
  })
}

/** The naive design: numbers from a bigserial, taken when the row is inserted. */
async function naiveFeed(schema: string): Promise<Feed> {
  const connect = async (): Promise<pg.Client> => {
    const client = new pg.Client({
      connectionString: postgres.url,
      application_name: APP,
    })
    await client.connect()
    return client
  }
  const [slowClient, fastClient, reader] = await Promise.all([
    connect(),
    connect(),
    connect(),
  ])
  await reader.query(`CREATE SCHEMA ${schema}`)
  await reader.query(
    `CREATE TABLE ${schema}.naive_feed (seq bigserial PRIMARY KEY, id text NOT NULL)`,
  )
  const insert = `INSERT INTO ${schema}.naive_feed (id) VALUES ($1)`
  return {
    async startSlowWrite(id) {
      await slowClient.query('BEGIN')
      await slowClient.query(insert, [id])
      return { finish: async () => void (await slowClient.query('COMMIT')) }
    },
    async startWrite(id) {
      const done = fastClient.query(insert, [id]).then(() => undefined)
      await lockWaiters(1, done)
      return { done }
    },
    async pull(cursor) {
      const { rows } = await reader.query<{ seq: string; id: string }>(
        `SELECT seq, id FROM ${schema}.naive_feed WHERE seq > $1 ORDER BY seq`,
        [cursor],
      )
      const last = rows[rows.length - 1]
      return {
        ids: rows.map((row) => row.id),
        cursor: last === undefined ? cursor : Number(last.seq),
      }
    },
    async close() {
      await Promise.all([slowClient, fastClient, reader].map((c) => c.end()))
    },
  }
}

const SLOW: ReplicaRef = { deviceId: 'slow', epoch: '00000000000000a1' }
const FAST: ReplicaRef = { deviceId: 'fast', epoch: '00000000000000b1' }
const READER: ReplicaRef = { deviceId: 'reader', epoch: '00000000000000c1' }

function put(replica: ReplicaRef, lsn: number, id: string): PushOp {
  const replicaId = replicaIdOf(replica.deviceId, replica.epoch)
  return {
    lsn,
    collection: 'notes',
    version: {
      id,
      deleted: false,
      vector: new Float32Array([1, lsn]),
      metadataJson: '{}',
      versionVector: incrementVersionVector({}, replicaId),
      hlc: { wallMs: 1_000 + lsn, counter: 0 },
      origin: replicaId,
    },
  }
}

/**
 * The real store, as three server processes would use it: one store per writer and one
 * for the reader. The slow push is held inside its transaction, after it took its seqs,
 * by a session that locks the pushing replica's row (the push updates that row last).
 */
async function storeFeed(schema: string): Promise<Feed> {
  const open = () =>
    PostgresServerStore.open({
      url: postgres.url as string,
      schema,
      applicationName: APP,
    })
  const [slowStore, fastStore, reader] = [
    await open(),
    await open(),
    await open(),
  ]
  await reader.ensureCollection({
    name: 'notes',
    dims: 2,
    metric: 'l2',
    dtype: 'float32',
  })
  // The slow replica's row must exist to be locked: it pushed once before.
  await slowStore.push(SLOW, [put(SLOW, 1, 'earlier')])
  const before = await reader.pull(READER, 0, 100)
  const holder = new pg.Client({ connectionString: postgres.url })
  await holder.connect()
  return {
    async startSlowWrite(id) {
      await holder.query('BEGIN')
      await holder.query(
        `SELECT 1 FROM ${schema}.vs_replicas WHERE device_id = $1 FOR UPDATE`,
        [SLOW.deviceId],
      )
      const pushed = slowStore.push(SLOW, [put(SLOW, 2, id)])
      await lockWaiters(1, pushed)
      return {
        finish: async () => {
          await holder.query('COMMIT')
          await pushed
        },
      }
    },
    async startWrite(id) {
      const done = fastStore
        .push(FAST, [put(FAST, 1, id)])
        .then(() => undefined)
      await lockWaiters(2, done)
      return { done }
    },
    async pull(cursor) {
      // Cursor 0 of the scenario = the head before it started.
      const page = await reader.pull(
        READER,
        cursor === 0 ? before.cursor : cursor,
        100,
      )
      return {
        ids: page.versions.map((v) => v.version.id),
        cursor: page.cursor,
      }
    },
    async close() {
      await holder.end()
      await Promise.all([slowStore, fastStore, reader].map((s) => s.close()))
    },
  }
}

describe.skipIf(postgres.url === undefined)(
  `feed order under concurrent pushes (S4)${postgres.skipReason === undefined ? '' : ` (SKIPPED: ${postgres.skipReason})`}`,
  () => {
    let feed: Feed | undefined
    let schema: string
    afterEach(async () => {
      await feed?.close()
      feed = undefined
      await dropSchema(schema)
    })

    it('postgres: the naive bigserial feed fails the check: its reader skips the slow earlier write', async () => {
      schema = uniqueSchema('naive')
      feed = await naiveFeed(schema)
      const pulled = await slowEarlierWriteScenario(feed)
      expect(() => expectNoSkippedVersion(pulled)).toThrow()
      expect(pulled).toEqual(['fast'])
    })

    it('postgres: PostgresServerStore pulls both: the later push waits for the earlier one', async () => {
      schema = uniqueSchema('store')
      feed = await storeFeed(schema)
      const pulled = await slowEarlierWriteScenario(feed)
      expectNoSkippedVersion(pulled)
      // Nothing was visible while the slow push held the lock; then both, in push order.
      expect(pulled).toEqual(['slow', 'fast'])
    })
  },
)
