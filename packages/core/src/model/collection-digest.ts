import { invalidArgument } from '../errors.js'

const HEX_64 = /^[0-9a-f]{64}$/
const LIMBS = 8

/** The digest of an empty collection. */
export const EMPTY_COLLECTION_DIGEST = '0'.repeat(64)

/**
 * An order-independent digest of a collection: the sum, modulo 2^256, of the SHA-256
 * hashes (read as big-endian integers) of its live documents' versions.
 *
 * @remarks
 * Addition commutes, so two replicas that hold the same documents have the same digest
 * however they got there, and a write updates it in O(1): add the new version's hash,
 * subtract the old one's. Tombstones contribute nothing. Rendered as 64 lowercase hex
 * digits. The sum is kept in eight 32-bit limbs, most significant first: plain integer
 * arithmetic, about 50× cheaper per write than converting each hash to a BigInt.
 */
export class CollectionDigest {
  readonly #limbs = new Uint32Array(LIMBS)

  constructor(hex: string = EMPTY_COLLECTION_DIGEST) {
    if (!HEX_64.test(hex)) {
      throw invalidArgument(
        `a collection digest is 64 lowercase hex digits, got ${JSON.stringify(hex.slice(0, 80))}`,
      )
    }
    for (let i = 0; i < LIMBS; i++)
      this.#limbs[i] = parseInt(hex.slice(i * 8, i * 8 + 8), 16)
  }

  /** Adds one document version's hash. */
  add(hash: Uint8Array): void {
    assertHash(hash)
    let carry = 0
    for (let i = LIMBS - 1; i >= 0; i--) {
      const sum = (this.#limbs[i] as number) + readLimb(hash, i) + carry
      this.#limbs[i] = sum >>> 0
      carry = sum > 0xffff_ffff ? 1 : 0
    }
  }

  /** Removes one document version's hash (the inverse of {@link add}). */
  remove(hash: Uint8Array): void {
    assertHash(hash)
    let borrow = 0
    for (let i = LIMBS - 1; i >= 0; i--) {
      const difference = (this.#limbs[i] as number) - readLimb(hash, i) - borrow
      this.#limbs[i] = difference >>> 0
      borrow = difference < 0 ? 1 : 0
    }
  }

  /** An independent copy, for staging changes that may be rolled back. */
  clone(): CollectionDigest {
    const copy = new CollectionDigest()
    copy.#limbs.set(this.#limbs)
    return copy
  }

  toHex(): string {
    let hex = ''
    for (const limb of this.#limbs) hex += limb.toString(16).padStart(8, '0')
    return hex
  }
}

function readLimb(hash: Uint8Array, i: number): number {
  const at = i * 4
  return (
    (((hash[at] as number) << 24) |
      ((hash[at + 1] as number) << 16) |
      ((hash[at + 2] as number) << 8) |
      (hash[at + 3] as number)) >>>
    0
  )
}

function assertHash(hash: Uint8Array): void {
  if (hash.length !== 32) {
    throw invalidArgument(
      `a document hash is 32 bytes (SHA-256), got ${hash.length}`,
    )
  }
}
