import { Packr } from 'msgpackr'
import type { z } from 'zod'
import { VeloSyncError, invalidArgument, isVeloSyncError } from '../errors.js'
import type { CollectionSchema } from '../model/collection.js'
import type { DocumentVersion } from '../model/document-version.js'
import { assertDocumentId, replicaIdOf } from '../model/ids.js'
import {
  canonicalMetadataJson,
  scansAsCanonicalMetadata,
  type JsonObject,
} from '../model/metadata.js'
import { counterOf } from '../model/version-vector.js'
import { markValidated } from '../model/validated-version.js'
import {
  VectorSlab,
  checkVectorValues,
  vectorFromBytes,
  vectorToBytes,
  type StoredVector,
} from '../model/vector.js'
import type {
  ConflictRecord,
  OpResult,
  PulledVersion,
  PushOp,
} from '../ports/server-store.js'
import { decodeBase64, encodeBase64 } from './base64.js'
import {
  JSON_SCHEMAS,
  MSGPACK_SCHEMAS,
  type AckRequest,
  type ConflictsResponse,
  type DigestResponse,
  type ErrorBody,
  type HealthResponse,
  type SyncRequest,
  type SyncResponse,
} from './messages.js'
import { PROTOCOL_VERSION } from './protocol-version.js'
import {
  isWireChange,
  isWirePushOp,
  isWireResult,
  type WireChange,
  type WirePushOp,
  type WireResult,
} from './wire-guards.js'

/**
 * The two encodings of the protocol.
 *
 * @public
 */
export type WireFormat = 'json' | 'msgpack'

/**
 * The media type of each encoding.
 *
 * @public
 */
export const MEDIA_TYPES: Readonly<Record<WireFormat, string>> = {
  json: 'application/json',
  msgpack: 'application/vnd.velosync+msgpack',
}

/**
 * Any message this module encodes. Sync requests and responses and conflict listings carry
 * vectors and are converted per encoding; the others are plain data.
 *
 * @public
 */
export type Message =
  | SyncRequest
  | SyncResponse
  | ConflictsResponse
  | AckRequest
  | DigestResponse
  | HealthResponse
  | ErrorBody

/** Web-platform globals (browsers, Node), typed here because `core` has no DOM lib. */
interface TextCodecs {
  TextEncoder: new () => { encode(text: string): Uint8Array }
  TextDecoder: new (
    label: string,
    options: { fatal: boolean },
  ) => { decode(bytes: Uint8Array): string }
}
const platform = globalThis as unknown as TextCodecs
const utf8Encoder = new platform.TextEncoder()
// fatal: invalid UTF-8 is a malformed body, not text with replacement characters.
const utf8Decoder = new platform.TextDecoder('utf-8', { fatal: true })

// Plain maps (no msgpackr records): any MessagePack implementation can read the wire.
const packr = new Packr({ useRecords: false, mapsAsObjects: true })

/**
 * Chooses the encodings of a request and its response.
 *
 * @remarks
 * The request's encoding comes from `Content-Type` (parameters such as `charset` are
 * ignored). The response uses the same encoding unless `Accept` prefers the other one
 * (by q-value; a tie keeps the request's). Requests without a body pass `undefined` as
 * `contentType`; their response is JSON unless `Accept` prefers MessagePack.
 *
 * @throws `unsupported_media_type` when a `Content-Type` is neither encoding.
 * @example
 * ```ts
 * negotiate('application/json', 'application/vnd.velosync+msgpack')
 * // { request: 'json', response: 'msgpack' }
 * ```
 * @public
 */
export function negotiate(
  contentType: string | null | undefined,
  accept: string | null | undefined,
): { request: WireFormat | undefined; response: WireFormat } {
  let request: WireFormat | undefined
  if (contentType !== null && contentType !== undefined) {
    request = formatOfMediaType(contentType)
    if (request === undefined) {
      throw new VeloSyncError(
        'unsupported_media_type',
        `unsupported Content-Type ${JSON.stringify(contentType.slice(0, 100))}; send ${MEDIA_TYPES.json} or ${MEDIA_TYPES.msgpack}`,
      )
    }
  }
  const fallback = request ?? 'json'
  if (accept === null || accept === undefined) {
    return { request, response: fallback }
  }
  const quality: Record<WireFormat, number> = { json: -1, msgpack: -1 }
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';')
    const format = formatOfMediaType(type)
    if (format === undefined) continue
    let q = 1
    for (const param of params) {
      const [name, value] = param.split('=')
      if (name?.trim().toLowerCase() === 'q') q = Number(value ?? '1')
    }
    if (Number.isFinite(q)) quality[format] = Math.max(quality[format], q)
  }
  const other: WireFormat = fallback === 'json' ? 'msgpack' : 'json'
  const response =
    quality[other] > 0 && quality[other] > quality[fallback] ? other : fallback
  return { request, response }
}

/** The encoding a media type names, ignoring parameters and case. */
function formatOfMediaType(mediaType: string): WireFormat | undefined {
  const essence = (mediaType.split(';')[0] ?? '').trim().toLowerCase()
  if (essence === MEDIA_TYPES.json) return 'json'
  if (essence === MEDIA_TYPES.msgpack) return 'msgpack'
  return undefined
}

/**
 * Encodes a message for the wire.
 *
 * @remarks
 * Vectors become base64 of their little-endian bytes in JSON and `bin` in MessagePack.
 * The message is not validated: encode only what this module decoded or what was built
 * from validated parts (a store's results).
 *
 * @example
 * ```ts
 * const body = encodeMessage({ status: 'ok', protocol: PROTOCOL_VERSION, head: 0 }, 'json')
 * ```
 * @public
 */
export function encodeMessage(
  message: Message,
  format: WireFormat,
  ahead?: EncodedPush,
): Uint8Array {
  const vector =
    format === 'json'
      ? (v: StoredVector) => encodeBase64(vectorToBytes(v))
      : (v: StoredVector) => vectorToBytes(v)
  let wire: unknown = message
  if ('push' in message) {
    if (format === 'msgpack' && ahead?.push === message.push)
      return withEncodedPush(packr.pack(syncRequestEnvelope(message)), ahead)
    wire = syncRequestToWire(message, vector)
  } else if ('results' in message) wire = syncResponseToWire(message, vector)
  else if ('conflicts' in message) wire = conflictsToWire(message, vector)
  if (format === 'json') return utf8Encoder.encode(JSON.stringify(wire))
  return packr.pack(wire)
}

/** A sync request's pushed ops in MessagePack, encoded before the rest of the request. */
export interface EncodedPush {
  /** The ops, by identity: only a request carrying this very array uses the bytes. */
  readonly push: readonly PushOp[]
  readonly bytes: Uint8Array
}

/**
 * Encodes the `push` of a binary sync request ahead of time, e.g. while the previous
 * request is at the server; {@link encodeMessage} then only encodes the few other fields
 * (the cursor is not known before the previous answer) and splices these bytes in.
 */
export function encodePushAhead(push: readonly PushOp[]): EncodedPush {
  return { push, bytes: packr.pack(pushToWire(push, vectorToBytes)) }
}

const PUSH_KEY = packr.pack('push')

/**
 * A request map encoded without `push`, with `ahead`'s ops added as its first entry.
 * MessagePack is concatenative (a map is its entry count, then keys and values), so the
 * entry goes in after a new header. First, so that the body's first bytes do not depend on
 * the other fields' values: see {@link encodedPushPrefix}.
 */
function withEncodedPush(map: Uint8Array, ahead: EncodedPush): Uint8Array {
  let count: number
  let entries: Uint8Array
  if (map[0] === 0xde) {
    count = ((map[1] as number) << 8) | (map[2] as number)
    entries = map.subarray(3)
  } else if (((map[0] as number) & 0xf0) === 0x80) {
    count = (map[0] as number) & 0x0f
    entries = map.subarray(1)
  } else {
    throw new VeloSyncError(
      'internal',
      'msgpackr wrote a map with an unexpected header',
    )
  }
  const prefix = encodedPushPrefix(ahead, count + 1)
  let length = entries.length
  for (const part of prefix) length += part.length
  const out = new Uint8Array(length)
  let at = 0
  for (const part of prefix) {
    out.set(part, at)
    at += part.length
  }
  out.set(entries, at)
  return out
}

/**
 * The first bytes of a binary sync request that carries `ahead` and has `fields` entries
 * in all, `push` included (the request of a `SyncClient` has 7: protocol, epoch,
 * collections, cursor, pullLimit, lastLsn and push; 8 with fullResync): a map header, then
 * `push`. They do not depend on the other fields' values, so a transport can hash them
 * while the previous request is at the server (SHA-256 goes on from a copied state).
 */
export function encodedPushPrefix(
  ahead: EncodedPush,
  fields: number,
): readonly Uint8Array[] {
  // map16 even for a few entries: the header is then the same size for any count.
  const header = Uint8Array.of(0xde, fields >> 8, fields & 0xff)
  return [header, PUSH_KEY, ahead.bytes]
}

type VectorOut = (vector: StoredVector) => string | Uint8Array

/** The wire fields of a version, without `origin` (requests) or extra fields. */
function versionFields(
  collection: string,
  version: DocumentVersion,
  vector: VectorOut,
) {
  return {
    collection,
    id: version.id,
    deleted: version.deleted,
    vector: version.vector === null ? null : vector(version.vector),
    metadata: version.metadataJson,
    versionVector: version.versionVector,
    hlc: { wallMs: version.hlc.wallMs, counter: version.hlc.counter },
  }
}

function wireVersion(
  collection: string,
  version: DocumentVersion,
  vector: VectorOut,
) {
  return {
    ...versionFields(collection, version, vector),
    origin: version.origin,
  }
}

function specOf(schema: CollectionSchema) {
  return {
    name: schema.name,
    dims: schema.dims,
    metric: schema.metric,
    dtype: schema.dtype,
  }
}

function syncRequestToWire(message: SyncRequest, vector: VectorOut) {
  return {
    ...syncRequestEnvelope(message),
    push: pushToWire(message.push, vector),
  }
}

function pushToWire(push: readonly PushOp[], vector: VectorOut) {
  return push.map((op) => ({
    ...versionFields(op.collection, op.version, vector),
    lsn: op.lsn,
  }))
}

/** Every field of a sync request but `push`. */
function syncRequestEnvelope(message: SyncRequest) {
  return {
    protocol: message.protocol,
    epoch: message.epoch,
    collections: message.collections.map(specOf),
    cursor: message.cursor,
    pullLimit: message.pullLimit,
    // Left out when false, its default: the common request stays as small as before.
    ...(message.fullResync === true ? { fullResync: true } : {}),
    ...(message.lastLsn === undefined ? {} : { lastLsn: message.lastLsn }),
  }
}

function syncResponseToWire(message: SyncResponse, vector: VectorOut) {
  return {
    protocol: message.protocol,
    collections: message.collections.map(specOf),
    results: message.results.map((result) => {
      const out: Record<string, unknown> = {
        lsn: result.lsn,
        collection: result.collection,
        id: result.id,
        outcome: result.outcome,
      }
      // Absent, never null: `undefined` has no MessagePack form that every reader accepts.
      if (result.seq !== undefined) out['seq'] = result.seq
      if (result.version !== undefined) {
        out['version'] = wireVersion(result.collection, result.version, vector)
      }
      return out
    }),
    appliedThroughLsn: message.appliedThroughLsn,
    changes: message.changes.map((change) => ({
      ...wireVersion(change.collection, change.version, vector),
      seq: change.seq,
    })),
    cursor: message.cursor,
    hasMore: message.hasMore,
    skippedEchoes: message.skippedEchoes,
    head: message.head,
  }
}

function conflictsToWire(message: ConflictsResponse, vector: VectorOut) {
  return {
    collections: message.collections.map(specOf),
    conflicts: message.conflicts.map((record) => ({
      seq: record.seq,
      collection: record.collection,
      id: record.id,
      winner: wireVersion(record.collection, record.winner, vector),
      loser: wireVersion(record.collection, record.loser, vector),
      resolvedAtMs: record.resolvedAtMs,
    })),
  }
}

/** Parses the body into plain data, or throws `malformed_body`. */
function parseBody(bytes: Uint8Array, format: WireFormat): unknown {
  try {
    if (format === 'json') {
      const text = utf8Decoder.decode(bytes)
      // JSON.parse keeps a "__proto__" key as data, but the schema drops it unseen: a
      // version vector could lose an entry. No such key is valid in any message. Only a
      // text holding the name, or an escape that could spell it, pays for the reviver.
      return text.includes('__proto__') || text.includes('\\u')
        ? JSON.parse(text, refuseProtoKey)
        : JSON.parse(text)
    }
    return packr.unpack(bytes)
  } catch (error) {
    if (isVeloSyncError(error)) throw error
    throw new VeloSyncError(
      'malformed_body',
      `the body is not valid ${format === 'json' ? 'JSON' : 'MessagePack'}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    )
  }
}

/** A `JSON.parse` reviver that refuses `"__proto__"` keys (see parseBody). */
function refuseProtoKey(key: string, value: unknown): unknown {
  if (key === '__proto__')
    throw invalidArgument('a "__proto__" key is not allowed in a message')
  return value
}

/** Checks `protocol` before the schema, so that another version gets its own error. */
function checkProtocol(data: unknown): void {
  if (typeof data !== 'object' || data === null) return
  const protocol = (data as { protocol?: unknown }).protocol
  if (protocol !== undefined && protocol !== PROTOCOL_VERSION) {
    throw new VeloSyncError(
      'protocol_mismatch',
      `this side speaks protocol ${PROTOCOL_VERSION}, the message has ${JSON.stringify(protocol)}; upgrade the older side`,
    )
  }
}

/** Validates with `schema`, or throws `invalid_argument` naming the first bad field. */
function validate<S extends z.ZodType>(
  schema: S,
  data: unknown,
  what: string,
): z.infer<S> {
  const result = schema.safeParse(data)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  const path =
    issue === undefined || issue.path.length === 0
      ? '(root)'
      : issue.path.map(String).join('.')
  throw invalidArgument(
    `${what}: ${path}: ${issue?.message ?? 'invalid'}${result.error.issues.length > 1 ? ` (and ${result.error.issues.length - 1} more problems)` : ''}`,
  )
}

/**
 * The sync messages without their bulk arrays. The arrays' elements are checked by the
 * guards of `wire-guards.ts`, which allocate nothing; the message goes through its full
 * schema only when a guard says no, so that the error names the field.
 */
const ENVELOPES = {
  json: envelopesOf(JSON_SCHEMAS),
  msgpack: envelopesOf(MSGPACK_SCHEMAS),
}

function envelopesOf(schemas: typeof JSON_SCHEMAS | typeof MSGPACK_SCHEMAS) {
  return {
    request: schemas.SyncRequest.omit({ push: true }),
    response: schemas.SyncResponse.omit({ results: true, changes: true }),
  }
}

function validateSyncRequest(data: unknown, format: WireFormat) {
  const push = fieldOf(data, 'push')
  if (Array.isArray(push) && push.every((op) => isWirePushOp(op, format))) {
    const envelope = validate(ENVELOPES[format].request, data, 'sync request')
    return { ...envelope, push: push as readonly WirePushOp[] }
  }
  const schemas = format === 'json' ? JSON_SCHEMAS : MSGPACK_SCHEMAS
  return validate(schemas.SyncRequest, data, 'sync request')
}

function validateSyncResponse(data: unknown, format: WireFormat) {
  const results = fieldOf(data, 'results')
  const changes = fieldOf(data, 'changes')
  if (
    Array.isArray(results) &&
    Array.isArray(changes) &&
    results.every((result) => isWireResult(result, format)) &&
    changes.every((change) => isWireChange(change, format))
  ) {
    const envelope = validate(ENVELOPES[format].response, data, 'sync response')
    return {
      ...envelope,
      results: results as readonly WireResult[],
      changes: changes as readonly WireChange[],
    }
  }
  const schemas = format === 'json' ? JSON_SCHEMAS : MSGPACK_SCHEMAS
  return validate(schemas.SyncResponse, data, 'sync response')
}

function fieldOf(data: unknown, key: string): unknown {
  return typeof data === 'object' && data !== null
    ? (data as Record<string, unknown>)[key]
    : undefined
}

/** The collection specs of a message, by name; a name declared twice must agree. */
function collectionMap(
  specs: readonly CollectionSchema[],
): Map<string, CollectionSchema> {
  const byName = new Map<string, CollectionSchema>()
  for (const spec of specs) {
    const known = byName.get(spec.name)
    if (
      known !== undefined &&
      (known.dims !== spec.dims ||
        known.metric !== spec.metric ||
        known.dtype !== spec.dtype)
    ) {
      throw invalidArgument(
        `collections: ${spec.name} is declared twice with different settings`,
      )
    }
    byName.set(spec.name, { ...spec })
  }
  return byName
}

interface WireVersionData {
  collection: string
  id: string
  deleted: boolean
  vector: string | Uint8Array | null
  metadata: string | null
  versionVector: Record<string, number>
  hlc: { wallMs: number; counter: number }
}

/** Converts one validated wire version into a document version (vector, metadata checks). */
function toDocumentVersion(
  wire: WireVersionData,
  origin: string,
  collections: ReadonlyMap<string, CollectionSchema>,
  where: string,
  metadataUse: 'parsed' | 'text',
  vectors: VectorSlab | 'own',
): DocumentVersion {
  const schema = collections.get(wire.collection)
  if (schema === undefined) {
    throw invalidArgument(
      `${where}: collection ${wire.collection} is not declared in collections`,
    )
  }
  assertDocumentId(wire.id)
  if (
    wire.deleted !== (wire.vector === null) ||
    wire.deleted !== (wire.metadata === null)
  ) {
    throw invalidArgument(
      `${where}: vector and metadata must be null exactly when deleted is true (document ${JSON.stringify(wire.id)})`,
    )
  }
  // zod drops a `__proto__` key rather than copying it, so check emptiness after parsing.
  if (Object.keys(wire.versionVector).length === 0) {
    throw invalidArgument(
      `${where}.versionVector: needs at least one entry (the writer's counter)`,
    )
  }
  let vector: StoredVector | null = null
  let metadataJson: string | null = null
  let metadata: JsonObject | undefined
  if (wire.vector !== null && wire.metadata !== null) {
    // A view into the message (or its slab, at an odd offset) is cheap, but keeps the
    // whole message alive with it: a version the caller may keep for long ('own') gets
    // bytes of its own.
    const bytes =
      typeof wire.vector === 'string'
        ? decodeBase64(wire.vector)
        : vectors === 'own'
          ? new Uint8Array(wire.vector) // a copy (a Buffer's slice() would be a view)
          : wire.vector
    if (bytes === undefined) {
      throw invalidArgument(`${where}.vector: not canonical base64`)
    }
    try {
      vector = vectorFromBytes(
        bytes,
        schema.dtype,
        schema.dims,
        vectors === 'own' ? undefined : vectors,
      )
    } catch {
      throw invalidArgument(
        `${where}.vector: collection ${schema.name} has ${schema.dims} × ${schema.dtype} (${schema.dims * (schema.dtype === 'float32' ? 4 : 8)} bytes), got ${bytes.length} bytes`,
      )
    }
    checkVectorValues(schema, vector, vector, `${where}.vector`)
    metadata = checkCanonicalMetadata(
      wire.metadata,
      `${where}.metadata`,
      metadataUse === 'parsed',
    )
    metadataJson = wire.metadata
  }
  // Checked in full here, so a store (or the device) need not scan it again.
  return markValidated(
    {
      id: wire.id,
      deleted: wire.deleted,
      vector,
      metadataJson,
      // An object of this decode's own (its every key checked), frozen from here on. The
      // HLC is rebuilt: a guard lets unknown keys through, the schema would drop them.
      versionVector: wire.versionVector,
      hlc: { wallMs: wire.hlc.wallMs, counter: wire.hlc.counter },
      origin,
    },
    schema,
    metadata,
  )
}

/**
 * Checks that `text` is canonical metadata JSON, and returns it parsed when `parse` is set
 * (a device's index keeps the object; a server stores only the text and needs none).
 */
function checkCanonicalMetadata(
  text: string,
  where: string,
  parse: boolean,
): JsonObject | undefined {
  // The scanner settles almost every text without building objects; the rare forms it
  // leaves open are parsed and canonicalized.
  const scanned = scansAsCanonicalMetadata(text)
  if (scanned && !parse) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw invalidArgument(`${where}: not valid JSON`)
  }
  if (!scanned && canonicalMetadataJson(parsed) !== text) {
    throw invalidArgument(
      `${where}: not in canonical form (no whitespace, sorted keys); send canonicalMetadataJson(metadata)`,
    )
  }
  // Canonical text parses to an object whose keys are in canonical order already.
  return parsed as JsonObject
}

/** Options of {@link decodeSyncRequest}. */
export interface DecodeSyncRequestOptions {
  /**
   * The authenticated device: every pushed version's `origin` becomes
   * `<deviceId>.<epoch>` (DESIGN 8: identity comes from credentials, never the body).
   */
  readonly deviceId: string
}

/**
 * Decodes and validates a whole `POST /v1/sync` request body.
 *
 * @remarks
 * Checks, in order: the encoding, `protocol`, the schema of every field, that every
 * pushed op names a declared collection, strictly increasing LSNs, vector length for
 * the collection's dims and dtype, finite vector values, canonical metadata, and
 * `deleted` ⇔ no vector and no metadata. Nothing is partially accepted.
 *
 * @throws `malformed_body`, `protocol_mismatch` or `invalid_argument`.
 * @public
 */
export function decodeSyncRequest(
  bytes: Uint8Array,
  format: WireFormat,
  options: DecodeSyncRequestOptions,
): SyncRequest {
  const data = parseBody(bytes, format)
  checkProtocol(data)
  const wire = validateSyncRequest(data, format)
  const origin = replicaIdOf(options.deviceId, wire.epoch)
  const collections = collectionMap(wire.collections)
  const push: PushOp[] = []
  const slab = new VectorSlab()
  let previousLsn = 0
  for (let i = 0; i < wire.push.length; i++) {
    const op = wire.push[i] as (typeof wire.push)[number]
    if (op.lsn <= previousLsn) {
      throw invalidArgument(
        `push.${i}.lsn: LSNs must strictly increase, got ${op.lsn} after ${previousLsn}`,
      )
    }
    previousLsn = op.lsn
    const version = toDocumentVersion(
      op,
      origin,
      collections,
      `push.${i}`,
      'text',
      slab,
    )
    // A pushed version is a write of the pushing replica, so its vector counts it. Checked
    // here, before the server creates any declared collection (an error changes nothing).
    if (counterOf(version.versionVector, origin) === 0) {
      throw invalidArgument(
        `push.${i}.versionVector has no entry for the pushing replica ${origin}`,
      )
    }
    push.push({ lsn: op.lsn, collection: op.collection, version })
  }
  return {
    protocol: PROTOCOL_VERSION,
    epoch: wire.epoch,
    collections: [...collections.values()],
    push,
    cursor: wire.cursor,
    pullLimit: wire.pullLimit,
    fullResync: wire.fullResync,
    ...(wire.lastLsn === undefined ? {} : { lastLsn: wire.lastLsn }),
  }
}

/**
 * Decodes and validates a `POST /v1/sync` response body. Vectors are decoded with the
 * response's own `collections`.
 *
 * @throws `malformed_body`, `protocol_mismatch` or `invalid_argument`.
 * @public
 */
export function decodeSyncResponse(
  bytes: Uint8Array,
  format: WireFormat,
): SyncResponse {
  const data = parseBody(bytes, format)
  checkProtocol(data)
  const wire = validateSyncResponse(data, format)
  const collections = collectionMap(wire.collections)
  const slab = new VectorSlab()
  const results = wire.results.map((result, i): OpResult => {
    const version =
      result.version === undefined
        ? undefined
        : toDocumentVersion(
            result.version,
            result.version.origin,
            collections,
            `results.${i}.version`,
            'parsed',
            slab,
          )
    return {
      lsn: result.lsn,
      collection: result.collection,
      id: result.id,
      outcome: result.outcome,
      ...(result.seq === undefined ? {} : { seq: result.seq }),
      ...(version === undefined ? {} : { version }),
    }
  })
  const changes = wire.changes.map((change, i): PulledVersion => ({
    seq: change.seq,
    collection: change.collection,
    version: toDocumentVersion(
      change,
      change.origin,
      collections,
      `changes.${i}`,
      'parsed',
      slab,
    ),
  }))
  return {
    protocol: PROTOCOL_VERSION,
    collections: [...collections.values()],
    results,
    appliedThroughLsn: wire.appliedThroughLsn,
    changes,
    cursor: wire.cursor,
    hasMore: wire.hasMore,
    skippedEchoes: wire.skippedEchoes,
    head: wire.head,
  }
}

/**
 * Decodes and validates a `GET /v1/conflicts` response body.
 *
 * @throws `malformed_body` or `invalid_argument`.
 * @public
 */
export function decodeConflictsResponse(
  bytes: Uint8Array,
  format: WireFormat,
): ConflictsResponse {
  const data = parseBody(bytes, format)
  const schemas = format === 'json' ? JSON_SCHEMAS : MSGPACK_SCHEMAS
  const wire = validate(schemas.ConflictsResponse, data, 'conflicts response')
  const collections = collectionMap(wire.collections)
  const conflicts = wire.conflicts.map((record, i): ConflictRecord => ({
    seq: record.seq,
    collection: record.collection,
    id: record.id,
    // Records are listed for people and tools to keep: they must not pin the whole body.
    winner: toDocumentVersion(
      record.winner,
      record.winner.origin,
      collections,
      `conflicts.${i}.winner`,
      'parsed',
      'own',
    ),
    loser: toDocumentVersion(
      record.loser,
      record.loser.origin,
      collections,
      `conflicts.${i}.loser`,
      'parsed',
      'own',
    ),
    resolvedAtMs: record.resolvedAtMs,
  }))
  return { collections: [...collections.values()], conflicts }
}

/**
 * Decodes and validates a `POST /v1/ack` request body.
 *
 * @throws `malformed_body`, `protocol_mismatch` or `invalid_argument`.
 * @public
 */
export function decodeAckRequest(
  bytes: Uint8Array,
  format: WireFormat,
): AckRequest {
  const data = parseBody(bytes, format)
  checkProtocol(data)
  return validate(JSON_SCHEMAS.AckRequest, data, 'ack request')
}

/**
 * Decodes and validates a digest response body.
 *
 * @throws `malformed_body` or `invalid_argument`.
 * @public
 */
export function decodeDigestResponse(
  bytes: Uint8Array,
  format: WireFormat,
): DigestResponse {
  return validate(
    JSON_SCHEMAS.DigestResponse,
    parseBody(bytes, format),
    'digest response',
  )
}

/**
 * Decodes and validates a health response body.
 *
 * @throws `malformed_body` or `invalid_argument`.
 * @public
 */
export function decodeHealthResponse(
  bytes: Uint8Array,
  format: WireFormat,
): HealthResponse {
  return validate(
    JSON_SCHEMAS.HealthResponse,
    parseBody(bytes, format),
    'health response',
  )
}

/**
 * Decodes and validates an error response body.
 *
 * @throws `malformed_body` or `invalid_argument`.
 * @public
 */
export function decodeErrorBody(
  bytes: Uint8Array,
  format: WireFormat,
): ErrorBody {
  return validate(
    JSON_SCHEMAS.ErrorBody,
    parseBody(bytes, format),
    'error body',
  )
}
