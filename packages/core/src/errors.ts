/**
 * Machine-readable error codes. They are stable: applications, the wire protocol and
 * tests match on them, never on messages.
 *
 * @public
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'busy'
  | 'closed'
  | 'storage_failure'
  | 'internal'
  /** The server could not be reached (network failure, timeout, a 5xx from a proxy): retry later. */
  | 'unavailable'
  /**
   * A replica pushed a log sequence number it already used, with different content (a
   * store restored from a backup). Nothing was stored; the device must start a new epoch.
   */
  | 'lsn_reused'
  /**
   * A pull cursor is older than the tombstone horizon (or newer than the server's head):
   * changes it would need are gone. The device must pull again from cursor 0.
   */
  | 'resync_required'
  /** A request body is not valid JSON, MessagePack or gzip (wire protocol). */
  | 'malformed_body'
  /** A `Content-Digest` header is missing, malformed, or does not match its body. */
  | 'digest_mismatch'
  /** A body's media type or content coding is not one the protocol speaks. */
  | 'unsupported_media_type'
  /** A body exceeds the receiver's size limit. */
  | 'payload_too_large'
  /** No credentials, or an unknown or revoked token. */
  | 'unauthorized'
  /** A declared collection exists with other dims, metric or dtype. */
  | 'schema_mismatch'
  /** A message names a protocol version this side does not speak. */
  | 'protocol_mismatch'

/**
 * The one error class VeloSync throws on purpose.
 *
 * @remarks
 * Match with {@link isVeloSyncError} and a code rather than `instanceof`: errors cross
 * worker, process and package-copy boundaries, where class identity is lost.
 *
 * @public
 */
export class VeloSyncError extends Error {
  override name = 'VeloSyncError'
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/**
 * True when `error` is a {@link VeloSyncError} (by name and shape), optionally with `code`.
 *
 * @public
 */
export function isVeloSyncError(
  error: unknown,
  code?: ErrorCode,
): error is VeloSyncError {
  if (typeof error !== 'object' || error === null) return false
  const candidate = error as { name?: unknown; code?: unknown }
  if (
    candidate.name !== 'VeloSyncError' ||
    typeof candidate.code !== 'string'
  ) {
    return false
  }
  return code === undefined || candidate.code === code
}

/** Shorthand for the most common failure: a caller passed something we cannot accept. */
export function invalidArgument(message: string): VeloSyncError {
  return new VeloSyncError('invalid_argument', message)
}
