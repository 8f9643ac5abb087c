import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import {
  incrementVersionVector,
  isVeloSyncError,
  replicaIdOf,
  type PushOp,
  type ReplicaRef,
} from '@velosync/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
// The suite is imported by path until @velosync/testkit exports it (see the report).
import { describeServerStore } from '@velosync/testkit/server-store-suite'
import { SERVER_SCHEMA_VERSION, SqliteServerStore } from '../src/index.js'

describeServerStore('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'velosync-server-'))
  const store = SqliteServerStore.open({ path: join(dir, 'server.db') })
  return {
    store,
    teardown: async () => {
      await store.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
})

const DEVICE: ReplicaRef = { deviceId: 'dev-a', epoch: '00000000000000a1' }
const REPLICA = replicaIdOf(DEVICE.deviceId, DEVICE.epoch)
const SCHEMA = {
  name: 'notes',
  dims: 2,
  metric: 'l2',
  dtype: 'float32',
} as const

function op(lsn: number, id: string, value: number): PushOp {
  return {
    lsn,
    collection: 'notes',
    version: {
      id,
      deleted: false,
      vector: new Float32Array([value, 1]),
      metadataJson: '{}',
      versionVector: incrementVersionVector({}, REPLICA),
      hlc: { wallMs: 1_000 + lsn, counter: 0 },
      origin: REPLICA,
    },
  }
}

async function rejectsWith(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected a rejection')
}

describe('SqliteServerStore: the file', () => {
  let dir: string
  let path: string
  const opened: SqliteServerStore[] = []
  const open = (): SqliteServerStore => {
    const store = SqliteServerStore.open({ path })
    opened.push(store)
    return store
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'velosync-server-'))
    path = join(dir, 'server.db')
  })
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('keeps head, digests and exactly-once state across a reopen', async () => {
    const first = open()
    await first.ensureCollection(SCHEMA)
    const batch = [op(1, 'x', 1), op(2, 'y', 2)]
    await first.push(DEVICE, batch)
    const digest = await first.digest('notes')
    await first.close()

    const second = open()
    expect(await second.head()).toBe(2)
    expect(await second.digest('notes')).toBe(digest)
    const replay = await second.push(DEVICE, batch)
    expect(replay.results.map((r) => r.outcome)).toEqual([
      'duplicate',
      'duplicate',
    ])
    expect(replay.appliedThroughLsn).toBe(2)
  })

  it('two stores on one file (two server processes) share collections and one gap-free feed', async () => {
    const one = open()
    const two = open()
    await one.ensureCollection(SCHEMA)
    const other: ReplicaRef = { deviceId: 'dev-b', epoch: '00000000000000b1' }
    const otherId = replicaIdOf(other.deviceId, other.epoch)
    const fromOther = (lsn: number, id: string): PushOp => ({
      ...op(lsn, id, lsn),
      version: {
        ...op(lsn, id, lsn).version,
        versionVector: { [otherId]: 1 },
        origin: otherId,
      },
    })
    await two.push(DEVICE, [op(1, 'a', 1)])
    await one.push(other, [fromOther(1, 'b')])
    await two.push(DEVICE, [op(2, 'c', 2)])
    const pulled = await one.pull(other, 1, 10)
    expect(pulled.versions.map((v) => [v.seq, v.version.id])).toEqual([
      [3, 'c'],
    ])
    expect(pulled.skippedEchoes).toBe(1)
    expect(await one.digest('notes')).toBe(await two.digest('notes'))
  })

  it('forgets replay hashes below the first LSN of the push before the latest (a replay of those is lsn_reused)', async () => {
    const store = open()
    await store.ensureCollection(SCHEMA)
    await store.push(DEVICE, [op(1, 'x', 1), op(2, 'y', 2)])
    await store.push(DEVICE, [op(3, 'z', 3)])
    await store.push(DEVICE, [op(4, 'w', 4)])
    const db = new Database(path, { readonly: true })
    try {
      const lsns = db
        .prepare('SELECT lsn FROM vs_replica_ops ORDER BY lsn')
        .pluck()
        .all()
      expect(lsns).toEqual([3, 4])
    } finally {
      db.close()
    }
    expect(
      isVeloSyncError(
        await rejectsWith(store.push(DEVICE, [op(1, 'x', 1)])),
        'lsn_reused',
      ),
    ).toBe(true)
    expect(
      (await store.push(DEVICE, [op(3, 'z', 3)])).results[0]?.outcome,
    ).toBe('duplicate')
  })

  it('refuses a device store or a file of something else, and leaves it unchanged', () => {
    for (const [table, message] of [
      ['vs_store', /is a VeloSync device store, not a server store/],
      ['app_notes', /holds tables of something else/],
    ] as const) {
      const db = new Database(path)
      db.exec(`DROP TABLE IF EXISTS vs_store; DROP TABLE IF EXISTS app_notes;
               CREATE TABLE ${table} (key TEXT PRIMARY KEY)`)
      db.close()
      const before = readFileSync(path)
      let error: unknown
      try {
        open()
      } catch (caught) {
        error = caught
      }
      expect(isVeloSyncError(error, 'invalid_argument')).toBe(true)
      expect((error as Error).message).toMatch(message)
      expect(readFileSync(path).equals(before)).toBe(true)
      expect(existsSync(`${path}-wal`)).toBe(false)
    }
  })

  it('refuses a file written by a newer schema version', () => {
    const db = new Database(path)
    db.pragma(`user_version = ${SERVER_SCHEMA_VERSION + 1}`)
    db.close()
    const error = (() => {
      try {
        open()
      } catch (caught) {
        return caught
      }
      return undefined
    })()
    expect(isVeloSyncError(error, 'storage_failure')).toBe(true)
    expect((error as Error).message).toMatch(/newer than this VeloSync/)
  })

  it('records each migration in vs_schema_migrations and refuses a newer one recorded there', async () => {
    const store = open()
    await store.close()
    const db = new Database(path)
    try {
      expect(
        db.prepare('SELECT version, name FROM vs_schema_migrations').all(),
      ).toEqual([
        { version: 1, name: 'initial schema' },
        { version: 2, name: 'effective wall time of stored versions (S13)' },
        { version: 3, name: 'latest acceptance time, never going back (S13)' },
        {
          version: 4,
          name: "first LSN of each replica's latest push: op hashes kept two pushes (S2)",
        },
      ])
      db.prepare(
        'INSERT INTO vs_schema_migrations (version, name, applied_at_ms) VALUES (?, ?, 0)',
      ).run(SERVER_SCHEMA_VERSION + 1, 'from the future')
    } finally {
      db.close()
    }
    expect(() => open()).toThrow(/newer than this VeloSync/)
  })

  it('opens a file from before vs_schema_migrations (user_version only) with its data intact', async () => {
    const first = open()
    await first.ensureCollection(SCHEMA)
    await first.push(DEVICE, [op(1, 'x', 1)])
    const digest = await first.digest('notes')
    await first.close()
    const db = new Database(path)
    db.exec('DROP TABLE vs_schema_migrations')
    db.close()

    const second = open()
    expect(await second.digest('notes')).toBe(digest)
    expect(
      (await second.pull(DEVICE, 0, 10, { includeEchoes: true })).versions,
    ).toHaveLength(1)
    const check = new Database(path, { readonly: true })
    try {
      expect(
        check
          .prepare('SELECT version, applied_at_ms FROM vs_schema_migrations')
          .all(),
      ).toEqual([
        { version: 1, applied_at_ms: 0 },
        { version: 2, applied_at_ms: 0 },
        { version: 3, applied_at_ms: 0 },
        { version: 4, applied_at_ms: 0 },
      ])
    } finally {
      check.close()
    }
  })

  it('migrates a schema-1 file to the current schema with its data intact', async () => {
    const first = open()
    await first.ensureCollection(SCHEMA)
    await first.push(DEVICE, [op(1, 'x', 1), op(2, 'w', 2)])
    const digest = await first.digest('notes')
    await first.close()
    const db = new Database(path)
    db.exec(`ALTER TABLE vs_documents DROP COLUMN effective_wall_ms;
      ALTER TABLE vs_replicas DROP COLUMN last_push_first_lsn;
      DELETE FROM vs_meta WHERE key = 'accepted_ms';
      DELETE FROM vs_schema_migrations WHERE version >= 2;
      PRAGMA user_version = 1;`)
    db.close()

    const second = open()
    expect(await second.digest('notes')).toBe(digest)
    const pushed = await second.push(DEVICE, [op(3, 'y', 3)], {
      maxClockLeadMs: 60_000,
      nowMs: 5_000,
    })
    expect(pushed.results[0]?.outcome).toBe('applied')
    // Nothing was known of the push before the upgrade: this one forgot nothing.
    expect(
      (await second.push(DEVICE, [op(1, 'x', 1)])).results[0]?.outcome,
    ).toBe('duplicate')
    await second.close()
    const check = new Database(path, { readonly: true })
    try {
      expect(
        check
          .prepare(
            'SELECT id, effective_wall_ms IS NOT NULL AS bounded FROM vs_documents ORDER BY id',
          )
          .all(),
      ).toEqual([
        { id: 'w', bounded: 0 },
        { id: 'x', bounded: 0 },
        { id: 'y', bounded: 1 },
      ])
      expect(
        check
          .prepare("SELECT value FROM vs_meta WHERE key = 'accepted_ms'")
          .pluck()
          .get(),
      ).toBe(5_000)
      expect(
        check
          .prepare('SELECT last_push_first_lsn FROM vs_replicas')
          .pluck()
          .get(),
      ).toBe(1) // lowered by the replay of LSN 1
    } finally {
      check.close()
    }
  })

  it('wraps driver errors as storage_failure with the cause kept', () => {
    let error: unknown
    try {
      SqliteServerStore.open({ path: join(dir, 'missing', 'server.db') })
    } catch (caught) {
      error = caught
    }
    expect(isVeloSyncError(error, 'storage_failure')).toBe(true)
    expect((error as Error).cause).toBeInstanceOf(Error)
  })

  it('uses WAL journal mode and records its schema version in user_version', async () => {
    const store = open()
    await store.head()
    const db = new Database(path, { readonly: true })
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
      expect(db.pragma('user_version', { simple: true })).toBe(
        SERVER_SCHEMA_VERSION,
      )
    } finally {
      db.close()
    }
  })
})
