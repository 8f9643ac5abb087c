const ALPHABET =
  'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

/** Sextet value of each ASCII code, or 255 for a character outside the alphabet. */
const DECODE = new Uint8Array(128).fill(255)
for (let i = 0; i < ALPHABET.length; i++) DECODE[ALPHABET.charCodeAt(i)] = i

/** Pairs of characters for each 12-bit value: halves the table lookups when encoding. */
const PAIRS: string[] = []
for (let i = 0; i < 4096; i++) {
  PAIRS.push((ALPHABET[i >> 6] as string) + (ALPHABET[i & 63] as string))
}

/**
 * Standard base64 (RFC 4648 §4, with padding) of `bytes`.
 *
 * @internal
 */
export function encodeBase64(bytes: Uint8Array): string {
  const parts: string[] = []
  const whole = bytes.length - (bytes.length % 3)
  let i = 0
  for (; i < whole; i += 3) {
    const n =
      ((bytes[i] as number) << 16) |
      ((bytes[i + 1] as number) << 8) |
      (bytes[i + 2] as number)
    parts.push((PAIRS[n >> 12] as string) + (PAIRS[n & 4095] as string))
  }
  const rest = bytes.length - whole
  if (rest === 1) {
    const n = (bytes[i] as number) << 16
    parts.push(`${PAIRS[n >> 12] as string}==`)
  } else if (rest === 2) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8)
    parts.push(
      `${PAIRS[n >> 12] as string}${ALPHABET[(n >> 6) & 63] as string}=`,
    )
  }
  return parts.join('')
}

/**
 * Decodes standard, padded base64. Strict, unlike `atob`: whitespace, missing padding and
 * characters outside the alphabet are errors, so one byte string has one text form.
 *
 * @returns the bytes, or `undefined` when `text` is not canonical base64.
 * @internal
 */
export function decodeBase64(text: string): Uint8Array | undefined {
  if (text.length % 4 !== 0) return undefined
  let padding = 0
  if (text.endsWith('==')) padding = 2
  else if (text.endsWith('=')) padding = 1
  const out = new Uint8Array((text.length / 4) * 3 - padding)
  const full = text.length - (padding > 0 ? 4 : 0)
  let at = 0
  let bad = 0
  for (let i = 0; i < full; i += 4) {
    const a = DECODE[text.charCodeAt(i)] ?? 255
    const b = DECODE[text.charCodeAt(i + 1)] ?? 255
    const c = DECODE[text.charCodeAt(i + 2)] ?? 255
    const d = DECODE[text.charCodeAt(i + 3)] ?? 255
    // One check per quartet after the loop instead of four branches inside it.
    bad |= a | b | c | d
    const n = (a << 18) | (b << 12) | (c << 6) | d
    out[at++] = (n >> 16) & 255
    out[at++] = (n >> 8) & 255
    out[at++] = n & 255
  }
  if (bad > 63) return undefined
  if (padding > 0) {
    const a = DECODE[text.charCodeAt(full)] ?? 255
    const b = DECODE[text.charCodeAt(full + 1)] ?? 255
    const c = padding === 1 ? (DECODE[text.charCodeAt(full + 2)] ?? 255) : 0
    if ((a | b | c) > 63) return undefined
    const n = (a << 18) | (b << 12) | (c << 6)
    // Canonical form: the bits below the last encoded byte must be zero.
    if ((padding === 2 ? n & 0xffff : n & 0xff) !== 0) return undefined
    out[at++] = (n >> 16) & 255
    if (padding === 1) out[at++] = (n >> 8) & 255
  }
  return out
}
