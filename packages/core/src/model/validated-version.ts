import type { CollectionSchema } from './collection.js'
import type { DocumentVersion } from './document-version.js'

/**
 * Versions that passed every check against a collection schema, keyed to that schema's
 * dims, dtype and metric. Lets a version decoded (and validated) by the protocol codec pass
 * a store's own checks in O(1) instead of scanning its vector and re-canonicalizing its
 * metadata a second time.
 */
const validatedFor = new WeakMap<DocumentVersion, string>()

function schemaKey(schema: CollectionSchema): string {
  return `${schema.dims}/${schema.dtype}/${schema.metric}`
}

/**
 * Freezes `version` (and its vector clock and HLC) and records that it is valid for
 * collections shaped like `schema`: a canonical id, `deleted` ⇔ no vector and no metadata,
 * a vector of `schema.dims` finite values of `schema.dtype` (not all zero for cosine),
 * canonical metadata JSON, a non-empty vector clock of positive counters and a valid HLC.
 *
 * @remarks
 * Only code that has made every one of those checks may call it. Freezing keeps the
 * record true: the fields cannot be replaced afterwards (the vector's elements could be,
 * as with any version, by code that owns it).
 *
 * @internal
 */
export function markValidated<V extends DocumentVersion>(
  version: V,
  schema: CollectionSchema,
): V {
  Object.freeze(version.versionVector)
  Object.freeze(version.hlc)
  Object.freeze(version)
  validatedFor.set(version, schemaKey(schema))
  return version
}

/** Whether {@link markValidated} vouched for `version` against a schema shaped like this one. */
export function isValidatedFor(
  version: DocumentVersion,
  schema: CollectionSchema,
): boolean {
  return validatedFor.get(version) === schemaKey(schema)
}
