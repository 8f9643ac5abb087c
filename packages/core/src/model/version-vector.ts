import { invalidArgument } from '../errors.js'
import { describe, type ReplicaId } from './ids.js'

/**
 * A version vector: for each replica, how many of its writes a version includes.
 * Absent entries mean 0; zero entries are never stored, so equal vectors have equal
 * canonical forms.
 */
export type VersionVector = Readonly<Record<ReplicaId, number>>

/** How version `a` relates to version `b`. */
export type CausalOrder = 'equal' | 'dominates' | 'dominated' | 'concurrent'

export const EMPTY_VERSION_VECTOR: VersionVector = Object.freeze({})

/**
 * Compares two version vectors.
 *
 * @returns `dominates` when `a` has seen everything `b` has and more; `dominated` for the
 *   reverse; `equal`; otherwise `concurrent` (neither saw the other's latest write).
 */
export function compareVersionVectors(
  a: VersionVector,
  b: VersionVector,
): CausalOrder {
  let aAhead = false
  let bAhead = false
  for (const [replica, count] of Object.entries(a)) {
    const other = counterOf(b, replica)
    if (count > other) aAhead = true
    else if (count < other) bAhead = true
  }
  for (const [replica, count] of Object.entries(b)) {
    if (count > counterOf(a, replica)) bAhead = true
  }
  if (aAhead && bAhead) return 'concurrent'
  if (aAhead) return 'dominates'
  if (bAhead) return 'dominated'
  return 'equal'
}

/** The least upper bound: the element-wise maximum. Commutative, associative, idempotent. */
export function mergeVersionVectors(
  a: VersionVector,
  b: VersionVector,
): VersionVector {
  const merged = new Map(Object.entries(a))
  for (const [replica, count] of Object.entries(b)) {
    if (count > (merged.get(replica) ?? 0)) merged.set(replica, count)
  }
  return Object.fromEntries(merged)
}

/** `vector` with `replica`'s counter raised by one: the vector of a new local write. */
export function incrementVersionVector(
  vector: VersionVector,
  replica: ReplicaId,
): VersionVector {
  return { ...vector, [replica]: counterOf(vector, replica) + 1 }
}

/** The counter of `replica` in `vector` (0 when absent). */
export function counterOf(vector: VersionVector, replica: ReplicaId): number {
  return Object.hasOwn(vector, replica) ? (vector[replica] as number) : 0
}

/** Entries sorted by replica id, zeros dropped: the form that is hashed and stored. */
export function versionVectorEntries(
  vector: VersionVector,
): Array<[ReplicaId, number]> {
  const entries = Object.entries(vector).filter(([, count]) => count > 0)
  if (entries.length > 1)
    entries.sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
  return entries
}

/** Canonical JSON text of a version vector (sorted keys, no zeros). */
export function versionVectorToJson(vector: VersionVector): string {
  // Written out rather than through an object: it runs once per write, and an object
  // would move integer-like keys to the front, out of the sorted order.
  let json = '{'
  for (const [replica, count] of versionVectorEntries(vector)) {
    if (json.length > 1) json += ','
    json += `${JSON.stringify(replica)}:${count}`
  }
  return `${json}}`
}

/**
 * Parses and validates a version vector from untrusted JSON-like input.
 *
 * @throws `invalid_argument` unless every entry is a non-empty key with a positive safe integer.
 */
export function parseVersionVector(input: unknown): VersionVector {
  const value: unknown = typeof input === 'string' ? JSON.parse(input) : input
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidArgument(
      `version vector must be an object, got ${describe(value)}`,
    )
  }
  const entries: Array<[string, number]> = []
  for (const [replica, count] of Object.entries(value)) {
    if (
      replica.length === 0 ||
      !Number.isSafeInteger(count) ||
      (count as number) < 1
    ) {
      throw invalidArgument(
        `version vector entry ${describe(replica)} must map to a positive integer, got ${describe(count)}`,
      )
    }
    entries.push([replica, count as number])
  }
  return Object.fromEntries(entries)
}
