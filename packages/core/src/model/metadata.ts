import { invalidArgument } from '../errors.js'
import { describe } from './ids.js'

/** A JSON value as stored in metadata. */
export type JsonValue =
  null | boolean | number | string | readonly JsonValue[] | JsonObject
/** A JSON object: what document metadata is. */
export interface JsonObject {
  readonly [key: string]: JsonValue
}

/** Largest accepted metadata, as canonical JSON in UTF-16 code units (≈ bytes for ASCII). */
export const MAX_METADATA_LENGTH = 64 * 1024
/** Deepest accepted nesting of objects and arrays. */
export const MAX_METADATA_DEPTH = 32

/**
 * Validates metadata and returns its canonical JSON: no whitespace, and in every object
 * the integer-like keys in ascending numeric order followed by the other keys sorted by
 * UTF-16 code unit (JavaScript's own property order, made independent of insertion order).
 * Equal objects always give the same text, so the text can be hashed and compared across
 * replicas.
 *
 * @throws `invalid_argument` for a non-object, a non-plain object anywhere (Date, Map,
 *   class instance), `undefined`, functions, symbols, bigints, non-finite numbers, cycles,
 *   sparse arrays, nesting deeper than {@link MAX_METADATA_DEPTH}, or text longer than
 *   {@link MAX_METADATA_LENGTH}.
 */
export function canonicalMetadataJson(
  metadata: unknown,
  what = 'metadata',
): string {
  return canonicalMetadata(metadata, what).json
}

/** The result of {@link canonicalMetadata}. */
export interface CanonicalMetadata {
  /** The canonical JSON text. */
  readonly json: string
  /**
   * A deep copy in canonical key order when one had to be made (some object's keys were
   * out of order), else `undefined`. It shares nothing with the input.
   */
  readonly copy: JsonObject | undefined
}

/**
 * {@link canonicalMetadataJson}, also handing back the sorted deep copy it made, if any, so
 * a caller that needs its own copy of the object need not parse the text again.
 *
 * @throws as {@link canonicalMetadataJson}.
 */
export function canonicalMetadata(
  metadata: unknown,
  what = 'metadata',
): CanonicalMetadata {
  if (!isPlainObject(metadata)) {
    throw invalidArgument(
      `${what} must be a plain JSON object, got ${describe(metadata)}`,
    )
  }
  // Validate first; most metadata already has its keys in order (or one key per object),
  // and then JSON.stringify's output is canonical and ~4x faster than writing it by hand.
  // The scan builds no paths; only invalid input pays for checkJson's error message.
  const scan = scanJson(metadata, 0)
  if (scan === INVALID) checkJson(metadata, what, 0)
  const copy =
    scan === SORTED ? undefined : (sortedCopy(metadata) as JsonObject)
  const json = JSON.stringify(copy ?? metadata)
  if (json.length > MAX_METADATA_LENGTH) {
    throw invalidArgument(
      `${what} is ${json.length} characters as JSON; the limit is ${MAX_METADATA_LENGTH}`,
    )
  }
  return { json, copy }
}

/**
 * Whether `text` is canonical metadata JSON, given `parsed = JSON.parse(text)`: a decoder's
 * check of received metadata without re-serializing it by hand. JSON.parse can only yield
 * JSON values, so what is left to check is nesting, key order and the exact text.
 *
 * @returns `true` when it is; `false` when that is not shown, and the caller then asks
 *   {@link canonicalMetadataJson} for the verdict (and the reason).
 */
export function isCanonicalMetadataText(
  parsed: unknown,
  text: string,
): boolean {
  return (
    text.length <= MAX_METADATA_LENGTH &&
    isPlainObject(parsed) &&
    scanJson(parsed, 0) === SORTED &&
    JSON.stringify(parsed) === text
  )
}

const SORTED = 0
const UNSORTED = 1
const INVALID = 2

/**
 * {@link checkJson}'s verdict without its error message (no path strings on the hot path):
 * SORTED, UNSORTED (valid, some object's keys out of order) or INVALID.
 */
function scanJson(value: unknown, depth: number): number {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return SORTED
    case 'number':
      return Number.isFinite(value) ? SORTED : INVALID
    case 'object': {
      if (value === null) return SORTED
      if (depth >= MAX_METADATA_DEPTH) return INVALID
      let verdict = SORTED
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          if (!(i in value)) return INVALID
          const item = scanJson(value[i], depth + 1)
          if (item === INVALID) return INVALID
          verdict |= item
        }
        return verdict
      }
      if (!isPlainObject(value)) return INVALID
      // The engine lists array-index keys first, in numeric order, whatever the insertion
      // order: only the other keys' order is the input's own.
      let previous: string | undefined
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue
        if (!isArrayIndex(key)) {
          if (previous !== undefined && key < previous) verdict = UNSORTED
          previous = key
        }
        const item = scanJson(value[key], depth + 1)
        if (item === INVALID) return INVALID
        verdict |= item
      }
      return verdict
    }
    default:
      return INVALID
  }
}

/** Whether JavaScript treats `key` as an array index (listed first, in numeric order). */
function isArrayIndex(key: string): boolean {
  const first = key.charCodeAt(0)
  if (first < 48 || first > 57 || key.length > 10) return false
  return ARRAY_INDEX.test(key) && Number(key) < 4_294_967_295
}
const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/

/**
 * Throws unless `value` is representable as JSON without loss.
 *
 * @returns whether every object's keys are already in sorted order.
 */
function checkJson(value: unknown, path: string, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true
    case 'number':
      if (!Number.isFinite(value)) {
        throw invalidArgument(
          `${path} is ${value}; JSON has no non-finite numbers`,
        )
      }
      return true
    case 'object': {
      if (value === null) return true
      // The depth bound also stops cycles, without tracking ancestors on every write.
      if (depth >= MAX_METADATA_DEPTH) {
        throw invalidArgument(
          `${path} nests deeper than ${MAX_METADATA_DEPTH} levels (or refers to itself)`,
        )
      }
      let sorted = true
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          // JSON.stringify turns holes into null; reject them like undefined.
          if (!(i in value))
            throw invalidArgument(`${path}[${i}] is a hole in a sparse array`)
          if (!checkJson(value[i], `${path}[${i}]`, depth + 1)) sorted = false
        }
      } else if (isPlainObject(value)) {
        let previous: string | undefined
        for (const key in value) {
          if (!Object.hasOwn(value, key)) continue
          if (previous !== undefined && key < previous) sorted = false
          previous = key
          if (!checkJson(value[key], `${path}.${key}`, depth + 1))
            sorted = false
        }
      } else {
        throw invalidArgument(
          `${path} is a ${value.constructor.name}; only plain objects are JSON`,
        )
      }
      return sorted
    }
    default:
      throw invalidArgument(
        `${path} is ${typeof value}, which JSON cannot represent`,
      )
  }
}

/** A deep copy with every object's keys inserted in sorted order (already validated). */
function sortedCopy(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) return value.map(sortedCopy)
  const source = value as Record<string, unknown>
  const copy: Record<string, unknown> = {}
  for (const key of Object.keys(source).sort()) {
    const item = sortedCopy(source[key])
    // Assigning "__proto__" would set the prototype; define it as a plain data property.
    if (key === '__proto__') {
      Object.defineProperty(copy, key, {
        value: item,
        enumerable: true,
        writable: true,
        configurable: true,
      })
    } else copy[key] = item
  }
  return copy
}

/** True for `{}`-style objects (prototype `Object.prototype` or `null`). */
export function isPlainObject(
  value: unknown,
): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}
