import {
  clusteredEmbeddings,
  sampleMetadata,
  type SampleMetadata,
} from '@velosync/testkit'

/** A document as the benchmarks write it. */
export interface BenchDocument {
  readonly id: string
  readonly vector: Float32Array
  readonly metadata: SampleMetadata
}

/**
 * `count` documents with clustered `dims`-d vectors and ~200 characters of text plus a few
 * fields of metadata each, the same for the same seed. Ids are `<prefix><i>`, `i`
 * zero-padded to `idDigits`.
 */
export function benchDocuments(options: {
  readonly count: number
  readonly dims: number
  readonly seed: number
  readonly idDigits: number
  readonly idPrefix?: string
}): BenchDocument[] {
  const { count, dims, seed, idDigits, idPrefix = 'doc-' } = options
  const embeddings = clusteredEmbeddings({ count, dims, seed })
  return Array.from({ length: count }, (_, i) => ({
    id: `${idPrefix}${String(i).padStart(idDigits, '0')}`,
    vector: embeddings.row(i),
    metadata: sampleMetadata(i, embeddings.clusterOf[i] as number, seed),
  }))
}
