import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalMetadataJson, scansAsCanonicalMetadata } from './metadata.js'

/** The slow verdict that the fast check must agree with. */
function isCanonicalBySerializing(text: string): boolean {
  try {
    return canonicalMetadataJson(JSON.parse(text)) === text
  } catch {
    return false
  }
}

/** Any JSON value, with strings of any UTF-16 code units (control characters, lone surrogates). */
const anyValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.string({ unit: 'binary' }),
    fc.string({ unit: 'grapheme-ascii' }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    tie('object'),
  ),
  object: fc.dictionary(
    fc.oneof(fc.string({ unit: 'binary' }), fc.nat().map(String), fc.string()),
    tie('value'),
    { maxKeys: 5 },
  ),
}))

/** Whether canonical text of `value` has a form the scanner leaves to the slow path. */
function leftToSlowPath(value: unknown): boolean {
  if (typeof value === 'string')
    return /\\ud[89a-f]/.test(JSON.stringify(value))
  if (typeof value !== 'object' || value === null) return false
  if (Array.isArray(value)) return value.some(leftToSlowPath)
  return Object.entries(value).some(
    ([key, item]) => JSON.stringify(key).includes('\\') || leftToSlowPath(item),
  )
}

describe('scansAsCanonicalMetadata', () => {
  it('says true only for canonical text, and for every canonical text without escaped keys or escaped lone surrogates', () => {
    fc.assert(
      fc.property(
        anyValue.object,
        fc.constantFrom('canonical', 'insertion-order', 'spaced', 'escaped'),
        (value, form) => {
          let text = canonicalMetadataJson(value)
          if (form === 'insertion-order') text = JSON.stringify(value)
          if (form === 'spaced')
            text = JSON.stringify(JSON.parse(text), null, 1)
          // "\u0061" is "a" spelled differently: it parses the same, and is not canonical.
          if (form === 'escaped') {
            text = text.replace(/"(?:[^"\\]|\\.)*"/g, (quoted) =>
              quoted.includes('\\')
                ? quoted
                : quoted.replaceAll('a', '\\u0061'),
            )
          }
          const canonical = isCanonicalBySerializing(text)
          const scanned = scansAsCanonicalMetadata(text)
          if (scanned) expect(canonical).toBe(true)
          if (canonical && !leftToSlowPath(value)) expect(scanned).toBe(true)
        },
      ),
      { numRuns: 3000 },
    )
  })

  it('never says true for a canonical text with one character changed, dropped or added', () => {
    const edits = fc.record({
      at: fc.nat(),
      kind: fc.constantFrom('replace', 'drop', 'insert'),
      char: fc.constantFrom(
        ' ',
        '"',
        '\\',
        '{',
        '}',
        '[',
        ']',
        ',',
        ':',
        '0',
        '1',
        '-',
        '.',
        'e',
        'E',
        '+',
        'a',
        'u',
        'n',
        '\u0001',
        '\ud800',
      ),
    })
    fc.assert(
      fc.property(anyValue.object, edits, (value, { at, kind, char }) => {
        const text = canonicalMetadataJson(value)
        const i = at % (text.length + 1)
        const edited =
          kind === 'replace'
            ? text.slice(0, i) + char + text.slice(i + 1)
            : kind === 'drop'
              ? text.slice(0, i) + text.slice(i + 1)
              : text.slice(0, i) + char + text.slice(i)
        if (scansAsCanonicalMetadata(edited))
          expect(isCanonicalBySerializing(edited)).toBe(true)
      }),
      { numRuns: 5000 },
    )
  })

  it('says true for no JSON text that is not canonical metadata', () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        if (scansAsCanonicalMetadata(text))
          expect(canonicalMetadataJson(JSON.parse(text))).toBe(text)
      }),
      { numRuns: 2000 },
    )
  })

  it('refuses depth beyond the limit and non-objects', () => {
    // The root is at depth 0: 32 nested objects reach depth 31, the deepest allowed.
    const deep = `${'{"a":'.repeat(33)}1${'}'.repeat(33)}`
    const limit = `${'{"a":'.repeat(32)}1${'}'.repeat(32)}`
    expect(scansAsCanonicalMetadata(deep)).toBe(false)
    expect(isCanonicalBySerializing(deep)).toBe(false)
    expect(scansAsCanonicalMetadata(limit)).toBe(true)
    for (const text of [
      '[]',
      '1',
      '"a"',
      'null',
      '{}x',
      '{"a":1,"a":2}',
      '{"b":1,"a":2}',
      '{"a":1,"1":2}',
    ])
      expect(scansAsCanonicalMetadata(text)).toBe(
        isCanonicalBySerializing(text),
      )
  })
})
