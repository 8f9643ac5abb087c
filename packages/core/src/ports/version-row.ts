import type { CollectionSchema } from '../model/collection.js'
import type { DocumentVersion } from '../model/document-version.js'
import { vectorFromBytes } from '../model/vector.js'
import type { VersionVector } from '../model/version-vector.js'

/**
 * The columns in which the SQL server stores (SQLite and PostgreSQL) keep one document
 * version, in this order, under an optional prefix (`winner_`, `loser_` in conflicts).
 */
export const VERSION_FIELDS = [
  'deleted',
  'vector',
  'metadata',
  'version_vector',
  'hlc_wall',
  'hlc_counter',
  'origin',
] as const

/** The version columns as a SELECT or INSERT list, e.g. `winner_deleted, winner_vector, …`. */
export function versionColumns(prefix = ''): string {
  return VERSION_FIELDS.map((field) => prefix + field).join(', ')
}

/** A document version as its columns come back from a SQL driver. */
export interface VersionRow {
  /** 0/1 (SQLite) or a boolean (PostgreSQL). */
  deleted: number | boolean
  vector: Uint8Array | null
  metadata: string | null
  version_vector: string
  hlc_wall: number
  hlc_counter: number
  origin: string
}

/** A conflict record's row: the winner's and the loser's version columns side by side. */
export type ConflictRow = {
  seq: number
  collection_id: number
  doc_id: string
  resolved_at_ms: number
} & {
  [K in `${'winner' | 'loser'}_${(typeof VERSION_FIELDS)[number]}`]: unknown
}

/** The stored version a row holds. */
export function versionFromRow(
  schema: CollectionSchema,
  id: string,
  row: VersionRow,
): DocumentVersion {
  const deleted = row.deleted === true || row.deleted === 1
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

/** The version columns of a conflict row under one prefix, unprefixed. */
export function conflictVersionRow(
  row: ConflictRow,
  prefix: 'winner_' | 'loser_',
): VersionRow {
  const fields = row as unknown as Record<string, unknown>
  return Object.fromEntries(
    VERSION_FIELDS.map((field) => [field, fields[prefix + field]]),
  ) as unknown as VersionRow
}
