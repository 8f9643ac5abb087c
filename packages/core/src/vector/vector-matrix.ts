/*
 * A collection's vectors as one contiguous float32 matrix, scored by exact scans.
 *
 * Layout, in float32 units, identical for both backends:
 *
 * ```
 *   0                      capacity*stride  +stride          +scratchRows
 *   | row 0 | row 1 | ... |  query          | scores ...      | slots ... (wasm only) |
 *     <-stride->
 *   each row: dims values, then zeros up to stride
 * ```
 *
 * The rows start at offset 0, so growing keeps them in place (wasm `memory.grow`
 * appends at the end); the query, score and slot regions are scratch, laid out again
 * after every growth and rewritten on every call.
 */
import { VeloSyncError } from '../errors.js'
import { SIMD_KERNEL_WASM_BASE64 } from './simd-kernel.generated.js'

/**
 * How a row is compared with a query.
 *
 * @remarks
 * `dot`: inner product, higher is closer (cosine when both sides are unit length).
 * `l2`: squared Euclidean distance, lower is closer.
 *
 * @public
 */
export type ScoreKind = 'dot' | 'l2'

/**
 * Which implementation scores the rows: the WebAssembly SIMD128 kernels, or plain
 * TypeScript (6-9x slower at 100k x 384, for runtimes without WebAssembly SIMD).
 *
 * @public
 */
export type KernelBackend = 'wasm-simd' | 'js'

/** Options for {@link VectorMatrix}. @public */
export interface VectorMatrixOptions {
  /** Vector length, an integer from 1. */
  dims: number
  /** Rows to reserve up front. Default 1024. */
  initialCapacity?: number
  /**
   * `'auto'` (default) uses WASM SIMD when the runtime validates the module, else plain
   * TS. Naming a backend forces it, which tests and benchmarks use.
   */
  backend?: 'auto' | KernelBackend
}

/** The subset of the WebAssembly JS API we call, typed here because `core` has no DOM lib. */
interface WebAssemblyApi {
  validate(bytes: Uint8Array): boolean
  Module: new (bytes: Uint8Array) => object
  Instance: new (
    module: object,
    imports: object,
  ) => { readonly exports: object }
}

/** What simd-kernel.wat exports. Every pointer is a byte offset into `memory`. */
interface KernelExports {
  readonly memory: {
    readonly buffer: ArrayBuffer
    grow(deltaPages: number): number
  }
  readonly dot_all: ScanAll
  readonly l2_all: ScanAll
  readonly dot_slots: ScanSlots
  readonly l2_slots: ScanSlots
}
type ScanAll = (
  matrix: number,
  query: number,
  rows: number,
  strideBytes: number,
  out: number,
) => void
type ScanSlots = (
  matrix: number,
  query: number,
  slots: number,
  count: number,
  strideBytes: number,
  out: number,
) => void

const WASM_PAGE_BYTES = 65_536
/** The kernels consume 16 floats (4 x f32x4) per step; padded rows need no tail loop. */
const WASM_STRIDE_MULTIPLE = 16
/** The TS loop is unrolled x4; padding to 4 removes its tail loop too. */
const JS_STRIDE_MULTIPLE = 4
const DEFAULT_INITIAL_CAPACITY = 1024

/** `undefined`: not probed yet; `null`: unsupported here. */
let kernelModule: object | null | undefined
/** Why compilation failed, kept as the `cause` for an explicit `wasm-simd` request. */
let kernelCompileError: unknown

/**
 * Compiles the kernel module once per process (or worker), or returns `null` when the
 * runtime lacks WebAssembly SIMD.
 *
 * @remarks
 * Synchronous compilation is fine here: browsers only refuse it on the main thread for
 * modules above 4 KiB, and this one is under 1 KiB. A content security policy without
 * `wasm-unsafe-eval` makes compilation throw; that is treated as "unsupported" so
 * `backend: 'auto'` falls back to TS instead of failing.
 */
function loadKernelModule(): object | null {
  if (kernelModule !== undefined) return kernelModule
  kernelModule = null
  const api = (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly
  const decode = (globalThis as { atob?: (data: string) => string }).atob
  if (api === undefined || decode === undefined) return kernelModule
  const text = decode(SIMD_KERNEL_WASM_BASE64)
  const bytes = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i)
  if (!api.validate(bytes)) return kernelModule
  try {
    kernelModule = new api.Module(bytes)
  } catch (error) {
    // Compilation refused (see remarks): `auto` falls back to TS by design, and an
    // explicit `wasm-simd` request reports this error as its cause.
    kernelCompileError = error
  }
  return kernelModule
}

/**
 * True when this runtime can compile and run the WebAssembly SIMD128 kernels.
 *
 * @remarks
 * The result is computed once and cached. Node 16.4+ and current browsers support it.
 *
 * @public
 */
export function isWasmSimdSupported(): boolean {
  return loadKernelModule() !== null
}

function instantiateKernel(): KernelExports {
  const module = loadKernelModule()
  const api = (globalThis as { WebAssembly?: WebAssemblyApi }).WebAssembly
  if (module === null || api === undefined) {
    throw new VeloSyncError(
      'invalid_argument',
      "vector matrix: backend 'wasm-simd' was requested, but this runtime cannot compile WebAssembly SIMD; use backend 'auto' or 'js'",
      { cause: kernelCompileError },
    )
  }
  return new api.Instance(module, {}).exports as KernelExports
}

/**
 * A contiguous, growable float32 matrix holding one collection's vectors, with exact
 * dot-product and squared-L2 scans over all rows or a list of rows.
 *
 * @remarks
 * Rows are dense: slots `0..size-1` are in use, and removal moves the last row into
 * the hole ({@link VectorMatrix.swapRemove}), so callers keep a slot-to-id map and fix
 * it up with the returned index. Capacity doubles when full and never shrinks (wasm
 * memory cannot); {@link VectorMatrix.clear} keeps it.
 *
 * With the `wasm-simd` backend the matrix lives in its own WebAssembly memory, so a
 * scan streams straight from linear memory through f32x4 kernels. The `js` backend
 * keeps the same layout in a plain `Float32Array`. Both compute the same values up to
 * float rounding (the TS loop accumulates in float64).
 *
 * The caller validates contents (finite numbers, normalization for cosine); the matrix
 * only asserts lengths and indices and throws `RangeError` on misuse.
 *
 * @example
 * ```ts
 * const matrix = new VectorMatrix({ dims: 3 })
 * matrix.append([1, 0, 0])
 * matrix.append([0, 1, 0])
 * const scores = matrix.scoreAll([0.8, 0.6, 0], 'dot')
 * topK(scores, matrix.size, 1, true) // Uint32Array [0]
 * ```
 *
 * @public
 */
export class VectorMatrix {
  /** Vector length. */
  readonly dims: number
  /** The implementation chosen at construction. */
  readonly backend: KernelBackend

  readonly #kernel: KernelExports | undefined
  /** Row length in floats: `dims` rounded up to the backend's multiple, padding zero. */
  readonly #stride: number
  #size = 0
  #capacity = 0
  /** Rows the score (and slot) scratch regions can hold: at least `#capacity`. */
  #scratchRows = 0
  /** The whole layout (wasm: all of linear memory). Re-created after growth. */
  #floats: Float32Array
  /** Same bytes as `#floats`, to write slot lists for the wasm kernels. */
  #words: Uint32Array
  #queryAt = 0
  #scoresAt = 0
  #slotsAt = 0

  constructor(options: VectorMatrixOptions) {
    const {
      dims,
      initialCapacity = DEFAULT_INITIAL_CAPACITY,
      backend = 'auto',
    } = options
    if (!Number.isSafeInteger(dims) || dims < 1) {
      throw new RangeError(
        `vector matrix: dims must be a positive integer, got ${dims}`,
      )
    }
    if (!Number.isSafeInteger(initialCapacity) || initialCapacity < 0) {
      throw new RangeError(
        `vector matrix: initialCapacity must be a non-negative integer, got ${initialCapacity}`,
      )
    }
    this.dims = dims
    this.backend =
      backend === 'auto'
        ? isWasmSimdSupported()
          ? 'wasm-simd'
          : 'js'
        : backend
    this.#kernel =
      this.backend === 'wasm-simd' ? instantiateKernel() : undefined
    const multiple =
      this.#kernel === undefined ? JS_STRIDE_MULTIPLE : WASM_STRIDE_MULTIPLE
    this.#stride = Math.ceil(dims / multiple) * multiple
    this.#floats = new Float32Array(0)
    this.#words = new Uint32Array(0)
    this.#layout(Math.max(1, initialCapacity), 0)
  }

  /** Rows in use; slots `0..size-1` are dense. */
  get size(): number {
    return this.#size
  }

  /**
   * Adds `vector × scale` as a new last row, growing the matrix if it is full.
   *
   * @returns The new row's slot, which is the size before the call.
   * @throws RangeError when `vector.length !== dims`.
   */
  append(vector: ArrayLike<number>, scale = 1): number {
    this.#assertLength(vector, 'vector')
    const slot = this.#size
    if (slot === this.#capacity) this.#layout(this.#capacity * 2, 0)
    this.#writeRow(slot * this.#stride, vector, scale)
    this.#size = slot + 1
    return slot
  }

  /**
   * Overwrites row `slot` with `vector × scale`.
   *
   * @throws RangeError when `slot` is not in `0..size-1` or `vector.length !== dims`.
   */
  set(slot: number, vector: ArrayLike<number>, scale = 1): void {
    this.#assertSlot(slot)
    this.#assertLength(vector, 'vector')
    this.#writeRow(slot * this.#stride, vector, scale)
  }

  /**
   * Removes row `slot` by moving the last row into it, which keeps rows dense in O(dims).
   *
   * @returns The index the moved row had (`size - 1` before the call), or -1 when
   *   `slot` was the last row and nothing moved.
   * @throws RangeError when `slot` is not in `0..size-1`.
   */
  swapRemove(slot: number): number {
    this.#assertSlot(slot)
    const last = this.#size - 1
    this.#size = last
    if (slot === last) return -1
    const stride = this.#stride
    this.#floats.copyWithin(
      slot * stride,
      last * stride,
      last * stride + stride,
    )
    return last
  }

  /**
   * A copy of row `slot` (length `dims`, without padding).
   *
   * @throws RangeError when `slot` is not in `0..size-1`.
   */
  row(slot: number): Float32Array {
    this.#assertSlot(slot)
    const start = slot * this.#stride
    return this.#floats.slice(start, start + this.dims)
  }

  /** Removes every row. Capacity and memory are kept for reuse. */
  clear(): void {
    this.#size = 0
  }

  /**
   * Scores every row against `query`.
   *
   * @returns `size` scores, `result[slot]` for each row. It is a view into the matrix's
   *   scratch memory, valid until the next call on this matrix: copy it to keep it.
   * @throws RangeError when `query.length !== dims`.
   */
  scoreAll(query: ArrayLike<number>, kind: ScoreKind): Float32Array {
    this.#assertLength(query, 'query')
    const rows = this.#size
    this.#writeRow(this.#queryAt, query)
    const kernel = this.#kernel
    if (kernel === undefined) {
      scoreRowsJs(
        this.#floats,
        this.#stride,
        this.#queryAt,
        this.#scoresAt,
        rows,
        kind,
      )
    } else {
      const kernelFn = kind === 'dot' ? kernel.dot_all : kernel.l2_all
      kernelFn(0, this.#queryAt * 4, rows, this.#stride * 4, this.#scoresAt * 4)
    }
    return this.#floats.subarray(this.#scoresAt, this.#scoresAt + rows)
  }

  /**
   * Scores only the rows listed in `slots[0..count)` (filtered search).
   *
   * @remarks
   * Slots may repeat and come in any order; `result[i]` belongs to `slots[i]`.
   *
   * @returns `count` scores, a view valid until the next call on this matrix.
   * @throws RangeError when `query.length !== dims`, `count` is not an integer in
   *   `0..slots.length`, or a listed slot is not in `0..size-1`.
   */
  scoreSlots(
    query: ArrayLike<number>,
    kind: ScoreKind,
    slots: Uint32Array,
    count: number,
  ): Float32Array {
    this.#assertLength(query, 'query')
    if (!Number.isInteger(count) || count < 0 || count > slots.length) {
      throw new RangeError(
        `vector matrix: count must be an integer in 0..${slots.length} (slots.length), got ${count}`,
      )
    }
    if (count > this.#scratchRows) this.#layout(this.#capacity, count)
    this.#writeRow(this.#queryAt, query)
    const kernel = this.#kernel
    if (kernel === undefined) {
      this.#assertSlots(slots, count)
      scoreSlotsJs(
        this.#floats,
        this.#stride,
        this.#queryAt,
        this.#scoresAt,
        slots,
        count,
        kind,
      )
    } else {
      // Copy while checking: an unchecked slot would read another row's or scratch
      // memory and return a plausible but wrong score.
      const size = this.#size
      const words = this.#words
      const slotsAt = this.#slotsAt
      for (let i = 0; i < count; i++) {
        const slot = slots[i] as number
        if (slot >= size) throw this.#slotError(slot)
        words[slotsAt + i] = slot
      }
      const kernelFn = kind === 'dot' ? kernel.dot_slots : kernel.l2_slots
      kernelFn(
        0,
        this.#queryAt * 4,
        slotsAt * 4,
        count,
        this.#stride * 4,
        this.#scoresAt * 4,
      )
    }
    return this.#floats.subarray(this.#scoresAt, this.#scoresAt + count)
  }

  /**
   * Lays the regions out for `capacity` rows and `scratchRows` scores (raised to at
   * least `capacity`), growing the storage when needed. Rows `0..size-1` keep their
   * contents; everything else is scratch.
   */
  #layout(capacity: number, scratchRows: number): void {
    const stride = this.#stride
    const scratch = Math.max(capacity, scratchRows)
    const queryAt = capacity * stride
    const scoresAt = queryAt + stride
    const slotsAt = scoresAt + scratch
    const totalFloats = this.#kernel === undefined ? slotsAt : slotsAt + scratch
    const kernel = this.#kernel
    if (kernel === undefined) {
      if (totalFloats > this.#floats.length) {
        const floats = new Float32Array(totalFloats)
        floats.set(this.#floats.subarray(0, this.#size * stride))
        this.#floats = floats
      }
    } else {
      const memory = kernel.memory
      const neededPages = Math.ceil((totalFloats * 4) / WASM_PAGE_BYTES)
      const havePages = memory.buffer.byteLength / WASM_PAGE_BYTES
      if (neededPages > havePages) {
        try {
          memory.grow(neededPages - havePages)
        } catch (cause) {
          throw new RangeError(
            `vector matrix: cannot grow WebAssembly memory to ${neededPages * WASM_PAGE_BYTES} bytes for ${capacity} rows of ${this.dims} dims (the limit is 4 GiB per matrix)`,
            { cause },
          )
        }
      }
      // Growth detaches the previous ArrayBuffer, so views are always rebuilt here.
      this.#floats = new Float32Array(memory.buffer)
      this.#words = new Uint32Array(memory.buffer)
    }
    this.#capacity = capacity
    this.#scratchRows = scratch
    this.#queryAt = queryAt
    this.#scoresAt = scoresAt
    this.#slotsAt = slotsAt
  }

  /** Writes a row or the query at float offset `at`, zeroing the padding the kernels read. */
  #writeRow(at: number, vector: ArrayLike<number>, scale = 1): void {
    const floats = this.#floats
    if (scale === 1) floats.set(vector, at)
    else if (vector instanceof Float32Array) {
      // A native copy, then scaling in place: the loop reads one array type only, where
      // reading `vector` would see every caller's (the same result: a float32 value times
      // the scale is rounded once either way).
      floats.set(vector, at)
      for (let i = at, end = at + vector.length; i < end; i++)
        floats[i] = (floats[i] as number) * scale
    } else {
      for (let i = 0; i < vector.length; i++)
        floats[at + i] = (vector[i] as number) * scale
    }
    floats.fill(0, at + this.dims, at + this.#stride)
  }

  #assertLength(vector: ArrayLike<number>, what: string): void {
    if (vector.length !== this.dims) {
      throw new RangeError(
        `vector matrix: ${what} has length ${vector.length}, expected ${this.dims}`,
      )
    }
  }

  #assertSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.#size)
      throw this.#slotError(slot)
  }

  #assertSlots(slots: Uint32Array, count: number): void {
    const size = this.#size
    for (let i = 0; i < count; i++) {
      const slot = slots[i] as number
      if (slot >= size) throw this.#slotError(slot)
    }
  }

  #slotError(slot: number): RangeError {
    return new RangeError(
      `vector matrix: slot ${slot} is out of range 0..${this.#size - 1}`,
    )
  }
}

/** Plain-TS scan over all rows; the fallback for runtimes without WASM SIMD. */
function scoreRowsJs(
  floats: Float32Array,
  stride: number,
  queryAt: number,
  scoresAt: number,
  rows: number,
  kind: ScoreKind,
): void {
  if (kind === 'dot') {
    for (let r = 0; r < rows; r++)
      floats[scoresAt + r] = dotJs(floats, r * stride, queryAt, stride)
  } else {
    for (let r = 0; r < rows; r++)
      floats[scoresAt + r] = l2Js(floats, r * stride, queryAt, stride)
  }
}

/** Plain-TS scan over a slot list (already checked against the size). */
function scoreSlotsJs(
  floats: Float32Array,
  stride: number,
  queryAt: number,
  scoresAt: number,
  slots: Uint32Array,
  count: number,
  kind: ScoreKind,
): void {
  if (kind === 'dot') {
    for (let i = 0; i < count; i++) {
      floats[scoresAt + i] = dotJs(
        floats,
        (slots[i] as number) * stride,
        queryAt,
        stride,
      )
    }
  } else {
    for (let i = 0; i < count; i++) {
      floats[scoresAt + i] = l2Js(
        floats,
        (slots[i] as number) * stride,
        queryAt,
        stride,
      )
    }
  }
}

/**
 * Dot product of two padded rows of `floats`. Unrolled x4 into independent sums so
 * the adds do not form one dependency chain; `stride` is a multiple of 4.
 */
function dotJs(
  floats: Float32Array,
  a: number,
  b: number,
  stride: number,
): number {
  let s0 = 0
  let s1 = 0
  let s2 = 0
  let s3 = 0
  for (let i = 0; i < stride; i += 4) {
    s0 += (floats[a + i] as number) * (floats[b + i] as number)
    s1 += (floats[a + i + 1] as number) * (floats[b + i + 1] as number)
    s2 += (floats[a + i + 2] as number) * (floats[b + i + 2] as number)
    s3 += (floats[a + i + 3] as number) * (floats[b + i + 3] as number)
  }
  return s0 + s1 + (s2 + s3)
}

/** Squared L2 distance of two padded rows of `floats`, unrolled like {@link dotJs}. */
function l2Js(
  floats: Float32Array,
  a: number,
  b: number,
  stride: number,
): number {
  let s0 = 0
  let s1 = 0
  let s2 = 0
  let s3 = 0
  for (let i = 0; i < stride; i += 4) {
    const d0 = (floats[a + i] as number) - (floats[b + i] as number)
    const d1 = (floats[a + i + 1] as number) - (floats[b + i + 1] as number)
    const d2 = (floats[a + i + 2] as number) - (floats[b + i + 2] as number)
    const d3 = (floats[a + i + 3] as number) - (floats[b + i + 3] as number)
    s0 += d0 * d0
    s1 += d1 * d1
    s2 += d2 * d2
    s3 += d3 * d3
  }
  return s0 + s1 + (s2 + s3)
}
