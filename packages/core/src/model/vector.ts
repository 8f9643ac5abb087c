import { invalidArgument } from '../errors.js'
import type { CollectionSchema, VectorDType } from './collection.js'
import { describe } from './ids.js'

/** What callers may pass as a vector. It is always copied, never retained. */
export type VectorInput = Float32Array | Float64Array | readonly number[]
/** A stored vector, in its collection's dtype. */
export type StoredVector = Float32Array | Float64Array

/** Typed arrays use the platform's byte order; the disk and wire format is little-endian. */
const IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/**
 * Validates `input` against a collection and returns a copy in the collection's dtype.
 *
 * @throws `invalid_argument` on a wrong length, a non-finite element (NaN, ±Infinity),
 *   a value that overflows float32, or an all-zero vector in a cosine collection.
 */
export function toStoredVector(
  schema: CollectionSchema,
  input: VectorInput,
  what = 'vector',
): StoredVector {
  if (!(
    input instanceof Float32Array ||
    input instanceof Float64Array ||
    Array.isArray(input)
  )) {
    throw invalidArgument(
      `${what}: expected a Float32Array, Float64Array or number[], got ${describe(input)}`,
    )
  }
  if (input.length !== schema.dims) {
    throw invalidArgument(
      `${what}: collection ${schema.name} has ${schema.dims} dimensions, got a vector of length ${input.length}`,
    )
  }
  const out =
    schema.dtype === 'float32'
      ? new Float32Array(schema.dims)
      : new Float64Array(schema.dims)
  if (Array.isArray(input)) {
    for (let i = 0; i < schema.dims; i++) {
      const value: unknown = input[i]
      if (typeof value !== 'number') {
        throw invalidArgument(
          `${what}: element ${i} is ${describe(value)}; vectors contain numbers only`,
        )
      }
      out[i] = value
    }
  } else {
    out.set(input)
  }
  // One pass over the stored values: x - x is 0 for every finite x and NaN for NaN and
  // ±Infinity, including values that only overflowed when narrowed to float32.
  let sumOfSquares = 0
  for (let i = 0; i < out.length; i++) {
    const value = out[i] as number
    if (value - value !== 0) {
      const original = input[i] as number
      const reason = Number.isFinite(original)
        ? `${original} overflows ${schema.dtype}`
        : `${original}`
      throw invalidArgument(
        `${what}: element ${i} is ${reason}; vectors must contain finite numbers only`,
      )
    }
    sumOfSquares += value * value
  }
  if (schema.metric === 'cosine' && sumOfSquares === 0) {
    throw invalidArgument(
      `${what}: an all-zero vector has no direction, so cosine similarity is undefined for it`,
    )
  }
  return out
}

/** Little-endian bytes of a stored vector (a view, not a copy, on little-endian hosts). */
export function vectorToBytes(vector: StoredVector): Uint8Array {
  if (IS_LITTLE_ENDIAN) {
    return new Uint8Array(vector.buffer, vector.byteOffset, vector.byteLength)
  }
  const bytes = new Uint8Array(vector.byteLength)
  const view = new DataView(bytes.buffer)
  const width = vector.BYTES_PER_ELEMENT
  for (let i = 0; i < vector.length; i++) {
    const value = vector[i] as number
    if (width === 4) view.setFloat32(i * 4, value, true)
    else view.setFloat64(i * 8, value, true)
  }
  return bytes
}

/**
 * Decodes little-endian bytes into a new typed array of `dtype`.
 *
 * @throws `invalid_argument` when the byte length is not `dims × width`.
 */
export function vectorFromBytes(
  bytes: Uint8Array,
  dtype: VectorDType,
  dims: number,
): StoredVector {
  const width = dtype === 'float32' ? 4 : 8
  if (bytes.byteLength !== dims * width) {
    throw invalidArgument(
      `vector bytes: expected ${dims * width} bytes for ${dims} × ${dtype}, got ${bytes.byteLength}`,
    )
  }
  // Copy into a fresh, aligned buffer: the source may be a view at any offset.
  const copy = new Uint8Array(bytes.byteLength)
  copy.set(bytes)
  if (IS_LITTLE_ENDIAN) {
    return dtype === 'float32'
      ? new Float32Array(copy.buffer)
      : new Float64Array(copy.buffer)
  }
  const view = new DataView(copy.buffer)
  const out =
    dtype === 'float32' ? new Float32Array(dims) : new Float64Array(dims)
  for (let i = 0; i < dims; i++) {
    out[i] =
      width === 4 ? view.getFloat32(i * 4, true) : view.getFloat64(i * 8, true)
  }
  return out
}

/** A float32 copy scaled to unit length (the norm is computed in float64). */
export function normalizedFloat32(
  vector: Float32Array | Float64Array,
): Float32Array {
  let sumOfSquares = 0
  for (let i = 0; i < vector.length; i++) {
    const value = vector[i] as number
    sumOfSquares += value * value
  }
  const scale = sumOfSquares > 0 ? 1 / Math.sqrt(sumOfSquares) : 0
  const out = new Float32Array(vector.length)
  for (let i = 0; i < vector.length; i++) out[i] = (vector[i] as number) * scale
  return out
}
