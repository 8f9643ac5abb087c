import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { HLC_MAX_COUNTER } from '../model/hlc.js'
import { MAX_DOCUMENT_ID_LENGTH } from '../model/ids.js'
import type { WireFormat } from './codec.js'
import { JSON_SCHEMAS, MSGPACK_SCHEMAS } from './messages.js'
import { isWireChange, isWirePushOp, isWireResult } from './wire-guards.js'

// Each guard must answer exactly as the zod schema of its element does (for plain objects,
// which is all a decoder builds): more lenient would let bad data in, stricter would only
// cost speed, but equality is what keeps the two honest.

const ORIGIN = 'dev1.0123abcd'
const ODD_VALUES: unknown[] = [
  undefined,
  null,
  true,
  false,
  0,
  -0,
  1,
  -1,
  1.5,
  2 ** 53,
  2 ** 53 - 1,
  HLC_MAX_COUNTER,
  HLC_MAX_COUNTER + 1,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  '',
  'a',
  'notes',
  '1notes',
  'x'.repeat(MAX_DOCUMENT_ID_LENGTH),
  'x'.repeat(MAX_DOCUMENT_ID_LENGTH + 1),
  'a\u0000b',
  ORIGIN,
  'dev1.0123ABCD',
  'applied',
  'conflict_lost',
  'Applied',
  'AAAA',
  'AAA=',
  'AA==',
  'A===',
  'AAAAA',
  ' AAA',
  'AA\nA',
  new Uint8Array(4),
  [],
  [1],
  {},
  { wallMs: 1, counter: 0 },
  { [ORIGIN]: 1 },
  { [ORIGIN]: 0 },
  { [ORIGIN]: 1, other: 1 },
  { '0': 1 },
]

function baseVersion(format: WireFormat): Record<string, unknown> {
  return {
    collection: 'notes',
    id: 'doc-1',
    deleted: false,
    vector: format === 'json' ? 'AACAPwAAAEA=' : new Uint8Array(8),
    metadata: '{"a":1}',
    versionVector: { [ORIGIN]: 3, 'dev2.00ff00ff': 1 },
    hlc: { wallMs: 1_700_000_000_000, counter: 2 },
  }
}

const GUARDS = [
  {
    name: 'pushed op',
    guard: isWirePushOp,
    schema: (format: WireFormat) =>
      schemasOf(format).SyncRequest.shape.push.element,
    base: (format: WireFormat) => ({ ...baseVersion(format), lsn: 7 }),
  },
  {
    name: 'pulled change',
    guard: isWireChange,
    schema: (format: WireFormat) =>
      schemasOf(format).SyncResponse.shape.changes.element,
    base: (format: WireFormat) => ({
      ...baseVersion(format),
      origin: ORIGIN,
      seq: 12,
    }),
  },
  {
    name: 'push result',
    guard: isWireResult,
    schema: (format: WireFormat) =>
      schemasOf(format).SyncResponse.shape.results.element,
    base: (format: WireFormat) => ({
      lsn: 7,
      collection: 'notes',
      id: 'doc-1',
      outcome: 'conflict_lost',
      seq: 12,
      version: { ...baseVersion(format), origin: ORIGIN },
    }),
  },
]

function schemasOf(format: WireFormat) {
  return format === 'json' ? JSON_SCHEMAS : MSGPACK_SCHEMAS
}

/** A copy of `value` with one field, at any depth, replaced, removed or added. */
function mutated(
  value: Record<string, unknown>,
  path: readonly string[],
  replacement: unknown,
): Record<string, unknown> {
  const [key, ...rest] = path as [string, ...string[]]
  const copy = { ...value }
  const inner = copy[key]
  if (
    rest.length > 0 &&
    typeof inner === 'object' &&
    inner !== null &&
    !(inner instanceof Uint8Array)
  ) {
    copy[key] = mutated(inner as Record<string, unknown>, rest, replacement)
  } else if (replacement === undefined && rest.length === 0) {
    delete copy[key]
  } else {
    copy[key] = replacement
  }
  return copy
}

/** Every path of `value`'s fields, plus a field no schema knows at each level. */
function pathsOf(value: Record<string, unknown>, prefix: string[] = []) {
  const paths: string[][] = [[...prefix, 'extra']]
  for (const [key, inner] of Object.entries(value)) {
    paths.push([...prefix, key])
    if (
      typeof inner === 'object' &&
      inner !== null &&
      !(inner instanceof Uint8Array)
    )
      paths.push(...pathsOf(inner as Record<string, unknown>, [...prefix, key]))
  }
  // A version vector's keys are data: try new ones of either kind.
  if (prefix.at(-1) === 'versionVector')
    paths.push([...prefix, 'dev3.abcdef01'], [...prefix, 'not a replica'])
  return paths
}

describe.each(['json', 'msgpack'] as const)('wire guards (%s)', (format) => {
  for (const { name, guard, schema, base } of GUARDS) {
    it(`accepts a valid ${name}, as its schema does`, () => {
      const valid = base(format)
      expect(schema(format).safeParse(valid).success).toBe(true)
      expect(guard(valid, format)).toBe(true)
    })

    it(`agrees with the schema of a ${name} after any two edits`, () => {
      const valid = base(format)
      const edit = fc.tuple(
        fc.constantFrom(...pathsOf(valid)),
        fc.constantFrom(...ODD_VALUES),
      )
      fc.assert(
        fc.property(edit, edit, ([pathA, valueA], [pathB, valueB]) => {
          const input = mutated(mutated(valid, pathA, valueA), pathB, valueB)
          expect(guard(input, format)).toBe(
            schema(format).safeParse(input).success,
          )
        }),
        { numRuns: 3000 },
      )
    })

    it(`leaves a ${name} that is not a plain object to the schema`, () => {
      const bare: unknown = Object.assign(
        Object.create(null) as object,
        base(format),
      )
      expect(guard(bare, format)).toBe(false)
      expect(guard([base(format)], format)).toBe(false)
      expect(guard(null, format)).toBe(false)
    })
  }
})
