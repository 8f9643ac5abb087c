import type { ErrorCode } from '../errors.js'

/**
 * The error codes that appear on the wire (`docs/PROTOCOL.md`, Errors).
 *
 * @public
 */
export type WireErrorCode =
  | 'invalid_argument'
  | 'malformed_body'
  | 'digest_mismatch'
  | 'unsupported_media_type'
  | 'payload_too_large'
  | 'unauthorized'
  | 'not_found'
  | 'schema_mismatch'
  | 'lsn_reused'
  | 'resync_required'
  | 'protocol_mismatch'
  | 'storage_failure'
  | 'internal'

/**
 * The one map from wire error code to HTTP status, shared by server and client.
 *
 * @public
 */
export const ERROR_STATUS: Readonly<Record<WireErrorCode, number>> = {
  invalid_argument: 400,
  malformed_body: 400,
  digest_mismatch: 400,
  unsupported_media_type: 415,
  payload_too_large: 413,
  unauthorized: 401,
  not_found: 404,
  schema_mismatch: 409,
  lsn_reused: 409,
  resync_required: 410,
  protocol_mismatch: 400,
  storage_failure: 503,
  internal: 500,
}

/**
 * The wire code for a local error code. Codes that only exist inside a process map to
 * what a remote caller can act on: a busy, closed or unreachable store is a
 * `storage_failure` (retry),
 * and `already_exists` only reaches the wire from `ensureCollection`, where it means the
 * declared schema differs from the stored one.
 *
 * @public
 */
export function wireErrorCode(code: ErrorCode): WireErrorCode {
  switch (code) {
    case 'busy':
    case 'closed':
    case 'unavailable':
      return 'storage_failure'
    case 'already_exists':
      return 'schema_mismatch'
    default:
      return code
  }
}

/**
 * The HTTP status of an error code.
 *
 * @example
 * ```ts
 * errorStatus('digest_mismatch') // 400
 * ```
 * @public
 */
export function errorStatus(code: ErrorCode): number {
  return ERROR_STATUS[wireErrorCode(code)]
}

/**
 * Reads a wire error code back as a local one; codes from a newer peer become `internal`.
 *
 * @public
 */
export function errorCodeFromWire(code: string): ErrorCode {
  return Object.hasOwn(ERROR_STATUS, code)
    ? (code as WireErrorCode)
    : 'internal'
}
