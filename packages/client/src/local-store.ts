import { randomBytes } from 'node:crypto'
import Database from 'better-sqlite3'
import {
  RowBatch,
  CollectionDigest,
  EMPTY_COLLECTION_DIGEST,
  ExactVectorIndex,
  HybridLogicalClock,
  VeloSyncError,
  assertCollectionName,
  assertDeviceId,
  assertDocumentId,
  assertHlc,
  canonicalMetadata,
  canonicalMetadataJson,
  compileFilter,
  describe,
  hashDocumentVersion,
  incrementVersionVector,
  invalidArgument,
  isValidatedFor,
  isVeloSyncError,
  storeKindOf,
  laterThan,
  normalizeCollectionSchema,
  parseVersionVector,
  replicaIdOf,
  takeParsedMetadata,
  newVector,
  toStoredVector,
  vectorFromBytes,
  vectorToBytes,
  versionVectorToJson,
  type CollectionSchema,
  type CollectionSchemaInput,
  type DocumentVersion,
  type HlcTimestamp,
  type JsonObject,
  type KernelBackend,
  type LogOp,
  type MetadataFilter,
  type MetadataPredicate,
  type ReplicaId,
  type StoredVector,
  type VectorInput,
  type VersionVector,
} from '@velosync/core'
import {
  DOCUMENT_COLUMNS,
  rowToVersion,
  toStoredDocument,
  type DocumentRow,
} from './document-row.js'
import { Outbox, type OutboxBatch } from './outbox.js'
import { migrate } from './schema.js'
import { nodeSha256 } from './sha256.js'

/** Options of {@link LocalStore.open}. */
export interface LocalStoreOptions {
  /** Path of the SQLite file (created if missing), or `':memory:'` for a throwaway store. */
  readonly path: string
  /**
   * This device's id, fixed when the file is created. Default: a random id. Opening an
   * existing file with a different id fails with `invalid_argument`.
   */
  readonly deviceId?: string
  /**
   * SQLite `synchronous` setting. Default `'full'`: a write that returned survives a power
   * loss. `'normal'` survives a crash of the app or a `kill -9` (WAL mode) but may lose the
   * last writes on power loss; it makes single writes several times faster.
   */
  readonly synchronous?: 'full' | 'normal'
  /** Search kernel. Default `'auto'`: WebAssembly SIMD when available, else plain TS. */
  readonly vectorBackend?: 'auto' | KernelBackend
  /** Milliseconds to wait when another connection holds the write lock. Default 5000. */
  readonly busyTimeoutMs?: number
  /** Wall clock for the hybrid logical clock. Default `Date.now`. */
  readonly wallClock?: () => number
  /**
   * Milliseconds after the last write before the WAL is checkpointed into the main file
   * (PASSIVE: never blocks readers or writers). Default 1000. The timer does not keep the
   * process alive; `close()` checkpoints anyway.
   */
  readonly checkpointDelayMs?: number
  /**
   * Receives errors of background work that no caller awaits (the idle checkpoint).
   * Default: a Node process warning, so nothing fails silently.
   */
  readonly onError?: (error: VeloSyncError) => void
}

/** A document to write. */
export interface DocumentInput {
  /** Non-empty string, at most 512 characters. */
  readonly id: string
  /** Exactly `dims` finite numbers. Copied; cosine collections also keep a normalized copy. */
  readonly vector: VectorInput
  /** A plain JSON object. Default `{}`. */
  readonly metadata?: JsonObject
}

/** A live document as stored on this device. */
export interface StoredDocument {
  readonly id: string
  /** As written (not normalized), in the collection's dtype. */
  readonly vector: StoredVector
  readonly metadata: JsonObject
  readonly versionVector: VersionVector
  readonly hlc: HlcTimestamp
  /** The replica that wrote this version. */
  readonly origin: ReplicaId
}

/** What a write produced. */
export interface WriteReceipt {
  readonly id: string
  /** The log sequence number of the write's outbox entry. */
  readonly lsn: number
  readonly versionVector: VersionVector
  readonly hlc: HlcTimestamp
}

/** Options of {@link LocalStore.search}. */
export interface SearchOptions {
  /** How many hits, 1…{@link MAX_K}. Default 10. */
  readonly k?: number
  /** Only documents whose metadata match are ranked (see `MetadataFilter`). */
  readonly filter?: MetadataFilter
  /** Return each hit's metadata. Default `true`. */
  readonly includeMetadata?: boolean
  /** Return each hit's stored vector (read from SQLite). Default `false`. */
  readonly includeVector?: boolean
}

/** One search result, best first. */
export interface SearchResult {
  readonly id: string
  /** Cosine similarity, dot product, or Euclidean distance (l2: lower is closer). */
  readonly score: number
  readonly metadata?: JsonObject
  readonly vector?: StoredVector
}

/** Outcome of {@link LocalStore.applyRemoteVersions}. */
export interface RemoteApplyResult {
  /** Versions written. */
  readonly applied: number
  /**
   * Positions (in the versions given) of those skipped because the document has an
   * unpushed local write.
   */
  readonly skipped: readonly number[]
}

/** What a sync round received from the server (see {@link LocalStore.applyServerUpdate}). */
export interface ServerUpdate {
  /**
   * Server versions to adopt, in order: push results that differ from what was pushed,
   * then pulled changes.
   */
  readonly versions: ReadonlyArray<{
    readonly collection: string
    readonly version: DocumentVersion
    /**
     * Its place in the server's feed, if known. The stored cursor stays below the seq of
     * a version skipped for an unpushed write (see `cursor`).
     */
    readonly seq?: number
  }>
  /** Specs of the collections named; collections this device lacks are created from them. */
  readonly collections?: readonly CollectionSchemaInput[]
  /** The push this answers: its entries up to `throughLsn` leave the outbox. */
  readonly confirm?: {
    readonly batch: OutboxBatch
    readonly throughLsn: number
  }
  /**
   * The new pull cursor. Stored lower when a version with a `seq` is skipped: just below the
   * lowest such seq. Until the unpushed write's answer arrives, that skipped version may be
   * the device's only news of the document (a delete whose tombstone is later collected,
   * say); a cursor below it makes the next pull bring it again, or makes the server ask for
   * a resync once it is gone. The sync client stores the full cursor when its round ends.
   */
  readonly cursor?: number
  /**
   * `'deferred'`: commit without waiting for the disk (synchronous NORMAL for this one
   * transaction), for an update that only adopts server versions and that a later FULL
   * commit follows before anything is reported to the server (the sync client uses it for
   * every pull page but the last of a round). A power cut may then take it, and the cursor
   * with it: the next pull fetches the versions again. Ignored with `confirm` or with
   * `synchronous: 'normal'`. Default `'full'`: durable when the call returns, like any write.
   */
  readonly durability?: 'full' | 'deferred'
}

/** Result of {@link LocalStore.verify}. */
export interface VerifyReport {
  readonly ok: boolean
  readonly problems: readonly string[]
}

/** How many validated vectors of one putMany share one typed array. */
const VECTORS_PER_ARRAY = 4096

/** SQLite's own checkpoint threshold, a backstop: 16384 pages of 8 KiB = 128 MiB of WAL. */
const WAL_AUTOCHECKPOINT_PAGES = 16_384

/** Largest `k` a search accepts. */
export const MAX_K = 10_000

/** @internal A collection as the store keeps it in memory. */
export interface CollectionState {
  readonly schema: CollectionSchema
  readonly collectionId: number
  digest: CollectionDigest
  readonly index: ExactVectorIndex
}

interface PreparedWrite {
  readonly id: string
  readonly op: LogOp
  readonly vector: StoredVector | null
  readonly metadataJson: string | null
  readonly metadata: JsonObject | null
}

/** The columns of a document row that a write needs: its vector clock and hash. */
type PriorRow = Pick<
  DocumentRow,
  'deleted' | 'version_vector' | 'hash' | 'hlc_wall' | 'hlc_counter'
>

type IndexChange =
  | {
      readonly op: 'put'
      readonly id: string
      readonly vector: StoredVector
      readonly metadata: JsonObject
    }
  | { readonly op: 'delete'; readonly id: string }

/**
 * A device's local VeloSync store: collections of documents (id, vector, JSON metadata)
 * in one SQLite file, exact vector search, and the replication log (outbox) that the
 * sync engine pushes.
 *
 * @remarks
 * Guarantees:
 * - Every write and its outbox entry commit in one SQLite transaction; a write returns
 *   only after that commit, so a write that returned survives `kill -9` (and, with
 *   `synchronous: 'full'`, a power loss).
 * - Log sequence numbers are strictly increasing and gap-free in write order.
 * - Each collection's digest (see `CollectionDigest`) is updated in the same transaction.
 * - The in-memory search index is rebuilt from SQLite on open and changed only after a
 *   transaction commits, so search always reflects committed state.
 * - Bad input throws `invalid_argument` before anything is written.
 *
 * The API is synchronous, like better-sqlite3 underneath: a write is durable when the
 * call returns. One `LocalStore` per file per process.
 *
 * @example
 * ```ts
 * const store = LocalStore.open({ path: 'device.db' })
 * store.createCollection({ name: 'notes', dims: 3 })
 * store.put('notes', { id: 'n1', vector: [0.1, 0.2, 0.3], metadata: { lang: 'en' } })
 * store.search('notes', [0.1, 0.2, 0.25], { k: 5, filter: { lang: 'en' } })
 * store.close()
 * ```
 */
export class LocalStore {
  /** This device's id (fixed at creation). */
  readonly deviceId: string
  /** The replication log. */
  readonly outbox: Outbox
  readonly #db: Database.Database
  readonly #clock: HybridLogicalClock
  readonly #collections = new Map<string, CollectionState>()
  readonly #vectorBackend: 'auto' | KernelBackend
  readonly #statements: ReturnType<typeof prepareStatements>
  readonly #documentRows: RowBatch
  readonly #outboxRows: RowBatch
  readonly #checkpointDelayMs: number
  readonly #onError: (error: VeloSyncError) => void
  readonly #synchronous: 'full' | 'normal'
  #checkpointTimer: ReturnType<typeof setTimeout> | undefined
  #epoch: string
  #lastLsn: number
  #closed = false

  private constructor(db: Database.Database, options: LocalStoreOptions) {
    this.#db = db
    this.#vectorBackend = options.vectorBackend ?? 'auto'
    this.#checkpointDelayMs = options.checkpointDelayMs ?? 1000
    this.#synchronous = options.synchronous ?? 'full'
    this.#onError =
      options.onError ??
      ((error) =>
        process.emitWarning(error.message, { code: `VELOSYNC_${error.code}` }))
    this.#statements = prepareStatements(db)
    this.#documentRows = new RowBatch(
      db,
      `INSERT INTO vs_documents (${DOCUMENT_INSERT_COLUMNS})`,
      10,
      DOCUMENT_UPSERT_CLAUSE,
    )
    this.#outboxRows = new RowBatch(
      db,
      `INSERT INTO vs_outbox (${OUTBOX_COLUMNS})`,
      8,
    )
    const stored = this.#readStoreValues()
    if (stored.device_id === undefined) {
      this.deviceId = options.deviceId ?? `d-${randomBytes(6).toString('hex')}`
      this.#epoch = randomBytes(8).toString('hex')
      this.#lastLsn = 0
      db.transaction(() => {
        this.#setStoreValue('device_id', this.deviceId)
        this.#setStoreValue('epoch', this.#epoch)
        this.#setStoreValue('last_lsn', '0')
      })()
    } else {
      if (
        options.deviceId !== undefined &&
        options.deviceId !== stored.device_id
      ) {
        throw invalidArgument(
          `${options.path} belongs to device ${describe(stored.device_id)}, not ${describe(options.deviceId)}`,
        )
      }
      this.deviceId = stored.device_id
      this.#epoch = stored.epoch ?? ''
      this.#lastLsn = Number(stored.last_lsn ?? 0)
    }
    const last =
      stored.hlc_wall === undefined
        ? undefined
        : {
            wallMs: Number(stored.hlc_wall),
            counter: Number(stored.hlc_counter ?? 0),
          }
    this.#clock = new HybridLogicalClock({
      ...(options.wallClock === undefined
        ? {}
        : { wallClock: options.wallClock }),
      ...(last === undefined ? {} : { last }),
    })
    this.outbox = new Outbox(db, {
      collectionById: (id) => this.#collectionById(id),
      assertOpen: () => this.#assertOpen(),
    })
    this.#loadCollections()
  }

  /**
   * Opens (or creates) a store.
   *
   * @throws `invalid_argument` for bad options or a file of another device;
   *   `storage_failure` when SQLite cannot open or migrate the file.
   */
  static open(options: LocalStoreOptions): LocalStore {
    if (typeof options !== 'object' || options === null) {
      throw invalidArgument(
        'LocalStore.open needs an options object with a path',
      )
    }
    if (typeof options.path !== 'string' || options.path.length === 0) {
      throw invalidArgument(
        `path must be a non-empty string, got ${describe(options.path)}`,
      )
    }
    if (options.deviceId !== undefined) assertDeviceId(options.deviceId)
    const synchronous = options.synchronous ?? 'full'
    if (synchronous !== 'full' && synchronous !== 'normal') {
      throw invalidArgument(
        `synchronous must be 'full' or 'normal', got ${describe(synchronous)}`,
      )
    }
    const backend = options.vectorBackend ?? 'auto'
    if (!['auto', 'wasm-simd', 'js'].includes(backend)) {
      throw invalidArgument(
        `vectorBackend must be 'auto', 'wasm-simd' or 'js', got ${describe(backend)}`,
      )
    }
    const checkpointDelayMs = options.checkpointDelayMs ?? 1000
    if (!Number.isSafeInteger(checkpointDelayMs) || checkpointDelayMs < 0) {
      throw invalidArgument(
        `checkpointDelayMs must be a non-negative integer, got ${describe(checkpointDelayMs)}`,
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
      // Before anything writes to it (even the WAL switch changes its header). Tables of
      // something else are fine: the vs_ prefix lets a store share an app's file.
      if (storeKindOf(db) === 'server') {
        throw invalidArgument(
          `${options.path} is a VeloSync server store, not a device store`,
        )
      }
      // 8 KiB pages: a 384-d float32 document (~2 KB) spans fewer pages and WAL frames
      // than with 4 KiB (measured ~20% faster bulk writes). Only takes effect on a new file.
      db.pragma('page_size = 8192')
      db.pragma('journal_mode = WAL')
      db.pragma(`synchronous = ${synchronous}`)
      db.pragma(`busy_timeout = ${busyTimeoutMs}`)
      // 64 MiB of page cache: a 10k-document putMany (~20 MB) then stays in memory until
      // commit instead of spilling pages mid-transaction (measured +30% throughput).
      db.pragma('cache_size = -65536')
      // Checkpoints run on an idle timer (see #scheduleCheckpoint) rather than inside the
      // commit that crosses the threshold, which cost ~40 ms per 10k-document putMany.
      // SQLite's own auto-checkpoint stays as a backstop for writers that never go idle.
      db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`)
      migrate(db)
      return new LocalStore(db, options)
    } catch (error) {
      db?.close()
      if (isVeloSyncError(error)) throw error
      throw new VeloSyncError(
        'storage_failure',
        `cannot open store ${options.path}: ${(error as Error).message}`,
        { cause: error },
      )
    }
  }

  /** The current incarnation of this device's store (random hex, new for every new file). */
  get epoch(): string {
    return this.#epoch
  }

  /** `<deviceId>.<epoch>`: the key of this replica in version vectors. */
  get replicaId(): ReplicaId {
    return replicaIdOf(this.deviceId, this.#epoch)
  }

  /**
   * Starts a new incarnation of this device: a new epoch, so a new replica id, and every
   * unpushed write re-stamped as a new write of that replica (new LSN, HLC and version
   * vector; same content).
   *
   * @remarks
   * Call it after restoring the store file from a backup, or when the server reports
   * that this replica's log sequence numbers were already used. The restored file may
   * hold writes whose counters the lost incarnation also used, for other content; under
   * the new replica id they can never be mistaken for those.
   *
   * @returns the new epoch.
   * @throws `busy` while a push batch is in flight.
   */
  startNewEpoch(): string {
    this.#assertOpen()
    if (this.outbox.inFlight !== undefined) {
      throw new VeloSyncError(
        'busy',
        'a push batch is in flight; confirm or release it first',
      )
    }
    this.outbox.compact()
    const epoch = randomBytes(8).toString('hex')
    const replica = replicaIdOf(this.deviceId, epoch)
    const pending = this.outbox.entries()
    const digests = new Map<CollectionState, CollectionDigest>()
    let lsn = this.#lastLsn
    this.#run(() =>
      this.#db
        .transaction(() => {
          for (const entry of pending) {
            const state = this.#collection(entry.collection)
            const digest = digests.get(state) ?? state.digest.clone()
            digests.set(state, digest)
            const row = this.#statements.selectDocument.get(
              state.collectionId,
              entry.docId,
            ) as DocumentRow
            const current = rowToVersion(state.schema, entry.docId, row)
            const version: DocumentVersion = {
              ...current,
              versionVector: incrementVersionVector(
                current.versionVector,
                replica,
              ),
              // Later than the version it re-stamps, like any write (see laterThan).
              hlc: laterThan(this.#clock.now(), current.hlc),
              origin: replica,
            }
            this.#writeRow(state, version, row, digest)
            lsn++
            this.#statements.deleteOutboxEntry.run(entry.lsn)
            this.#statements.insertOutbox.run(
              lsn,
              state.collectionId,
              entry.docId,
              entry.op,
              entry.priorExists ? 1 : 0,
              versionVectorToJson(version.versionVector),
              version.hlc.wallMs,
              version.hlc.counter,
            )
          }
          for (const [state, digest] of digests) {
            this.#statements.updateDigest.run(
              digest.toHex(),
              state.collectionId,
            )
          }
          this.#setStoreValue('epoch', epoch)
          this.#setStoreValue('last_lsn', String(lsn))
          this.#persistClock()
        })
        .immediate(),
    )
    this.#epoch = epoch
    this.#lastLsn = lsn
    this.outbox.noteAppended()
    // Content is unchanged, so the search index stays as it is; only digests move.
    for (const [state, digest] of digests) state.digest = digest
    return epoch
  }

  /** The LSN of the newest local write (0 before the first). */
  get lastLsn(): number {
    return this.#lastLsn
  }

  /**
   * Creates a collection.
   *
   * @throws `already_exists` if a collection of that name exists; `invalid_argument` for a bad schema.
   */
  createCollection(input: CollectionSchemaInput): CollectionSchema {
    this.#assertOpen()
    const schema = normalizeCollectionSchema(input)
    if (this.#collections.has(schema.name)) {
      throw new VeloSyncError(
        'already_exists',
        `collection ${describe(schema.name)} already exists`,
      )
    }
    const state = this.#run(() => this.#insertCollection(schema))
    this.#collections.set(schema.name, state)
    return schema
  }

  /** The schema of `name`, or `undefined`. */
  getCollection(name: string): CollectionSchema | undefined {
    this.#assertOpen()
    return this.#collections.get(name)?.schema
  }

  /** All collections, by name. */
  listCollections(): CollectionSchema[] {
    this.#assertOpen()
    return [...this.#collections.values()]
      .map((state) => state.schema)
      .sort((a, b) => (a.name < b.name ? -1 : 1))
  }

  /**
   * Drops a collection with its documents and its pending outbox entries (locally only).
   *
   * @returns whether it existed.
   * @throws `busy` while a push has taken entries of this collection.
   */
  dropCollection(name: string): boolean {
    this.#assertOpen()
    const state = this.#collections.get(name)
    if (state === undefined) return false
    if (this.outbox.inFlightTouches(state.collectionId)) {
      throw new VeloSyncError(
        'busy',
        `collection ${describe(name)} has outbox entries in an in-flight push; retry after it completes`,
      )
    }
    this.#run(() =>
      this.#db
        .transaction(() => {
          this.#statements.deleteCollectionOutbox.run(state.collectionId)
          this.#statements.deleteCollectionDocuments.run(state.collectionId)
          this.#statements.deleteCollection.run(state.collectionId)
        })
        .immediate(),
    )
    this.#collections.delete(name)
    state.index.clear()
    return true
  }

  /**
   * Inserts or replaces one document and appends its outbox entry, in one transaction.
   *
   * @throws `not_found` for an unknown collection; `invalid_argument` for a bad id, vector
   *   or metadata (nothing is written).
   */
  put(collection: string, document: DocumentInput): WriteReceipt {
    const state = this.#collection(collection)
    const write = prepareWrite(state.schema, document, 'document')
    return this.#commitLocalWrites(state, [write])[0] as WriteReceipt
  }

  /**
   * Writes many documents in one transaction: all or nothing. Every document is validated
   * before anything is written.
   *
   * @returns one receipt per input, in order.
   */
  putMany(
    collection: string,
    documents: readonly DocumentInput[],
  ): WriteReceipt[] {
    const state = this.#collection(collection)
    if (!Array.isArray(documents)) {
      throw invalidArgument(
        `putMany needs an array of documents, got ${describe(documents)}`,
      )
    }
    const list: readonly DocumentInput[] = documents
    // The copies of the vectors share arrays of VECTORS_PER_ARRAY: one allocation per
    // array instead of one per document.
    const { dims, dtype } = state.schema
    let vectors = newVector(dtype, 0)
    const writes = list.map((document, i) => {
      const at = i % VECTORS_PER_ARRAY
      if (at === 0) {
        vectors = newVector(
          dtype,
          Math.min(VECTORS_PER_ARRAY, list.length - i) * dims,
        )
      }
      return prepareWrite(
        state.schema,
        document,
        `documents[${i}]`,
        vectors.subarray(at * dims, (at + 1) * dims),
      )
    })
    return this.#commitLocalWrites(state, writes).filter(
      (r): r is WriteReceipt => r !== undefined,
    )
  }

  /**
   * Deletes a document: it becomes a tombstone, which the outbox propagates.
   *
   * @returns the receipt, or `undefined` if there was no live document (nothing is logged).
   */
  delete(collection: string, id: string): WriteReceipt | undefined {
    const state = this.#collection(collection)
    assertDocumentId(id)
    return this.#commitLocalWrites(state, [
      { id, op: 'delete', vector: null, metadataJson: null, metadata: null },
    ])[0]
  }

  /** The live document `id`, or `undefined` (absent or deleted). */
  get(collection: string, id: string): StoredDocument | undefined {
    const state = this.#collection(collection)
    assertDocumentId(id)
    const row = this.#statements.selectDocument.get(state.collectionId, id) as
      DocumentRow | undefined
    if (row === undefined || row.deleted === 1) return undefined
    return toStoredDocument(state.schema, id, row)
  }

  /** Number of live documents. */
  count(collection: string): number {
    return this.#collection(collection).index.size
  }

  /**
   * Iterates live documents in id order, reading `batchSize` rows at a time. Writes between
   * steps are allowed: each page is a fresh query after the last id seen.
   */
  *documents(
    collection: string,
    options: { readonly batchSize?: number } = {},
  ): Generator<StoredDocument> {
    const state = this.#collection(collection)
    const batchSize = options.batchSize ?? 256
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw invalidArgument(
        `batchSize must be a positive integer, got ${describe(batchSize)}`,
      )
    }
    let after = ''
    for (;;) {
      this.#assertOpen()
      const rows = this.#statements.selectPage.all(
        state.collectionId,
        after,
        batchSize,
      ) as Array<DocumentRow & { id: string }>
      for (const row of rows) yield toStoredDocument(state.schema, row.id, row)
      if (rows.length < batchSize) return
      after = (rows[rows.length - 1] as { id: string }).id
    }
  }

  /**
   * Exact k-nearest-neighbour search, best first. A filter is applied before ranking, so
   * `k` hits come back whenever at least `k` documents match.
   *
   * @throws `not_found` for an unknown collection; `invalid_argument` for a bad query
   *   vector (length, NaN/Infinity, all-zero under cosine), `k` or filter.
   */
  search(
    collection: string,
    query: VectorInput,
    options: SearchOptions = {},
  ): SearchResult[] {
    const state = this.#collection(collection)
    const q = toStoredVector(state.schema, query, 'query')
    const k = options.k ?? 10
    if (!Number.isSafeInteger(k) || k < 1 || k > MAX_K) {
      throw invalidArgument(
        `k must be an integer in 1..${MAX_K}, got ${describe(k)}`,
      )
    }
    const predicate: MetadataPredicate | undefined =
      options.filter === undefined ? undefined : compileFilter(options.filter)
    const includeMetadata = options.includeMetadata ?? true
    const includeVector = options.includeVector ?? false
    return state.index.search(q, k, predicate).map((hit) => {
      const result: {
        id: string
        score: number
        metadata?: JsonObject
        vector?: StoredVector
      } = {
        id: hit.id,
        score: hit.score,
      }
      if (includeMetadata)
        result.metadata = state.index.metadataOf(hit.id) as JsonObject
      if (includeVector) {
        const row = this.#statements.selectDocument.get(
          state.collectionId,
          hit.id,
        ) as DocumentRow
        result.vector = vectorFromBytes(
          row.vector as Buffer,
          state.schema.dtype,
          state.schema.dims,
        )
      }
      return result
    })
  }

  /** The collection digest: 64 hex digits, equal on every replica holding the same documents. */
  digest(collection: string): string {
    return this.#collection(collection).digest.toHex()
  }

  /** Which kernel a collection's search uses. */
  searchBackend(collection: string): KernelBackend {
    return this.#collection(collection).index.backend
  }

  /**
   * Applies versions received from the server, without logging them. A document with an
   * unpushed local write keeps it (the server resolves the two when it is pushed).
   *
   * @throws `invalid_argument` if any version is malformed (nothing is written).
   */
  applyRemoteVersions(
    collection: string,
    versions: readonly DocumentVersion[],
  ): RemoteApplyResult {
    this.#collection(collection)
    return this.applyServerUpdate({
      versions: versions.map((version) => ({ collection, version })),
    })
  }

  /**
   * Applies what one sync round received, in ONE transaction: confirms the pushed
   * entries the server committed, adopts the server's versions (conflict outcomes and
   * pulled changes; collections not yet on this device are created), and stores the new
   * pull cursor. A crash leaves either all of it or none, so the cursor never moves past
   * a change that was not applied.
   *
   * @remarks
   * A document with an unpushed local write keeps it: the server decides when that write
   * arrives, and its answer comes back in a later round.
   *
   * @throws `invalid_argument` if a version or a collection spec is malformed, or a spec
   *   contradicts a local collection; nothing is written.
   */
  applyServerUpdate(update: ServerUpdate): RemoteApplyResult {
    this.#assertOpen()
    const specs = new Map<string, CollectionSchema>()
    for (const input of update.collections ?? []) {
      const schema = normalizeCollectionSchema(input)
      const local = this.#collections.get(schema.name)?.schema
      if (local !== undefined && !sameSchema(local, schema)) {
        throw invalidArgument(
          `the server's collection ${describe(schema.name)} (${describeSchema(schema)}) differs from this device's (${describeSchema(local)})`,
        )
      }
      specs.set(schema.name, schema)
    }
    const schemaOf = (name: string): CollectionSchema => {
      const schema = this.#collections.get(name)?.schema ?? specs.get(name)
      if (schema === undefined) {
        throw invalidArgument(
          `collection ${describe(name)} is neither on this device nor described by the server`,
        )
      }
      return schema
    }
    const checked = update.versions.map(({ collection, version, seq }, i) => {
      if (seq !== undefined && (!Number.isSafeInteger(seq) || seq < 1)) {
        throw invalidArgument(
          `versions[${i}].seq must be a positive integer, got ${describe(seq)}`,
        )
      }
      return {
        collection,
        version: checkRemoteVersion(
          schemaOf(collection),
          version,
          `versions[${i}]`,
        ),
        seq,
      }
    })
    if (
      update.cursor !== undefined &&
      (!Number.isSafeInteger(update.cursor) || update.cursor < 0)
    ) {
      throw invalidArgument(
        `cursor must be a non-negative integer, got ${describe(update.cursor)}`,
      )
    }

    const created: CollectionState[] = []
    const touched = new Map<
      CollectionState,
      { digest: CollectionDigest; changes: IndexChange[] }
    >()
    let applied = 0
    const skipped: number[] = []
    let cursor = update.cursor
    // Rows are written with multi-row statements; the prior row of each document comes from
    // one query per collection, and from `priors` once this update has written it.
    const documentRows = this.#documentRows
    documentRows.clear()
    if (
      update.durability !== undefined &&
      update.durability !== 'full' &&
      update.durability !== 'deferred'
    ) {
      throw invalidArgument(
        `durability must be 'full' or 'deferred', got ${describe(update.durability)}`,
      )
    }
    // A deferred update skips the fsync (synchronous NORMAL for this one transaction); WAL
    // order makes it durable with the next FULL commit. A confirm always waits for the
    // disk: once the device pushes past the batch after it, the server may forget its
    // hashes.
    const relaxed =
      update.durability === 'deferred' &&
      update.confirm === undefined &&
      this.#synchronous === 'full'
    if (relaxed) this.#db.pragma('synchronous = NORMAL')
    try {
      this.#run(() =>
        this.#db
          .transaction(() => {
            if (update.confirm !== undefined) {
              this.outbox.confirm(
                update.confirm.batch,
                update.confirm.throughLsn,
              )
            }
            const contexts = new Map<
              CollectionState,
              { pending: Set<string>; priors: Map<string, PriorRow> }
            >()
            for (const [
              position,
              { collection, version, seq },
            ] of checked.entries()) {
              let state =
                this.#collections.get(collection) ??
                created.find((c) => c.schema.name === collection)
              if (state === undefined) {
                state = this.#insertCollection(schemaOf(collection))
                created.push(state)
              }
              let context = contexts.get(state)
              if (context === undefined) {
                context = {
                  pending: new Set(
                    this.#statements.selectOutboxDocuments
                      .pluck()
                      .all(state.collectionId) as string[],
                  ),
                  priors: this.#priorRows(
                    state,
                    checked
                      .filter((item) => item.collection === collection)
                      .map((item) => item.version),
                  ),
                }
                contexts.set(state, context)
              }
              if (context.pending.has(version.id)) {
                // The server has this document now: the pending write may no longer be
                // compacted away as never sent (a create-then-delete must reach the server).
                this.#statements.markServerKnows.run(
                  state.collectionId,
                  version.id,
                )
                skipped.push(position)
                if (cursor !== undefined && seq !== undefined)
                  cursor = Math.min(cursor, seq - 1)
                continue
              }
              let work = touched.get(state)
              if (work === undefined) {
                work = { digest: state.digest.clone(), changes: [] }
                touched.set(state, work)
              }
              const change = this.#writeRow(
                state,
                version,
                context.priors.get(version.id),
                work.digest,
                undefined,
                undefined,
                documentRows,
              )
              context.priors.set(version.id, change.row)
              work.changes.push(change.index)
              applied++
              this.#clock.observe(version.hlc)
            }
            documentRows.flush()
            for (const [state, work] of touched) {
              this.#statements.updateDigest.run(
                work.digest.toHex(),
                state.collectionId,
              )
            }
            if (cursor !== undefined)
              this.#setStoreValue('cursor', String(cursor))
            // Persist what the clock absorbed: after a restart a local write must still be
            // later than the versions it replaces.
            this.#persistClock()
          })
          .immediate(),
      )
    } finally {
      if (relaxed) this.#db.pragma('synchronous = FULL')
    }
    for (const state of created) this.#collections.set(state.schema.name, state)
    for (const [state, work] of touched)
      this.#afterCommit(state, work.digest, work.changes)
    return { applied, skipped }
  }

  /**
   * Removes documents (live or tombstones) that are not in `keep` and have no unpushed
   * local write, without logging anything: the end of a full resync, when the server no
   * longer has tombstones for documents deleted while this device was away.
   *
   * @returns how many documents were removed.
   */
  removeAbsentDocuments(
    keep: ReadonlyMap<string, ReadonlySet<string>>,
  ): number {
    this.#assertOpen()
    const removals: Array<{
      state: CollectionState
      digest: CollectionDigest
      changes: IndexChange[]
    }> = []
    let removed = 0
    this.#run(() =>
      this.#db
        .transaction(() => {
          for (const state of this.#collections.values()) {
            const kept = keep.get(state.schema.name) ?? new Set<string>()
            const pending = new Set(
              this.#statements.selectOutboxDocuments
                .pluck()
                .all(state.collectionId) as string[],
            )
            const digest = state.digest.clone()
            const changes: IndexChange[] = []
            for (const row of this.#statements.selectPriorsAll.all(
              state.collectionId,
            ) as Array<PriorRow & { id: string }>) {
              if (kept.has(row.id) || pending.has(row.id)) continue
              if (row.hash !== null) digest.remove(row.hash)
              this.#statements.deleteDocument.run(state.collectionId, row.id)
              if (row.deleted === 0) changes.push({ op: 'delete', id: row.id })
              removed++
            }
            this.#statements.updateDigest.run(
              digest.toHex(),
              state.collectionId,
            )
            removals.push({ state, digest, changes })
          }
        })
        .immediate(),
    )
    for (const { state, digest, changes } of removals)
      this.#afterCommit(state, digest, changes)
    return removed
  }

  /** The pull cursor: the server sequence number this device has applied up to (0 at first). */
  get syncCursor(): number {
    this.#assertOpen()
    const row = this.#statements.selectStoreValue.get('cursor') as
      { value: string } | undefined
    return row === undefined ? 0 : Number(row.value)
  }

  /**
   * Recomputes every document hash from its stored body and every collection digest from
   * the hashes, and compares them with what is stored; also runs SQLite's integrity check.
   */
  verify(): VerifyReport {
    this.#assertOpen()
    const problems: string[] = []
    const integrity = this.#db.pragma('integrity_check', {
      simple: true,
    }) as string
    if (integrity !== 'ok')
      problems.push(`sqlite integrity_check: ${integrity}`)
    for (const state of this.#collections.values()) {
      const digest = new CollectionDigest()
      let live = 0
      for (const row of this.#statements.selectAllDocuments.iterate(
        state.collectionId,
      ) as Iterable<DocumentRow & { id: string }>) {
        if (row.deleted === 1) continue
        live++
        const version = rowToVersion(state.schema, row.id, row)
        const hash = hashDocumentVersion(
          version,
          state.schema.dtype,
          nodeSha256,
        )
        if (row.hash === null || !Buffer.from(hash).equals(row.hash)) {
          problems.push(
            `${state.schema.name}/${row.id}: stored hash does not match its body`,
          )
        }
        digest.add(hash)
      }
      if (digest.toHex() !== state.digest.toHex()) {
        problems.push(
          `${state.schema.name}: digest ${state.digest.toHex()} != recomputed ${digest.toHex()}`,
        )
      }
      if (live !== state.index.size) {
        problems.push(
          `${state.schema.name}: ${live} live rows but ${state.index.size} indexed`,
        )
      }
    }
    return { ok: problems.length === 0, problems }
  }

  /** Closes the file. Further calls throw `closed`. Idempotent. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    clearTimeout(this.#checkpointTimer)
    this.#db.close()
    for (const state of this.#collections.values()) state.index.clear()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  #commitLocalWrites(
    state: CollectionState,
    writes: readonly PreparedWrite[],
  ): Array<WriteReceipt | undefined> {
    const replica = this.replicaId
    const digest = state.digest.clone()
    const receipts: Array<WriteReceipt | undefined> = []
    const changes: IndexChange[] = []
    let lsn = this.#lastLsn
    // Same-id writes within the batch are tracked in `priors`, never read back from
    // SQLite, so the rows can be written in multi-row statements.
    const documentRows = this.#documentRows
    const outboxRows = this.#outboxRows
    documentRows.clear()
    outboxRows.clear()
    this.#run(() =>
      this.#db
        .transaction(() => {
          const priors = this.#priorRows(state, writes)
          for (const write of writes) {
            const prior = priors.get(write.id)
            if (
              write.op === 'delete' &&
              (prior === undefined || prior.deleted === 1)
            ) {
              receipts.push(undefined)
              continue
            }
            const versionVector = incrementVersionVector(
              prior === undefined
                ? {}
                : (JSON.parse(prior.version_vector) as VersionVector),
              replica,
            )
            // Later than the version it replaces, even one whose far-future time the
            // clock's bound kept out (see laterThan).
            const hlc =
              prior === undefined
                ? this.#clock.now()
                : laterThan(this.#clock.now(), {
                    wallMs: prior.hlc_wall,
                    counter: prior.hlc_counter,
                  })
            lsn++
            const version: DocumentVersion = {
              id: write.id,
              deleted: write.op === 'delete',
              vector: write.vector,
              metadataJson: write.metadataJson,
              versionVector,
              hlc,
              origin: replica,
            }
            const versionVectorJson = versionVectorToJson(versionVector)
            const change = this.#writeRow(
              state,
              version,
              prior,
              digest,
              versionVectorJson,
              write.metadata,
              documentRows,
            )
            changes.push(change.index)
            // A later write of the same id in this batch must see this one.
            priors.set(write.id, change.row)
            outboxRows.add(
              lsn,
              state.collectionId,
              write.id,
              write.op,
              prior === undefined ? 0 : 1,
              versionVectorJson,
              hlc.wallMs,
              hlc.counter,
            )
            receipts.push({ id: write.id, lsn, versionVector, hlc })
          }
          documentRows.flush()
          outboxRows.flush()
          if (lsn !== this.#lastLsn) {
            this.#setStoreValue('last_lsn', String(lsn))
            this.#persistClock()
            this.#statements.updateDigest.run(
              digest.toHex(),
              state.collectionId,
            )
          }
        })
        .immediate(),
    )
    this.#lastLsn = lsn
    this.outbox.noteAppended()
    this.#afterCommit(state, digest, changes)
    return receipts
  }

  /** Upserts one document row and folds its hash into `digest`; runs inside a transaction. */
  #writeRow(
    state: CollectionState,
    version: DocumentVersion,
    prior: PriorRow | undefined,
    digest: CollectionDigest,
    versionVectorJson: string = versionVectorToJson(version.versionVector),
    metadata?: JsonObject | null,
    batch?: RowBatch,
  ): { index: IndexChange; row: PriorRow } {
    const hash = version.deleted
      ? null
      : hashDocumentVersion(version, state.schema.dtype, nodeSha256)
    if (prior?.hash) digest.remove(prior.hash)
    if (hash !== null) digest.add(hash)
    const values = [
      state.collectionId,
      version.id,
      version.deleted ? 1 : 0,
      version.vector === null ? null : vectorToBytes(version.vector),
      version.metadataJson,
      versionVectorJson,
      version.hlc.wallMs,
      version.hlc.counter,
      version.origin,
      hash,
    ]
    if (batch === undefined) this.#statements.upsertDocument.run(values)
    else batch.add(...values)
    const row: PriorRow = {
      deleted: version.deleted ? 1 : 0,
      version_vector: versionVectorJson,
      hash,
      hlc_wall: version.hlc.wallMs,
      hlc_counter: version.hlc.counter,
    }
    if (version.deleted) return { index: { op: 'delete', id: version.id }, row }
    return {
      index: {
        op: 'put',
        id: version.id,
        vector: version.vector as StoredVector,
        metadata:
          metadata ??
          takeParsedMetadata(version) ??
          (JSON.parse(version.metadataJson as string) as JsonObject),
      },
      row,
    }
  }

  /**
   * The current rows of the documents a batch writes, by id. One query for a large batch
   * (ids passed as a JSON array) instead of one statement per document.
   */
  #priorRows(
    state: CollectionState,
    writes: readonly { readonly id: string }[],
  ): Map<string, PriorRow> {
    const priors = new Map<string, PriorRow>()
    if (writes.length <= 16) {
      for (const { id } of writes) {
        const row = this.#statements.selectPrior.get(state.collectionId, id) as
          PriorRow | undefined
        if (row !== undefined) priors.set(id, row)
      }
      return priors
    }
    const ids = JSON.stringify(writes.map((write) => write.id))
    for (const row of this.#statements.selectPriors.all(
      state.collectionId,
      ids,
    ) as Array<PriorRow & { id: string }>) {
      priors.set(row.id, row)
    }
    return priors
  }

  /** Publishes a committed transaction to the in-memory digest and search index. */
  #afterCommit(
    state: CollectionState,
    digest: CollectionDigest,
    changes: readonly IndexChange[],
  ): void {
    this.#scheduleCheckpoint()
    state.digest = digest
    for (const change of changes) {
      if (change.op === 'put')
        state.index.upsert(change.id, change.vector, change.metadata)
      else state.index.remove(change.id)
    }
  }

  /** Inserts a collection row; the caller publishes the returned state after commit. */
  #insertCollection(schema: CollectionSchema): CollectionState {
    const result = this.#statements.insertCollection.run(
      schema.name,
      schema.dims,
      schema.metric,
      schema.dtype,
      EMPTY_COLLECTION_DIGEST,
    )
    return {
      schema,
      collectionId: Number(result.lastInsertRowid),
      digest: new CollectionDigest(),
      index: this.#newIndex(schema, 0),
    }
  }

  /** (Re)arms the idle checkpoint: it runs once writes pause for `checkpointDelayMs`. */
  #scheduleCheckpoint(): void {
    clearTimeout(this.#checkpointTimer)
    this.#checkpointTimer = setTimeout(() => {
      this.#checkpointTimer = undefined
      if (this.#closed) return
      try {
        this.#db.pragma('wal_checkpoint(PASSIVE)')
      } catch (cause) {
        // Nothing is lost (the WAL keeps every frame) and the next checkpoint retries,
        // but the application should hear about it.
        this.#onError(
          new VeloSyncError(
            'storage_failure',
            `idle WAL checkpoint failed: ${(cause as Error).message}`,
            {
              cause,
            },
          ),
        )
      }
    }, this.#checkpointDelayMs)
    this.#checkpointTimer.unref()
  }

  #loadCollections(): void {
    const rows = this.#statements.selectCollections.all() as Array<{
      collection_id: number
      name: string
      dims: number
      metric: CollectionSchema['metric']
      dtype: CollectionSchema['dtype']
      digest: string
    }>
    for (const row of rows) {
      const schema = normalizeCollectionSchema(row)
      const live = (
        this.#statements.countLive.get(row.collection_id) as { n: number }
      ).n
      const index = this.#newIndex(schema, live)
      for (const doc of this.#statements.selectLiveBodies.iterate(
        row.collection_id,
      ) as Iterable<{
        id: string
        vector: Buffer
        metadata: string
      }>) {
        index.upsert(
          doc.id,
          vectorFromBytes(doc.vector, schema.dtype, schema.dims),
          JSON.parse(doc.metadata) as JsonObject,
        )
      }
      this.#collections.set(schema.name, {
        schema,
        collectionId: row.collection_id,
        digest: new CollectionDigest(row.digest),
        index,
      })
    }
  }

  #newIndex(schema: CollectionSchema, expectedRows: number): ExactVectorIndex {
    return new ExactVectorIndex({
      dims: schema.dims,
      metric: schema.metric,
      backend: this.#vectorBackend,
      initialCapacity: Math.max(1024, expectedRows),
    })
  }

  #collection(name: string): CollectionState {
    this.#assertOpen()
    assertCollectionName(name)
    const state = this.#collections.get(name)
    if (state === undefined) {
      throw new VeloSyncError(
        'not_found',
        `collection ${describe(name)} does not exist on this device; create it with createCollection()`,
      )
    }
    return state
  }

  #collectionById(collectionId: number): CollectionState {
    for (const state of this.#collections.values()) {
      if (state.collectionId === collectionId) return state
    }
    throw new VeloSyncError(
      'internal',
      `outbox refers to unknown collection id ${collectionId}`,
    )
  }

  #readStoreValues(): Record<string, string | undefined> {
    const rows = this.#statements.selectStoreValues.all() as Array<{
      key: string
      value: string
    }>
    return Object.fromEntries(rows.map((row) => [row.key, row.value]))
  }

  /** Saves the clock's last timestamp; call inside the transaction that used it. */
  #persistClock(): void {
    const last = this.#clock.last
    this.#setStoreValue('hlc_wall', String(last.wallMs))
    this.#setStoreValue('hlc_counter', String(last.counter))
  }

  #setStoreValue(key: string, value: string): void {
    this.#statements.setStoreValue.run(key, value)
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
    if (this.#closed)
      throw new VeloSyncError('closed', 'this LocalStore is closed')
  }
}

const DOCUMENT_INSERT_COLUMNS =
  'collection_id, id, deleted, vector, metadata, version_vector, hlc_wall, hlc_counter, origin, hash'
const DOCUMENT_UPSERT_CLAUSE = `ON CONFLICT (collection_id, id) DO UPDATE SET
  deleted = excluded.deleted, vector = excluded.vector, metadata = excluded.metadata,
  version_vector = excluded.version_vector, hlc_wall = excluded.hlc_wall,
  hlc_counter = excluded.hlc_counter, origin = excluded.origin, hash = excluded.hash`
const OUTBOX_COLUMNS =
  'lsn, collection_id, doc_id, op, prior_exists, version_vector, hlc_wall, hlc_counter'

function prepareStatements(db: Database.Database) {
  return {
    selectStoreValues: db.prepare('SELECT key, value FROM vs_store'),
    setStoreValue: db.prepare(
      'INSERT INTO vs_store (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ),
    selectCollections: db.prepare(
      'SELECT collection_id, name, dims, metric, dtype, digest FROM vs_collections ORDER BY collection_id',
    ),
    insertCollection: db.prepare(
      'INSERT INTO vs_collections (name, dims, metric, dtype, digest) VALUES (?, ?, ?, ?, ?)',
    ),
    deleteCollection: db.prepare(
      'DELETE FROM vs_collections WHERE collection_id = ?',
    ),
    deleteCollectionDocuments: db.prepare(
      'DELETE FROM vs_documents WHERE collection_id = ?',
    ),
    deleteCollectionOutbox: db.prepare(
      'DELETE FROM vs_outbox WHERE collection_id = ?',
    ),
    updateDigest: db.prepare(
      'UPDATE vs_collections SET digest = ? WHERE collection_id = ?',
    ),
    countLive: db.prepare(
      'SELECT count(*) AS n FROM vs_documents WHERE collection_id = ? AND deleted = 0',
    ),
    selectLiveBodies: db.prepare(
      'SELECT id, vector, metadata FROM vs_documents WHERE collection_id = ? AND deleted = 0',
    ),
    selectStoreValue: db.prepare('SELECT value FROM vs_store WHERE key = ?'),
    markServerKnows: db.prepare(
      'UPDATE vs_outbox SET prior_exists = 1 WHERE collection_id = ? AND doc_id = ?',
    ),
    selectPriorsAll: db.prepare(
      'SELECT id, deleted, version_vector, hash FROM vs_documents WHERE collection_id = ?',
    ),
    deleteDocument: db.prepare(
      'DELETE FROM vs_documents WHERE collection_id = ? AND id = ?',
    ),
    selectPrior: db.prepare(
      'SELECT deleted, version_vector, hash, hlc_wall, hlc_counter FROM vs_documents WHERE collection_id = ? AND id = ?',
    ),
    selectPriors: db.prepare(
      `SELECT id, deleted, version_vector, hash, hlc_wall, hlc_counter FROM vs_documents
       WHERE collection_id = ? AND id IN (SELECT value FROM json_each(?))`,
    ),
    selectDocument: db.prepare(
      `SELECT ${DOCUMENT_COLUMNS} FROM vs_documents WHERE collection_id = ? AND id = ?`,
    ),
    selectAllDocuments: db.prepare(
      `SELECT id, ${DOCUMENT_COLUMNS} FROM vs_documents WHERE collection_id = ?`,
    ),
    selectPage: db.prepare(
      `SELECT id, ${DOCUMENT_COLUMNS} FROM vs_documents WHERE collection_id = ? AND deleted = 0 AND id > ? ORDER BY id LIMIT ?`,
    ),
    upsertDocument: db.prepare(
      `INSERT INTO vs_documents (${DOCUMENT_INSERT_COLUMNS})
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ${DOCUMENT_UPSERT_CLAUSE}`,
    ),
    deleteOutboxEntry: db.prepare('DELETE FROM vs_outbox WHERE lsn = ?'),
    insertOutbox: db.prepare(
      `INSERT INTO vs_outbox (${OUTBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    selectOutboxDocuments: db.prepare(
      'SELECT DISTINCT doc_id FROM vs_outbox WHERE collection_id = ?',
    ),
  }
}

function prepareWrite(
  schema: CollectionSchema,
  document: DocumentInput,
  what: string,
  into?: StoredVector,
): PreparedWrite {
  if (typeof document !== 'object' || document === null) {
    throw invalidArgument(
      `${what} must be an object with id, vector and metadata, got ${describe(document)}`,
    )
  }
  assertDocumentId(document.id)
  const vector = toStoredVector(schema, document.vector, `${what}.vector`, into)
  const canonical = canonicalMetadata(
    document.metadata ?? {},
    `${what}.metadata`,
  )
  // The index keeps a private copy, never the caller's object: later mutations of the
  // caller's object must not leak into it.
  const metadata = canonical.copy ?? (JSON.parse(canonical.json) as JsonObject)
  return {
    id: document.id,
    op: 'put',
    vector,
    metadataJson: canonical.json,
    metadata,
  }
}

function checkRemoteVersion(
  schema: CollectionSchema,
  version: DocumentVersion,
  what: string,
): DocumentVersion {
  if (typeof version !== 'object' || version === null) {
    throw invalidArgument(`${what} must be a document version object`)
  }
  // Decoded by the protocol codec, which made every check below already.
  if (isValidatedFor(version, schema)) return version
  assertDocumentId(version.id)
  const versionVector = parseVersionVector(version.versionVector)
  const hlc = assertHlc(version.hlc)
  if (typeof version.origin !== 'string' || version.origin.length === 0) {
    throw invalidArgument(`${what}.origin must be a replica id`)
  }
  if (version.deleted === true) {
    return { ...version, vector: null, metadataJson: null, versionVector, hlc }
  }
  if (version.vector === null || typeof version.metadataJson !== 'string') {
    throw invalidArgument(`${what}: a live version needs a vector and metadata`)
  }
  const vector = toStoredVector(schema, version.vector, `${what}.vector`)
  let parsed: unknown
  try {
    parsed = JSON.parse(version.metadataJson)
  } catch {
    throw invalidArgument(`${what}.metadataJson is not JSON`)
  }
  const metadataJson = canonicalMetadataJson(parsed, `${what}.metadata`)
  return {
    id: version.id,
    deleted: false,
    vector,
    metadataJson,
    versionVector,
    hlc,
    origin: version.origin,
  }
}

function sameSchema(a: CollectionSchema, b: CollectionSchema): boolean {
  return a.dims === b.dims && a.metric === b.metric && a.dtype === b.dtype
}

function describeSchema(schema: CollectionSchema): string {
  return `${schema.dims} × ${schema.dtype}, ${schema.metric}`
}
