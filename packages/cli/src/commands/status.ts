import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs'
import { resolve } from 'node:path'
import { LocalStore } from '@velosync/client'
import { VeloSyncError, type CollectionSchema } from '@velosync/core'
import type { Command } from 'commander'
import { formatCount, formatTable } from '../format.js'

/** What `velosync status --json` prints. */
export interface StoreStatus {
  readonly store: string
  readonly deviceId: string
  readonly epoch: string
  readonly replicaId: string
  readonly lastLsn: number
  /** Entries waiting in the replication log (the outbox) for a push. */
  readonly outboxEntries: number
  /**
   * Operations the next push sends: documents with unpushed writes (the outbox compacts
   * to one entry per document before a push).
   */
  readonly pendingOps: number
  /** The server sequence number this device has pulled through (0: never synced). */
  readonly syncCursor: number
  readonly collections: ReadonlyArray<
    CollectionSchema & { readonly documents: number; readonly digest: string }
  >
}

/** Registers `velosync status`. */
export function addStatusCommand(program: Command): void {
  program
    .command('status')
    .description(
      'Show a device store: device id, epoch, last LSN, outbox, sync cursor, collections with counts and digests',
    )
    .requiredOption('--store <path>', 'the store file (SQLite)')
    .option('--json', 'print one JSON object instead of text')
    .action((options: { store: string; json?: true }) => {
      const status = readStatus(options.store)
      console.log(
        options.json === true
          ? JSON.stringify(status, null, 2)
          : formatStatus(status),
      )
    })
}

/**
 * Opens an existing store, reads its status and closes it.
 *
 * @throws `not_found` when there is no file at `path`; `invalid_argument` when the file is
 *   not a VeloSync store. Neither creates nor changes a file.
 */
export function readStatus(path: string): StoreStatus {
  const absolute = resolve(path)
  assertStoreFile(absolute)
  const store = LocalStore.open({ path: absolute })
  try {
    return {
      store: absolute,
      deviceId: store.deviceId,
      epoch: store.epoch,
      replicaId: store.replicaId,
      lastLsn: store.lastLsn,
      outboxEntries: store.outbox.size,
      // Counted, not compacted: status must not change the file.
      pendingOps: new Set(
        store.outbox
          .entries()
          .map((entry) => JSON.stringify([entry.collection, entry.docId])),
      ).size,
      syncCursor: store.syncCursor,
      collections: store.listCollections().map((schema) => ({
        ...schema,
        documents: store.count(schema.name),
        digest: store.digest(schema.name),
      })),
    }
  } finally {
    store.close()
  }
}

export function formatStatus(status: StoreStatus): string {
  const lines = [
    `store        ${status.store}`,
    `device       ${status.deviceId}`,
    `epoch        ${status.epoch}`,
    `last LSN     ${formatCount(status.lastLsn)}`,
    `outbox       ${formatCount(status.outboxEntries)} ${status.outboxEntries === 1 ? 'entry' : 'entries'} waiting to be pushed`,
    `pending ops  ${formatCount(status.pendingOps)} (document${status.pendingOps === 1 ? '' : 's'} the next push sends)`,
    `sync cursor  ${status.syncCursor === 0 ? '0 (never synced)' : formatCount(status.syncCursor)}`,
    `collections  ${status.collections.length}`,
  ]
  if (status.collections.length > 0) {
    lines.push(
      '',
      formatTable(
        [
          { header: 'name', value: (c) => c.name },
          { header: 'dims', align: 'right', value: (c) => String(c.dims) },
          { header: 'metric', value: (c) => c.metric },
          { header: 'dtype', value: (c) => c.dtype },
          {
            header: 'documents',
            align: 'right',
            value: (c) => formatCount(c.documents),
          },
          { header: 'digest', value: (c) => c.digest },
        ],
        status.collections,
      ),
    )
  }
  return lines.join('\n')
}

const SQLITE_MAGIC = Buffer.from('SQLite format 3\u0000', 'latin1')

/**
 * `LocalStore.open` creates missing files and adds its tables to any SQLite file, which a
 * status command must not do: refuse what is clearly not a store before opening it.
 */
function assertStoreFile(path: string): void {
  if (!existsSync(path)) {
    throw new VeloSyncError(
      'not_found',
      `no store at ${path}: the file does not exist (status never creates one)`,
    )
  }
  const stat = statSync(path)
  if (!stat.isFile()) {
    throw new VeloSyncError('invalid_argument', `${path} is not a file`)
  }
  // A store killed before its first checkpoint may have all its content in the -wal file.
  const hasWal = existsSync(`${path}-wal`)
  if (stat.size === 0) {
    if (hasWal) return
    throw new VeloSyncError(
      'invalid_argument',
      `${path} is an empty file, not a VeloSync store`,
    )
  }
  const header = Buffer.alloc(100)
  const fd = openSync(path, 'r')
  try {
    readSync(fd, header, 0, header.length, 0)
  } finally {
    closeSync(fd)
  }
  if (!header.subarray(0, SQLITE_MAGIC.length).equals(SQLITE_MAGIC)) {
    throw new VeloSyncError(
      'invalid_argument',
      `${path} is not an SQLite database, so not a VeloSync store`,
    )
  }
  // PRAGMA user_version lives at byte 60 of the header; stores migrate it to ≥ 1. With a
  // -wal file the header may be stale, so only trust a 0 when there is none.
  if (header.readUInt32BE(60) === 0 && !hasWal) {
    throw new VeloSyncError(
      'invalid_argument',
      `${path} is an SQLite database without VeloSync's tables (schema version 0): not a store`,
    )
  }
}
