import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { isVeloSyncError } from '../errors.js'
import type { Sha256 } from '../model/document-version.js'
import { decodeBase64, encodeBase64 } from './base64.js'
import { contentDigestHeader, verifyContentDigest } from './content-digest.js'

const sha256: Sha256 = (data) =>
  new Uint8Array(createHash('sha256').update(data).digest())
const body = new TextEncoder().encode('{"hello":"world"}')

function digestError(run: () => void): string | undefined {
  try {
    run()
    return undefined
  } catch (error) {
    return isVeloSyncError(error) ? error.code : 'not a VeloSyncError'
  }
}

describe('Content-Digest', () => {
  it('formats sha-256 as an RFC 9530 byte sequence', () => {
    const expected = createHash('sha256').update(body).digest('base64')
    expect(contentDigestHeader(body, sha256)).toBe(`sha-256=:${expected}:`)
  })

  it('verifies its own header, with other members and parameters around it', () => {
    const header = contentDigestHeader(body, sha256)
    expect(() => verifyContentDigest(header, body, sha256)).not.toThrow()
    const value = header.slice('sha-256='.length)
    const other = `sha-512=:${createHash('sha512').update(body).digest('base64')}:`
    expect(() =>
      verifyContentDigest(`${other}, sha-256=${value};x=1`, body, sha256),
    ).not.toThrow()
  })

  it('reads a repeated sha-256 member as its last (RFC 8941), and keys in lowercase only', () => {
    const good = contentDigestHeader(body, sha256)
    const bad = `sha-256=:${encodeBase64(new Uint8Array(32))}:`
    expect(() =>
      verifyContentDigest(`${bad}, ${good}`, body, sha256),
    ).not.toThrow()
    expect(
      digestError(() => verifyContentDigest(`${good}, ${bad}`, body, sha256)),
    ).toBe('digest_mismatch')
    expect(
      digestError(() => verifyContentDigest(`${good}, sha-256`, body, sha256)),
    ).toBe('digest_mismatch')
    expect(() =>
      verifyContentDigest(`sha-256, ${good}`, body, sha256),
    ).not.toThrow()
    expect(
      digestError(() =>
        verifyContentDigest(good.replace('sha-256', 'SHA-256'), body, sha256),
      ),
    ).toBe('digest_mismatch')
  })

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['another algorithm only', 'sha-512=:AAAA:'],
    ['not a byte sequence', 'sha-256=abc'],
    ['a short digest', 'sha-256=:AAAA:'],
    ['bad base64', 'sha-256=:!!!!:'],
  ])('rejects a header that is %s with digest_mismatch', (_, header) => {
    expect(digestError(() => verifyContentDigest(header, body, sha256))).toBe(
      'digest_mismatch',
    )
  })

  it('rejects a digest of other bytes', () => {
    const header = contentDigestHeader(body, sha256)
    const altered = body.slice()
    altered[0] = 0x20
    expect(
      digestError(() => verifyContentDigest(header, altered, sha256)),
    ).toBe('digest_mismatch')
    expect(
      digestError(() =>
        verifyContentDigest(header, body.subarray(0, 5), sha256),
      ),
    ).toBe('digest_mismatch')
  })
})

describe('base64', () => {
  it('round-trips every length and matches the platform encoder', () => {
    for (let length = 0; length < 40; length++) {
      const bytes = new Uint8Array(length).map(
        (_, i) => (i * 37 + length) & 255,
      )
      const text = encodeBase64(bytes)
      expect(text).toBe(Buffer.from(bytes).toString('base64'))
      expect(decodeBase64(text)).toEqual(bytes)
    }
  })

  it('rejects non-canonical text', () => {
    for (const text of [
      'A',
      'AAA',
      'AA=A',
      'AB==',
      'A B=',
      'AA\nA',
      '====',
      'AAA-',
    ]) {
      expect(decodeBase64(text), text).toBeUndefined()
    }
  })
})
