import type { Database } from 'better-sqlite3'

/**
 * On-disk layout of a device store. Every table carries the `vs_` prefix so a store can
 * share a file with an application's own tables.
 *
 * ```
 * vs_store        key → value: device_id, epoch, last_lsn, hlc_wall, hlc_counter
 * vs_collections  one row per collection: schema + running digest (hex)
 * vs_documents    newest local version of each document; tombstones keep deleted = 1,
 *                 vector and metadata NULL. hash = SHA-256 of the canonical encoding
 *                 (NULL for tombstones, which do not count in the digest)
 * vs_outbox       the replication log: one row per local write, lsn strictly increasing,
 *                 with the version vector and HLC of the version it produced; the body is
 *                 the document row (compaction keeps one entry per document). No index
 *                 beyond the LSN: it would cost every write a second B-tree insert, and
 *                 its readers (compaction, remote apply) read the whole log anyway
 * ```
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE vs_store (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) STRICT;
  CREATE TABLE vs_collections (
    collection_id INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    dims          INTEGER NOT NULL,
    metric        TEXT NOT NULL,
    dtype         TEXT NOT NULL,
    digest        TEXT NOT NULL
  ) STRICT;
  CREATE TABLE vs_documents (
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
    UNIQUE (collection_id, id)
  ) STRICT;
  CREATE TABLE vs_outbox (
    lsn            INTEGER PRIMARY KEY,
    collection_id  INTEGER NOT NULL,
    doc_id         TEXT NOT NULL,
    op             TEXT NOT NULL CHECK (op IN ('put', 'delete')),
    prior_exists   INTEGER NOT NULL,
    version_vector TEXT NOT NULL,
    hlc_wall       INTEGER NOT NULL,
    hlc_counter    INTEGER NOT NULL
  ) STRICT;
  `,
]

/** The schema version this code writes; newer files are refused rather than misread. */
export const STORE_SCHEMA_VERSION = MIGRATIONS.length

/**
 * Brings the file's schema up to {@link STORE_SCHEMA_VERSION}, one migration per
 * transaction, tracked in `PRAGMA user_version`.
 *
 * @returns the version the file had before (0 for a new file).
 */
export function migrate(db: Database): number {
  const before = db.pragma('user_version', { simple: true }) as number
  if (before > STORE_SCHEMA_VERSION) {
    throw new Error(
      `store schema version ${before} is newer than this VeloSync (${STORE_SCHEMA_VERSION}); upgrade VeloSync`,
    )
  }
  for (let version = before; version < STORE_SCHEMA_VERSION; version++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[version] as string)
      db.pragma(`user_version = ${version + 1}`)
    })()
  }
  return before
}
