import { VeloSyncError } from '../errors.js'
import type { Sha256 } from '../model/document-version.js'
import { decodeBase64, encodeBase64 } from './base64.js'

/**
 * The `Content-Digest` header value (RFC 9530) for `body`: `sha-256=:<base64>:`.
 *
 * @remarks
 * Compute it over the bytes as sent, after any content coding (gzip).
 *
 * @example
 * ```ts
 * headers.set('Content-Digest', contentDigestHeader(body, sha256))
 * ```
 * @public
 */
export function contentDigestHeader(body: Uint8Array, sha256: Sha256): string {
  return `sha-256=:${encodeBase64(sha256(body))}:`
}

/**
 * Checks a `Content-Digest` header against `body`.
 *
 * @remarks
 * The header is an RFC 8941 dictionary; only its `sha-256` member counts (other algorithms
 * are ignored, and a header without `sha-256` is treated as missing). No constant-time
 * comparison: a digest of public bytes is no secret.
 *
 * @throws `digest_mismatch` when the header is missing or malformed, names no
 *   `sha-256`, or does not match the body.
 * @public
 */
export function verifyContentDigest(
  header: string | null | undefined,
  body: Uint8Array,
  sha256: Sha256,
): void {
  if (header === null || header === undefined || header.trim() === '') {
    throw new VeloSyncError(
      'digest_mismatch',
      'the Content-Digest header is missing; send sha-256=:<base64 of the SHA-256 of the body>:',
    )
  }
  const expected = parseSha256Member(header)
  if (expected === undefined) {
    throw new VeloSyncError(
      'digest_mismatch',
      'the Content-Digest header has no valid sha-256 member; expected sha-256=:<base64>:',
    )
  }
  const actual = sha256(body)
  let same = actual.length === expected.length
  for (let i = 0; same && i < actual.length; i++) {
    same = actual[i] === expected[i]
  }
  if (!same) {
    throw new VeloSyncError(
      'digest_mismatch',
      `Content-Digest does not match the ${body.length}-byte body: it was altered or truncated in transit`,
    )
  }
}

/**
 * The 32 bytes of the `sha-256` member of a digest dictionary (RFC 8941: keys are
 * lowercase, and of repeated keys the last wins), or `undefined` when it has none or a
 * `sha-256` member is malformed.
 */
function parseSha256Member(header: string): Uint8Array | undefined {
  // Members are `key=:base64:` with optional `;param` suffixes, separated by commas. A
  // byte sequence cannot contain a comma, so splitting on commas is exact.
  let found: Uint8Array | undefined
  for (const member of header.split(',')) {
    const text = member.trim()
    // A bare key is the boolean true: a sha-256 member without a digest, until a later
    // one replaces it.
    if (text === 'sha-256' || text.startsWith('sha-256;')) {
      found = undefined
      continue
    }
    if (!text.startsWith('sha-256=')) continue
    const match = /^:([A-Za-z0-9+/=]*):(?:;.*)?$/.exec(text.slice(8))
    const bytes = match === null ? undefined : decodeBase64(match[1] as string)
    if (bytes?.length !== 32) return undefined
    found = bytes
  }
  return found
}
