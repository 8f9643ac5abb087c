import {
  VeloSyncError,
  describe,
  invalidArgument,
  planCompaction,
  type DocumentVersion,
  type HlcTimestamp,
  type LogOp,
  type VersionVector,
} from '@velosync/core'
import type { Database } from 'better-sqlite3'
import {
  DOCUMENT_COLUMNS,
  rowToVersion,
  type DocumentRow,
} from './document-row.js'
import type { CollectionState } from './local-store.js'

/** One replication-log entry (without its body). */
export interface OutboxEntry {
  readonly lsn: number
  readonly collection: string
  readonly docId: string
  readonly op: LogOp
  /** Whether the server may know the document (see `CompactableEntry.priorExists`). */
  readonly priorExists: boolean
  readonly versionVector: VersionVector
  readonly hlc: HlcTimestamp
}

/** One operation of a push batch: a log entry with the document version it produced. */
export interface OutboxOp {
  readonly lsn: number
  readonly collection: string
  readonly op: LogOp
  readonly version: DocumentVersion
}

/** Entries taken for one push. Bodies are snapshots: later local writes do not change them. */
export interface OutboxBatch {
  readonly id: number
  readonly ops: readonly OutboxOp[]
  readonly firstLsn: number
  readonly lastLsn: number
}

/** What {@link Outbox.compact} did. */
export interface CompactionResult {
  /** Entries removed from the log. */
  readonly removed: number
  /** Never-sent documents whose create-then-delete left nothing to send. */
  readonly purged: number
}

/** Default and largest number of operations in one batch. */
export const DEFAULT_BATCH_OPS = 1000
export const MAX_BATCH_OPS = 100_000

/** @internal What the outbox needs from its store. */
export interface OutboxHost {
  collectionById(collectionId: number): CollectionState
  assertOpen(): void
}

interface EntryRow {
  lsn: number
  collection_id: number
  doc_id: string
  op: LogOp
  prior_exists: number
  version_vector: string
  hlc_wall: number
  hlc_counter: number
}

interface InFlight {
  readonly batch: OutboxBatch
  readonly lsns: ReadonlySet<number>
  readonly collectionIds: ReadonlySet<number>
}

/**
 * The replication log of a {@link LocalStore}: the entries a push sends, and the
 * hooks a sync engine drives.
 *
 * @remarks
 * A push goes: {@link takeBatch} (compacts, then hands out the oldest entries with their
 * bodies), send, then {@link confirm} once the server has durably committed them, or
 * {@link release} on failure. Entries leave the log only in `confirm`. Entries in a
 * taken batch are never rewritten by compaction. At most two batches are in flight: the
 * one sent, and the next one, taken (`after` the first) while the first is at the server
 * and sent once the server has applied all of the first, possibly before that is
 * confirmed here. After a restart none is (the in-flight marks live in memory), so a push
 * cut off by a crash is simply sent again, and the server's per-device LSN check makes
 * that harmless (it recognizes replays of its latest two pushes).
 */
export class Outbox {
  readonly #db: Database
  readonly #host: OutboxHost
  readonly #statements: ReturnType<typeof prepareStatements>
  /** Taken batches, oldest first (at most two). */
  #inFlight: InFlight[] = []
  #nextBatchId = 1
  /** Whether entries were appended since the last compaction (true after a restart). */
  #uncompacted = true

  /** @internal */
  constructor(db: Database, host: OutboxHost) {
    this.#db = db
    this.#host = host
    this.#statements = prepareStatements(db)
  }

  /** Entries in the log, including any in the in-flight batch. */
  get size(): number {
    this.#host.assertOpen()
    return (this.#statements.count.get() as { n: number }).n
  }

  /** The oldest batch taken and not yet confirmed or released. */
  get inFlight(): OutboxBatch | undefined {
    return this.#inFlight[0]?.batch
  }

  /** All entries, oldest first (for status displays and tests). */
  entries(): OutboxEntry[] {
    this.#host.assertOpen()
    return (this.#statements.selectAll.all() as EntryRow[]).map((row) =>
      this.#toEntry(row),
    )
  }

  /**
   * Compacts the entries no push has taken (see `planCompaction`): one entry per document,
   * nothing for a never-sent document that was created and deleted. Idempotent.
   */
  compact(): CompactionResult {
    this.#host.assertOpen()
    const inFlight = this.#inFlight
    return this.#db
      .transaction(() => {
        // Most logs need nothing: one entry per document and no delete of a document the
        // server never got. SQLite can tell without this reading the whole log (the check
        // counts in-flight entries too, so it can only err towards compacting).
        if (this.#statements.needsCompaction.get() === 0) {
          this.#uncompacted = false
          return { removed: 0, purged: 0 }
        }
        const pending = (this.#statements.selectAll.all() as EntryRow[])
          .filter((row) => !inFlight.some(({ lsns }) => lsns.has(row.lsn)))
          .map((row) => ({
            lsn: row.lsn,
            collection: String(row.collection_id),
            docId: row.doc_id,
            op: row.op,
            priorExists: row.prior_exists === 1,
          }))
        const plan = planCompaction(pending)
        // In-flight entries were left out: if they come back (release), the log may again
        // hold two entries for one document, so only a full compaction clears the mark.
        if (inFlight.length === 0) this.#uncompacted = false
        for (const lsn of plan.removeLsns) this.#statements.deleteEntry.run(lsn)
        for (const lsn of plan.clearPriorExists)
          this.#statements.clearPriorExists.run(lsn)
        for (const { collection, docId } of plan.purgeDocuments) {
          this.#statements.purgeTombstone.run(Number(collection), docId)
        }
        return {
          removed: plan.removeLsns.length,
          purged: plan.purgeDocuments.length,
        }
      })
      .immediate()
  }

  /**
   * Compacts, then takes the oldest `maxOps` entries with their document versions.
   *
   * @param options.after - the batch in flight, when the next one is taken while it is at
   *   the server: the entries after it are taken instead. Send the new batch only once the
   *   server has applied all of `after`; a partial confirm or a release of `after`
   *   releases it.
   * @returns `undefined` when there is nothing to send.
   * @throws `busy` while a batch is in flight and `after` does not name it, or while two
   *   are.
   */
  takeBatch(
    options: { readonly maxOps?: number; readonly after?: OutboxBatch } = {},
  ): OutboxBatch | undefined {
    this.#host.assertOpen()
    const maxOps = options.maxOps ?? DEFAULT_BATCH_OPS
    if (!Number.isSafeInteger(maxOps) || maxOps < 1 || maxOps > MAX_BATCH_OPS) {
      throw invalidArgument(
        `maxOps must be an integer in 1..${MAX_BATCH_OPS}, got ${describe(maxOps)}`,
      )
    }
    const newest = this.#inFlight.at(-1)
    if (
      newest !== undefined &&
      (this.#inFlight.length > 1 || options.after !== newest.batch)
    ) {
      throw new VeloSyncError(
        'busy',
        `outbox batch ${newest.batch.id} is still in flight; confirm or release it first`,
      )
    }
    if (newest === undefined && options.after !== undefined) {
      throw invalidArgument(
        `batch ${describe(options.after?.id)} is not in flight`,
      )
    }
    // Compacting reads the whole log; a round that takes many batches only needs it again
    // when local writes arrived in between.
    if (this.#uncompacted) this.compact()
    const rows = this.#statements.selectBatch.all({
      after: newest?.batch.lastLsn ?? 0,
      limit: maxOps,
    }) as Array<EntryRow & DocumentRow & { entry_version_vector: string }>
    if (rows.length === 0) return undefined
    const ops = rows.map((row): OutboxOp => {
      const state = this.#host.collectionById(row.collection_id)
      // After compaction each document has one pending entry, its newest write, so the
      // row must hold exactly the version that entry logged.
      if (row.entry_version_vector !== row.version_vector) {
        throw new VeloSyncError(
          'internal',
          `outbox entry ${row.lsn} for ${state.schema.name}/${row.doc_id} does not match the stored document`,
        )
      }
      return {
        lsn: row.lsn,
        collection: state.schema.name,
        op: row.op,
        version: rowToVersion(state.schema, row.doc_id, row),
      }
    })
    // From here on the server may commit these writes even if we never hear back, so
    // compaction must never again treat their documents as unknown to the server (a
    // later delete has to be sent). Persisted: the answer may be lost to a crash too.
    // A batch taken after another is marked now too: it goes out once the server answered
    // that one, before the confirm is on disk. Released unsent, it keeps the mark, which
    // costs at most one delete per document that compaction could have dropped.
    this.#markMaybeSent((ops[ops.length - 1] as OutboxOp).lsn)
    const batch: OutboxBatch = {
      id: this.#nextBatchId++,
      ops,
      firstLsn: (ops[0] as OutboxOp).lsn,
      lastLsn: (ops[ops.length - 1] as OutboxOp).lsn,
    }
    this.#inFlight.push({
      batch,
      lsns: new Set(ops.map((op) => op.lsn)),
      collectionIds: new Set(rows.map((row) => row.collection_id)),
    })
    return batch
  }

  /**
   * The server durably committed the batch's entries up to `upToLsn` (default: all):
   * removes them from the log. Entries after `upToLsn` return to the pending log, and so
   * does a batch taken after this one (it must not be sent before them).
   *
   * @returns the number of entries removed.
   * @throws `invalid_argument` if `batch` is not the oldest in-flight batch.
   */
  confirm(batch: OutboxBatch, upToLsn: number = batch.lastLsn): number {
    this.#host.assertOpen()
    if (this.#inFlight[0]?.batch !== batch) {
      throw invalidArgument(
        `batch ${describe(batch?.id)} is not the oldest in-flight outbox batch`,
      )
    }
    if (!Number.isSafeInteger(upToLsn)) {
      throw invalidArgument(
        `upToLsn must be an integer, got ${describe(upToLsn)}`,
      )
    }
    // A batch is always the oldest pending entries and nothing else was pending below its
    // last LSN, so one range delete removes exactly the batch's confirmed entries.
    const through = Math.min(upToLsn, batch.lastLsn)
    const removed = this.#statements.deleteThrough.run(through).changes
    this.#inFlight = through < batch.lastLsn ? [] : this.#inFlight.slice(1)
    return removed
  }

  /**
   * The push failed (or will not be sent): the batch's entries, and those of any batch
   * taken after it, become pending again, unchanged.
   *
   * @throws `invalid_argument` if `batch` is not in flight.
   */
  release(batch: OutboxBatch): void {
    const index = this.#inFlight.findIndex((taken) => taken.batch === batch)
    if (index < 0) {
      throw invalidArgument(
        `batch ${describe(batch?.id)} is not an in-flight outbox batch`,
      )
    }
    this.#inFlight = this.#inFlight.slice(0, index)
  }

  /** Marks every entry up to `lsn` as possibly known to the server (one range update). */
  #markMaybeSent(lsn: number): void {
    this.#statements.markMaybeSentThrough.run(lsn)
  }

  /** @internal The store appended entries: the next batch must compact first. */
  noteAppended(): void {
    this.#uncompacted = true
  }

  /** @internal Whether an in-flight batch holds entries of a collection. */
  inFlightTouches(collectionId: number): boolean {
    return this.#inFlight.some((taken) => taken.collectionIds.has(collectionId))
  }

  #toEntry(row: EntryRow): OutboxEntry {
    return {
      lsn: row.lsn,
      collection: this.#host.collectionById(row.collection_id).schema.name,
      docId: row.doc_id,
      op: row.op,
      priorExists: row.prior_exists === 1,
      versionVector: JSON.parse(row.version_vector) as VersionVector,
      hlc: { wallMs: row.hlc_wall, counter: row.hlc_counter },
    }
  }
}

function prepareStatements(db: Database) {
  return {
    count: db.prepare('SELECT count(*) AS n FROM vs_outbox'),
    selectAll: db.prepare(
      `SELECT lsn, collection_id, doc_id, op, prior_exists, version_vector, hlc_wall, hlc_counter
       FROM vs_outbox ORDER BY lsn`,
    ),
    selectBatch: db.prepare(
      `SELECT o.lsn, o.collection_id, o.doc_id, o.op, o.prior_exists,
              o.version_vector AS entry_version_vector, ${DOCUMENT_COLUMNS.split(
                ', ',
              )
                .map((column) => `d.${column}`)
                .join(', ')}
       FROM vs_outbox o
       JOIN vs_documents d ON d.collection_id = o.collection_id AND d.id = o.doc_id
       WHERE o.lsn > @after
       ORDER BY o.lsn LIMIT @limit`,
    ),
    needsCompaction: db
      .prepare(
        `SELECT EXISTS (SELECT 1 FROM vs_outbox WHERE op = 'delete' AND prior_exists = 0)
             OR EXISTS (SELECT 1 FROM vs_outbox GROUP BY collection_id, doc_id
                        HAVING count(*) > 1)`,
      )
      .pluck(),
    deleteEntry: db.prepare('DELETE FROM vs_outbox WHERE lsn = ?'),
    deleteThrough: db.prepare('DELETE FROM vs_outbox WHERE lsn <= ?'),
    markMaybeSentThrough: db.prepare(
      'UPDATE vs_outbox SET prior_exists = 1 WHERE lsn <= ?',
    ),
    clearPriorExists: db.prepare(
      'UPDATE vs_outbox SET prior_exists = 0 WHERE lsn = ?',
    ),
    purgeTombstone: db.prepare(
      'DELETE FROM vs_documents WHERE collection_id = ? AND id = ? AND deleted = 1',
    ),
  }
}
