import { describe, expect, it } from 'vitest'
import { isVeloSyncError } from '../errors.js'
import { MAX_DOCUMENT_ID_LENGTH, assertDocumentId } from './ids.js'

function rejects(id: unknown): boolean {
  try {
    assertDocumentId(id)
    return false
  } catch (error) {
    return isVeloSyncError(error, 'invalid_argument')
  }
}

describe('assertDocumentId', () => {
  it('accepts any non-empty well-formed string up to the limit, emoji included', () => {
    for (const id of [
      'a',
      'doc-000001',
      'ünïcødé',
      'rocket 🚀',
      'x'.repeat(MAX_DOCUMENT_ID_LENGTH),
    ]) {
      expect(rejects(id)).toBe(false)
    }
  })

  it('rejects non-strings, empty and oversize ids, NUL, and lone surrogates (SQLite would merge them)', () => {
    for (const id of [
      undefined,
      42,
      '',
      'x'.repeat(MAX_DOCUMENT_ID_LENGTH + 1),
      'a\u0000b',
      'a\ud800',
      '\udc00a',
      '\ud83d\ud83d\ude80',
      '\ude80\ud83d',
    ]) {
      expect(rejects(id)).toBe(true)
    }
  })
})
