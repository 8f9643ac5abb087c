import { invalidArgument } from '../errors.js'
import { assertCollectionName, describe } from './ids.js'

/** How closeness is measured. `cosine` and `dot`: higher is closer; `l2`: lower is closer. */
export type Metric = 'cosine' | 'dot' | 'l2'
/** How vectors are stored on disk and sent on the wire. */
export type VectorDType = 'float32' | 'float64'

export const METRICS: readonly Metric[] = ['cosine', 'dot', 'l2']
export const VECTOR_DTYPES: readonly VectorDType[] = ['float32', 'float64']
/** Upper bound on vector length; larger embeddings than this are not in use. */
export const MAX_DIMS = 65_536

/** A collection's fixed settings. */
export interface CollectionSchema {
  /** `[A-Za-z][A-Za-z0-9_-]{0,62}` */
  readonly name: string
  /** Length of every vector in the collection. */
  readonly dims: number
  /** Default `cosine`. */
  readonly metric: Metric
  /** Default `float32`. */
  readonly dtype: VectorDType
}

/** What a caller passes to create a collection: `metric` and `dtype` are optional. */
export interface CollectionSchemaInput {
  readonly name: string
  readonly dims: number
  readonly metric?: Metric
  readonly dtype?: VectorDType
}

/**
 * Validates a collection definition and fills in defaults.
 *
 * @throws `invalid_argument` naming the offending field.
 */
export function normalizeCollectionSchema(
  input: CollectionSchemaInput,
): CollectionSchema {
  if (typeof input !== 'object' || input === null) {
    throw invalidArgument(
      `collection schema must be an object, got ${describe(input)}`,
    )
  }
  assertCollectionName(input.name)
  const { dims } = input
  if (!Number.isSafeInteger(dims) || dims < 1 || dims > MAX_DIMS) {
    throw invalidArgument(
      `collection ${input.name}: dims must be an integer in 1..${MAX_DIMS}, got ${describe(dims)}`,
    )
  }
  const metric = input.metric ?? 'cosine'
  if (!METRICS.includes(metric)) {
    throw invalidArgument(
      `collection ${input.name}: metric must be one of ${METRICS.join(', ')}, got ${describe(metric)}`,
    )
  }
  const dtype = input.dtype ?? 'float32'
  if (!VECTOR_DTYPES.includes(dtype)) {
    throw invalidArgument(
      `collection ${input.name}: dtype must be one of ${VECTOR_DTYPES.join(', ')}, got ${describe(dtype)}`,
    )
  }
  return { name: input.name, dims, metric, dtype }
}
