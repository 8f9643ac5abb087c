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
 * @param into - where to write the copy (a view of `dims` elements of the collection's
 *   dtype, e.g. a slice of one array for a whole batch, which spares one allocation per
 *   vector); a new array when absent.
 * @throws `invalid_argument` on a wrong length, a non-finite element (NaN, ±Infinity),
 *   a value that overflows float32, or an all-zero vector in a cosine collection.
 */
export function toStoredVector(
  schema: CollectionSchema,
  input: VectorInput,
  what = 'vector',
  into?: StoredVector,
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
  const out = into ?? newVector(schema.dtype, schema.dims)
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
  checkVectorValues(schema, out, input, what)
  return out
}

/**
 * Throws unless every element of `vector` is finite and, for cosine, not all are zero.
 *
 * @param source - the values as the caller gave them, for the error message (a value that
 *   overflowed float32 is named as it was).
 * @throws `invalid_argument`.
 */
export function checkVectorValues(
  schema: CollectionSchema,
  vector: StoredVector,
  source: ArrayLike<unknown> = vector,
  what = 'vector',
): void {
  const sumOfSquares =
    vector instanceof Float32Array
      ? sumOfSquaresF32(vector)
      : sumOfSquaresF64(vector)
  if (Number.isNaN(sumOfSquares)) {
    const i = vector.findIndex((value) => value - value !== 0)
    const original = source[i]
    const reason =
      typeof original === 'number' && Number.isFinite(original)
        ? `${original} overflows ${schema.dtype}`
        : `${String(original)}`
    throw invalidArgument(
      `${what}: element ${i} is ${reason}; vectors must contain finite numbers only`,
    )
  }
  if (schema.metric === 'cosine' && sumOfSquares === 0) {
    throw invalidArgument(
      `${what}: an all-zero vector has no direction, so cosine similarity is undefined for it`,
    )
  }
}

// One pass over the stored values: x - x is 0 for every finite x and NaN for NaN and
// ±Infinity (including values that only overflowed when narrowed to float32), so the
// sum of (x - x) flags them all. One loop per array type keeps each loop monomorphic.
function sumOfSquaresF32(values: Float32Array): number {
  let sum = 0
  let poison = 0
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as number
    poison += value - value
    sum += value * value
  }
  return sum + poison
}

function sumOfSquaresF64(values: Float64Array): number {
  let sum = 0
  let poison = 0
  for (let i = 0; i < values.length; i++) {
    const value = values[i] as number
    poison += value - value
    sum += value * value
  }
  return sum + poison
}

/** A zeroed vector of `dims` elements of `dtype`. */
export function newVector(dtype: VectorDType, dims: number): StoredVector {
  return dtype === 'float32' ? new Float32Array(dims) : new Float64Array(dims)
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
 * Decodes little-endian bytes into a typed array of `dtype`.
 *
 * @remarks
 * On a little-endian host, bytes at an aligned offset are not copied: the result is a view
 * that shares their memory (the usual case for a row read from SQLite or a field of a
 * decoded message, which nothing else holds). Otherwise the bytes are copied.
 *
 * @param slab - where copies go (see {@link VectorSlab}); by default each gets its own buffer.
 * @throws `invalid_argument` when the byte length is not `dims × width`.
 */
export function vectorFromBytes(
  bytes: Uint8Array,
  dtype: VectorDType,
  dims: number,
  slab?: VectorSlab,
): StoredVector {
  const width = dtype === 'float32' ? 4 : 8
  if (bytes.byteLength !== dims * width) {
    throw invalidArgument(
      `vector bytes: expected ${dims * width} bytes for ${dims} × ${dtype}, got ${bytes.byteLength}`,
    )
  }
  if (IS_LITTLE_ENDIAN) {
    if (bytes.byteOffset % width === 0) {
      return dtype === 'float32'
        ? new Float32Array(bytes.buffer, bytes.byteOffset, dims)
        : new Float64Array(bytes.buffer, bytes.byteOffset, dims)
    }
    // Copy into aligned memory: the source may be a view at any offset.
    const copy =
      slab?.take(bytes.byteLength) ?? new Uint8Array(bytes.byteLength)
    copy.set(bytes)
    return dtype === 'float32'
      ? new Float32Array(copy.buffer, copy.byteOffset, dims)
      : new Float64Array(copy.buffer, copy.byteOffset, dims)
  }
  // A big-endian host reads each value into an array of its own: nothing to copy first.
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const out =
    dtype === 'float32' ? new Float32Array(dims) : new Float64Array(dims)
  for (let i = 0; i < dims; i++) {
    out[i] =
      width === 4 ? view.getFloat32(i * 4, true) : view.getFloat64(i * 8, true)
  }
  return out
}

/**
 * Aligned memory for the vectors of one decoded message, cut from shared chunks.
 *
 * @remarks
 * A MessagePack `bin` sits at any offset of its message, so a float vector needs a copy.
 * One ArrayBuffer per vector costs an allocation, zeroing and garbage-collector tracking
 * each: for 10,000 384-d vectors 17–22 ms, against 4–6 ms from 256 KiB chunks (measured;
 * 1 MiB chunks took 5–8 ms, as the allocator maps each one fresh from the system). A
 * chunk stays alive while any vector in it does, so a slab suits versions that are
 * applied and dropped, not kept (those get their own copy).
 */
export class VectorSlab {
  static readonly #CHUNK_BYTES = 1 << 18
  #chunk = new Uint8Array(0)
  #used = 0

  /** `byteLength` bytes at an 8-byte aligned offset. */
  take(byteLength: number): Uint8Array {
    if (this.#chunk.byteLength - this.#used < byteLength) {
      this.#chunk = new Uint8Array(
        Math.max(VectorSlab.#CHUNK_BYTES, byteLength),
      )
      this.#used = 0
    }
    const at = this.#used
    this.#used += (byteLength + 7) & ~7
    return this.#chunk.subarray(at, at + byteLength)
  }
}

/** 1 / ‖vector‖ (the norm computed in float64), or 0 for an all-zero vector. */
export function inverseNorm(vector: Float32Array | Float64Array): number {
  let sumOfSquares = 0
  for (let i = 0; i < vector.length; i++) {
    const value = vector[i] as number
    sumOfSquares += value * value
  }
  return sumOfSquares > 0 ? 1 / Math.sqrt(sumOfSquares) : 0
}

/** A float32 copy scaled to unit length (the norm is computed in float64). */
export function normalizedFloat32(
  vector: Float32Array | Float64Array,
): Float32Array {
  const scale = inverseNorm(vector)
  const out = new Float32Array(vector.length)
  for (let i = 0; i < vector.length; i++) out[i] = (vector[i] as number) * scale
  return out
}
