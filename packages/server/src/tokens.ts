import { createHash, randomBytes } from 'node:crypto'

/**
 * The form of a device token the server stores: SHA-256 of its UTF-8 bytes, as 64 lowercase
 * hex digits. The raw token never touches the store, so a leaked database grants no access.
 *
 * @remarks
 * A plain hash (no salt, no slow KDF) suffices: tokens are 256 random bits, not passwords,
 * so there is nothing to brute-force, and the lookup must stay fast because every request
 * does one.
 *
 * @example
 * ```ts
 * await store.createDeviceToken('laptop', hashToken(token))
 * ```
 * @public
 */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}

/**
 * A new device token: 32 random bytes, base64url without padding (43 characters).
 *
 * @example
 * ```ts
 * const token = createToken() // give it to the device once; store only hashToken(token)
 * ```
 * @public
 */
export function createToken(): string {
  return randomBytes(32).toString('base64url')
}
