import { gaussian, seededRandom } from './random.js'

/** Options of {@link clusteredEmbeddings}. */
export interface ClusteredEmbeddingsOptions {
  readonly count: number
  readonly dims: number
  /** Number of topic centres. Default `max(8, round(sqrt(count) / 4))`. */
  readonly clusters?: number
  /** Standard deviation of a point around its centre, relative to the centre's norm. Default 0.35. */
  readonly spread?: number
  /** Default 1. */
  readonly seed?: number
}

/** Generated vectors in one contiguous matrix, plus each row's cluster. */
export interface ClusteredEmbeddings {
  readonly dims: number
  /** `count × dims`, row-major. */
  readonly matrix: Float32Array
  readonly clusterOf: Uint32Array
  /** Row `i` as a view into the matrix (copy it before handing it to a library that keeps it). */
  row(i: number): Float32Array
}

/**
 * Embedding-like vectors: points scattered around random topic centres, unit length.
 *
 * @remarks
 * Real embeddings are clustered; uniformly random vectors are not, and approximate
 * indexes behave very differently on them (FACTS.md), so benchmarks and demos use this.
 */
export function clusteredEmbeddings(
  options: ClusteredEmbeddingsOptions,
): ClusteredEmbeddings {
  const { count, dims } = options
  const clusters =
    options.clusters ?? Math.max(8, Math.round(Math.sqrt(count) / 4))
  const spread = options.spread ?? 0.35
  const random = seededRandom(options.seed ?? 1)
  const centres = new Float64Array(clusters * dims)
  for (let c = 0; c < clusters; c++) {
    let norm = 0
    for (let d = 0; d < dims; d++) {
      const value = gaussian(random)
      centres[c * dims + d] = value
      norm += value * value
    }
    const scale = 1 / Math.sqrt(norm)
    for (let d = 0; d < dims; d++) centres[c * dims + d]! *= scale
  }
  const matrix = new Float32Array(count * dims)
  const clusterOf = new Uint32Array(count)
  const noise = spread / Math.sqrt(dims)
  const point = new Float64Array(dims)
  for (let i = 0; i < count; i++) {
    const c = Math.floor(random() * clusters)
    clusterOf[i] = c
    let norm = 0
    for (let d = 0; d < dims; d++) {
      const value = (centres[c * dims + d] as number) + noise * gaussian(random)
      point[d] = value
      norm += value * value
    }
    const scale = 1 / Math.sqrt(norm)
    for (let d = 0; d < dims; d++)
      matrix[i * dims + d] = (point[d] as number) * scale
  }
  return {
    dims,
    matrix,
    clusterOf,
    row: (i) => matrix.subarray(i * dims, (i + 1) * dims),
  }
}

const WORDS = (
  'sync vector offline device server edge query index cluster embed note photo ticket ' +
  'product search nearest merge conflict replica clock version digest battery kiosk field ' +
  'report invoice sensor map route order shelf stock repair manual garden recipe travel'
).split(' ')
const LANGS = ['en', 'de', 'fr', 'es', 'ja']
const KINDS = ['note', 'photo', 'ticket', 'product']

/** A demo document's metadata: ~200 characters of text plus a few filterable fields. */
export interface SampleMetadata {
  readonly [key: string]: string | number | boolean | readonly string[]
  readonly text: string
  readonly lang: string
  readonly kind: string
  readonly year: number
  readonly pinned: boolean
  readonly tags: readonly string[]
}

/** Deterministic sample metadata for document `i` of cluster `cluster`. */
export function sampleMetadata(
  i: number,
  cluster: number,
  seed = 1,
): SampleMetadata {
  const random = seededRandom(seed * 1_000_003 + i)
  const words: string[] = [`#${i}`, `topic-${cluster}:`]
  let length = 0
  while (length < 200) {
    const word = WORDS[Math.floor(random() * WORDS.length)] as string
    words.push(word)
    length += word.length + 1
  }
  return {
    text: words.join(' ').slice(0, 200),
    lang: LANGS[Math.floor(random() * LANGS.length)] as string,
    kind: KINDS[cluster % KINDS.length] as string,
    year: 2015 + Math.floor(random() * 11),
    pinned: random() < 0.1,
    tags: [
      WORDS[cluster % WORDS.length] as string,
      WORDS[Math.floor(random() * WORDS.length)] as string,
    ],
  }
}
