import { hash } from 'node:crypto'
import Database from 'better-sqlite3'
import {
  CollectionDigest,
  EMPTY_COLLECTION_DIGEST,
  VeloSyncError,
  assertCollectionName,
  assertDeviceId,
  assertDocumentId,
  assertHlc,
  canonicalMetadataJson,
  counterOf,
  describe,
  hashDocumentVersion,
  invalidArgument,
  isVeloSyncError,
  normalizeCollectionSchema,
  parseVersionVector,
  replicaIdOf,
  resolveIncoming,
  type ClockBound,
  toStoredVector,
  vectorFromBytes,
  vectorToBytes,
  versionVectorToJson,
  type CollectionSchema,
  type ConflictQuery,
  type ConflictRecord,
  type ConflictResolver,
  type DocumentVersion,
  type GarbageCollectionOptions,
  type GarbageCollectionResult,
  type OpResult,
  type PullOptions,
  type PullResult,
  type PulledVersion,
  type PushOp,
  type PushOptions,
  type PushResult,
  type ReplicaId,
  type ReplicaRef,
  type Resolution,
  type Seq,
  type ServerStore,
  type Sha256,
  type VersionVector,
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

/**
 * Most rows one pull examines. Echoes are skipped without counting against `limit`, so
 * without a bound a replica that pushed a million documents would make one pull walk all
 * of them; past this bound the pull returns early with `hasMore: true`.
 */
export const MAX_PULL_SCAN = 100_000

/** SQLite's own checkpoint threshold, a backstop: 16384 pages of 8 KiB = 128 MiB of WAL. */
const WAL_AUTOCHECKPOINT_PAGES = 16_384
/** Quiet time after the last push before the WAL is checkpointed. */
const CHECKPOINT_DELAY_MS = 1000

/** Longest accepted token hash (hex or base64 of any reasonable digest fits). */
const MAX_TOKEN_HASH_LENGTH = 256

const sha256: Sha256 = (data) => hash('sha256', data, 'buffer')
const utf8 = new TextEncoder()

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
 * vs_replicas      per (device, epoch): applied LSN, acked cursor, last seen
 * vs_replica_ops   (replica, lsn) → hash of the op accepted under that LSN (replays)
 * vs_conflicts     one row per resolved conflict: winner (as stored) and loser (as it was)
 * vs_device_tokens token hash → device, revoked flag
 * ```
 */
const MIGRATIONS: readonly string[] = [
  `
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
  // ServerStore S13: the effective wall time a stored version competes with in conflicts
  // (NULL: its HLC wall time, as stored before bounds existed or without one).
  `ALTER TABLE vs_documents ADD COLUMN effective_wall_ms INTEGER;`,
]

/** The schema version this code writes; newer files are refused rather than misread. */
export const SERVER_SCHEMA_VERSION = MIGRATIONS.length

/** The columns that hold one document version, under an optional prefix. */
const VERSION_FIELDS = [
  'deleted',
  'vector',
  'metadata',
  'version_vector',
  'hlc_wall',
  'hlc_counter',
  'origin',
] as const
const versionColumns = (prefix = ''): string =>
  VERSION_FIELDS.map((field) => prefix + field).join(', ')

/** A document version as its columns come back from better-sqlite3. */
interface VersionRow {
  deleted: number
  vector: Uint8Array | null
  metadata: string | null
  version_vector: string
  hlc_wall: number
  hlc_counter: number
  origin: string
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
  unchanged_from: string | null
}

type ConflictRow = {
  seq: number
  collection_id: number
  doc_id: string
  resolved_at_ms: number
} & {
  [K in `${'winner' | 'loser'}_${(typeof VERSION_FIELDS)[number]}`]: unknown
}

interface CollectionEntry {
  readonly schema: CollectionSchema
  readonly collectionId: number
}

/** A validated op, with everything computed that needs no transaction. */
interface PreparedOp {
  readonly lsn: number
  readonly collection: CollectionEntry
  readonly version: DocumentVersion
  /** SHA-256 of the version's canonical encoding (its digest contribution when live). */
  readonly versionHash: Uint8Array
  /** Identifies the op for replays: SHA-256 of collection name and version hash. */
  readonly opHash: Uint8Array
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

  private constructor(db: Database.Database, wallClock: () => number) {
    this.#db = db
    this.#wallClock = wallClock
    this.#statements = prepareStatements(db)
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
      if (
        current.dims !== schema.dims ||
        current.metric !== schema.metric ||
        current.dtype !== schema.dtype
      ) {
        throw new VeloSyncError(
          'already_exists',
          `collection ${describe(schema.name)} exists with dims ${current.dims}, metric ${current.metric}, dtype ${current.dtype}; ` +
            `a collection's settings cannot change (they are part of every document hash), so use another name`,
        )
      }
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
      if (!Array.isArray(ops)) {
        throw invalidArgument(`ops must be an array, got ${describe(ops)}`)
      }
      if (typeof options !== 'object' || options === null) {
        throw invalidArgument(
          `push options must be an object, got ${describe(options)}`,
        )
      }
      const opList: readonly PushOp[] = ops
      const nowMs = this.#now(options.nowMs, 'nowMs')
      const resolver = options.resolver
      const maxLeadMs = options.maxClockLeadMs
      if (
        maxLeadMs !== undefined &&
        (!Number.isSafeInteger(maxLeadMs) || maxLeadMs < 0)
      ) {
        throw invalidArgument(
          `maxClockLeadMs must be a non-negative integer, got ${describe(maxLeadMs)}`,
        )
      }
      if (resolver !== undefined && typeof resolver !== 'function') {
        throw invalidArgument(
          `resolver must be a function, got ${describe(resolver)}`,
        )
      }
      // Validate and hash everything before the transaction: bad input must change nothing,
      // and the write lock should not be held for work that needs no database.
      const prepared: PreparedOp[] = []
      let previousLsn = 0
      for (const [i, op] of opList.entries()) {
        const what = `ops[${i}]`
        if (typeof op !== 'object' || op === null) {
          throw invalidArgument(
            `${what} must be an object, got ${describe(op)}`,
          )
        }
        if (!Number.isSafeInteger(op.lsn) || op.lsn < 1) {
          throw invalidArgument(
            `${what}.lsn must be a positive integer, got ${describe(op.lsn)}`,
          )
        }
        if (op.lsn <= previousLsn) {
          throw invalidArgument(
            `${what}.lsn ${op.lsn} does not follow ${previousLsn}: ops must be in strictly increasing LSN order`,
          )
        }
        previousLsn = op.lsn
        assertCollectionName(op.collection)
        const collection = this.#findCollection(op.collection)
        if (collection === undefined) {
          throw new VeloSyncError(
            'not_found',
            `${what}: collection ${describe(op.collection)} does not exist on the server`,
          )
        }
        const version = checkPushedVersion(
          collection.schema,
          op.version,
          replicaId,
          `${what}.version`,
        )
        const versionHash = hashDocumentVersion(
          version,
          collection.schema.dtype,
          sha256,
        )
        prepared.push({
          lsn: op.lsn,
          collection,
          version,
          versionHash,
          opHash: opHashOf(collection.schema.name, versionHash),
        })
      }
      const result = this.#run(() =>
        this.#db
          .transaction(() =>
            this.#applyPush(
              replica,
              replicaId,
              prepared,
              resolver,
              nowMs,
              maxLeadMs,
            ),
          )
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
      if (!Number.isSafeInteger(limit) || limit < 1) {
        throw invalidArgument(
          `limit must be a positive integer, got ${describe(limit)}`,
        )
      }
      return this.#run(() =>
        this.#db
          .transaction((): PullResult => {
            this.#assertCursor(cursor)
            const versions: PulledVersion[] = []
            let last = cursor
            let skippedEchoes = 0
            let scanned = 0
            for (const row of this.#statements.selectAfter.iterate(
              cursor,
            ) as Iterable<PulledRow>) {
              const echo = !includeEchoes && row.unchanged_from === replicaId
              // Echoes right after a full page are consumed too, so that a device whose
              // only remaining changes are its own hears hasMore: false.
              if (!echo && versions.length >= limit) break
              last = row.seq
              if (echo) {
                skippedEchoes++
              } else {
                const { schema } = this.#collectionById(row.collection_id)
                versions.push({
                  seq: row.seq,
                  collection: schema.name,
                  version: rowToVersion(schema, row.id, row),
                })
              }
              if (++scanned >= MAX_PULL_SCAN) break
            }
            const hasMore = this.#statements.existsAfter.get(last) !== undefined
            return { versions, cursor: last, hasMore, skippedEchoes }
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
      if (row === undefined) {
        throw new VeloSyncError(
          'not_found',
          `collection ${describe(collection)} does not exist on the server`,
        )
      }
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
      if (!Number.isSafeInteger(options.limit) || options.limit < 1) {
        throw invalidArgument(
          `limit must be a positive integer, got ${describe(options.limit)}`,
        )
      }
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
        if (entry === undefined) {
          throw new VeloSyncError(
            'not_found',
            `collection ${describe(options.collection)} does not exist on the server`,
          )
        }
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
          winner: rowToVersion(schema, row.doc_id, prefixed(row, 'winner_')),
          loser: rowToVersion(schema, row.doc_id, prefixed(row, 'loser_')),
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

  checkCursor(cursor: Seq): Promise<void> {
    return settle(() => {
      this.#assertOpen()
      assertSeq(cursor, 'cursor')
      this.#run(() => this.#assertCursor(cursor))
    })
  }

  /** S6: throws `resync_required` when a pull from `cursor` could miss changes. */
  #assertCursor(cursor: Seq): void {
    const head = this.#meta('head')
    if (cursor > head) {
      throw new VeloSyncError(
        'resync_required',
        `cursor ${cursor} is ahead of the server's head ${head} (the server's data is older than this device's); pull again from cursor 0`,
      )
    }
    const horizon = this.#meta('horizon')
    if (cursor > 0 && cursor < horizon) {
      throw new VeloSyncError(
        'resync_required',
        `cursor ${cursor} is older than the tombstone horizon ${horizon}: deletes it has not seen were collected; pull again from cursor 0`,
      )
    }
  }

  appliedLsn(replica: ReplicaRef): Promise<number> {
    return settle(() => {
      this.#assertOpen()
      const replicaId = replicaIdOfRef(replica)
      return this.#run(() => {
        const row = this.#statements.selectReplica.get(replicaId) as
          { applied_lsn: number } | undefined
        return row?.applied_lsn ?? 0
      })
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

  /** The body of a push transaction (see `ServerStore` S1–S4). */
  #applyPush(
    replica: ReplicaRef,
    replicaId: ReplicaId,
    ops: readonly PreparedOp[],
    resolver: ConflictResolver | undefined,
    nowMs: number,
    maxLeadMs: number | undefined,
  ): PushResult {
    const s = this.#statements
    const replicaRow = s.selectReplica.get(replicaId) as
      { applied_lsn: number } | undefined
    const appliedLsn = replicaRow?.applied_lsn ?? 0
    let head = this.#meta('head')
    const digests = new Map<CollectionEntry, CollectionDigest>()
    const results: OpResult[] = []
    for (const op of ops) {
      const { schema, collectionId } = op.collection
      const base = { lsn: op.lsn, id: op.version.id, collection: schema.name }
      if (op.lsn <= appliedLsn) {
        const recorded = s.selectOpHash.pluck().get(replicaId, op.lsn) as
          Uint8Array | undefined
        if (recorded === undefined || !sameBytes(recorded, op.opHash)) {
          // Throwing rolls the whole push back: exactly-once beats partial progress.
          throw new VeloSyncError(
            'lsn_reused',
            `replica ${replicaId} already used LSN ${op.lsn} ` +
              (recorded === undefined
                ? '(its applied LSN is past it)'
                : 'for different content') +
              '; nothing was stored: start a new epoch on the device (startNewEpoch) and push again',
          )
        }
        results.push({ ...base, outcome: 'duplicate' })
        continue
      }
      s.insertOpHash.run(replicaId, op.lsn, op.opHash)
      const row = s.selectDocument.get(collectionId, op.version.id) as
        DocumentRow | undefined
      const current =
        row === undefined ? undefined : rowToVersion(schema, op.version.id, row)
      const resolution = resolve(
        current,
        op.version,
        resolver,
        maxLeadMs === undefined
          ? undefined
          : {
              nowMs,
              maxLeadMs,
              ...(row?.effective_wall_ms == null
                ? {}
                : { currentEffectiveMs: row.effective_wall_ms }),
            },
      )
      const stored = resolution.stored
      if (stored === undefined) {
        results.push(
          resolution.outcome === 'stale' && current !== undefined
            ? { ...base, outcome: 'stale', version: current }
            : { ...base, outcome: resolution.outcome },
        )
        continue
      }
      const seq = ++head
      const asPushed = resolution.outcome === 'applied'
      const storedHash = stored.deleted
        ? null
        : asPushed
          ? op.versionHash
          : hashDocumentVersion(stored, schema.dtype, sha256)
      let digest = digests.get(op.collection)
      if (digest === undefined) {
        digest = new CollectionDigest(
          s.selectDigestById.pluck().get(collectionId) as string,
        )
        digests.set(op.collection, digest)
      }
      if (row?.hash) digest.remove(row.hash)
      if (storedHash !== null) digest.add(storedHash)
      s.upsertDocument.run(
        seq,
        collectionId,
        stored.id,
        ...versionParams(stored),
        storedHash,
        asPushed ? replicaId : null,
        nowMs,
        resolution.storedEffectiveMs ?? null,
      )
      if (resolution.loser !== undefined) {
        s.insertConflict.run(
          seq,
          collectionId,
          stored.id,
          ...versionParams(stored),
          ...versionParams(resolution.loser),
          nowMs,
        )
        results.push({
          ...base,
          outcome: resolution.outcome,
          seq,
          version: stored,
        })
      } else {
        results.push({ ...base, outcome: resolution.outcome, seq })
      }
    }
    const lastLsn =
      ops.length === 0 ? 0 : (ops[ops.length - 1] as PreparedOp).lsn
    const appliedThroughLsn = Math.max(appliedLsn, lastLsn)
    s.upsertPushedReplica.run(
      replicaId,
      replica.deviceId,
      replica.epoch,
      appliedThroughLsn,
      nowMs,
    )
    // A device sends its oldest pending entries first, one batch at a time, so this push
    // proves every entry below its first LSN left the device's outbox: those hashes can
    // never be needed for a replay again. A backup-restored device that replays one anyway
    // gets lsn_reused, which is safe (see ServerStore S2). This keeps the table at about
    // one batch per replica instead of one row per write ever pushed.
    const firstOp = ops[0]
    if (firstOp !== undefined) s.pruneOpHashes.run(replicaId, firstOp.lsn)
    s.setMeta.run(head, 'head')
    for (const [entry, digest] of digests) {
      s.updateDigest.run(digest.toHex(), entry.collectionId)
    }
    return { results, appliedThroughLsn, head }
  }

  #meta(key: 'head' | 'horizon'): number {
    return this.#statements.selectMeta.pluck().get(key) as number
  }

  #now(value: number | undefined, what: string): number {
    const nowMs = value ?? Math.floor(this.#wallClock())
    if (!Number.isSafeInteger(nowMs) || nowMs < 0) {
      throw invalidArgument(
        `${what} must be a non-negative integer of milliseconds, got ${describe(nowMs)}`,
      )
    }
    return nowMs
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
    selectDocument: db.prepare(
      `SELECT seq, hash, effective_wall_ms, ${versionColumns()} FROM vs_documents WHERE collection_id = ? AND id = ?`,
    ),
    // The document moves to its new seq: seq is the rowid, so this re-files the row in
    // change-log order.
    upsertDocument: db.prepare(
      `INSERT INTO vs_documents
         (seq, collection_id, id, ${versionColumns()}, hash, unchanged_from, updated_at_ms,
          effective_wall_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (collection_id, id) DO UPDATE SET
         seq = excluded.seq, deleted = excluded.deleted, vector = excluded.vector,
         metadata = excluded.metadata, version_vector = excluded.version_vector,
         hlc_wall = excluded.hlc_wall, hlc_counter = excluded.hlc_counter,
         origin = excluded.origin, hash = excluded.hash,
         unchanged_from = excluded.unchanged_from, updated_at_ms = excluded.updated_at_ms,
         effective_wall_ms = excluded.effective_wall_ms`,
    ),
    selectAfter: db.prepare(
      `SELECT seq, collection_id, id, unchanged_from, ${versionColumns()}
       FROM vs_documents WHERE seq > ? ORDER BY seq`,
    ),
    existsAfter: db.prepare('SELECT 1 FROM vs_documents WHERE seq > ? LIMIT 1'),
    selectReplica: db.prepare(
      'SELECT applied_lsn FROM vs_replicas WHERE replica_id = ?',
    ),
    upsertPushedReplica: db.prepare(
      `INSERT INTO vs_replicas (replica_id, device_id, epoch, applied_lsn, ack_cursor, last_seen_ms)
       VALUES (?, ?, ?, ?, 0, ?)
       ON CONFLICT (replica_id) DO UPDATE SET
         applied_lsn = excluded.applied_lsn, last_seen_ms = excluded.last_seen_ms`,
    ),
    upsertAck: db.prepare(
      `INSERT INTO vs_replicas (replica_id, device_id, epoch, applied_lsn, ack_cursor, last_seen_ms)
       VALUES (?, ?, ?, 0, ?, ?)
       ON CONFLICT (replica_id) DO UPDATE SET
         ack_cursor = excluded.ack_cursor, last_seen_ms = excluded.last_seen_ms`,
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
    insertOpHash: db.prepare(
      'INSERT INTO vs_replica_ops (replica_id, lsn, op_hash) VALUES (?, ?, ?)',
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
 * Brings the file's schema up to {@link SERVER_SCHEMA_VERSION}, one migration per
 * transaction, tracked in `PRAGMA user_version`.
 */
function migrate(db: Database.Database): void {
  const before = db.pragma('user_version', { simple: true }) as number
  if (before > SERVER_SCHEMA_VERSION) {
    throw new Error(
      `server store schema version ${before} is newer than this VeloSync (${SERVER_SCHEMA_VERSION}); upgrade VeloSync`,
    )
  }
  for (let version = before; version < SERVER_SCHEMA_VERSION; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version] as string)
      db.pragma(`user_version = ${version + 1}`)
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

/** Runs the conflict rule; a throwing custom resolver is reported as `internal`. */
function resolve(
  current: DocumentVersion | undefined,
  incoming: DocumentVersion,
  resolver: ConflictResolver | undefined,
  bound: ClockBound | undefined,
): Resolution {
  try {
    return resolveIncoming(current, incoming, resolver, bound)
  } catch (error) {
    if (isVeloSyncError(error)) throw error
    throw new VeloSyncError(
      'internal',
      `the conflict resolver failed for document ${describe(incoming.id)}: ${(error as Error).message}; nothing was stored`,
      { cause: error },
    )
  }
}

function replicaIdOfRef(replica: ReplicaRef): ReplicaId {
  if (typeof replica !== 'object' || replica === null) {
    throw invalidArgument(
      `replica must be { deviceId, epoch }, got ${describe(replica)}`,
    )
  }
  return replicaIdOf(replica.deviceId, replica.epoch)
}

function assertSeq(value: unknown, what: string): asserts value is Seq {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw invalidArgument(
      `${what} must be a non-negative integer, got ${describe(value)}`,
    )
  }
}

function assertTokenHash(tokenHash: unknown): asserts tokenHash is string {
  if (
    typeof tokenHash !== 'string' ||
    tokenHash.length === 0 ||
    tokenHash.length > MAX_TOKEN_HASH_LENGTH
  ) {
    throw invalidArgument(
      `a token hash must be a non-empty string of at most ${MAX_TOKEN_HASH_LENGTH} characters`,
    )
  }
}

/**
 * Validates a pushed version against its collection and the pushing replica, and returns
 * a copy holding only the known fields (vector copied into the collection's dtype).
 *
 * @remarks
 * The server stores and re-serves exactly these bytes, and every replica hashes them, so
 * anything a device could not have produced itself is refused rather than normalized:
 * a vector of another dtype, non-canonical metadata, an origin other than the pusher, or a
 * version vector without the pusher's own write in it.
 */
function checkPushedVersion(
  schema: CollectionSchema,
  version: DocumentVersion,
  replicaId: ReplicaId,
  what: string,
): DocumentVersion {
  if (typeof version !== 'object' || version === null) {
    throw invalidArgument(
      `${what} must be a document version object, got ${describe(version)}`,
    )
  }
  assertDocumentId(version.id)
  if (typeof version.deleted !== 'boolean') {
    throw invalidArgument(
      `${what}.deleted must be a boolean, got ${describe(version.deleted)}`,
    )
  }
  if (version.origin !== replicaId) {
    throw invalidArgument(
      `${what}.origin is ${describe(version.origin)}, but the pushing replica is ${replicaId}; a replica can only push its own writes`,
    )
  }
  const versionVector: VersionVector = parseVersionVector(version.versionVector)
  if (counterOf(versionVector, replicaId) < 1) {
    throw invalidArgument(
      `${what}.versionVector has no entry for the pushing replica ${replicaId}; every write counts itself`,
    )
  }
  const hlc = assertHlc(version.hlc)
  const common = {
    id: version.id,
    versionVector,
    hlc: { wallMs: hlc.wallMs, counter: hlc.counter },
    origin: replicaId,
  }
  if (version.deleted) {
    if (version.vector != null || version.metadataJson != null) {
      throw invalidArgument(
        `${what} is a tombstone but carries a vector or metadata`,
      )
    }
    return { ...common, deleted: true, vector: null, metadataJson: null }
  }
  const expected = schema.dtype === 'float32' ? Float32Array : Float64Array
  if (!(version.vector instanceof expected)) {
    throw invalidArgument(
      `${what}.vector: collection ${schema.name} stores ${schema.dtype} vectors, got ${describeVector(version.vector)}`,
    )
  }
  const vector = toStoredVector(schema, version.vector, `${what}.vector`)
  if (typeof version.metadataJson !== 'string') {
    throw invalidArgument(
      `${what}.metadataJson must be a string of canonical JSON, got ${describe(version.metadataJson)}`,
    )
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(version.metadataJson)
  } catch {
    throw invalidArgument(`${what}.metadataJson is not valid JSON`)
  }
  const canonical = canonicalMetadataJson(parsed, `${what}.metadata`)
  if (canonical !== version.metadataJson) {
    throw invalidArgument(
      `${what}.metadataJson is not in canonical form (sorted keys, no whitespace); it would hash differently on other replicas`,
    )
  }
  return { ...common, deleted: false, vector, metadataJson: canonical }
}

function describeVector(value: unknown): string {
  if (value === null || value === undefined) return String(value)
  if (ArrayBuffer.isView(value)) return value.constructor.name
  return describe(value)
}

/** A stored version from its columns. */
function rowToVersion(
  schema: CollectionSchema,
  id: string,
  row: VersionRow,
): DocumentVersion {
  const deleted = row.deleted === 1
  return {
    id,
    deleted,
    vector:
      deleted || row.vector === null
        ? null
        : vectorFromBytes(row.vector, schema.dtype, schema.dims),
    metadataJson: deleted ? null : row.metadata,
    versionVector: JSON.parse(row.version_vector) as VersionVector,
    hlc: { wallMs: row.hlc_wall, counter: row.hlc_counter },
    origin: row.origin,
  }
}

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

/** The version columns of a conflict row under one prefix, unprefixed. */
function prefixed(row: ConflictRow, prefix: 'winner_' | 'loser_'): VersionRow {
  const fields = row as unknown as Record<string, unknown>
  return Object.fromEntries(
    VERSION_FIELDS.map((field) => [field, fields[prefix + field]]),
  ) as unknown as VersionRow
}

/** Identifies a pushed op for replay checks: the collection and the exact version. */
function opHashOf(collection: string, versionHash: Uint8Array): Uint8Array {
  const name = utf8.encode(collection)
  const bytes = new Uint8Array(name.length + 1 + versionHash.length)
  bytes.set(name)
  bytes.set(versionHash, name.length + 1)
  return sha256(bytes)
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
