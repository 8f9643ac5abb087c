import { hash } from 'node:crypto'
import type { Sha256 } from '@velosync/core'

/**
 * SHA-256 through Node's OpenSSL binding (one-shot `crypto.hash`, Node ≥ 20.12).
 *
 * @internal
 */
export const nodeSha256: Sha256 = (data) => hash('sha256', data, 'buffer')
