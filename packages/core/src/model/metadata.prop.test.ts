import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonicalMetadataJson, isCanonicalMetadataText } from './metadata.js'

/** The slow verdict that the fast check must agree with. */
function isCanonicalBySerializing(text: string): boolean {
  try {
    return canonicalMetadataJson(JSON.parse(text)) === text
  } catch {
    return false
  }
}

const object = fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 8 })

describe('isCanonicalMetadataText', () => {
  it('accepts exactly the canonical texts: canonical ones, others with their keys reordered or spaced', () => {
    fc.assert(
      fc.property(
        object,
        fc.constantFrom('canonical', 'insertion-order', 'spaced', 'escaped'),
        (value, form) => {
          let text = canonicalMetadataJson(value)
          if (form === 'insertion-order') text = JSON.stringify(value)
          if (form === 'spaced')
            text = JSON.stringify(JSON.parse(text), null, 1)
          // "\u0061" is "a" spelled differently: parses the same, not canonical.
          if (form === 'escaped') {
            text = text.replace(/"(?:[^"\\]|\\.)*"/g, (quoted) =>
              quoted.includes('\\')
                ? quoted
                : quoted.replaceAll('a', '\\u0061'),
            )
          }
          const parsed: unknown = JSON.parse(text)
          expect(isCanonicalMetadataText(parsed, text)).toBe(
            isCanonicalBySerializing(text),
          )
          if (form === 'canonical')
            expect(isCanonicalMetadataText(parsed, text)).toBe(true)
        },
      ),
      { numRuns: 2000 },
    )
  })

  it('accepts no non-object and no text the canonical form would reject', () => {
    fc.assert(
      fc.property(fc.json(), (text) => {
        const parsed: unknown = JSON.parse(text)
        if (isCanonicalMetadataText(parsed, text))
          expect(canonicalMetadataJson(parsed)).toBe(text)
      }),
      { numRuns: 2000 },
    )
    const deep = `${'{"a":'.repeat(40)}1${'}'.repeat(40)}`
    expect(isCanonicalMetadataText(JSON.parse(deep), deep)).toBe(false)
    expect(isCanonicalMetadataText([], '[]')).toBe(false)
  })
})
