/**
 * VeloSync core: the document model, version vectors, the hybrid logical clock, the
 * canonical encoding and digests, the replication-log rules, metadata filters and the
 * exact vector index. It imports nothing from Node, so it can run in a browser.
 *
 * @example
 * ```ts
 * import { compareVersionVectors, mergeVersionVectors } from '@velosync/core'
 *
 * compareVersionVectors({ a: 2 }, { a: 1, b: 1 }) // 'concurrent'
 * mergeVersionVectors({ a: 2 }, { a: 1, b: 1 })   // { a: 2, b: 1 }
 * ```
 *
 * @packageDocumentation
 */
export {
  VeloSyncError,
  isVeloSyncError,
  invalidArgument,
  type ErrorCode,
} from './errors.js'
export {
  MAX_DOCUMENT_ID_LENGTH,
  assertCollectionName,
  assertDeviceId,
  assertDocumentId,
  describe,
  replicaIdOf,
  type ReplicaId,
} from './model/ids.js'
export {
  MAX_DIMS,
  METRICS,
  VECTOR_DTYPES,
  normalizeCollectionSchema,
  type CollectionSchema,
  type CollectionSchemaInput,
  type Metric,
  type VectorDType,
} from './model/collection.js'
// markValidated stays internal: only the codec may vouch for a version.
export {
  isValidatedFor,
  takeParsedMetadata,
} from './model/validated-version.js'
export {
  checkVectorValues,
  inverseNorm,
  newVector,
  normalizedFloat32,
  toStoredVector,
  vectorFromBytes,
  vectorToBytes,
  type StoredVector,
  type VectorInput,
} from './model/vector.js'
export {
  MAX_METADATA_DEPTH,
  MAX_METADATA_LENGTH,
  canonicalMetadata,
  canonicalMetadataJson,
  isPlainObject,
  type CanonicalMetadata,
  type JsonObject,
  type JsonValue,
} from './model/metadata.js'
export {
  EMPTY_VERSION_VECTOR,
  compareVersionVectors,
  counterOf,
  incrementVersionVector,
  mergeVersionVectors,
  parseVersionVector,
  versionVectorEntries,
  versionVectorToJson,
  type CausalOrder,
  type VersionVector,
} from './model/version-vector.js'
export {
  DEFAULT_MAX_FORWARD_DRIFT_MS,
  HLC_MAX_COUNTER,
  HybridLogicalClock,
  assertHlc,
  compareHlc,
  laterThan,
  type HlcTimestamp,
  type HybridLogicalClockOptions,
} from './model/hlc.js'
export {
  DOCUMENT_ENCODING_VERSION,
  encodeDocumentVersion,
  hashDocumentVersion,
  type DocumentVersion,
  type Sha256,
} from './model/document-version.js'
export {
  CollectionDigest,
  EMPTY_COLLECTION_DIGEST,
} from './model/collection-digest.js'
export {
  planCompaction,
  type CompactableEntry,
  type CompactionPlan,
  type LogOp,
} from './log/compaction.js'
export {
  MAX_FILTER_LIST,
  compileFilter,
  type FieldOperators,
  type FilterScalar,
  type MetadataFilter,
  type MetadataPredicate,
} from './query/filter.js'
export {
  ExactVectorIndex,
  type ExactVectorIndexOptions,
  type SearchHit,
} from './vector/exact-vector-index.js'
export {
  VectorMatrix,
  isWasmSimdSupported,
  type KernelBackend,
  type ScoreKind,
  type VectorMatrixOptions,
} from './vector/vector-matrix.js'
export { topK } from './vector/top-k.js'
export {
  RowBatch,
  type RowBatchDatabase,
  type RowBatchStatement,
} from './sqlite/row-batch.js'
export {
  storeKindOf,
  type StoreKind,
  type StoreKindDatabase,
} from './sqlite/store-kind.js'
export {
  compareByDefaultRule,
  resolveIncoming,
  type ClockBound,
  type ConflictResolver,
  type PushOutcome,
  type Resolution,
} from './log/resolve.js'
export type {
  ConflictQuery,
  ConflictRecord,
  GarbageCollectionOptions,
  GarbageCollectionResult,
  OpResult,
  PullResult,
  PullOptions,
  PulledVersion,
  PushOp,
  CheckCursorOptions,
  ReplicaProgress,
  PushOptions,
  PushResult,
  ReplicaRef,
  Seq,
  ServerStore,
} from './ports/server-store.js'
export {
  MAX_TOKEN_HASH_LENGTH,
  assertLimit,
  assertSeq,
  assertTokenHash,
  collectionMismatch,
  monotonePushClock,
  planPush,
  preparePush,
  pullPageEnd,
  pullResult,
  pushClockOf,
  replicaIdOfRef,
  staleCursorError,
  timeMs,
  unknownCollection,
  type DocumentWrite,
  type PreparedOp,
  type PushClock,
  type PushPlan,
  type PullTail,
  type PushState,
  type StoreCollection,
  type StoredDocument,
} from './ports/server-store-rules.js'
export type { ChangeSignal, HeadChange } from './ports/change-signal.js'
export { InProcessChangeSignal } from './live/in-process-change-signal.js'
export { PROTOCOL_VERSION } from './protocol/protocol-version.js'
export {
  CollectionSpecSchema,
  DEFAULT_PULL_LIMIT,
  JSON_SCHEMAS,
  MAX_PULL_LIMIT,
  MSGPACK_SCHEMAS,
  type AckRequest,
  type CollectionSpec,
  type ConflictsResponse,
  type DigestResponse,
  type ErrorBody,
  type HealthResponse,
  type JsonConflictsResponse,
  type JsonSyncRequest,
  type JsonSyncResponse,
  type JsonWireVersion,
  type SyncRequest,
  type SyncResponse,
} from './protocol/messages.js'
export {
  MEDIA_TYPES,
  decodeAckRequest,
  decodeConflictsResponse,
  decodeDigestResponse,
  decodeErrorBody,
  decodeHealthResponse,
  decodeSyncRequest,
  decodeSyncResponse,
  encodeMessage,
  encodePushAhead,
  encodedPushPrefix,
  negotiate,
  type DecodeSyncRequestOptions,
  type EncodedPush,
  type Message,
  type WireFormat,
} from './protocol/codec.js'
export {
  contentDigestHeader,
  verifyContentDigest,
} from './protocol/content-digest.js'
export {
  ERROR_STATUS,
  errorCodeFromWire,
  errorStatus,
  wireErrorCode,
  type WireErrorCode,
} from './protocol/error-status.js'
export {
  VERSION_FIELDS,
  conflictVersionRow,
  versionColumns,
  versionFromRow,
  type ConflictRow,
  type VersionRow,
} from './ports/version-row.js'
