import type { Metric } from '../model/collection.js'
import type { JsonObject } from '../model/metadata.js'
import {
  inverseNorm,
  normalizedFloat32,
  type StoredVector,
} from '../model/vector.js'
import type { MetadataPredicate } from '../query/filter.js'
import { topK } from './top-k.js'
import { VectorMatrix, type KernelBackend } from './vector-matrix.js'

/** One search result. */
export interface SearchHit {
  readonly id: string
  /**
   * `cosine`: cosine similarity (−1…1); `dot`: the dot product; both higher is closer.
   * `l2`: Euclidean distance, lower is closer.
   */
  readonly score: number
}

export interface ExactVectorIndexOptions {
  readonly dims: number
  readonly metric: Metric
  /** Kernel choice; default `auto` (WebAssembly SIMD when available, else plain TS). */
  readonly backend?: 'auto' | KernelBackend
  /** Rows to reserve up front. Default 1024. */
  readonly initialCapacity?: number
}

/**
 * Exact k-nearest-neighbour search over one collection, held in memory.
 *
 * @remarks
 * Vectors live in one contiguous float32 matrix ({@link VectorMatrix}); cosine vectors
 * are normalized once on insert, so a query costs one dot product per row. Metadata is
 * kept per row so that a filter runs first and ranking sees only matching rows: a
 * filtered search returns `k` hits whenever at least `k` rows match.
 *
 * Callers validate vectors (length, finite values) before they reach the index.
 */
export class ExactVectorIndex {
  readonly metric: Metric
  readonly #matrix: VectorMatrix
  readonly #slotOf = new Map<string, number>()
  readonly #ids: string[] = []
  readonly #metadata: JsonObject[] = []
  #candidates = new Uint32Array(0)

  constructor(options: ExactVectorIndexOptions) {
    this.metric = options.metric
    this.#matrix = new VectorMatrix({
      dims: options.dims,
      backend: options.backend ?? 'auto',
      ...(options.initialCapacity === undefined
        ? {}
        : { initialCapacity: options.initialCapacity }),
    })
  }

  get size(): number {
    return this.#matrix.size
  }

  get dims(): number {
    return this.#matrix.dims
  }

  /** Which kernel scans the matrix. */
  get backend(): KernelBackend {
    return this.#matrix.backend
  }

  has(id: string): boolean {
    return this.#slotOf.has(id)
  }

  /** Inserts or replaces a row. */
  upsert(id: string, vector: StoredVector, metadata: JsonObject): void {
    // Cosine rows are scaled to unit length as they are copied in: no temporary vector.
    const scale = this.metric === 'cosine' ? inverseNorm(vector) : 1
    const slot = this.#slotOf.get(id)
    if (slot === undefined) {
      const created = this.#matrix.append(vector, scale)
      this.#slotOf.set(id, created)
      this.#ids[created] = id
      this.#metadata[created] = metadata
    } else {
      this.#matrix.set(slot, vector, scale)
      this.#metadata[slot] = metadata
    }
  }

  /** Removes a row; returns whether it was present. */
  remove(id: string): boolean {
    const slot = this.#slotOf.get(id)
    if (slot === undefined) return false
    this.#slotOf.delete(id)
    const moved = this.#matrix.swapRemove(slot)
    const last = this.#ids.length - 1
    if (moved !== -1) {
      const movedId = this.#ids[moved] as string
      this.#ids[slot] = movedId
      this.#metadata[slot] = this.#metadata[moved] as JsonObject
      this.#slotOf.set(movedId, slot)
    }
    this.#ids.length = last
    this.#metadata.length = last
    return true
  }

  /** The metadata stored with `id`, or `undefined`. */
  metadataOf(id: string): JsonObject | undefined {
    const slot = this.#slotOf.get(id)
    return slot === undefined ? undefined : this.#metadata[slot]
  }

  /**
   * The `k` rows closest to `query`, best first; rows failing `predicate` are never ranked.
   * Ties are broken by insertion slot, so equal inputs give equal outputs.
   */
  search(
    query: StoredVector,
    k: number,
    predicate?: MetadataPredicate,
  ): SearchHit[] {
    const size = this.#matrix.size
    if (size === 0 || k === 0) return []
    const q = this.metric === 'cosine' ? normalizedFloat32(query) : query
    const kind = this.metric === 'l2' ? 'l2' : 'dot'
    const higherIsBetter = kind === 'dot'

    if (predicate === undefined) {
      const scores = this.#matrix.scoreAll(q, kind)
      return this.#hits(
        topK(scores, size, k, higherIsBetter),
        scores,
        undefined,
      )
    }
    if (this.#candidates.length < size)
      this.#candidates = new Uint32Array(this.#matrix.size * 2)
    const candidates = this.#candidates
    let count = 0
    for (let slot = 0; slot < size; slot++) {
      if (predicate(this.#metadata[slot] as JsonObject))
        candidates[count++] = slot
    }
    if (count === 0) return []
    if (count === size) {
      const scores = this.#matrix.scoreAll(q, kind)
      return this.#hits(
        topK(scores, size, k, higherIsBetter),
        scores,
        undefined,
      )
    }
    const scores = this.#matrix.scoreSlots(q, kind, candidates, count)
    return this.#hits(
      topK(scores, count, k, higherIsBetter),
      scores,
      candidates,
    )
  }

  /** Drops every row. */
  clear(): void {
    this.#matrix.clear()
    this.#slotOf.clear()
    this.#ids.length = 0
    this.#metadata.length = 0
  }

  #hits(
    best: Uint32Array,
    scores: Float32Array,
    slots: Uint32Array | undefined,
  ): SearchHit[] {
    const hits: SearchHit[] = []
    for (const position of best) {
      const slot = slots === undefined ? position : (slots[position] as number)
      const raw = scores[position] as number
      hits.push({
        id: this.#ids[slot] as string,
        score: this.metric === 'l2' ? Math.sqrt(Math.max(0, raw)) : raw,
      })
    }
    return hits
  }
}
