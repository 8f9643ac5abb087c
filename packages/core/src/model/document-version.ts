import type { VectorDType } from './collection.js'
import type { HlcTimestamp } from './hlc.js'
import type { ReplicaId } from './ids.js'
import { vectorToBytes, type StoredVector } from './vector.js'
import { versionVectorEntries, type VersionVector } from './version-vector.js'

/**
 * One version of one document, as replicas store and exchange it. A tombstone
 * (`deleted: true`) has no vector and no metadata.
 */
export interface DocumentVersion {
  readonly id: string
  readonly deleted: boolean
  /** In the collection's dtype; `null` for a tombstone. */
  readonly vector: StoredVector | null
  /** Canonical JSON (see `canonicalMetadataJson`); `null` for a tombstone. */
  readonly metadataJson: string | null
  readonly versionVector: VersionVector
  readonly hlc: HlcTimestamp
  /** The replica that wrote this version. */
  readonly origin: ReplicaId
}

/** A SHA-256 function. Core stays free of platform APIs; each runtime supplies its own. */
export type Sha256 = (data: Uint8Array) => Uint8Array

/** Version byte of the canonical encoding; bump it with any layout change. */
export const DOCUMENT_ENCODING_VERSION = 1

const DTYPE_CODE: Record<VectorDType, number> = { float32: 1, float64: 2 }
/** A web-platform global (browsers, Node); typed here because `core` has no DOM lib. */
interface Utf8Encoder {
  encodeInto(text: string, into: Uint8Array): { read: number; written: number }
}
const utf8 = new (
  globalThis as unknown as { TextEncoder: new () => Utf8Encoder }
).TextEncoder()

/**
 * The canonical binary encoding of a document version: the bytes that are hashed.
 *
 * @remarks
 * Layout (all integers little-endian):
 * ```
 * u8  encoding version (1)        u8  flags (bit 0: deleted)
 * u32 id length, id (UTF-8)
 * live only: u8 dtype (1 float32, 2 float64), u32 dims, dims × width vector bytes,
 *            u32 metadata length, canonical metadata JSON (UTF-8)
 * u32 entry count, then per entry sorted by replica: u32 length, replica (UTF-8), f64 counter
 * f64 hlc.wallMs, u32 hlc.counter
 * u32 origin length, origin (UTF-8)
 * ```
 * Every variable-length field is length-prefixed, so no two different versions encode
 * to the same bytes.
 */
export function encodeDocumentVersion(
  version: DocumentVersion,
  dtype: VectorDType,
): Uint8Array {
  return encodeInto(version, dtype, undefined)
}

/** Reused by {@link hashDocumentVersion}: its bytes are hashed at once, never kept. */
let scratch: Uint8Array = new Uint8Array(4096)

/**
 * Encodes into `buffer` when it is large enough (else into a new array) and returns a view
 * of the encoded bytes.
 */
function encodeInto(
  version: DocumentVersion,
  dtype: VectorDType,
  buffer: Uint8Array | undefined,
): Uint8Array {
  const entries = versionVectorEntries(version.versionVector)
  const live =
    !version.deleted && version.vector !== null && version.metadataJson !== null
  const vectorBytes = live ? vectorToBytes(version.vector) : undefined
  const metadata = live ? version.metadataJson : ''

  // One allocation sized for the worst case (3 UTF-8 bytes per UTF-16 unit), trimmed at the end.
  let bound =
    2 + 4 + 3 * version.id.length + 4 + 12 + 4 + 3 * version.origin.length
  if (vectorBytes !== undefined)
    bound += 1 + 4 + vectorBytes.length + 4 + 3 * metadata.length
  for (const [replica] of entries) bound += 4 + 3 * replica.length + 8
  const out =
    buffer !== undefined && buffer.length >= bound
      ? buffer
      : new Uint8Array(bound)
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  let at = 0
  const text = (value: string): void => {
    const { written } = utf8.encodeInto(value, out.subarray(at + 4))
    view.setUint32(at, written, true)
    at += 4 + written
  }
  out[at++] = DOCUMENT_ENCODING_VERSION
  out[at++] = live ? 0 : 1
  text(version.id)
  if (vectorBytes !== undefined) {
    out[at++] = DTYPE_CODE[dtype]
    view.setUint32(at, (version.vector as StoredVector).length, true)
    at += 4
    out.set(vectorBytes, at)
    at += vectorBytes.length
    text(metadata)
  }
  view.setUint32(at, entries.length, true)
  at += 4
  for (const [replica, count] of entries) {
    text(replica)
    view.setFloat64(at, count, true)
    at += 8
  }
  view.setFloat64(at, version.hlc.wallMs, true)
  at += 8
  view.setUint32(at, version.hlc.counter, true)
  at += 4
  text(version.origin)
  return out.subarray(0, at)
}

/** SHA-256 of the canonical encoding: the document's contribution to a collection digest. */
export function hashDocumentVersion(
  version: DocumentVersion,
  dtype: VectorDType,
  sha256: Sha256,
): Uint8Array {
  const encoded = encodeInto(version, dtype, scratch)
  if (encoded.buffer !== scratch.buffer)
    scratch = new Uint8Array(encoded.buffer)
  return sha256(encoded)
}
