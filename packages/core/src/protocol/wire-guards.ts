import { HLC_MAX_COUNTER } from '../model/hlc.js'
import { MAX_DOCUMENT_ID_LENGTH } from '../model/ids.js'
import type { WireFormat } from './codec.js'
import { COLLECTION_NAME, NO_NUL, OUTCOMES, REPLICA_ID } from './messages.js'

/**
 * Allocation-free checks of the three arrays that carry a message's bulk: pushed ops,
 * pulled changes and push results.
 *
 * @remarks
 * Each guard accepts exactly what the element's zod schema in `messages.ts` accepts, or
 * less (it may also demand a plain object). zod stays the definition: a guard that says no
 * sends the whole message through zod, which names the bad field. Why by hand: zod builds
 * a result object and an issue list for every field it checks. For 10,000 pushed or pulled
 * 384-d documents that cost ~20 ms and ~27 MB of garbage, about a third of what the
 * decoder allocates. `wire-guards.test.ts` compares every guard with its schema.
 */

/** The shape of a pushed op that passed its guard (what zod would have returned). */
export interface WirePushOp extends WireVersionFields {
  readonly lsn: number
}

/** A pulled change that passed its guard. */
export interface WireChange extends WireVersionFields {
  readonly origin: string
  readonly seq: number
}

/** A push result that passed its guard. */
export interface WireResult {
  readonly lsn: number
  readonly collection: string
  readonly id: string
  readonly outcome: (typeof OUTCOMES)[number]
  readonly seq?: number
  readonly version?: WireVersionFields & { readonly origin: string }
}

interface WireVersionFields {
  readonly collection: string
  readonly id: string
  readonly deleted: boolean
  readonly vector: string | Uint8Array | null
  readonly metadata: string | null
  readonly versionVector: Record<string, number>
  readonly hlc: { readonly wallMs: number; readonly counter: number }
}

// zod's base64 format: this alphabet, a length that is a multiple of 4 (and so atob
// accepts it).
const BASE64 = /^[0-9a-zA-Z+/]*={0,2}$/
const OUTCOME_SET: ReadonlySet<unknown> = new Set(OUTCOMES)

/** Whether `value` is one pushed op of a sync request in `format`. */
export function isWirePushOp(
  value: unknown,
  format: WireFormat,
): value is WirePushOp {
  return (
    isPlainObject(value) &&
    isVersionFields(value, format) &&
    isInt(value['lsn'], 1)
  )
}

/** Whether `value` is one pulled change of a sync response in `format`. */
export function isWireChange(
  value: unknown,
  format: WireFormat,
): value is WireChange {
  return isWireVersion(value, format) && isInt(value['seq'], 1)
}

/** Whether `value` is one push result of a sync response in `format`. */
export function isWireResult(
  value: unknown,
  format: WireFormat,
): value is WireResult {
  if (!isPlainObject(value)) return false
  const { seq, version } = value
  return (
    isInt(value['lsn'], 1) &&
    isCollectionName(value['collection']) &&
    typeof value['id'] === 'string' &&
    OUTCOME_SET.has(value['outcome']) &&
    (seq === undefined || isInt(seq, 1)) &&
    (version === undefined || isWireVersion(version, format))
  )
}

/** A version as a response carries it: the fields of a pushed one, and its origin. */
function isWireVersion(
  value: unknown,
  format: WireFormat,
): value is Record<string, unknown> {
  return (
    isPlainObject(value) &&
    isVersionFields(value, format) &&
    isReplicaId(value['origin'])
  )
}

function isVersionFields(
  value: Record<string, unknown>,
  format: WireFormat,
): boolean {
  const { id, vector, metadata, hlc } = value
  return (
    isCollectionName(value['collection']) &&
    typeof id === 'string' &&
    id.length >= 1 &&
    id.length <= MAX_DOCUMENT_ID_LENGTH &&
    NO_NUL.test(id) &&
    typeof value['deleted'] === 'boolean' &&
    (vector === null ||
      (format === 'msgpack'
        ? vector instanceof Uint8Array
        : typeof vector === 'string' &&
          vector.length % 4 === 0 &&
          BASE64.test(vector))) &&
    (metadata === null || typeof metadata === 'string') &&
    isVersionVector(value['versionVector']) &&
    isPlainObject(hlc) &&
    isInt(hlc['wallMs'], 0) &&
    isInt(hlc['counter'], 0, HLC_MAX_COUNTER)
  )
}

function isVersionVector(value: unknown): boolean {
  if (!isPlainObject(value)) return false
  for (const key in value) {
    if (!REPLICA_ID.test(key) || !isInt(value[key], 1)) return false
  }
  return true
}

function isCollectionName(value: unknown): boolean {
  return typeof value === 'string' && COLLECTION_NAME.test(value)
}

function isReplicaId(value: unknown): boolean {
  return typeof value === 'string' && REPLICA_ID.test(value)
}

/** zod's `z.int()` (a safe integer) with its bounds. */
function isInt(
  value: unknown,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): boolean {
  return (
    typeof value === 'number' &&
    Number.isSafeInteger(value) &&
    value >= min &&
    value <= max
  )
}

/** What JSON.parse and msgpackr build for a map; anything else goes to zod. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    Object.getPrototypeOf(value) === Object.prototype
  )
}
