import { hash } from 'node:crypto'
import pg from 'pg'
import {
  EMPTY_COLLECTION_DIGEST,
  conflictVersionRow,
  versionColumns,
  versionFromRow,
  type CheckCursorOptions,
  type ConflictRow,
  type VersionRow,
  VeloSyncError,
  assertCollectionName,
  assertDeviceId,
  assertLimit,
  assertSeq,
  assertTokenHash,
  collectionMismatch,
  describe,
  invalidArgument,
  isVeloSyncError,
  normalizeCollectionSchema,
  planPush,
  preparePush,
  pullPageEnd,
  pullResult,
  monotonePushClock,
  pushClockOf,
  replicaIdOfRef,
  staleCursorError,
  timeMs,
  unknownCollection,
  vectorToBytes,
  versionVectorToJson,
  type CollectionSchema,
  type ConflictQuery,
  type ConflictRecord,
  type DocumentVersion,
  type DocumentWrite,
  type GarbageCollectionOptions,
  type GarbageCollectionResult,
  type PullOptions,
  type PullTail,
  type PullResult,
  type PushOp,
  type PushOptions,
  type PushPlan,
  type PushResult,
  type ReplicaId,
  type ReplicaProgress,
  type ReplicaRef,
  type Seq,
  type ServerStore,
  type Sha256,
  type StoredDocument,
} from '@velosync/core'
import { headChannel, headPayload } from './head-notification.js'
import { MIGRATIONS, POSTGRES_SCHEMA_VERSION } from './migrations.js'

/** Options of {@link PostgresServerStore.open}. */
export interface PostgresServerStoreOptions {
  /** A `postgres://` (or `postgresql://`) connection URL. Required. */
  readonly url: string
  /**
   * The PostgreSQL schema (namespace) holding the `vs_*` tables; created if missing.
   * Lowercase letters, digits and `_`. Default `public`.
   */
  readonly schema?: string
  /**
   * Connections this process keeps open at most. Pushes serialize on one row lock anyway
   * (see ARCHITECTURE.md), so more connections mostly help concurrent pulls. Default 10.
   */
  readonly poolSize?: number
  /**
   * Longest a single statement may run, including waiting for the push lock behind other
   * pushes, in ms (PostgreSQL `statement_timeout`); 0 disables it. Default 30000.
   */
  readonly statementTimeoutMs?: number
  /** Longest to wait for a new connection, in ms; 0 waits forever. Default 10000. */
  readonly connectionTimeoutMs?: number
  /** How long an idle connection stays open, in ms; 0 keeps it. Default 30000. */
  readonly idleTimeoutMs?: number
  /** `application_name` shown in `pg_stat_activity`. Default `velosync`. */
  readonly applicationName?: string
  /** Source of wall-clock milliseconds when a call passes no time. Default `Date.now`. */
  readonly wallClock?: () => number
}

/** The defaults of {@link PostgresServerStoreOptions}. */
export const POSTGRES_STORE_DEFAULTS = {
  schema: 'public',
  poolSize: 10,
  statementTimeoutMs: 30_000,
  connectionTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  applicationName: 'velosync',
} as const

/** Largest accepted pool (PostgreSQL's own default `max_connections` is 100). */
const MAX_POOL_SIZE = 1000
/** Rows per multi-row INSERT: 1000 × 13 parameters stays far below the 65535 limit. */
const INSERT_CHUNK_ROWS = 1000
/** One PostgreSQL schema name, left unquoted in SQL: so only plain lowercase names. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/
const PG_URL = /^postgres(?:ql)?:\/\//
/** PostgreSQL's `int8` type id: parsed to a JS number (every seq, LSN and time is safe). */
const INT8_OID = 20

const sha256: Sha256 = (data) => hash('sha256', data, 'buffer')

interface DocumentRow extends VersionRow {
  collection_id: number
  id: string
  hash: Buffer | null
  effective_wall_ms: number | null
}

interface PulledRow extends VersionRow {
  seq: number
  collection_id: number
  id: string
}

interface CollectionTableRow {
  collection_id: number
  name: string
  dims: number
  metric: CollectionSchema['metric']
  dtype: CollectionSchema['dtype']
}

interface CollectionEntry {
  readonly schema: CollectionSchema
  readonly collectionId: number
}

type Queryable = Pick<pg.PoolClient, 'query'>

/** How to reach a store's database, for a connection of one's own (see {@link storeConnection}). */
export interface StoreConnection {
  /** The store's connection settings (URL, schema, application name, int8 parsing). */
  readonly config: pg.ClientConfig
  /** The channel the store's pushes NOTIFY (see `headChannel`). */
  readonly channel: string
  /** The URL without its password, for messages. */
  readonly where: string
}

const connections = new WeakMap<PostgresServerStore, StoreConnection>()

/**
 * How to reach `store`'s database: for the change signal's LISTEN connection, which must
 * use the very database and channel the store's pushes notify. Package-internal.
 */
export function storeConnection(store: PostgresServerStore): StoreConnection {
  const connection = connections.get(store)
  if (connection === undefined) {
    throw invalidArgument('expected a store made by PostgresServerStore.open')
  }
  return connection
}

/**
 * The {@link ServerStore} on PostgreSQL (node-postgres): the master store that several
 * stateless `velosync serve` processes share.
 *
 * @remarks
 * Behaviour is the SQLite store's: both run the same rules from `@velosync/core`
 * (`preparePush`, `planPush`, `pullResult`) and pass the same conformance suite.
 *
 * **Gap-free, commit-ordered feed (S4).** Every push transaction starts by locking the
 * counter row (`SELECT … FROM vs_meta WHERE key = 'head' FOR UPDATE`), takes its seqs from
 * it and writes it back before COMMIT. Pushes therefore commit one after another in seq
 * order, from every process, and any snapshot holds a prefix 1..n of the seqs: a pull can
 * never see seq n+1 without seq n. A plain sequence would hand out numbers at insert time,
 * and a later number could commit first, making a pull skip the earlier one forever. The
 * cost: pushes do not run in parallel (validation and hashing do, before the lock); pulls
 * never wait for it. Pulls read in one REPEATABLE READ READ ONLY snapshot.
 *
 * **Live changes.** A push that stored something also runs
 * `pg_notify(<channel>, '<head> <deviceId>')` in its transaction, so PostgreSQL delivers
 * it at COMMIT, in commit order, to every `PostgresChangeSignal` listening on the database
 * (channel `velosync_head` for the `public` schema, see `headChannel`).
 *
 * Driver errors are rethrown as `storage_failure` with the original as `cause`.
 *
 * @example
 * ```ts
 * const store = await PostgresServerStore.open({ url: 'postgres://velosync@db/velosync' })
 * await store.ensureCollection({ name: 'notes', dims: 384, metric: 'cosine', dtype: 'float32' })
 * await store.close()
 * ```
 */
export class PostgresServerStore implements ServerStore {
  readonly #pool: pg.Pool
  readonly #wallClock: () => number
  readonly #byName = new Map<string, CollectionEntry>()
  readonly #byId = new Map<number, CollectionEntry>()
  readonly #channel: string
  #closed = false

  private constructor(pool: pg.Pool, settings: Settings) {
    this.#pool = pool
    this.#wallClock = settings.wallClock
    this.#channel = headChannel(settings.schema)
    connections.set(this, {
      config: clientConfig(settings),
      channel: this.#channel,
      where: redact(settings.url),
    })
  }

  /**
   * Connects, creates or migrates the schema, and returns the store.
   *
   * @throws `invalid_argument` for bad options; `storage_failure` when the database cannot
   *   be reached or migrated (or was migrated by a newer VeloSync).
   */
  static async open(
    options: PostgresServerStoreOptions,
  ): Promise<PostgresServerStore> {
    const settings = checkOptions(options)
    const pool = new pg.Pool({
      ...clientConfig(settings),
      max: settings.poolSize,
      idleTimeoutMillis: settings.idleTimeoutMs,
      statement_timeout: settings.statementTimeoutMs,
    })
    // An idle connection that the server drops (restart, failover) must not crash the
    // process: pg emits it on the pool, and the next query gets a fresh connection.
    pool.on('error', (error) => {
      process.emitWarning(
        `VeloSync PostgreSQL store: an idle connection failed: ${error.message}`,
      )
    })
    try {
      await migrate(pool, settings.schema)
      const store = new PostgresServerStore(pool, settings)
      await store.#loadCollections(pool)
      return store
    } catch (error) {
      await pool.end().catch(() => undefined)
      if (isVeloSyncError(error)) throw error
      throw new VeloSyncError(
        'storage_failure',
        `cannot open the PostgreSQL server store at ${redact(settings.url)}: ${(error as Error).message}`,
        { cause: error },
      )
    }
  }

  async ensureCollection(input: CollectionSchema): Promise<CollectionSchema> {
    this.#assertOpen()
    const schema = normalizeCollectionSchema(input)
    const row = await this.#run(async () => {
      await this.#pool.query(
        `INSERT INTO vs_collections (name, dims, metric, dtype, digest)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING`,
        [
          schema.name,
          schema.dims,
          schema.metric,
          schema.dtype,
          EMPTY_COLLECTION_DIGEST,
        ],
      )
      return (await this.#selectCollection(schema.name)) as CollectionTableRow
    })
    const current = this.#remember(row).schema
    const mismatch = collectionMismatch(current, schema)
    if (mismatch !== undefined) throw mismatch
    return current
  }

  async getCollection(name: string): Promise<CollectionSchema | undefined> {
    this.#assertOpen()
    assertCollectionName(name)
    return (await this.#findCollection(name))?.schema
  }

  async listCollections(): Promise<CollectionSchema[]> {
    this.#assertOpen()
    await this.#run(() => this.#loadCollections(this.#pool))
    return [...this.#byName.values()]
      .map((entry) => entry.schema)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  async push(
    replica: ReplicaRef,
    ops: readonly PushOp[],
    options: PushOptions = {},
  ): Promise<PushResult> {
    this.#assertOpen()
    const replicaId = replicaIdOfRef(replica)
    if (typeof options !== 'object' || options === null) {
      throw invalidArgument(
        `push options must be an object, got ${describe(options)}`,
      )
    }
    const nowMs = timeMs(options.nowMs, this.#wallClock, 'nowMs')
    const clock = pushClockOf(options.maxClockLeadMs, nowMs)
    const resolver = options.resolver
    if (resolver !== undefined && typeof resolver !== 'function') {
      throw invalidArgument(
        `resolver must be a function, got ${describe(resolver)}`,
      )
    }
    const prepare = () =>
      preparePush(replicaId, ops, (name) => this.#byName.get(name), sha256)
    let prepared: ReturnType<typeof prepare>
    try {
      prepared = prepare()
    } catch (error) {
      if (!isVeloSyncError(error, 'not_found')) throw error
      // Validation is synchronous, on the cache; another process may have created the
      // collection since it was filled.
      await this.#run(() => this.#loadCollections(this.#pool))
      prepared = prepare()
    }
    return this.#transaction('BEGIN', async (client) => {
      // The push lock: taken first, held to COMMIT (see the class remarks).
      const head = await selectMeta(client, 'head', 'FOR UPDATE')
      // The replica's applied LSN and latest push, the latest acceptance time and the
      // digests of the push's collections, in one trip.
      const { rows: stateRows } = await client.query<{
        applied_lsn: number | null
        last_push_first_lsn: number | null
        accepted_ms: number
        collection_id: number | null
        digest: string | null
      }>(
        `SELECT p.applied_lsn, p.last_push_first_lsn, r.accepted_ms, c.collection_id, c.digest
         FROM (SELECT (SELECT value FROM vs_meta WHERE key = 'accepted_ms') AS accepted_ms) AS r
         LEFT JOIN vs_replicas AS p ON p.replica_id = $1
         LEFT JOIN vs_collections AS c ON c.collection_id = ANY($2::int4[])`,
        [
          replicaId,
          [...new Set(prepared.map((op) => op.collection.collectionId))],
        ],
      )
      const appliedLsn = stateRows[0]?.applied_lsn ?? 0
      const lastPushFirstLsn = stateRows[0]?.last_push_first_lsn ?? 0
      const acceptedClock = monotonePushClock(
        clock,
        stateRows[0]?.accepted_ms ?? 0,
      )
      const digests = new Map<number, string>()
      for (const row of stateRows) {
        if (row.collection_id !== null && row.digest !== null) {
          digests.set(row.collection_id, row.digest)
        }
      }
      const replays = prepared
        .filter((op) => op.lsn <= appliedLsn)
        .map((op) => op.lsn)
      const recorded = new Map<number, Buffer>()
      if (replays.length > 0) {
        const { rows } = await client.query<{ lsn: number; op_hash: Buffer }>(
          'SELECT lsn, op_hash FROM vs_replica_ops WHERE replica_id = $1 AND lsn = ANY($2::int8[])',
          [replicaId, replays],
        )
        for (const row of rows) recorded.set(row.lsn, row.op_hash)
      }
      // Replays too: a replay's answer carries the stored version when it changed since.
      const documents = new Map<string, DocumentRow>()
      if (prepared.length > 0) {
        const { rows } = await client.query<DocumentRow>(
          `SELECT d.collection_id, d.id, d.hash, d.effective_wall_ms, ${versionColumns('d.')}
           FROM vs_documents d
           JOIN unnest($1::int4[], $2::text[]) AS k (collection_id, id)
             ON d.collection_id = k.collection_id AND d.id = k.id`,
          [
            prepared.map((op) => op.collection.collectionId),
            prepared.map((op) => op.version.id),
          ],
        )
        for (const row of rows) {
          documents.set(documentKey(row.collection_id, row.id), row)
        }
      }
      const plan = planPush(
        replicaId,
        prepared,
        {
          appliedLsn,
          lastPushFirstLsn,
          head,
          storedDocument: (collection, id): StoredDocument | undefined => {
            const row = documents.get(documentKey(collection.collectionId, id))
            return row === undefined
              ? undefined
              : {
                  version: versionFromRow(collection.schema, id, row),
                  hash: row.hash,
                  effectiveMs: row.effective_wall_ms,
                }
          },
          recordedOpHash: (lsn) => recorded.get(lsn),
          digest: (collection) =>
            digests.get(collection.collectionId) as string,
        },
        resolver,
        sha256,
        acceptedClock,
      )
      await writePush(
        client,
        replica,
        replicaId,
        plan,
        nowMs,
        acceptedClock?.nowMs,
        // Only a push that stored something announces; a replay changes no head.
        plan.head > head
          ? {
              channel: this.#channel,
              payload: headPayload(plan.head, replica.deviceId),
            }
          : undefined,
      )
      return {
        results: plan.results,
        appliedThroughLsn: plan.appliedThroughLsn,
        head: plan.head,
      }
    })
  }

  async pull(
    replica: ReplicaRef,
    cursor: Seq,
    limit: number,
    options: PullOptions = {},
  ): Promise<PullResult> {
    this.#assertOpen()
    const replicaId = replicaIdOfRef(replica)
    const includeEchoes = options.includeEchoes === true
    assertSeq(cursor, 'cursor')
    assertLimit(limit)
    return this.#transaction(
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
      async (client) => {
        await assertCursor(client, cursor)
        // Echoes are filtered here, not walked row by row in JS (S5); their vectors are
        // never read. `IS DISTINCT FROM` keeps rows whose unchanged_from is NULL.
        const echoOf = includeEchoes ? null : replicaId
        const { rows } = await client.query<PulledRow>(
          `SELECT seq, collection_id, id, deleted, vector, metadata, version_vector,
                  hlc_wall, hlc_counter, origin
           FROM vs_documents
           WHERE seq > $1 AND ($2::text IS NULL OR unchanged_from IS DISTINCT FROM $2)
           ORDER BY seq LIMIT $3`,
          [cursor, echoOf, limit],
        )
        // A row may name a collection another process created after our cache was
        // filled; this snapshot sees it, since the row is newer.
        if (rows.some((row) => !this.#byId.has(row.collection_id))) {
          await this.#loadCollections(client)
        }
        const versions = rows.map((row) => {
          const { schema } = this.#byId.get(
            row.collection_id,
          ) as CollectionEntry
          return {
            seq: row.seq,
            collection: schema.name,
            version: versionFromRow(schema, row.id, row),
          }
        })
        const { rows: tail } = await client.query<PullTail>(
          `WITH next AS (
             SELECT seq FROM vs_documents
             WHERE seq > $1 AND ($2::text IS NULL OR unchanged_from IS DISTINCT FROM $2)
             ORDER BY seq LIMIT 1
           )
           SELECT (SELECT seq FROM next) AS next,
                  (SELECT max(seq) FROM vs_documents
                   WHERE seq < coalesce((SELECT seq FROM next), 9223372036854775807)) AS end,
                  (SELECT count(*) FROM vs_documents
                   WHERE seq > $3 AND unchanged_from = $2
                     AND seq < coalesce((SELECT seq FROM next), 9223372036854775807))::int AS echoes`,
          [pullPageEnd(versions, cursor), echoOf, cursor],
        )
        return pullResult(versions, cursor, tail[0] as PullTail)
      },
    )
  }

  async ack(replica: ReplicaRef, cursor: Seq): Promise<void> {
    this.#assertOpen()
    const replicaId = replicaIdOfRef(replica)
    assertSeq(cursor, 'cursor')
    const nowMs = timeMs(undefined, this.#wallClock, 'nowMs')
    await this.#run(async () => {
      // The head only grows, so checking it first and writing after is safe.
      const head = await selectMeta(this.#pool, 'head')
      if (cursor > head) {
        throw invalidArgument(
          `cursor ${cursor} is ahead of the server's head ${head}; a device can only acknowledge what it pulled`,
        )
      }
      await this.#pool.query(
        `INSERT INTO vs_replicas (replica_id, device_id, epoch, applied_lsn, ack_cursor, last_seen_ms)
         VALUES ($1, $2, $3, 0, $4, $5)
         ON CONFLICT (replica_id) DO UPDATE SET
           ack_cursor = GREATEST(vs_replicas.ack_cursor, excluded.ack_cursor),
           last_seen_ms = excluded.last_seen_ms`,
        [replicaId, replica.deviceId, replica.epoch, cursor, nowMs],
      )
    })
  }

  async digest(collection: string): Promise<string> {
    this.#assertOpen()
    assertCollectionName(collection)
    const { rows } = await this.#run(() =>
      this.#pool.query<{ digest: string }>(
        'SELECT digest FROM vs_collections WHERE name = $1',
        [collection],
      ),
    )
    const row = rows[0]
    if (row === undefined) throw unknownCollection(collection)
    return row.digest
  }

  async conflicts(options: ConflictQuery): Promise<ConflictRecord[]> {
    this.#assertOpen()
    if (typeof options !== 'object' || options === null) {
      throw invalidArgument('conflicts needs an options object with a limit')
    }
    const afterSeq = options.afterSeq ?? 0
    assertSeq(afterSeq, 'afterSeq')
    assertLimit(options.limit)
    let collectionId: number | null = null
    if (options.collection !== undefined) {
      assertCollectionName(options.collection)
      const entry = await this.#findCollection(options.collection)
      if (entry === undefined) throw unknownCollection(options.collection)
      collectionId = entry.collectionId
    }
    const { rows } = await this.#run(() =>
      this.#pool.query<ConflictRow>(
        `SELECT seq, collection_id, doc_id, ${versionColumns('winner_')}, ${versionColumns('loser_')}, resolved_at_ms
         FROM vs_conflicts
         WHERE seq > $1 AND ($2::int4 IS NULL OR collection_id = $2)
         ORDER BY seq LIMIT $3`,
        [afterSeq, collectionId, options.limit],
      ),
    )
    const records: ConflictRecord[] = []
    for (const row of rows) {
      const { schema } = await this.#collectionById(row.collection_id)
      records.push({
        seq: row.seq,
        collection: schema.name,
        id: row.doc_id,
        winner: versionFromRow(
          schema,
          row.doc_id,
          conflictVersionRow(row, 'winner_'),
        ),
        loser: versionFromRow(
          schema,
          row.doc_id,
          conflictVersionRow(row, 'loser_'),
        ),
        resolvedAtMs: row.resolved_at_ms,
      })
    }
    return records
  }

  async collectGarbage(
    options: GarbageCollectionOptions,
  ): Promise<GarbageCollectionResult> {
    this.#assertOpen()
    if (typeof options !== 'object' || options === null) {
      throw invalidArgument(
        'collectGarbage needs an options object with nowMs and retentionMs',
      )
    }
    const nowMs = timeMs(options.nowMs, this.#wallClock, 'nowMs')
    const { retentionMs } = options
    if (!Number.isSafeInteger(retentionMs) || retentionMs < 0) {
      throw invalidArgument(
        `retentionMs must be a non-negative integer, got ${describe(retentionMs)}`,
      )
    }
    const cutoffMs = nowMs - retentionMs
    return this.#transaction('BEGIN', async (client) => {
      // The push lock: a push must not re-store a tombstone while it is being removed.
      const head = await selectMeta(client, 'head', 'FOR UPDATE')
      // Replicas silent for longer than the retention window no longer hold tombstones
      // back: if they return with an old cursor, pull tells them to resync.
      const { rows: acks } = await client.query<{ min_ack: number | null }>(
        'SELECT min(ack_cursor) AS min_ack FROM vs_replicas WHERE last_seen_ms >= $1',
        [cutoffMs],
      )
      const safeThrough = acks[0]?.min_ack ?? head
      const { rows } = await client.query<{
        n: number
        max_seq: number | null
      }>(
        `WITH removed AS (
           DELETE FROM vs_documents
           WHERE deleted AND (seq <= $1 OR updated_at_ms < $2)
           RETURNING seq
         )
         SELECT count(*)::int4 AS n, max(seq) AS max_seq FROM removed`,
        [safeThrough, cutoffMs],
      )
      const removed = rows[0] ?? { n: 0, max_seq: null }
      let horizon = await selectMeta(client, 'horizon')
      if (removed.n > 0) {
        horizon = Math.max(horizon, removed.max_seq ?? 0)
        await client.query(
          "UPDATE vs_meta SET value = $1 WHERE key = 'horizon'",
          [horizon],
        )
      }
      return { removedTombstones: removed.n, horizon }
    })
  }

  async createDeviceToken(deviceId: string, tokenHash: string): Promise<void> {
    this.#assertOpen()
    assertDeviceId(deviceId)
    assertTokenHash(tokenHash)
    const nowMs = timeMs(undefined, this.#wallClock, 'nowMs')
    const { rowCount } = await this.#run(() =>
      this.#pool.query(
        `INSERT INTO vs_device_tokens (token_hash, device_id, created_at_ms, revoked)
         VALUES ($1, $2, $3, false) ON CONFLICT (token_hash) DO NOTHING`,
        [tokenHash, deviceId, nowMs],
      ),
    )
    if (rowCount === 0) {
      throw new VeloSyncError(
        'already_exists',
        'a device token with this hash is already registered; generate a new token',
      )
    }
  }

  async findDeviceByTokenHash(tokenHash: string): Promise<string | undefined> {
    this.#assertOpen()
    assertTokenHash(tokenHash)
    const { rows } = await this.#run(() =>
      this.#pool.query<{ device_id: string }>(
        'SELECT device_id FROM vs_device_tokens WHERE token_hash = $1 AND NOT revoked',
        [tokenHash],
      ),
    )
    return rows[0]?.device_id
  }

  async revokeDeviceTokens(deviceId: string): Promise<number> {
    this.#assertOpen()
    assertDeviceId(deviceId)
    const { rowCount } = await this.#run(() =>
      this.#pool.query(
        'UPDATE vs_device_tokens SET revoked = true WHERE device_id = $1 AND NOT revoked',
        [deviceId],
      ),
    )
    return rowCount ?? 0
  }

  async head(): Promise<Seq> {
    this.#assertOpen()
    return this.#run(() => selectMeta(this.#pool, 'head'))
  }

  async checkCursor(
    cursor: Seq,
    options: CheckCursorOptions = {},
  ): Promise<void> {
    this.#assertOpen()
    assertSeq(cursor, 'cursor')
    await this.#run(() =>
      assertCursor(this.#pool, cursor, options.pushedBefore),
    )
  }

  async replicaProgress(replica: ReplicaRef): Promise<ReplicaProgress> {
    this.#assertOpen()
    const replicaId = replicaIdOfRef(replica)
    const { rows } = await this.#run(() =>
      this.#pool.query<ReplicaProgress>(
        `SELECT applied_lsn AS "appliedLsn", ack_cursor AS "ackedCursor"
         FROM vs_replicas WHERE replica_id = $1`,
        [replicaId],
      ),
    )
    return rows[0] ?? { appliedLsn: 0, ackedCursor: 0 }
  }

  /** Closes every connection (waiting for queries in flight). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#pool.end()
  }

  /** Runs `work` in one transaction on one pooled connection; any error rolls back. */
  #transaction<T>(
    begin: string,
    work: (client: pg.PoolClient) => Promise<T>,
  ): Promise<T> {
    return this.#run(async () => {
      const client = await checkOut(this.#pool)
      let broken: Error | undefined
      try {
        await client.query(begin)
        const result = await work(client)
        await client.query('COMMIT')
        return result
      } catch (error) {
        try {
          await client.query('ROLLBACK')
        } catch (rollbackError) {
          // A connection that cannot roll back is not given to the next caller.
          broken = rollbackError as Error
        }
        throw error
      } finally {
        release(client, broken)
      }
    })
  }

  async #selectCollection(
    name: string,
  ): Promise<CollectionTableRow | undefined> {
    const { rows } = await this.#pool.query<CollectionTableRow>(
      'SELECT collection_id, name, dims, metric, dtype FROM vs_collections WHERE name = $1',
      [name],
    )
    return rows[0]
  }

  /** The collection from the cache, else from the database (another process may have made it). */
  async #findCollection(name: string): Promise<CollectionEntry | undefined> {
    const cached = this.#byName.get(name)
    if (cached !== undefined) return cached
    const row = await this.#run(() => this.#selectCollection(name))
    return row === undefined ? undefined : this.#remember(row)
  }

  async #collectionById(collectionId: number): Promise<CollectionEntry> {
    if (!this.#byId.has(collectionId)) {
      await this.#run(() => this.#loadCollections(this.#pool))
    }
    const entry = this.#byId.get(collectionId)
    if (entry === undefined) {
      throw new VeloSyncError(
        'internal',
        `a stored row refers to unknown collection id ${collectionId}`,
      )
    }
    return entry
  }

  async #loadCollections(db: Queryable): Promise<void> {
    const { rows } = await db.query<CollectionTableRow>(
      'SELECT collection_id, name, dims, metric, dtype FROM vs_collections ORDER BY collection_id',
    )
    for (const row of rows) this.#remember(row)
  }

  #remember(row: CollectionTableRow): CollectionEntry {
    const known = this.#byId.get(row.collection_id)
    if (known !== undefined) return known
    const entry: CollectionEntry = {
      schema: normalizeCollectionSchema(row),
      collectionId: row.collection_id,
    }
    this.#byName.set(entry.schema.name, entry)
    this.#byId.set(entry.collectionId, entry)
    return entry
  }

  /** Runs database work, turning driver errors into `storage_failure` (cause kept). */
  async #run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      if (isVeloSyncError(error)) throw error
      throw new VeloSyncError(
        'storage_failure',
        `PostgreSQL: ${(error as Error).message}`,
        { cause: error },
      )
    }
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new VeloSyncError('closed', 'this PostgresServerStore is closed')
    }
  }
}

/**
 * Writes a planned push, inside its transaction (see `ServerStore` S1–S4), and queues its
 * NOTIFY, which PostgreSQL sends at COMMIT (and drops on ROLLBACK).
 */
async function writePush(
  client: pg.PoolClient,
  replica: ReplicaRef,
  replicaId: ReplicaId,
  plan: PushPlan<CollectionEntry>,
  nowMs: number,
  /** The push's acceptance time under S13, to raise `accepted_ms` to; none without. */
  acceptedMs: number | undefined,
  notify: { readonly channel: string; readonly payload: string } | undefined,
): Promise<void> {
  // One row per document: a later write of the same document in this push replaces an
  // earlier one (its seq stays handed out, as on SQLite, where the upsert moves the row).
  const last = new Map<string, DocumentWrite<CollectionEntry>>()
  for (const write of plan.writes) {
    last.set(
      documentKey(write.collection.collectionId, write.version.id),
      write,
    )
  }
  await insertRows(
    client,
    `INSERT INTO vs_documents
       (seq, collection_id, id, ${versionColumns()}, hash, unchanged_from, updated_at_ms,
        effective_wall_ms)`,
    [...last.values()].map((write) => [
      write.seq,
      write.collection.collectionId,
      write.version.id,
      ...versionParams(write.version),
      write.hash === null ? null : toBuffer(write.hash),
      write.unchangedFrom,
      nowMs,
      write.effectiveMs,
    ]),
    `ON CONFLICT (collection_id, id) DO UPDATE SET
       seq = excluded.seq, deleted = excluded.deleted, vector = excluded.vector,
       metadata = excluded.metadata, version_vector = excluded.version_vector,
       hlc_wall = excluded.hlc_wall, hlc_counter = excluded.hlc_counter,
       origin = excluded.origin, hash = excluded.hash,
       unchanged_from = excluded.unchanged_from, updated_at_ms = excluded.updated_at_ms,
       effective_wall_ms = excluded.effective_wall_ms`,
  )
  await insertRows(
    client,
    `INSERT INTO vs_conflicts
       (seq, collection_id, doc_id, ${versionColumns('winner_')}, ${versionColumns('loser_')}, resolved_at_ms)`,
    plan.writes.flatMap((write) =>
      write.loser === undefined
        ? []
        : [
            [
              write.seq,
              write.collection.collectionId,
              write.version.id,
              ...versionParams(write.version),
              ...versionParams(write.loser),
              nowMs,
            ],
          ],
    ),
  )
  // The rest in one statement: every round trip here is time the push lock is held. Its
  // parts touch different rows (the pruned op hashes are all below this push's LSNs).
  const digests = [...plan.digests]
  await client.query(
    `WITH replica AS (
       INSERT INTO vs_replicas
         (replica_id, device_id, epoch, applied_lsn, last_push_first_lsn, ack_cursor, last_seen_ms)
       VALUES ($1, $2, $3, $4, $15, 0, $5)
       ON CONFLICT (replica_id) DO UPDATE SET
         applied_lsn = excluded.applied_lsn,
         last_push_first_lsn = excluded.last_push_first_lsn,
         last_seen_ms = excluded.last_seen_ms
     ), pruned AS (
       DELETE FROM vs_replica_ops WHERE replica_id = $1 AND lsn < $6
     ), op_hashes AS (
       INSERT INTO vs_replica_ops (replica_id, lsn, op_hash)
       SELECT $1, o.lsn, o.op_hash FROM unnest($7::int8[], $8::bytea[]) AS o (lsn, op_hash)
     ), head AS (
       UPDATE vs_meta SET value = $9 WHERE key = 'head'
     ), digests AS (
       UPDATE vs_collections AS c SET digest = d.digest
       FROM unnest($10::int4[], $11::text[]) AS d (collection_id, digest)
       WHERE c.collection_id = d.collection_id
     ), accepted AS (
       UPDATE vs_meta SET value = GREATEST(value, $14::int8)
       WHERE key = 'accepted_ms' AND $14::int8 IS NOT NULL
     )
     SELECT pg_notify($12, $13) WHERE $13::text IS NOT NULL`,
    [
      replicaId,
      replica.deviceId,
      replica.epoch,
      plan.appliedThroughLsn,
      nowMs,
      plan.forgetBelowLsn ?? null,
      plan.opHashes.map(({ lsn }) => lsn),
      plan.opHashes.map(({ opHash }) => toBuffer(opHash)),
      plan.head,
      digests.map(([entry]) => entry.collectionId),
      digests.map(([, digest]) => digest),
      notify?.channel ?? null,
      notify?.payload ?? null,
      acceptedMs ?? null,
      plan.firstLsn,
    ],
  )
}

/** Multi-row `INSERT … VALUES (…), (…)` in chunks; nothing for no rows. */
async function insertRows(
  client: pg.PoolClient,
  head: string,
  rows: readonly unknown[][],
  tail = '',
): Promise<void> {
  for (let start = 0; start < rows.length; start += INSERT_CHUNK_ROWS) {
    const chunk = rows.slice(start, start + INSERT_CHUNK_ROWS)
    const values: unknown[] = []
    const tuples = chunk.map((row) => {
      const slots = row.map((value) => {
        values.push(value)
        return `$${values.length}`
      })
      return `(${slots.join(', ')})`
    })
    await client.query(`${head} VALUES ${tuples.join(', ')} ${tail}`, values)
  }
}

async function selectMeta(
  db: Queryable,
  key: 'head' | 'horizon',
  lock = '',
): Promise<number> {
  const { rows } = await db.query<{ value: number }>(
    `SELECT value FROM vs_meta WHERE key = $1 ${lock}`,
    [key],
  )
  return rows[0]?.value ?? 0
}

/** S6: throws `resync_required` when a pull from `cursor` could miss changes. */
async function assertCursor(
  db: Queryable,
  cursor: Seq,
  pushedBefore?: boolean,
): Promise<void> {
  const { rows } = await db.query<{ key: string; value: number }>(
    "SELECT key, value FROM vs_meta WHERE key IN ('head', 'horizon')",
  )
  const meta = new Map(rows.map((row) => [row.key, row.value]))
  const error = staleCursorError(
    cursor,
    meta.get('head') ?? 0,
    meta.get('horizon') ?? 0,
    pushedBefore,
  )
  if (error !== undefined) throw error
}

/**
 * Creates the schema if needed and applies pending migrations, each in its own transaction
 * with the row that records it in `vs_schema_migrations`. An advisory lock makes processes
 * that start together take turns, so each migration runs once.
 */
async function migrate(pool: pg.Pool, schema: string): Promise<void> {
  const client = await checkOut(pool)
  try {
    await client.query('BEGIN')
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [
      `velosync-migrations:${schema}`,
    ])
    // Inside the lock: concurrent CREATE SCHEMA IF NOT EXISTS can fail on a unique index.
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
    await client.query(`CREATE TABLE IF NOT EXISTS vs_schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`)
    const { rows } = await client.query<{ version: number }>(
      'SELECT coalesce(max(version), 0) AS version FROM vs_schema_migrations',
    )
    const applied = rows[0]?.version ?? 0
    if (applied > POSTGRES_SCHEMA_VERSION) {
      throw new VeloSyncError(
        'storage_failure',
        `the PostgreSQL schema ${schema} is at version ${applied}, newer than this VeloSync (${POSTGRES_SCHEMA_VERSION}); upgrade VeloSync`,
      )
    }
    for (const migration of MIGRATIONS) {
      if (migration.version <= applied) continue
      await client.query(migration.sql)
      await client.query(
        'INSERT INTO vs_schema_migrations (version, name) VALUES ($1, $2)',
        [migration.version, migration.name],
      )
    }
    await client.query('COMMIT')
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined)
    throw error
  } finally {
    release(client)
  }
}

/**
 * A pooled connection with an error listener for as long as it is checked out: pg emits a
 * connection lost between two queries as an `error` event, which would otherwise crash the
 * process; the next query on it fails instead, and the caller handles that.
 */
async function checkOut(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect()
  client.on('error', ignoreClientError)
  return client
}

function release(client: pg.PoolClient, broken?: Error): void {
  client.off('error', ignoreClientError)
  client.release(broken)
}

function ignoreClientError(): void {
  // Reported by the failing query (see checkOut).
}

type Settings = Required<PostgresServerStoreOptions>

/** What every connection of a store shares, its pool's and a LISTEN connection. */
function clientConfig(settings: Settings): pg.ClientConfig {
  return {
    connectionString: settings.url,
    connectionTimeoutMillis: settings.connectionTimeoutMs,
    application_name: settings.applicationName,
    // Unqualified names resolve in our schema, so every statement reads as in SQLite.
    options: `-c search_path=${settings.schema}`,
    types: { getTypeParser },
  }
}

function checkOptions(options: PostgresServerStoreOptions): Settings {
  if (typeof options !== 'object' || options === null) {
    throw invalidArgument(
      'PostgresServerStore.open needs an options object with a url',
    )
  }
  const url: unknown = options.url
  if (typeof url !== 'string' || !PG_URL.test(url)) {
    throw invalidArgument(
      `url must be a postgres:// or postgresql:// connection URL, got ${describe(typeof url === 'string' ? redact(url) : url)}`,
    )
  }
  try {
    new URL(url)
  } catch {
    throw invalidArgument(
      `url ${describe(redact(url))} is not a valid URL (percent-encode special characters in the user name and password)`,
    )
  }
  const schema = options.schema ?? POSTGRES_STORE_DEFAULTS.schema
  if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema)) {
    throw invalidArgument(
      `schema must match ${SCHEMA_NAME.source}, got ${describe(schema)}`,
    )
  }
  const integer = (
    name: keyof typeof POSTGRES_STORE_DEFAULTS,
    min: number,
    max: number,
  ): number => {
    const value: unknown = options[name] ?? POSTGRES_STORE_DEFAULTS[name]
    if (
      !Number.isSafeInteger(value) ||
      (value as number) < min ||
      (value as number) > max
    ) {
      throw invalidArgument(
        `${name} must be an integer from ${min} to ${max}, got ${describe(value)}`,
      )
    }
    return value as number
  }
  const applicationName =
    options.applicationName ?? POSTGRES_STORE_DEFAULTS.applicationName
  if (typeof applicationName !== 'string' || applicationName.length > 63) {
    throw invalidArgument(
      `applicationName must be a string of at most 63 characters, got ${describe(applicationName)}`,
    )
  }
  const wallClock = options.wallClock ?? Date.now
  if (typeof wallClock !== 'function') {
    throw invalidArgument(
      `wallClock must be a function, got ${describe(wallClock)}`,
    )
  }
  return {
    url,
    schema,
    poolSize: integer('poolSize', 1, MAX_POOL_SIZE),
    statementTimeoutMs: integer('statementTimeoutMs', 0, 2_147_483_647),
    connectionTimeoutMs: integer('connectionTimeoutMs', 0, 2_147_483_647),
    idleTimeoutMs: integer('idleTimeoutMs', 0, 2_147_483_647),
    applicationName,
    wallClock,
  }
}

/** The URL without its password, for error messages. */
function redact(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@')
  }
}

/** pg's type parsers, but `int8` becomes a number (checked safe) instead of a string. */
const getTypeParser = ((oid: number, format?: 'text' | 'binary') =>
  oid === INT8_OID && format !== 'binary'
    ? parseInt8
    : (pg.types.getTypeParser(oid, format) as (
        value: string,
      ) => unknown)) as typeof pg.types.getTypeParser

function parseInt8(text: string): number {
  const value = Number(text)
  if (!Number.isSafeInteger(value)) {
    throw new VeloSyncError(
      'internal',
      `PostgreSQL returned the integer ${text}, beyond JavaScript's safe range`,
    )
  }
  return value
}

function documentKey(collectionId: number, id: string): string {
  return `${collectionId}\u0000${id}`
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** The parameters for {@link versionColumns}, in the same order. */
function versionParams(
  version: DocumentVersion,
): [boolean, Buffer | null, string | null, string, number, number, string] {
  return [
    version.deleted,
    version.vector === null ? null : toBuffer(vectorToBytes(version.vector)),
    version.metadataJson,
    versionVectorToJson(version.versionVector),
    version.hlc.wallMs,
    version.hlc.counter,
    version.origin,
  ]
}
