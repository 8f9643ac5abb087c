import { gaussian, seededRandom } from './random.js'

/** Options of {@link clusteredEmbeddings}. */
export interface ClusteredEmbeddingsOptions {
  readonly count: number
  readonly dims: number
  /** Number of topic clusters. Default `max(8, round(count / 100))`. */
  readonly clusters?: number
  /** Default 1. The same seed gives the same vectors on every machine. */
  readonly seed?: number
}

/** Generated vectors in one contiguous matrix, plus each row's cluster. */
export interface ClusteredEmbeddings {
  readonly dims: number
  /** `count × dims`, row-major, not normalized. */
  readonly matrix: Float32Array
  readonly clusterOf: Uint32Array
  /** Row `i` as a view into the matrix (copy it before handing it to a library that keeps it). */
  row(i: number): Float32Array
  /** `count` fresh query vectors from the same distribution (never copies of rows), row-major. */
  queries(count: number, seed: number): Float32Array
}

const MEAN_NORM = 0.5
const NOISE_NORM = 0.6

/**
 * Embedding-like vectors, deterministic from a seed.
 *
 * @remarks
 * Uniform noise is a poor stand-in for embeddings: every point is nearly orthogonal to
 * every other, so the top-10 is decided by tiny margins and approximate indexes look
 * broken (FACTS.md: HNSW recall ≈ 0.1 on uniform data). Real sentence embeddings share a
 * common direction (their cosines are mostly positive) and form topic clusters of uneven
 * size. So every vector is a shared mean direction (norm 0.5) plus a unit cluster centroid
 * (cluster popularity skewed: a few big topics, a long tail) plus Gaussian noise of norm
 * ≈ 0.6, scaled by a random length in 0.8..1.2 so that cosine normalization is not a no-op.
 */
export function clusteredEmbeddings(
  options: ClusteredEmbeddingsOptions,
): ClusteredEmbeddings {
  const { count, dims } = options
  const seed = options.seed ?? 1
  const clusters = options.clusters ?? Math.max(8, Math.round(count / 100))
  const setup = seededRandom(seed)
  const mean = scaledGaussian(setup, dims, MEAN_NORM)
  const centroids = Array.from({ length: clusters }, () =>
    scaledGaussian(setup, dims, 1),
  )
  const sigma = NOISE_NORM / Math.sqrt(dims)

  const draw = (
    random: () => number,
    out: Float32Array,
    at: number,
  ): number => {
    // u² skews popularity towards low cluster numbers.
    const u = random()
    const cluster = Math.min(clusters - 1, Math.floor(u * u * clusters))
    const centroid = centroids[cluster] as Float32Array
    const length = 0.8 + 0.4 * random()
    for (let j = 0; j < dims; j++) {
      out[at + j] =
        length *
        ((mean[j] as number) +
          (centroid[j] as number) +
          sigma * gaussian(random))
    }
    return cluster
  }

  const rows = seededRandom(seed + 1)
  const matrix = new Float32Array(count * dims)
  const clusterOf = new Uint32Array(count)
  for (let i = 0; i < count; i++) clusterOf[i] = draw(rows, matrix, i * dims)
  return {
    dims,
    matrix,
    clusterOf,
    row: (i) => matrix.subarray(i * dims, (i + 1) * dims),
    queries(queryCount, querySeed) {
      const random = seededRandom(querySeed)
      const out = new Float32Array(queryCount * dims)
      for (let i = 0; i < queryCount; i++) draw(random, out, i * dims)
      return out
    },
  }
}

/** A random direction with the given norm. */
function scaledGaussian(
  random: () => number,
  dims: number,
  norm: number,
): Float32Array {
  const values = Array.from({ length: dims }, () => gaussian(random))
  const scale = norm / Math.sqrt(values.reduce((sum, v) => sum + v * v, 0))
  return Float32Array.from(values, (v) => v * scale)
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
