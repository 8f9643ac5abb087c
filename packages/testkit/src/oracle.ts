import type { JsonObject, Metric, MetadataPredicate } from '@velosync/core'

/** A document as the oracle sees it. */
export interface OracleDocument {
  readonly id: string
  readonly vector: ArrayLike<number>
  readonly metadata: JsonObject
}

/** An oracle hit: same shape as the store's. */
export interface OracleHit {
  readonly id: string
  readonly score: number
}

/**
 * Exact kNN the obvious way, in float64: score every document, sort, take k. Too slow
 * for production and simple enough to trust; fast paths are tested against it.
 */
export function bruteForceSearch(
  documents: Iterable<OracleDocument>,
  query: ArrayLike<number>,
  options: {
    readonly k: number
    readonly metric: Metric
    readonly predicate?: MetadataPredicate
  },
): OracleHit[] {
  const hits: OracleHit[] = []
  for (const doc of documents) {
    if (options.predicate && !options.predicate(doc.metadata)) continue
    hits.push({ id: doc.id, score: score(options.metric, query, doc.vector) })
  }
  const higherIsBetter = options.metric !== 'l2'
  hits.sort((a, b) => (higherIsBetter ? b.score - a.score : a.score - b.score))
  return hits.slice(0, options.k)
}

function score(
  metric: Metric,
  a: ArrayLike<number>,
  b: ArrayLike<number>,
): number {
  let dot = 0
  let normA = 0
  let normB = 0
  let squared = 0
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number
    const y = b[i] as number
    dot += x * y
    normA += x * x
    normB += y * y
    squared += (x - y) * (x - y)
  }
  if (metric === 'dot') return dot
  if (metric === 'l2') return Math.sqrt(squared)
  return dot / Math.sqrt(normA * normB)
}

/**
 * Whether a search result agrees with the oracle's: the same scores position by position
 * (within `tolerance`), and the same ids except where neighbouring scores tie within
 * `tolerance` (float32 arithmetic may order near-ties differently).
 */
export function sameRanking(
  actual: readonly OracleHit[],
  expected: readonly OracleHit[],
  tolerance = 1e-4,
): boolean {
  if (actual.length !== expected.length) return false
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i] as OracleHit
    const e = expected[i] as OracleHit
    if (
      Math.abs(a.score - e.score) >
      tolerance * Math.max(1, Math.abs(e.score))
    )
      return false
    if (a.id === e.id) continue
    const tied = expected.some(
      (other) =>
        other.id === a.id &&
        Math.abs(other.score - e.score) <=
          tolerance * Math.max(1, Math.abs(e.score)),
    )
    if (!tied) return false
  }
  return true
}
