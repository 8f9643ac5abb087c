import { hash } from 'node:crypto'
import Database from 'better-sqlite3'
import {
  EMPTY_COLLECTION_DIGEST,
  VERSION_FIELDS,
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
  storeKindOf,
  normalizeCollectionSchema,
  RowBatch,
  planPush,
  pullPageEnd,
  pullResult,
  preparePush,
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
  type GarbageCollectionOptions,
  type GarbageCollectionResult,
  type PreparedOp,
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

/** Options of {@link SqliteServerStore.open}. */
export interface SqliteServerStoreOptions {
  /** Path of the SQLite file (created if missing), or `':memory:'` for a throwaway store. */
  readonly path: string
  /**
   * SQLite `synchronous` setting. Default `'full'`: a push that returned survives a power
   * loss, which is what lets a device drop its outbox entries. `'normal'` survives a crash
   * of the process but may lose the last pushes on power loss.
   */
  readonly synchronous?: 'full' | 'normal'
  /** Milliseconds to wait when another connection holds the write lock. Default 5000. */
  readonly busyTimeoutMs?: number
  /** Source of wall-clock milliseconds when a call passes no time. Default `Date.now`. */
  readonly wallClock?: () => number
}

/** SQLite's own checkpoint threshold, a backstop: 16384 pages of 8 KiB = 128 MiB of WAL. */
const WAL_AUTOCHECKPOINT_PAGES = 16_384
/** Quiet time after the last push before the WAL is checkpointed. */
const CHECKPOINT_DELAY_MS = 1000

const sha256: Sha256 = (data) => hash('sha256', data, 'buffer')

/**
 * On-disk layout. Every table carries the `vs_` prefix so the store can share a file.
 *
 * ```
 * vs_meta          key → integer: head (last seq handed out), horizon (highest collected
 *                  tombstone seq)
 * vs_collections   schema + running digest (64 hex)
 * vs_documents     the newest version of each (collection, id); seq is the rowid, so the
 *                  table read in rowid order IS the change log, and re-storing a document
 *                  moves its row to the new seq. unchanged_from = the replica whose push
 *                  was stored exactly as pushed (echo suppression); hash = SHA-256 of the
 *                  canonical encoding (NULL for tombstones, which are not in the digest)
 * vs_replicas      per (device, epoch): applied LSN, first LSN of its latest push, acked
 *                  cursor, last seen
 * vs_replica_ops   (replica, lsn) → hash of the op accepted under that LSN (replays)
 * vs_conflicts     one row per resolved conflict: winner (as stored) and loser (as it was)
 * vs_device_tokens token hash → device, revoked flag
 * vs_schema_migrations  one row per applied migration (version, name, when)
 * ```
 */
const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
  CREATE TABLE vs_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  ) STRICT;
  INSERT INTO vs_meta (key, value) VALUES ('head', 0), ('horizon', 0);
  CREATE TABLE vs_collections (
    collection_id INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    dims          INTEGER NOT NULL,
    metric        TEXT NOT NULL,
    dtype         TEXT NOT NULL,
    digest        TEXT NOT NULL
  ) STRICT;
  CREATE TABLE vs_documents (
    seq            INTEGER PRIMARY KEY,
    collection_id  INTEGER NOT NULL REFERENCES vs_collections (collection_id),
    id             TEXT NOT NULL,
    deleted        INTEGER NOT NULL,
    vector         BLOB,
    metadata       TEXT,
    version_vector TEXT NOT NULL,
    hlc_wall       INTEGER NOT NULL,
    hlc_counter    INTEGER NOT NULL,
    origin         TEXT NOT NULL,
    hash           BLOB,
    unchanged_from TEXT,
    updated_at_ms  INTEGER NOT NULL,
    UNIQUE (collection_id, id)
  ) STRICT;
  CREATE INDEX vs_documents_tombstones ON vs_documents (updated_at_ms) WHERE deleted = 1;
  CREATE TABLE vs_replicas (
    replica_id   TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL,
    epoch        TEXT NOT NULL,
    applied_lsn  INTEGER NOT NULL,
    ack_cursor   INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE vs_replica_ops (
    replica_id TEXT NOT NULL,
    lsn        INTEGER NOT NULL,
    op_hash    BLOB NOT NULL,
    PRIMARY KEY (replica_id, lsn)
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE vs_conflicts (
    seq                   INTEGER PRIMARY KEY,
    collection_id         INTEGER NOT NULL REFERENCES vs_collections (collection_id),
    doc_id                TEXT NOT NULL,
    winner_deleted        INTEGER NOT NULL,
    winner_vector         BLOB,
    winner_metadata       TEXT,
    winner_version_vector TEXT NOT NULL,
    winner_hlc_wall       INTEGER NOT NULL,
    winner_hlc_counter    INTEGER NOT NULL,
    winner_origin         TEXT NOT NULL,
    loser_deleted         INTEGER NOT NULL,
    loser_vector          BLOB,
    loser_metadata        TEXT,
    loser_version_vector  TEXT NOT NULL,
    loser_hlc_wall        INTEGER NOT NULL,
    loser_hlc_counter     INTEGER NOT NULL,
    loser_origin          TEXT NOT NULL,
    resolved_at_ms        INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX vs_conflicts_collection ON vs_conflicts (collection_id, seq);
  CREATE TABLE vs_device_tokens (
    token_hash    TEXT PRIMARY KEY,
    device_id     TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked       INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX vs_device_tokens_device ON vs_device_tokens (device_id);
  `,
  },
  {
    version: 2,
    name: 'effective wall time of stored versions (S13)',
    // NULL: the version competes with its HLC wall time (stored without a clock bound).
    sql: 'ALTER TABLE vs_documents ADD COLUMN effective_wall_ms INTEGER;',
  },
  {
    version: 3,
    name: 'latest acceptance time, never going back (S13)',
    sql: "INSERT INTO vs_meta (key, value) VALUES ('accepted_ms', 0);",
  },
  {
    version: 4,
    name: "first LSN of each replica's latest push: op hashes kept two pushes (S2)",
    // 0: nothing is known about the push before, so the next push forgets nothing.
    sql: 'ALTER TABLE vs_replicas ADD COLUMN last_push_first_lsn INTEGER NOT NULL DEFAULT 0;',
  },
]

/** The schema version this code writes; newer files are refused rather than misread. */
export const SERVER_SCHEMA_VERSION = MIGRATIONS.length

/** One step of the schema; versions are 1, 2, 3, … and never change once released. */
interface Migration {
  readonly version: number
  readonly name: string
  readonly sql: string
}

interface DocumentRow extends VersionRow {
  seq: number
  hash: Uint8Array | null
  effective_wall_ms: number | null
}

interface PulledRow extends VersionRow {
  seq: number
  collection_id: number
  id: string
}

interface CollectionEntry {
  readonly schema: CollectionSchema
  readonly collectionId: number
}

/**
 * The {@link ServerStore} on one SQLite file (better-sqlite3): the embedded default master
 * store of the sync server.
 *
 * @remarks
 * Every method runs one synchronous SQLite transaction (no `await` inside it), so a push
 * is atomic and the write lock serializes pushes: seqs are handed out in commit order and
 * no reader can see seq n+1 before seq n. WAL journal mode lets pulls read while a push
 * writes. Driver errors are rethrown as `storage_failure` with the original as `cause`.
 * See {@link ServerStore} for the numbered guarantees, which the conformance suite tests.
 *
 * @example
 * ```ts
 * const store = SqliteServerStore.open({ path: 'server.db' })
 * await store.ensureCollection({ name: 'notes', dims: 384, metric: 'cosine', dtype: 'float32' })
 * const { results } = await store.push({ deviceId: 'laptop', epoch }, ops)
 * await store.close()
 * ```
 */
export class SqliteServerStore implements ServerStore {
  readonly #db: Database.Database
  readonly #wallClock: () => number
  readonly #statements: ReturnType<typeof prepareStatements>
  readonly #byName = new Map<string, CollectionEntry>()
  readonly #byId = new Map<number, CollectionEntry>()
  #closed = false
  #checkpointTimer: ReturnType<typeof setTimeout> | undefined
  /** A push's document rows and op hashes, written 128 rows per statement. */
  readonly #documentRows: RowBatch
  readonly #opHashRows: RowBatch

  private constructor(db: Database.Database, wallClock: () => number) {
    this.#db = db
    this.#wallClock = wallClock
    this.#statements = prepareStatements(db)
    this.#documentRows = new RowBatch(
      db,
      `INSERT INTO vs_documents (seq, collection_id, id, ${versionColumns()}, hash,
         unchanged_from, updated_at_ms, effective_wall_ms)`,
      14,
      UPSERT_DOCUMENT_TAIL,
    )
    this.#opHashRows = new RowBatch(
      db,
      'INSERT INTO vs_replica_ops (replica_id, lsn, op_hash)',
      3,
    )
    this.#loadCollections()
  }

  /**
   * Opens (or creates) a store file and brings its schema up to date.
   *
   * @throws `invalid_argument` for bad options; `storage_failure` when SQLite cannot open
   *   or migrate the file (or it was written by a newer VeloSync).
   */
  static open(options: SqliteServerStoreOptions): SqliteServerStore {
    if (typeof options !== 'object' || options === null) {
      throw invalidArgument(
        'SqliteServerStore.open needs an options object with a path',
      )
    }
    if (typeof options.path !== 'string' || options.path.length === 0) {
      throw invalidArgument(
        `path must be a non-empty string, got ${describe(options.path)}`,
      )
    }
    const synchronous = options.synchronous ?? 'full'
    if (synchronous !== 'full' && synchronous !== 'normal') {
      throw invalidArgument(
        `synchronous must be 'full' or 'normal', got ${describe(synchronous)}`,
      )
    }
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw invalidArgument(
        `busyTimeoutMs must be a non-negative integer, got ${describe(busyTimeoutMs)}`,
      )
    }
    let db: Database.Database | undefined
    try {
      db = new Database(options.path)
      // Before anything writes to it (even the WAL switch changes its header).
      const kind = storeKindOf(db)
      if (kind === 'device' || kind === 'foreign') {
        throw invalidArgument(
          kind === 'device'
            ? `${options.path} is a VeloSync device store, not a server store`
            : `${options.path} holds tables of something else and no VeloSync server store; give a new file (it is left unchanged)`,
        )
      }
      // 8 KiB pages hold a 384-d float32 document (~2 KB) in fewer pages; new files only.
      db.pragma('page_size = 8192')
      db.pragma('journal_mode = WAL')
      db.pragma(`synchronous = ${synchronous}`)
      db.pragma(`busy_timeout = ${busyTimeoutMs}`)
      // 64 MiB of page cache: a 1000-document push (~2 MB of rows and index pages) then
      // stays in memory until commit instead of spilling pages mid-transaction.
      db.pragma('cache_size = -65536')
      // Checkpoints run on an idle timer after pushes (#scheduleCheckpoint) instead of inside
      // the commit that crosses SQLite's threshold: measured +15% push throughput. SQLite's
      // own auto-checkpoint stays as a backstop for a server that never goes idle.
      db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`)
      db.pragma('foreign_keys = ON')
      migrate(db)
      return new SqliteServerStore(db, options.wallClock ?? Date.now)
    } catch (error) {
      db?.close()
      if (isVeloSyncError(error)) throw error
      throw new VeloSyncError(
        'storage_failure',
        `cannot open server store ${options.path}: ${(error as Error).message}`,
        { cause: error },
      )
    }
  }

  ensureCollection(input: CollectionSchema): Promise<CollectionSchema> {
    return settle(() => {
      this.#assertOpen()
      const schema = normalizeCollectionSchema(input)
      const row = this.#run(() =>
        this.#db
          .transaction((): CollectionTableRow => {
            const existing = this.#statements.selectCollectionByName.get(
              schema.name,
            ) as CollectionTableRow | undefined
            if (existing !== undefined) return existing
            const { lastInsertRowid } = this.#statements.insertCollection.run(
              schema.name,
              schema.dims,
              schema.metric,
              schema.dtype,
              EMPTY_COLLECTION_DIGEST,
            )
            return { collection_id: Number(lastInsertRowid), ...schema }
          })
          .immediate(),
      )
      // Cached only after the commit, so a rolled-back insert leaves no phantom entry.
      const current = this.#remember(row).schema
      const mismatch = collectionMismatch(current, schema)
      if (mismatch !== undefined) throw mismatch
      return current
    })
  }

  getCollection(name: string): Promise<CollectionSchema | undefined> {
    return settle(() => {
      this.#assertOpen()
      assertCollectionName(name)
      return this.#findCollection(name)?.schema
    })
  }

  listCollections(): Promise<CollectionSchema[]> {
    return settle(() => {
      this.#assertOpen()
      this.#run(() => this.#loadCollections())
      return [...this.#byName.values()]
        .map((entry) => entry.schema)
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    })
  }

  push(
    replica: ReplicaRef,
    ops: readonly PushOp[],
    options: PushOptions = {},
  ): Promise<PushResult> {
    return settle(() => {
      this.#assertOpen()
      const replicaId = replicaIdOfRef(replica)
      if (typeof options !== 'object' || options === null) {
        throw invalidArgument(
          `push options must be an object, got ${describe(options)}`,
        )
      }
      const nowMs = this.#now(options.nowMs, 'nowMs')
      const clock = pushClockOf(options.maxClockLeadMs, nowMs)
      const resolver = options.resolver
      if (resolver !== undefined && typeof resolver !== 'function') {
        throw invalidArgument(
          `resolver must be a function, got ${describe(resolver)}`,
        )
      }
      const prepared = preparePush(
        replicaId,
        ops,
        (name) => this.#findCollection(name),
        sha256,
      )
      const result = this.#run(() =>
        this.#db
          .transaction((): PushResult => {
            const s = this.#statements
            const acceptedClock = monotonePushClock(
              clock,
              this.#meta('accepted_ms'),
            )
            const stored = this.#storedDocuments(prepared)
            const progress = s.selectPushProgress.get(replicaId) as
              { appliedLsn: number; lastPushFirstLsn: number } | undefined
            const plan = planPush(
              replicaId,
              prepared,
              {
                appliedLsn: progress?.appliedLsn ?? 0,
                lastPushFirstLsn: progress?.lastPushFirstLsn ?? 0,
                head: this.#meta('head'),
                storedDocument: (collection, id) =>
                  stored.get(collection)?.get(id),
                recordedOpHash: (lsn) =>
                  s.selectOpHash.pluck().get(replicaId, lsn) as
                    Uint8Array | undefined,
                digest: (collection) =>
                  s.selectDigestById
                    .pluck()
                    .get(collection.collectionId) as string,
              },
              resolver,
              sha256,
              acceptedClock,
            )
            this.#writePush(replica, replicaId, plan, nowMs)
            if (acceptedClock !== undefined)
              s.raiseMeta.run(acceptedClock.nowMs, 'accepted_ms')
            return {
              results: plan.results,
              appliedThroughLsn: plan.appliedThroughLsn,
              head: plan.head,
            }
          })
          .immediate(),
      )
      this.#scheduleCheckpoint()
      return result
    })
  }

  pull(
    replica: ReplicaRef,
    cursor: Seq,
    limit: number,
    options: PullOptions = {},
  ): Promise<PullResult> {
    return settle(() => {
      this.#assertOpen()
      const replicaId = replicaIdOfRef(replica)
      const includeEchoes = options.includeEchoes === true
      assertSeq(cursor, 'cursor')
      assertLimit(limit)
      return this.#run(() =>
        this.#db
          .transaction((): PullResult => {
            this.#assertCursor(cursor)
            const s = this.#statements
            // Echoes are filtered by SQLite, not walked row by row here: a push exchange
            // pulls right after writing its own batch, all of it echoes (S5).
            const echoOf = includeEchoes ? null : replicaId
            const versions = (
              s.selectAfter.all({
                cursor,
                replica: echoOf,
                limit,
              }) as PulledRow[]
            ).map((row) => {
              const { schema } = this.#collectionById(row.collection_id)
              return {
                seq: row.seq,
                collection: schema.name,
                version: versionFromRow(schema, row.id, row),
              }
            })
            const tail = s.selectPullTail.get({
              after: pullPageEnd(versions, cursor),
              cursor,
              replica: echoOf,
            }) as PullTail
            return pullResult(versions, cursor, tail)
          })
          .deferred(),
      )
    })
  }

  ack(replica: ReplicaRef, cursor: Seq): Promise<void> {
    return settle(() => {
      this.#assertOpen()
      const replicaId = replicaIdOfRef(replica)
      assertSeq(cursor, 'cursor')
      const nowMs = this.#now(undefined, 'nowMs')
      this.#run(() =>
        this.#db
          .transaction(() => {
            const head = this.#meta('head')
            if (cursor > head) {
              throw invalidArgument(
                `cursor ${cursor} is ahead of the server's head ${head}; a device can only acknowledge what it pulled`,
              )
            }
            this.#statements.upsertAck.run(
              replicaId,
              replica.deviceId,
              replica.epoch,
              cursor,
              nowMs,
            )
          })
          .immediate(),
      )
    })
  }

  digest(collection: string): Promise<string> {
    return settle(() => {
      this.#assertOpen()
      assertCollectionName(collection)
      const row = this.#run(
        () =>
          this.#statements.selectDigest.get(collection) as
            { digest: string } | undefined,
      )
      if (row === undefined) throw unknownCollection(collection)
      return row.digest
    })
  }

  conflicts(options: ConflictQuery): Promise<ConflictRecord[]> {
    return settle(() => {
      this.#assertOpen()
      if (typeof options !== 'object' || options === null) {
        throw invalidArgument('conflicts needs an options object with a limit')
      }
      const afterSeq = options.afterSeq ?? 0
      assertSeq(afterSeq, 'afterSeq')
      assertLimit(options.limit)
      let rows: ConflictRow[]
      if (options.collection === undefined) {
        rows = this.#run(
          () =>
            this.#statements.selectConflicts.all(
              afterSeq,
              options.limit,
            ) as ConflictRow[],
        )
      } else {
        assertCollectionName(options.collection)
        const entry = this.#findCollection(options.collection)
        if (entry === undefined) throw unknownCollection(options.collection)
        rows = this.#run(
          () =>
            this.#statements.selectCollectionConflicts.all(
              entry.collectionId,
              afterSeq,
              options.limit,
            ) as ConflictRow[],
        )
      }
      return rows.map((row) => {
        const { schema } = this.#collectionById(row.collection_id)
        return {
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
        }
      })
    })
  }

  collectGarbage(
    options: GarbageCollectionOptions,
  ): Promise<GarbageCollectionResult> {
    return settle(() => {
      this.#assertOpen()
      if (typeof options !== 'object' || options === null) {
        throw invalidArgument(
          'collectGarbage needs an options object with nowMs and retentionMs',
        )
      }
      const nowMs = this.#now(options.nowMs, 'nowMs')
      const { retentionMs } = options
      if (!Number.isSafeInteger(retentionMs) || retentionMs < 0) {
        throw invalidArgument(
          `retentionMs must be a non-negative integer, got ${describe(retentionMs)}`,
        )
      }
      const cutoffMs = nowMs - retentionMs
      return this.#run(() =>
        this.#db
          .transaction((): GarbageCollectionResult => {
            const head = this.#meta('head')
            // Replicas silent for longer than the retention window no longer hold tombstones
            // back: if they return with an old cursor, pull tells them to resync.
            const { minAck } = this.#statements.selectMinActiveAck.get(
              cutoffMs,
            ) as { minAck: number | null }
            const safeThrough = minAck ?? head
            const removed = this.#statements.selectCollectableTombstones.get({
              safeThrough,
              cutoffMs,
            }) as { n: number; maxSeq: number | null }
            let horizon = this.#meta('horizon')
            if (removed.n > 0) {
              this.#statements.deleteCollectableTombstones.run({
                safeThrough,
                cutoffMs,
              })
              horizon = Math.max(horizon, removed.maxSeq ?? 0)
              this.#statements.setMeta.run(horizon, 'horizon')
            }
            return { removedTombstones: removed.n, horizon }
          })
          .immediate(),
      )
    })
  }

  createDeviceToken(deviceId: string, tokenHash: string): Promise<void> {
    return settle(() => {
      this.#assertOpen()
      assertDeviceId(deviceId)
      assertTokenHash(tokenHash)
      const nowMs = this.#now(undefined, 'nowMs')
      this.#run(() => {
        const { changes } = this.#statements.insertToken.run(
          tokenHash,
          deviceId,
          nowMs,
        )
        if (changes === 0) {
          throw new VeloSyncError(
            'already_exists',
            'a device token with this hash is already registered; generate a new token',
          )
        }
      })
    })
  }

  findDeviceByTokenHash(tokenHash: string): Promise<string | undefined> {
    return settle(() => {
      this.#assertOpen()
      assertTokenHash(tokenHash)
      return this.#run(
        () =>
          this.#statements.selectTokenDevice.pluck().get(tokenHash) as
            string | undefined,
      )
    })
  }

  revokeDeviceTokens(deviceId: string): Promise<number> {
    return settle(() => {
      this.#assertOpen()
      assertDeviceId(deviceId)
      return this.#run(
        () => this.#statements.revokeTokens.run(deviceId).changes,
      )
    })
  }

  head(): Promise<Seq> {
    return settle(() => {
      this.#assertOpen()
      return this.#run(() => this.#meta('head'))
    })
  }

  checkCursor(cursor: Seq, options: CheckCursorOptions = {}): Promise<void> {
    return settle(() => {
      this.#assertOpen()
      assertSeq(cursor, 'cursor')
      this.#run(() => this.#assertCursor(cursor, options.pushedBefore))
    })
  }

  /** S6: throws `resync_required` when a pull from `cursor` could miss changes. */
  #assertCursor(cursor: Seq, pushedBefore?: boolean): void {
    const error = staleCursorError(
      cursor,
      this.#meta('head'),
      this.#meta('horizon'),
      pushedBefore,
    )
    if (error !== undefined) throw error
  }

  replicaProgress(replica: ReplicaRef): Promise<ReplicaProgress> {
    return settle(() => {
      this.#assertOpen()
      const replicaId = replicaIdOfRef(replica)
      return this.#run(() => this.#replicaProgress(replicaId))
    })
  }

  /** Closes the file. Further calls throw `closed`. Idempotent. */
  close(): Promise<void> {
    return settle(() => {
      if (this.#closed) return
      this.#closed = true
      clearTimeout(this.#checkpointTimer)
      this.#db.close()
    })
  }

  /**
   * (Re)arms the idle checkpoint. A failed PASSIVE checkpoint loses nothing (the WAL keeps
   * every frame) and the next one retries, so it is not reported as a push failure.
   */
  #scheduleCheckpoint(): void {
    clearTimeout(this.#checkpointTimer)
    this.#checkpointTimer = setTimeout(() => {
      this.#checkpointTimer = undefined
      if (this.#closed) return
      try {
        this.#db.pragma('wal_checkpoint(PASSIVE)')
      } catch (error) {
        process.emitWarning(
          `VeloSync server store: idle WAL checkpoint failed: ${(error as Error).message}`,
        )
      }
    }, CHECKPOINT_DELAY_MS)
    this.#checkpointTimer.unref()
  }

  #replicaProgress(replicaId: ReplicaId): ReplicaProgress {
    const row = this.#statements.selectReplicaProgress.get(replicaId) as
      ReplicaProgress | undefined
    return row ?? { appliedLsn: 0, ackedCursor: 0 }
  }

  /**
   * The stored documents a push touches, by collection and id: one query per collection
   * (ids passed as a JSON array) instead of one per op.
   */
  #storedDocuments(
    ops: readonly PreparedOp<CollectionEntry>[],
  ): Map<CollectionEntry, Map<string, StoredDocument>> {
    const ids = new Map<CollectionEntry, string[]>()
    for (const { collection, version } of ops) {
      let list = ids.get(collection)
      if (list === undefined) ids.set(collection, (list = []))
      list.push(version.id)
    }
    const stored = new Map<CollectionEntry, Map<string, StoredDocument>>()
    for (const [collection, list] of ids) {
      const documents = new Map<string, StoredDocument>()
      for (const row of this.#statements.selectDocuments.all(
        collection.collectionId,
        JSON.stringify(list),
      ) as Array<DocumentRow & { id: string }>) {
        documents.set(row.id, {
          version: versionFromRow(collection.schema, row.id, row),
          hash: row.hash,
          effectiveMs: row.effective_wall_ms,
        })
      }
      stored.set(collection, documents)
    }
    return stored
  }

  /** Writes a planned push, inside its transaction (see `ServerStore` S1–S4). */
  #writePush(
    replica: ReplicaRef,
    replicaId: ReplicaId,
    plan: PushPlan<CollectionEntry>,
    nowMs: number,
  ): void {
    const s = this.#statements
    // Queued rows of a push that threw midway were rolled back with it.
    this.#opHashRows.clear()
    this.#documentRows.clear()
    for (const { lsn, opHash } of plan.opHashes) {
      this.#opHashRows.add(replicaId, lsn, opHash)
    }
    this.#opHashRows.flush()
    for (const write of plan.writes) {
      const { collectionId } = write.collection
      // The document moves to its new seq (seq is the rowid): the row is re-filed in
      // change-log order.
      this.#documentRows.add(
        write.seq,
        collectionId,
        write.version.id,
        ...versionParams(write.version),
        write.hash,
        write.unchangedFrom,
        nowMs,
        write.effectiveMs,
      )
      if (write.loser !== undefined) {
        s.insertConflict.run(
          write.seq,
          collectionId,
          write.version.id,
          ...versionParams(write.version),
          ...versionParams(write.loser),
          nowMs,
        )
      }
    }
    this.#documentRows.flush()
    s.upsertPushedReplica.run(
      replicaId,
      replica.deviceId,
      replica.epoch,
      plan.appliedThroughLsn,
      plan.firstLsn,
      nowMs,
    )
    if (plan.forgetBelowLsn !== undefined) {
      s.pruneOpHashes.run(replicaId, plan.forgetBelowLsn)
    }
    s.setMeta.run(plan.head, 'head')
    for (const [entry, digest] of plan.digests) {
      s.updateDigest.run(digest, entry.collectionId)
    }
  }

  #meta(key: 'head' | 'horizon' | 'accepted_ms'): number {
    return this.#statements.selectMeta.pluck().get(key) as number
  }

  #now(value: number | undefined, what: string): number {
    return timeMs(value, this.#wallClock, what)
  }

  /** The collection from the cache, else from the file (another process may have made it). */
  #findCollection(name: string): CollectionEntry | undefined {
    const cached = this.#byName.get(name)
    if (cached !== undefined) return cached
    const row = this.#run(
      () =>
        this.#statements.selectCollectionByName.get(name) as
          CollectionTableRow | undefined,
    )
    return row === undefined ? undefined : this.#remember(row)
  }

  #collectionById(collectionId: number): CollectionEntry {
    let entry = this.#byId.get(collectionId)
    if (entry === undefined) {
      this.#loadCollections()
      entry = this.#byId.get(collectionId)
    }
    if (entry === undefined) {
      throw new VeloSyncError(
        'internal',
        `a stored row refers to unknown collection id ${collectionId}`,
      )
    }
    return entry
  }

  #loadCollections(): void {
    for (const row of this.#statements.selectCollections.all() as CollectionTableRow[]) {
      this.#remember(row)
    }
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

  /** Runs SQLite work, turning driver errors into `storage_failure` (cause kept). */
  #run<T>(work: () => T): T {
    try {
      return work()
    } catch (error) {
      if (isVeloSyncError(error)) throw error
      throw new VeloSyncError(
        'storage_failure',
        `SQLite: ${(error as Error).message}`,
        { cause: error },
      )
    }
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new VeloSyncError('closed', 'this SqliteServerStore is closed')
    }
  }
}

interface CollectionTableRow {
  collection_id: number
  name: string
  dims: number
  metric: CollectionSchema['metric']
  dtype: CollectionSchema['dtype']
}

function prepareStatements(db: Database.Database) {
  return {
    selectMeta: db.prepare('SELECT value FROM vs_meta WHERE key = ?'),
    setMeta: db.prepare('UPDATE vs_meta SET value = ? WHERE key = ?'),
    raiseMeta: db.prepare(
      'UPDATE vs_meta SET value = max(value, ?) WHERE key = ?',
    ),
    selectCollections: db.prepare(
      'SELECT collection_id, name, dims, metric, dtype FROM vs_collections ORDER BY collection_id',
    ),
    selectCollectionByName: db.prepare(
      'SELECT collection_id, name, dims, metric, dtype FROM vs_collections WHERE name = ?',
    ),
    insertCollection: db.prepare(
      'INSERT INTO vs_collections (name, dims, metric, dtype, digest) VALUES (?, ?, ?, ?, ?)',
    ),
    selectDigest: db.prepare(
      'SELECT digest FROM vs_collections WHERE name = ?',
    ),
    selectDigestById: db.prepare(
      'SELECT digest FROM vs_collections WHERE collection_id = ?',
    ),
    updateDigest: db.prepare(
      'UPDATE vs_collections SET digest = ? WHERE collection_id = ?',
    ),
    selectDocuments: db.prepare(
      `SELECT id, seq, hash, effective_wall_ms, ${versionColumns()} FROM vs_documents
       WHERE collection_id = ? AND id IN (SELECT value FROM json_each(?))`,
    ),
    // Rows after the cursor except the replica's echoes (every row when replica is NULL;
    // `IS NOT` keeps rows whose unchanged_from is NULL).
    selectAfter: db.prepare(
      `SELECT seq, collection_id, id, ${VERSION_FIELDS.join(', ')}
       FROM vs_documents
       WHERE seq > @cursor AND (@replica IS NULL OR unchanged_from IS NOT @replica)
       ORDER BY seq LIMIT @limit`,
    ),
    // After a page ending at @after: the next row to send, the last seq before it (all
    // echoes in between) and the echoes skipped since @cursor.
    selectPullTail: db.prepare(
      `WITH next AS (
         SELECT seq FROM vs_documents
         WHERE seq > @after AND (@replica IS NULL OR unchanged_from IS NOT @replica)
         ORDER BY seq LIMIT 1
       )
       SELECT (SELECT seq FROM next) AS next,
              (SELECT max(seq) FROM vs_documents
               WHERE seq < coalesce((SELECT seq FROM next), 9223372036854775807)) AS "end",
              (SELECT count(*) FROM vs_documents
               WHERE seq > @cursor AND unchanged_from = @replica
                 AND seq < coalesce((SELECT seq FROM next), 9223372036854775807)) AS echoes`,
    ),
    selectReplicaProgress: db.prepare(
      `SELECT applied_lsn AS appliedLsn, ack_cursor AS ackedCursor
       FROM vs_replicas WHERE replica_id = ?`,
    ),
    selectPushProgress: db.prepare(
      `SELECT applied_lsn AS appliedLsn, last_push_first_lsn AS lastPushFirstLsn
       FROM vs_replicas WHERE replica_id = ?`,
    ),
    upsertPushedReplica: db.prepare(
      `INSERT INTO vs_replicas
         (replica_id, device_id, epoch, applied_lsn, last_push_first_lsn, ack_cursor, last_seen_ms)
       VALUES (?, ?, ?, ?, ?, 0, ?)
       ON CONFLICT (replica_id) DO UPDATE SET
         applied_lsn = excluded.applied_lsn,
         last_push_first_lsn = excluded.last_push_first_lsn,
         last_seen_ms = excluded.last_seen_ms`,
    ),
    upsertAck: db.prepare(
      `INSERT INTO vs_replicas (replica_id, device_id, epoch, applied_lsn, ack_cursor, last_seen_ms)
       VALUES (?, ?, ?, 0, ?, ?)
       ON CONFLICT (replica_id) DO UPDATE SET
         ack_cursor = max(ack_cursor, excluded.ack_cursor),
         last_seen_ms = excluded.last_seen_ms`,
    ),
    selectMinActiveAck: db.prepare(
      'SELECT min(ack_cursor) AS minAck FROM vs_replicas WHERE last_seen_ms >= ?',
    ),
    selectCollectableTombstones: db.prepare(
      `SELECT count(*) AS n, max(seq) AS maxSeq FROM vs_documents
       WHERE deleted = 1 AND (seq <= @safeThrough OR updated_at_ms < @cutoffMs)`,
    ),
    deleteCollectableTombstones: db.prepare(
      'DELETE FROM vs_documents WHERE deleted = 1 AND (seq <= @safeThrough OR updated_at_ms < @cutoffMs)',
    ),
    selectOpHash: db.prepare(
      'SELECT op_hash FROM vs_replica_ops WHERE replica_id = ? AND lsn = ?',
    ),
    pruneOpHashes: db.prepare(
      'DELETE FROM vs_replica_ops WHERE replica_id = ? AND lsn < ?',
    ),
    insertConflict: db.prepare(
      `INSERT INTO vs_conflicts
         (seq, collection_id, doc_id, ${versionColumns('winner_')}, ${versionColumns('loser_')}, resolved_at_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    selectConflicts: db.prepare(
      `SELECT seq, collection_id, doc_id, ${versionColumns('winner_')}, ${versionColumns('loser_')}, resolved_at_ms
       FROM vs_conflicts WHERE seq > ? ORDER BY seq LIMIT ?`,
    ),
    selectCollectionConflicts: db.prepare(
      `SELECT seq, collection_id, doc_id, ${versionColumns('winner_')}, ${versionColumns('loser_')}, resolved_at_ms
       FROM vs_conflicts WHERE collection_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
    ),
    insertToken: db.prepare(
      `INSERT INTO vs_device_tokens (token_hash, device_id, created_at_ms, revoked)
       VALUES (?, ?, ?, 0) ON CONFLICT (token_hash) DO NOTHING`,
    ),
    selectTokenDevice: db.prepare(
      'SELECT device_id FROM vs_device_tokens WHERE token_hash = ? AND revoked = 0',
    ),
    revokeTokens: db.prepare(
      'UPDATE vs_device_tokens SET revoked = 1 WHERE device_id = ? AND revoked = 0',
    ),
  }
}

/**
 * Brings the file's schema up to {@link SERVER_SCHEMA_VERSION}: each pending migration runs
 * in its own IMMEDIATE transaction with the row that records it in `vs_schema_migrations`,
 * so two processes opening one file at once apply each migration once. `PRAGMA
 * user_version` mirrors the version, so that a VeloSync from before the table existed (it
 * read only `user_version`) still refuses a newer file instead of misreading it.
 */
function migrate(db: Database.Database): void {
  db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS vs_schema_migrations (
      version       INTEGER PRIMARY KEY,
      name          TEXT NOT NULL,
      applied_at_ms INTEGER NOT NULL
    ) STRICT`)
    // A file written before the table existed tracked its version in user_version only:
    // record those migrations as applied (at time 0, unknown) instead of re-running them.
    const legacy = db.pragma('user_version', { simple: true }) as number
    const insert = db.prepare(
      'INSERT OR IGNORE INTO vs_schema_migrations (version, name, applied_at_ms) VALUES (?, ?, 0)',
    )
    for (const migration of MIGRATIONS) {
      if (migration.version <= legacy)
        insert.run(migration.version, migration.name)
    }
  }).immediate()
  const appliedVersion = (): number =>
    Math.max(
      db.pragma('user_version', { simple: true }) as number,
      db
        .prepare('SELECT coalesce(max(version), 0) FROM vs_schema_migrations')
        .pluck()
        .get() as number,
    )
  const found = appliedVersion()
  if (found > SERVER_SCHEMA_VERSION) {
    throw new Error(
      `server store schema version ${found} is newer than this VeloSync (${SERVER_SCHEMA_VERSION}); upgrade VeloSync`,
    )
  }
  for (const migration of MIGRATIONS) {
    db.transaction(() => {
      // Re-read inside the write lock: another process may have applied it meanwhile.
      if (appliedVersion() >= migration.version) return
      db.exec(migration.sql)
      db.prepare(
        'INSERT INTO vs_schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)',
      ).run(migration.version, migration.name, Date.now())
      db.pragma(`user_version = ${migration.version}`)
    }).immediate()
  }
}

/**
 * Runs synchronous work as a promise: the port is async (a networked backend needs it)
 * and callers must see a rejection, never a synchronous throw.
 */
function settle<T>(work: () => T): Promise<T> {
  try {
    return Promise.resolve(work())
  } catch (error) {
    return Promise.reject(
      error instanceof Error ? error : new Error(String(error)),
    )
  }
}

/**
 * Upserts a pushed document: it moves to its new seq (seq is the rowid), so the row is
 * re-filed in change-log order.
 */
const UPSERT_DOCUMENT_TAIL = `ON CONFLICT (collection_id, id) DO UPDATE SET
  seq = excluded.seq, deleted = excluded.deleted, vector = excluded.vector,
  metadata = excluded.metadata, version_vector = excluded.version_vector,
  hlc_wall = excluded.hlc_wall, hlc_counter = excluded.hlc_counter,
  origin = excluded.origin, hash = excluded.hash,
  unchanged_from = excluded.unchanged_from, updated_at_ms = excluded.updated_at_ms,
  effective_wall_ms = excluded.effective_wall_ms`

/** The parameters for {@link versionColumns}, in the same order. */
function versionParams(
  version: DocumentVersion,
): [number, Uint8Array | null, string | null, string, number, number, string] {
  return [
    version.deleted ? 1 : 0,
    version.vector === null ? null : vectorToBytes(version.vector),
    version.metadataJson,
    versionVectorToJson(version.versionVector),
    version.hlc.wallMs,
    version.hlc.counter,
    version.origin,
  ]
}
