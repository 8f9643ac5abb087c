import { invalidArgument } from '../errors.js'

/** Longest accepted document id, in UTF-16 code units. */
export const MAX_DOCUMENT_ID_LENGTH = 512

const COLLECTION_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/
const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/
const EPOCH = /^[0-9a-f]{8,32}$/

/**
 * Identifies one incarnation of one device: `<deviceId>.<epoch>`. Version vectors are
 * keyed by it, so a device restored from a backup (a new epoch) can never reuse a
 * counter for different content.
 */
export type ReplicaId = string

/** Throws `invalid_argument` unless `id` is a usable document id. */
export function assertDocumentId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || id.length === 0) {
    throw invalidArgument(
      `document id must be a non-empty string, got ${describe(id)}`,
    )
  }
  if (id.length > MAX_DOCUMENT_ID_LENGTH) {
    throw invalidArgument(
      `document id is ${id.length} characters long; the limit is ${MAX_DOCUMENT_ID_LENGTH}`,
    )
  }
  if (id.includes('\u0000')) {
    throw invalidArgument('document id must not contain NUL characters')
  }
  // SQLite stores text as UTF-8, where a lone surrogate becomes U+FFFD: two such ids
  // would share one row.
  if (LONE_SURROGATE.test(id)) {
    throw invalidArgument(
      'document id must be well-formed Unicode (it has a lone surrogate)',
    )
  }
}

const LONE_SURROGATE =
  /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** Throws `invalid_argument` unless `name` matches `[A-Za-z][A-Za-z0-9_-]{0,62}`. */
export function assertCollectionName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !COLLECTION_NAME.test(name)) {
    throw invalidArgument(
      `collection name must match ${COLLECTION_NAME.source}, got ${describe(name)}`,
    )
  }
}

/** Throws `invalid_argument` unless `id` matches `[A-Za-z0-9][A-Za-z0-9_-]{0,63}`. */
export function assertDeviceId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || !DEVICE_ID.test(id)) {
    throw invalidArgument(
      `device id must match ${DEVICE_ID.source}, got ${describe(id)}`,
    )
  }
}

/** Joins a device id and an epoch (8–32 lowercase hex digits) into a {@link ReplicaId}. */
export function replicaIdOf(deviceId: string, epoch: string): ReplicaId {
  assertDeviceId(deviceId)
  if (!EPOCH.test(epoch)) {
    throw invalidArgument(
      `epoch must be 8-32 lowercase hex digits, got ${describe(epoch)}`,
    )
  }
  return `${deviceId}.${epoch}`
}

/** A short, safe rendering of an unknown value for error messages. */
export function describe(value: unknown): string {
  if (typeof value === 'string') {
    return JSON.stringify(
      value.length > 80 ? `${value.slice(0, 77)}...` : value,
    )
  }
  if (value === null || typeof value !== 'object') return String(value)
  return Array.isArray(value) ? 'an array' : 'an object'
}
