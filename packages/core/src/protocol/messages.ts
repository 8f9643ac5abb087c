import { z } from 'zod'
import { MAX_DIMS, type CollectionSchema } from '../model/collection.js'
import { HLC_MAX_COUNTER } from '../model/hlc.js'
import { MAX_DOCUMENT_ID_LENGTH } from '../model/ids.js'
import type {
  ConflictRecord,
  OpResult,
  PulledVersion,
  PushOp,
  Seq,
} from '../ports/server-store.js'
import { PROTOCOL_VERSION } from './protocol-version.js'

// The same patterns as model/ids.ts. They are repeated here because a schema has to carry
// them for the JSON Schema description that pins the protocol version.
export const COLLECTION_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/
const EPOCH = /^[0-9a-f]{8,32}$/
/**
 * `<deviceId>.<epoch>`. The pattern also keeps keys such as `__proto__` out of version
 * vectors, which would otherwise reach object literals built from untrusted input.
 */
export const REPLICA_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\.[0-9a-f]{8,32}$/
// eslint-disable-next-line no-control-regex -- NUL is exactly what this pattern rejects
export const NO_NUL = /^[^\u0000]*$/

/** Largest `pullLimit` a sync request may ask for. */
export const MAX_PULL_LIMIT = 10_000
/** `pullLimit` when a sync request leaves it out. */
export const DEFAULT_PULL_LIMIT = 1000

const seq = z.int().min(0)
const lsn = z.int().min(1)

const hlcSchema = z.object({
  wallMs: z.int().min(0),
  counter: z.int().min(0).max(HLC_MAX_COUNTER),
})

const versionVectorSchema = z.record(
  z.string().regex(REPLICA_ID),
  z.int().min(1),
)

/** A collection as declared on the wire: every field is required. */
export const CollectionSpecSchema = z.object({
  name: z.string().regex(COLLECTION_NAME),
  dims: z.int().min(1).max(MAX_DIMS),
  metric: z.enum(['cosine', 'dot', 'l2']),
  dtype: z.enum(['float32', 'float64']),
})

/** The outcomes a push result can report. */
export const OUTCOMES = [
  'applied',
  'duplicate',
  'stale',
  'conflict_won',
  'conflict_lost',
] as const

const outcomeSchema = z.enum(OUTCOMES)

/**
 * Builds every message schema around one representation of vector bytes: a base64 string
 * in JSON, a `bin` (Uint8Array) in MessagePack. Both encodings share the rest, so a change
 * to any message shows up in the JSON flavour that the version pin hashes.
 */
function buildSchemas<V extends z.ZodType>(vector: V) {
  // Requests omit `origin`: the server derives it from the credentials (DESIGN 8).
  const versionFields = {
    collection: z.string().regex(COLLECTION_NAME),
    id: z.string().min(1).max(MAX_DOCUMENT_ID_LENGTH).regex(NO_NUL),
    deleted: z.boolean(),
    vector: vector.nullable(),
    metadata: z.string().nullable(),
    versionVector: versionVectorSchema,
    hlc: hlcSchema,
  }
  const wireVersion = z.object({
    ...versionFields,
    origin: z.string().regex(REPLICA_ID),
  })
  const protocol = z.literal(PROTOCOL_VERSION)
  return {
    WireVersion: wireVersion,
    SyncRequest: z.object({
      protocol,
      epoch: z.string().regex(EPOCH),
      collections: z.array(CollectionSpecSchema),
      push: z.array(z.object({ ...versionFields, lsn })),
      cursor: seq,
      pullLimit: z.int().min(1).max(MAX_PULL_LIMIT).default(DEFAULT_PULL_LIMIT),
      fullResync: z.boolean().default(false),
      lastLsn: z.int().min(0).optional(),
    }),
    SyncResponse: z.object({
      protocol,
      collections: z.array(CollectionSpecSchema),
      results: z.array(
        z.object({
          lsn,
          collection: z.string().regex(COLLECTION_NAME),
          id: z.string(),
          outcome: outcomeSchema,
          seq: z.int().min(1).optional(),
          version: wireVersion.optional(),
        }),
      ),
      appliedThroughLsn: seq,
      changes: z.array(wireVersion.extend({ seq: z.int().min(1) })),
      cursor: seq,
      hasMore: z.boolean(),
      skippedEchoes: z.int().min(0),
      head: seq,
    }),
    ConflictsResponse: z.object({
      collections: z.array(CollectionSpecSchema),
      conflicts: z.array(
        z.object({
          seq: z.int().min(1),
          collection: z.string().regex(COLLECTION_NAME),
          id: z.string(),
          winner: wireVersion,
          loser: wireVersion,
          resolvedAtMs: z.int().min(0),
        }),
      ),
    }),
  }
}

/** Schemas of the messages that carry no vectors: one form for both encodings. */
const plainSchemas = {
  AckRequest: z.object({
    protocol: z.literal(PROTOCOL_VERSION),
    epoch: z.string().regex(EPOCH),
    cursor: seq,
  }),
  DigestResponse: z.object({
    collection: z.string().regex(COLLECTION_NAME),
    digest: z.string().regex(/^[0-9a-f]{64}$/),
    head: seq,
  }),
  HealthResponse: z.object({
    status: z.literal('ok'),
    protocol: z.int().min(1),
    head: seq,
  }),
  ErrorBody: z.object({
    error: z.object({
      // Any string, not an enum: a client must still read codes added by a newer server.
      code: z.string().min(1),
      message: z.string(),
      retryAfterMs: z.int().min(0).optional(),
    }),
  }),
}

/**
 * The message schemas of the JSON encoding (vectors are base64 strings of little-endian
 * bytes). These are what `protocol-schema.test.ts` pins to {@link PROTOCOL_VERSION}.
 *
 * @public
 */
export const JSON_SCHEMAS = { ...buildSchemas(z.base64()), ...plainSchemas }

/**
 * The message schemas of the MessagePack encoding (vectors are `bin`: raw little-endian
 * bytes). Identical to {@link JSON_SCHEMAS} but for the vector type.
 *
 * @public
 */
export const MSGPACK_SCHEMAS = {
  ...buildSchemas(z.instanceof(Uint8Array)),
  ...plainSchemas,
}

/** The JSON form of a document version on the wire (see `docs/PROTOCOL.md`). */
export type JsonWireVersion = z.infer<typeof JSON_SCHEMAS.WireVersion>
/** The JSON form of a sync request. */
export type JsonSyncRequest = z.infer<typeof JSON_SCHEMAS.SyncRequest>
/** The JSON form of a sync response. */
export type JsonSyncResponse = z.infer<typeof JSON_SCHEMAS.SyncResponse>
/** The JSON form of a conflicts listing. */
export type JsonConflictsResponse = z.infer<
  typeof JSON_SCHEMAS.ConflictsResponse
>
/** A collection declaration on the wire. */
export type CollectionSpec = z.infer<typeof CollectionSpecSchema>

/**
 * `POST /v1/sync` request, decoded: vectors are typed arrays and every pushed version's
 * `origin` is the pushing replica (set from the credentials when decoding on the server).
 *
 * @public
 */
export interface SyncRequest {
  readonly protocol: typeof PROTOCOL_VERSION
  /** The device's incarnation: 8–32 lowercase hex digits. */
  readonly epoch: string
  /** Every collection the push names (the server creates unknown ones). */
  readonly collections: readonly CollectionSchema[]
  /** The compacted outbox, in strictly increasing LSN order. */
  readonly push: readonly PushOp[]
  /** Pull the versions with `seq` greater than this. */
  readonly cursor: Seq
  /** At most this many changes: 1..{@link MAX_PULL_LIMIT}, default {@link DEFAULT_PULL_LIMIT}. */
  readonly pullLimit: number
  /**
   * Pull this device's own versions too (no echo suppression): set after
   * `resync_required`, while the device rebuilds its picture of the server. Default false.
   */
  readonly fullResync?: boolean
  /**
   * The newest LSN this device has written. A server that already applied a higher one
   * for this replica answers `lsn_reused`: the device's store was restored from an older
   * copy.
   */
  readonly lastLsn?: number
}

/**
 * `POST /v1/sync` response, decoded.
 *
 * @public
 */
export interface SyncResponse {
  readonly protocol: typeof PROTOCOL_VERSION
  /** The schema of every collection that `results` and `changes` name. */
  readonly collections: readonly CollectionSchema[]
  /**
   * The pushed ops whose outcome is not `applied`, in push order. Every other pushed op
   * with an LSN up to `appliedThroughLsn` was applied exactly as pushed.
   */
  readonly results: readonly OpResult[]
  /** The device may drop every outbox entry up to this LSN. */
  readonly appliedThroughLsn: number
  /** Versions after the request's cursor, ascending `seq`, echoes skipped. */
  readonly changes: readonly PulledVersion[]
  /** The device's next cursor (past skipped echoes too). */
  readonly cursor: Seq
  /** More changes are waiting: sync again without waiting. */
  readonly hasMore: boolean
  readonly skippedEchoes: number
  /** The server's newest seq. */
  readonly head: Seq
}

/**
 * `POST /v1/ack` request.
 *
 * @public
 */
export type AckRequest = z.infer<typeof plainSchemas.AckRequest>

/**
 * `GET /v1/collections/:name/digest` response.
 *
 * @public
 */
export type DigestResponse = z.infer<typeof plainSchemas.DigestResponse>

/**
 * `GET /v1/conflicts` response, decoded.
 *
 * @public
 */
export interface ConflictsResponse {
  /** The schema of every collection the conflicts name. */
  readonly collections: readonly CollectionSchema[]
  readonly conflicts: readonly ConflictRecord[]
}

/**
 * `GET /v1/health` response.
 *
 * @public
 */
export type HealthResponse = z.infer<typeof plainSchemas.HealthResponse>

/**
 * The body of every error response.
 *
 * @public
 */
export type ErrorBody = z.infer<typeof plainSchemas.ErrorBody>
