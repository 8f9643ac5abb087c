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

/** Bytes written field by field, as the layout in `encodeDocumentVersion`'s doc spells it. */
class LayoutWriter {
  readonly #bytes: number[] = []
  u8(value: number): this {
    this.#bytes.push(value)
    return this
  }
  u32(value: number): this {
    return this.#littleEndian(4, (view) => view.setUint32(0, value, true))
  }
  f32(value: number): this {
    return this.#littleEndian(4, (view) => view.setFloat32(0, value, true))
  }
  f64(value: number): this {
    return this.#littleEndian(8, (view) => view.setFloat64(0, value, true))
  }
  #littleEndian(size: number, write: (view: DataView) => void): this {
    const view = new DataView(new ArrayBuffer(size))
    write(view)
    this.#bytes.push(...new Uint8Array(view.buffer))
    return this
  }
  text(value: string): this {
    const utf8 = new TextEncoder().encode(value)
    this.u32(utf8.length)
    this.#bytes.push(...utf8)
    return this
  }
  done(): Uint8Array {
    return new Uint8Array(this.#bytes)
  }
}

describe('canonical document encoding', () => {
  // Hashes are stored on every replica and compared across versions of VeloSync: the
  // bytes must follow the documented layout exactly, not merely be deterministic.
  it('writes the documented layout, byte for byte, for a live version and a tombstone', () => {
    const live: DocumentVersion = {
      id: 'doc-é',
      deleted: false,
      vector: new Float32Array([1.5, -2]),
      metadataJson: '{"a":1}',
      versionVector: { 'r2.e': 3, 'r1.e': 1, 'r3.e': 0 },
      hlc: { wallMs: 1_700_000_000_123, counter: 7 },
      origin: 'r1.e',
    }
    const tail = (writer: LayoutWriter) =>
      writer
        .u32(2)
        .text('r1.e')
        .f64(1)
        .text('r2.e')
        .f64(3)
        .f64(1_700_000_000_123)
        .u32(7)
        .text('r1.e')
        .done()
    expect(encodeDocumentVersion(live, 'float32')).toEqual(
      tail(
        new LayoutWriter()
          .u8(1)
          .u8(0)
          .text('doc-é')
          .u8(1)
          .u32(2)
          .f32(1.5)
          .f32(-2)
          .text('{"a":1}'),
      ),
    )
    const tombstone: DocumentVersion = {
      ...live,
      deleted: true,
      vector: null,
      metadataJson: null,
    }
    expect(encodeDocumentVersion(tombstone, 'float32')).toEqual(
      tail(new LayoutWriter().u8(1).u8(1).text('doc-é')),
    )
  })

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
