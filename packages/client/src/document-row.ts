import {
  vectorFromBytes,
  type CollectionSchema,
  type DocumentVersion,
  type JsonObject,
  type VersionVector,
} from '@velosync/core'
import type { StoredDocument } from './local-store.js'

/** A `vs_documents` row as better-sqlite3 returns it. */
export interface DocumentRow {
  deleted: number
  vector: Buffer | null
  metadata: string | null
  version_vector: string
  hlc_wall: number
  hlc_counter: number
  origin: string
  hash: Uint8Array | null
}

/** The columns of {@link DocumentRow}, for SELECT lists. */
export const DOCUMENT_COLUMNS =
  'deleted, vector, metadata, version_vector, hlc_wall, hlc_counter, origin, hash'

/** The replicated version a row holds (live or tombstone). */
export function rowToVersion(
  schema: CollectionSchema,
  id: string,
  row: DocumentRow,
): DocumentVersion {
  const deleted = row.deleted === 1
  return {
    id,
    deleted,
    vector: deleted
      ? null
      : vectorFromBytes(row.vector as Buffer, schema.dtype, schema.dims),
    metadataJson: deleted ? null : row.metadata,
    versionVector: JSON.parse(row.version_vector) as VersionVector,
    hlc: { wallMs: row.hlc_wall, counter: row.hlc_counter },
    origin: row.origin,
  }
}

/** A live row as the public document shape. */
export function toStoredDocument(
  schema: CollectionSchema,
  id: string,
  row: DocumentRow,
): StoredDocument {
  return {
    id,
    vector: vectorFromBytes(row.vector as Buffer, schema.dtype, schema.dims),
    metadata: JSON.parse(row.metadata as string) as JsonObject,
    versionVector: JSON.parse(row.version_vector) as VersionVector,
    hlc: { wallMs: row.hlc_wall, counter: row.hlc_counter },
    origin: row.origin,
  }
}
