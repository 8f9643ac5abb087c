import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import {
  encodeDocumentVersion,
  hashDocumentVersion,
  type DocumentVersion,
} from './document-version.js'
import { canonicalMetadataJson } from './metadata.js'

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest()
const base: DocumentVersion = {
  id: 'doc-1',
  deleted: false,
  vector: new Float32Array([1, 0.5, -2]),
  metadataJson: canonicalMetadataJson({ b: 1, a: 'x' }),
  versionVector: { 'dev.00000001': 2, 'other.00000001': 1 },
  hlc: { wallMs: 1_700_000_000_000, counter: 3 },
  origin: 'dev.00000001',
}
const hash = (v: DocumentVersion, dtype: 'float32' | 'float64' = 'float32') =>
  Buffer.from(hashDocumentVersion(v, dtype, sha256)).toString('hex')

describe('canonical document encoding', () => {
  it('is deterministic and independent of metadata key and vector-entry order', () => {
    const reordered: DocumentVersion = {
      ...base,
      metadataJson: canonicalMetadataJson({ a: 'x', b: 1 }),
      versionVector: { 'other.00000001': 1, 'dev.00000001': 2 },
    }
    expect(hash(reordered)).toBe(hash(base))
    expect(encodeDocumentVersion(base, 'float32')).toEqual(
      encodeDocumentVersion(base, 'float32'),
    )
  })

  it('changes with every field', () => {
    const variants: DocumentVersion[] = [
      { ...base, id: 'doc-2' },
      { ...base, vector: new Float32Array([1, 0.5, -2.0001]) },
      { ...base, metadataJson: canonicalMetadataJson({ a: 'y', b: 1 }) },
      { ...base, versionVector: { 'dev.00000001': 3, 'other.00000001': 1 } },
      { ...base, hlc: { wallMs: base.hlc.wallMs, counter: 4 } },
      { ...base, origin: 'other.00000001' },
      { ...base, deleted: true, vector: null, metadataJson: null },
    ]
    const hashes = new Set([hash(base), ...variants.map((v) => hash(v))])
    expect(hashes.size).toBe(variants.length + 1)
    expect(hash(base, 'float64')).not.toBe(hash(base))
  })

  it('length-prefixes text, so shifting bytes between fields changes the hash', () => {
    const a = { ...base, id: 'ab', origin: 'c' }
    const b = { ...base, id: 'a', origin: 'bc' }
    expect(hash(a)).not.toBe(hash(b))
  })

  it('encodes non-ASCII text as UTF-8', () => {
    const bytes = encodeDocumentVersion({ ...base, id: 'é' }, 'float32')
    expect(
      new DataView(bytes.buffer, bytes.byteOffset).getUint32(2, true),
    ).toBe(2)
    expect([bytes[6], bytes[7]]).toEqual([0xc3, 0xa9])
  })
})
