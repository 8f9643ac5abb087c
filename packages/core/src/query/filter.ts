import { invalidArgument } from '../errors.js'
import { describe } from '../model/ids.js'
import {
  isPlainObject,
  type JsonObject,
  type JsonValue,
} from '../model/metadata.js'

/** A value a filter compares against. */
export type FilterScalar = string | number | boolean | null

/** Operators on one metadata field. Several operators in one object must all hold. */
export interface FieldOperators {
  readonly $eq?: FilterScalar
  readonly $ne?: FilterScalar
  readonly $gt?: number | string
  readonly $gte?: number | string
  readonly $lt?: number | string
  readonly $lte?: number | string
  readonly $in?: readonly FilterScalar[]
  readonly $nin?: readonly FilterScalar[]
  readonly $exists?: boolean
}

/**
 * A metadata filter, in the MongoDB style most developers know.
 *
 * @remarks
 * - `{ field: value }` is equality; `field` may be a dotted path into nested objects.
 * - Several keys in one object must all match; `$and`, `$or` take lists; `$not` negates.
 * - Ranges compare numbers with numbers and strings with strings (by UTF-16 code unit);
 *   a value of another type never matches a range.
 * - When the field holds an array, a condition matches if any element matches
 *   (`$ne` and `$nin`: if no element matches).
 * - `$ne`, `$nin` and `$exists: false` match documents that lack the field.
 *
 * @example
 * ```ts
 * const filter: MetadataFilter = {
 *   lang: 'en',
 *   year: { $gte: 2020, $lt: 2025 },
 *   $or: [{ tags: 'urgent' }, { priority: { $in: [1, 2] } }],
 * }
 * ```
 */
export type MetadataFilter = {
  readonly $and?: readonly MetadataFilter[]
  readonly $or?: readonly MetadataFilter[]
  readonly $not?: MetadataFilter
} & {
  readonly [field: string]:
    | FilterScalar
    | FieldOperators
    | readonly MetadataFilter[]
    | MetadataFilter
    | undefined
}

/** A compiled filter. */
export type MetadataPredicate = (metadata: JsonObject) => boolean

/** Largest `$in` / `$nin` list. */
export const MAX_FILTER_LIST = 10_000
const MAX_FILTER_DEPTH = 32

/**
 * Validates a filter and compiles it to a predicate over metadata objects.
 *
 * @throws `invalid_argument` naming the path of the first problem: an unknown operator,
 *   an operand of the wrong type, an object or array compared for equality, too deep.
 */
export function compileFilter(filter: unknown): MetadataPredicate {
  return compileNode(filter, 'filter', 0)
}

function compileNode(
  node: unknown,
  path: string,
  depth: number,
): MetadataPredicate {
  if (depth > MAX_FILTER_DEPTH)
    throw invalidArgument(`${path}: filter nests too deeply`)
  if (!isPlainObject(node)) {
    throw invalidArgument(`${path} must be an object, got ${describe(node)}`)
  }
  const parts: MetadataPredicate[] = []
  for (const [key, value] of Object.entries(node)) {
    const at = `${path}.${key}`
    if (key === '$and' || key === '$or') {
      if (!Array.isArray(value) || value.length === 0) {
        throw invalidArgument(`${at} must be a non-empty array of filters`)
      }
      const children = value.map((child, i) =>
        compileNode(child, `${at}[${i}]`, depth + 1),
      )
      parts.push(
        key === '$and'
          ? (m) => children.every((child) => child(m))
          : (m) => children.some((child) => child(m)),
      )
    } else if (key === '$not') {
      const child = compileNode(value, at, depth + 1)
      parts.push((m) => !child(m))
    } else if (key.startsWith('$')) {
      throw invalidArgument(
        `${at}: unknown logical operator (use $and, $or, $not)`,
      )
    } else if (
      key.length === 0 ||
      key.split('.').some((segment) => segment.length === 0)
    ) {
      throw invalidArgument(
        `${at}: field paths are non-empty, dot-separated names`,
      )
    } else {
      parts.push(compileField(key.split('.'), value, at))
    }
  }
  if (parts.length === 1) return parts[0] as MetadataPredicate
  return (m) => parts.every((part) => part(m))
}

function compileField(
  segments: string[],
  condition: unknown,
  path: string,
): MetadataPredicate {
  const read = (m: JsonObject): JsonValue | undefined => {
    let value: JsonValue | undefined = m
    for (const segment of segments) {
      if (!isPlainObject(value) || !Object.hasOwn(value, segment))
        return undefined
      value = value[segment]
    }
    return value
  }
  if (!isPlainObject(condition)) {
    const expected = scalar(condition, path)
    return (m) => anyElement(read(m), (v) => v === expected)
  }
  const checks: MetadataPredicate[] = []
  for (const [op, operand] of Object.entries(condition)) {
    const at = `${path}.${op}`
    switch (op) {
      case '$eq': {
        const expected = scalar(operand, at)
        checks.push((m) => anyElement(read(m), (v) => v === expected))
        break
      }
      case '$ne': {
        const expected = scalar(operand, at)
        checks.push((m) => !anyElement(read(m), (v) => v === expected))
        break
      }
      case '$gt':
      case '$gte':
      case '$lt':
      case '$lte': {
        if (typeof operand !== 'number' && typeof operand !== 'string') {
          throw invalidArgument(
            `${at} needs a number or a string, got ${describe(operand)}`,
          )
        }
        if (typeof operand === 'number' && !Number.isFinite(operand)) {
          throw invalidArgument(`${at} needs a finite number, got ${operand}`)
        }
        const compare = RANGE[op]
        checks.push((m) =>
          anyElement(
            read(m),
            (v) =>
              typeof v === typeof operand &&
              compare(v as never, operand as never),
          ),
        )
        break
      }
      case '$in':
      case '$nin': {
        if (!Array.isArray(operand))
          throw invalidArgument(`${at} needs an array`)
        if (operand.length > MAX_FILTER_LIST) {
          throw invalidArgument(
            `${at} has ${operand.length} values; the limit is ${MAX_FILTER_LIST}`,
          )
        }
        const set = new Set(
          operand.map((item, i) => scalar(item, `${at}[${i}]`)),
        )
        const found: MetadataPredicate = (m) =>
          anyElement(read(m), (v) => set.has(v as FilterScalar))
        checks.push(op === '$in' ? found : (m) => !found(m))
        break
      }
      case '$exists': {
        if (typeof operand !== 'boolean')
          throw invalidArgument(`${at} needs true or false`)
        checks.push((m) => (read(m) !== undefined) === operand)
        break
      }
      default:
        throw invalidArgument(
          `${at}: unknown operator (use $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists)`,
        )
    }
  }
  if (checks.length === 0)
    throw invalidArgument(
      `${path}: an operator object needs at least one operator`,
    )
  return (m) => checks.every((check) => check(m))
}

const RANGE = {
  $gt: (a: number, b: number) => a > b,
  $gte: (a: number, b: number) => a >= b,
  $lt: (a: number, b: number) => a < b,
  $lte: (a: number, b: number) => a <= b,
} as const

function scalar(value: unknown, path: string): FilterScalar {
  if (value === null || typeof value === 'string' || typeof value === 'boolean')
    return value
  if (typeof value === 'number' && Number.isFinite(value)) return value
  throw invalidArgument(
    `${path} must be a string, finite number, boolean or null, got ${describe(value)}`,
  )
}

function anyElement(
  value: JsonValue | undefined,
  test: (v: JsonValue) => boolean,
): boolean {
  if (value === undefined) return false
  if (Array.isArray(value)) return (value as readonly JsonValue[]).some(test)
  return test(value)
}
