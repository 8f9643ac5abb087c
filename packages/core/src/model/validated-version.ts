import type { CollectionSchema } from './collection.js'
import type { DocumentVersion } from './document-version.js'
import type { JsonObject } from './metadata.js'

interface Validation {
  /** The shape of the collection the version was checked against. */
  readonly dims: number
  readonly dtype: CollectionSchema['dtype']
  readonly metric: CollectionSchema['metric']
  /** The metadata the checker parsed, until a store takes it (see takeParsedMetadata). */
  metadata: JsonObject | undefined
}

/**
 * Versions that passed every check against a collection schema, keyed to that schema's
 * dims, dtype and metric. Lets a version decoded (and validated) by the protocol codec pass
 * a store's own checks in O(1) instead of scanning its vector and re-canonicalizing its
 * metadata a second time.
 */
const validations = new WeakMap<DocumentVersion, Validation>()

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
 * @param metadata - the parsed form of `version.metadataJson`, if the checker has one
 *   that nothing else references: handed over once by {@link takeParsedMetadata}.
 * @internal
 */
export function markValidated<V extends DocumentVersion>(
  version: V,
  schema: CollectionSchema,
  metadata?: JsonObject,
): V {
  Object.freeze(version.versionVector)
  Object.freeze(version.hlc)
  Object.freeze(version)
  validations.set(version, {
    dims: schema.dims,
    dtype: schema.dtype,
    metric: schema.metric,
    metadata,
  })
  return version
}

/** Whether {@link markValidated} vouched for `version` against a schema shaped like this one. */
export function isValidatedFor(
  version: DocumentVersion,
  schema: CollectionSchema,
): boolean {
  const validation = validations.get(version)
  return (
    validation !== undefined &&
    validation.dims === schema.dims &&
    validation.dtype === schema.dtype &&
    validation.metric === schema.metric
  )
}

/**
 * The parsed metadata handed to {@link markValidated}, at most once: the caller becomes its
 * only owner (a store keeps it in its search index), so a second call returns `undefined`.
 *
 * @internal
 */
export function takeParsedMetadata(
  version: DocumentVersion,
): JsonObject | undefined {
  const validation = validations.get(version)
  if (validation === undefined) return undefined
  const { metadata } = validation
  validation.metadata = undefined
  return metadata
}
