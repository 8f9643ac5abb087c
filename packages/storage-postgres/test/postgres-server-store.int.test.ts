import {
  incrementVersionVector,
  isVeloSyncError,
  replicaIdOf,
  type PushOp,
  type ReplicaRef,
} from '@velosync/core'
import { describeServerStore } from '@velosync/testkit/server-store-suite'
import { afterEach, describe, expect, it } from 'vitest'
import {
  POSTGRES_SCHEMA_VERSION,
  PostgresServerStore,
  type PostgresServerStoreOptions,
} from '../src/index.js'
import {
  dropSchema,
  postgres,
  uniqueSchema,
  withClient,
} from './test-database.js'

const url = postgres.url ?? 'postgres://unused'

describeServerStore(
  'postgres',
  async () => {
    const schema = uniqueSchema('suite')
    const store = await PostgresServerStore.open({ url, schema })
    return {
      store,
      teardown: async () => {
        await store.close()
        await dropSchema(schema)
      },
    }
  },
  { skipReason: postgres.skipReason },
)

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

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected a rejection')
}

describe.skipIf(postgres.url === undefined)(
  `PostgresServerStore: the database${postgres.skipReason === undefined ? '' : ` (SKIPPED: ${postgres.skipReason})`}`,
  () => {
    const schemas: string[] = []
    const opened: PostgresServerStore[] = []
    const open = async (
      schema: string,
      options: Partial<PostgresServerStoreOptions> = {},
    ): Promise<PostgresServerStore> => {
      if (!schemas.includes(schema)) schemas.push(schema)
      const store = await PostgresServerStore.open({ url, schema, ...options })
      opened.push(store)
      return store
    }
    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close()
      for (const schema of schemas.splice(0)) await dropSchema(schema)
    })

    it('postgres: keeps head, digests and exactly-once state across a reopen', async () => {
      const schema = uniqueSchema('reopen')
      const first = await open(schema)
      await first.ensureCollection(SCHEMA)
      const batch = [op(1, 'x', 1), op(2, 'y', 2)]
      await first.push(DEVICE, batch)
      const digest = await first.digest('notes')
      await first.close()

      const second = await open(schema)
      expect(await second.head()).toBe(2)
      expect(await second.digest('notes')).toBe(digest)
      const replay = await second.push(DEVICE, batch)
      expect(replay.results.map((r) => r.outcome)).toEqual([
        'duplicate',
        'duplicate',
      ])
    })

    it('postgres: two stores on one database (two server processes) share collections and one gap-free feed', async () => {
      const schema = uniqueSchema('shared')
      const one = await open(schema)
      const two = await open(schema)
      // Created through one, pushed to through the other, whose cache has not seen it.
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

    it('postgres: forgets replay hashes below the first LSN of the push before the latest (a replay of those is lsn_reused)', async () => {
      const schema = uniqueSchema('prune')
      const store = await open(schema)
      await store.ensureCollection(SCHEMA)
      await store.push(DEVICE, [op(1, 'x', 1), op(2, 'y', 2)])
      await store.push(DEVICE, [op(3, 'z', 3)])
      await store.push(DEVICE, [op(4, 'w', 4)])
      const lsns = await withClient(async (client) => {
        const { rows } = await client.query<{ lsn: string }>(
          `SELECT lsn FROM ${schema}.vs_replica_ops ORDER BY lsn`,
        )
        return rows.map((row) => Number(row.lsn))
      })
      expect(lsns).toEqual([3, 4])
      expect(
        isVeloSyncError(
          await rejection(store.push(DEVICE, [op(1, 'x', 1)])),
          'lsn_reused',
        ),
      ).toBe(true)
      expect(
        (await store.push(DEVICE, [op(3, 'z', 3)])).results[0]?.outcome,
      ).toBe('duplicate')
    })

    it('postgres: records migrations in vs_schema_migrations and refuses a newer schema', async () => {
      const schema = uniqueSchema('migrations')
      const store = await open(schema)
      await store.close()
      const versions = await withClient(async (client) => {
        const { rows } = await client.query<{ version: number; name: string }>(
          `SELECT version, name FROM ${schema}.vs_schema_migrations ORDER BY version`,
        )
        await client.query(
          `INSERT INTO ${schema}.vs_schema_migrations (version, name) VALUES ($1, 'from the future')`,
          [POSTGRES_SCHEMA_VERSION + 1],
        )
        return rows
      })
      expect(versions).toEqual([
        { version: 1, name: 'initial schema' },
        { version: 2, name: 'effective wall time of stored versions (S13)' },
        { version: 3, name: 'latest acceptance time, never going back (S13)' },
        {
          version: 4,
          name: "first LSN of each replica's latest push: op hashes kept two pushes (S2)",
        },
      ])
      const error = await rejection(open(schema))
      expect(isVeloSyncError(error, 'storage_failure')).toBe(true)
      expect((error as Error).message).toMatch(/newer than this VeloSync/)
    })

    it('postgres: migrates a schema-3 database to the current schema with its data intact', async () => {
      const schema = uniqueSchema('upgrade')
      const first = await open(schema)
      await first.ensureCollection(SCHEMA)
      await first.push(DEVICE, [op(1, 'x', 1), op(2, 'y', 2)])
      const digest = await first.digest('notes')
      await first.close()
      await withClient((client) =>
        client.query(`ALTER TABLE ${schema}.vs_replicas DROP COLUMN last_push_first_lsn;
          DELETE FROM ${schema}.vs_schema_migrations WHERE version >= 4`),
      )
      const second = await open(schema)
      expect(await second.digest('notes')).toBe(digest)
      const recorded = () =>
        withClient(async (client) => {
          const { rows } = await client.query<{ lsn: string }>(
            `SELECT last_push_first_lsn AS lsn FROM ${schema}.vs_replicas`,
          )
          return rows.map((row) => Number(row.lsn))
        })
      expect(await recorded()).toEqual([0])
      // Nothing is known of the push before the upgrade: the next one forgets nothing.
      await second.push(DEVICE, [op(3, 'z', 3)])
      expect(await recorded()).toEqual([3])
      expect(
        (await second.push(DEVICE, [op(1, 'x', 1)])).results[0]?.outcome,
      ).toBe('duplicate')
      await second.close()
    })

    it('postgres: processes starting together migrate once', async () => {
      const schema = uniqueSchema('race')
      const stores = await Promise.all([
        open(schema),
        open(schema),
        open(schema),
      ])
      await stores[0]?.ensureCollection(SCHEMA)
      expect(await stores[2]?.getCollection('notes')).toEqual(SCHEMA)
    })

    it('postgres: stores vectors as bytea, little-endian in the collection dtype', async () => {
      const schema = uniqueSchema('bytea')
      const store = await open(schema)
      await store.ensureCollection(SCHEMA)
      await store.push(DEVICE, [op(1, 'x', 0.5)])
      const bytes = await withClient(async (client) => {
        const { rows } = await client.query<{ vector: Buffer }>(
          `SELECT vector FROM ${schema}.vs_documents WHERE id = 'x'`,
        )
        return rows[0]?.vector
      })
      expect(bytes).toEqual(Buffer.from(new Float32Array([0.5, 1]).buffer))
    })

    it('postgres: an unreachable server is storage_failure, with the cause kept and no password shown', async () => {
      const error = await rejection(
        PostgresServerStore.open({
          url: 'postgres://user:secret@127.0.0.1:1/none',
          connectionTimeoutMs: 2000,
        }),
      )
      expect(isVeloSyncError(error, 'storage_failure')).toBe(true)
      expect((error as Error).cause).toBeInstanceOf(Error)
      expect((error as Error).message).not.toContain('secret')
    })

    it('postgres: bad options are invalid_argument before connecting', async () => {
      const bad: Partial<PostgresServerStoreOptions>[] = [
        { url: 'mysql://localhost/db' },
        { url: 'postgres://a b@[/' },
        { schema: 'Robert"; DROP TABLE x' },
        { poolSize: 0 },
        { poolSize: 1.5 },
        { statementTimeoutMs: -1 },
        { connectionTimeoutMs: Number.NaN },
        { idleTimeoutMs: '5' as unknown as number },
        { applicationName: 'x'.repeat(64) },
      ]
      for (const options of bad) {
        const error = await rejection(
          PostgresServerStore.open({ url, ...options }),
        )
        expect(
          isVeloSyncError(error, 'invalid_argument'),
          JSON.stringify(options),
        ).toBe(true)
      }
    })

    it('postgres: a statement that outlives statementTimeoutMs fails as storage_failure', async () => {
      const schema = uniqueSchema('timeout')
      const waiting = await open(schema, { statementTimeoutMs: 200 })
      await waiting.ensureCollection(SCHEMA)
      // Another session holds the push lock; the push gives up after 200 ms.
      await withClient(async (client) => {
        await client.query('BEGIN')
        await client.query(
          `SELECT value FROM ${schema}.vs_meta WHERE key = 'head' FOR UPDATE`,
        )
        const error = await rejection(waiting.push(DEVICE, [op(1, 'x', 1)]))
        await client.query('ROLLBACK')
        expect(isVeloSyncError(error, 'storage_failure')).toBe(true)
        expect((error as Error).message).toMatch(/statement timeout/)
      })
      expect(await waiting.head()).toBe(0)
    })
  },
)
