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
  // The first walk builds no paths; only invalid input pays for a second one that names
  // what is wrong.
  const scan = walkJson(metadata, 0, undefined)
  if (scan === INVALID) walkJson(metadata, 0, what)
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
 * Whether `text` is canonical metadata JSON, read in one pass without parsing it into
 * objects: for a receiver that only checks and stores the text (the server). Sound, not
 * complete: `true` means canonical; `false` means either not canonical or a rare form this
 * scanner leaves to {@link canonicalMetadataJson} (an escaped key, an escaped lone
 * surrogate), so the caller then asks that for the verdict.
 */
export function scansAsCanonicalMetadata(text: string): boolean {
  if (text.length > MAX_METADATA_LENGTH || text.charCodeAt(0) !== 0x7b)
    return false
  const end = new CanonicalScanner(text).value(0, 0)
  return end === text.length
}

/**
 * The canonical JSON grammar (JSON.stringify's output for sorted keys), one method per
 * production; each returns the index after what it read, or -1.
 */
class CanonicalScanner {
  readonly #text: string

  constructor(text: string) {
    this.#text = text
  }

  value(at: number, depth: number): number {
    const text = this.#text
    switch (text.charCodeAt(at)) {
      case 0x7b: // {
        return depth >= MAX_METADATA_DEPTH
          ? -1
          : this.#object(at + 1, depth + 1)
      case 0x5b: // [
        return depth >= MAX_METADATA_DEPTH ? -1 : this.#array(at + 1, depth + 1)
      case 0x22: // "
        return this.#string(at + 1, true)
      case 0x74: // t
        return text.startsWith('true', at) ? at + 4 : -1
      case 0x66: // f
        return text.startsWith('false', at) ? at + 5 : -1
      case 0x6e: // n
        return text.startsWith('null', at) ? at + 4 : -1
      default:
        return this.#number(at)
    }
  }

  #object(at: number, depth: number): number {
    const text = this.#text
    if (text.charCodeAt(at) === 0x7d) return at + 1
    // Array-index keys first in ascending numeric order, then the others ascending by
    // UTF-16 code unit: JavaScript's property order, which JSON.stringify follows.
    let previousIndex = -1
    let previousKey: string | undefined
    for (;;) {
      if (text.charCodeAt(at) !== 0x22) return -1
      // An escaped key would need decoding to be compared: left to the slow path.
      const keyEnd = this.#string(at + 1, false)
      if (keyEnd === -1 || text.charCodeAt(keyEnd) !== 0x3a) return -1
      const key = text.slice(at + 1, keyEnd - 1)
      if (isArrayIndex(key)) {
        const index = Number(key)
        if (previousKey !== undefined || index <= previousIndex) return -1
        previousIndex = index
      } else {
        if (previousKey !== undefined && key <= previousKey) return -1
        previousKey = key
      }
      at = this.value(keyEnd + 1, depth)
      if (at === -1) return -1
      const next = text.charCodeAt(at)
      if (next === 0x7d) return at + 1
      if (next !== 0x2c) return -1
      at++
    }
  }

  #array(at: number, depth: number): number {
    const text = this.#text
    if (text.charCodeAt(at) === 0x5d) return at + 1
    for (;;) {
      at = this.value(at, depth)
      if (at === -1) return -1
      const next = text.charCodeAt(at)
      if (next === 0x5d) return at + 1
      if (next !== 0x2c) return -1
      at++
    }
  }

  /** From after the opening quote to after the closing one; escapes only if allowed. */
  #string(at: number, escapes: boolean): number {
    const text = this.#text
    for (;;) {
      const c = text.charCodeAt(at)
      if (c === 0x22) return at + 1
      if (c < 0x20 || Number.isNaN(c)) return -1
      if (c === 0x5c) {
        if (!escapes) return -1
        at = this.#escape(at + 1)
        if (at === -1) return -1
        continue
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        // Only a high surrogate followed by a low one stands as it is.
        const low = text.charCodeAt(at + 1)
        if (c > 0xdbff || !(low >= 0xdc00 && low <= 0xdfff)) return -1
        at += 2
        continue
      }
      at++
    }
  }

  /** After a backslash: the escapes JSON.stringify writes, and no other spelling. */
  #escape(at: number): number {
    const text = this.#text
    switch (text.charCodeAt(at)) {
      case 0x22: // \"
      case 0x5c: // \\
      case 0x62: // \b
      case 0x66: // \f
      case 0x6e: // \n
      case 0x72: // \r
      case 0x74: // \t
        return at + 1
      case 0x75: {
        // \u00xx (lowercase) for a control character without a short form; an escaped
        // lone surrogate is left to the slow path.
        const hex = text.slice(at + 1, at + 5)
        if (!/^00[01][0-9a-f]$/.test(hex)) return -1
        const code = parseInt(hex, 16)
        return SHORT_ESCAPES.has(code) ? -1 : at + 5
      }
      default:
        return -1
    }
  }

  #number(at: number): number {
    const text = this.#text
    let end = at
    for (;;) {
      const c = text.charCodeAt(end)
      // Digits, '-', '+', '.', 'e' and 'E': the characters a JSON number may hold.
      if (
        (c >= 0x30 && c <= 0x39) ||
        c === 0x2d ||
        c === 0x2b ||
        c === 0x2e ||
        c === 0x65 ||
        c === 0x45
      )
        end++
      else break
    }
    if (end === at) return -1
    const token = text.slice(at, end)
    // Canonical exactly when it is how JavaScript writes the number it denotes.
    return String(Number(token)) === token ? end : -1
  }
}

/** Control characters JSON.stringify writes as \b, \t, \n, \f, \r. */
const SHORT_ESCAPES = new Set([0x08, 0x09, 0x0a, 0x0c, 0x0d])

const SORTED = 0
const UNSORTED = 1
const INVALID = 2

/**
 * Walks `value` as JSON: SORTED, UNSORTED (valid, but some object's keys are out of
 * order) or INVALID (not representable as JSON without loss). Given a `path`, an invalid
 * value throws `invalid_argument` naming where instead; without one (the hot path) no
 * path strings are built.
 */
function walkJson(
  value: unknown,
  depth: number,
  path: string | undefined,
): number {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return SORTED
    case 'number':
      return Number.isFinite(value)
        ? SORTED
        : invalid(path, ` is ${value}; JSON has no non-finite numbers`)
    case 'object': {
      if (value === null) return SORTED
      // The depth bound also stops cycles, without tracking ancestors on every write.
      if (depth >= MAX_METADATA_DEPTH) {
        return invalid(
          path,
          ` nests deeper than ${MAX_METADATA_DEPTH} levels (or refers to itself)`,
        )
      }
      const array = Array.isArray(value)
      if (!array && !isPlainObject(value)) {
        return invalid(
          path,
          ` is a ${value.constructor.name}; only plain objects are JSON`,
        )
      }
      if (hasToJson(value)) {
        return invalid(
          path,
          ' has a toJSON method; JSON.stringify would write what it returns, not the object',
        )
      }
      let verdict = SORTED
      if (array) {
        for (let i = 0; i < value.length; i++) {
          // JSON.stringify turns holes into null; reject them like undefined.
          if (!(i in value))
            return invalid(path, `[${i}] is a hole in a sparse array`)
          const item = walkJson(
            value[i],
            depth + 1,
            path === undefined ? undefined : `${path}[${i}]`,
          )
          if (item === INVALID) return INVALID
          verdict |= item
        }
        return verdict
      }
      // The engine lists array-index keys first, in numeric order, whatever the insertion
      // order: only the other keys' order is the input's own.
      let previous: string | undefined
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue
        if (!isArrayIndex(key)) {
          if (previous !== undefined && key < previous) verdict = UNSORTED
          previous = key
        }
        const item = walkJson(
          value[key],
          depth + 1,
          path === undefined ? undefined : `${path}.${key}`,
        )
        if (item === INVALID) return INVALID
        verdict |= item
      }
      return verdict
    }
    default:
      return invalid(path, ` is ${typeof value}, which JSON cannot represent`)
  }
}

/** INVALID on the hot path (no `path`); with one, the error naming it. */
function invalid(path: string | undefined, problem: string): number {
  if (path === undefined) return INVALID
  throw invalidArgument(`${path}${problem}`)
}

/** Whether JavaScript treats `key` as an array index (listed first, in numeric order). */
function isArrayIndex(key: string): boolean {
  const first = key.charCodeAt(0)
  if (first < 48 || first > 57 || key.length > 10) return false
  return ARRAY_INDEX.test(key) && Number(key) < 4_294_967_295
}
const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/

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

/**
 * Whether JSON.stringify would call a `toJSON` of `value` (an own property, enumerable
 * or not: plain objects and arrays inherit none) instead of writing it as it is.
 */
function hasToJson(value: object): boolean {
  return typeof (value as { toJSON?: unknown }).toJSON === 'function'
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
