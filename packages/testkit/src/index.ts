/**
 * VeloSync test kit: deterministic data generators, the brute-force search oracle and
 * fast-check arbitraries, shared by the tests, the benchmarks and the demo.
 *
 * @packageDocumentation
 */
export { gaussian, seededRandom } from './random.js'
export {
  clusteredEmbeddings,
  sampleMetadata,
  type ClusteredEmbeddings,
  type ClusteredEmbeddingsOptions,
  type SampleMetadata,
} from './embeddings.js'
export {
  bruteForceSearch,
  sameRanking,
  type OracleDocument,
  type OracleHit,
} from './oracle.js'
export {
  metadataArb,
  replicaIdArb,
  vectorArb,
  versionVectorArb,
} from './arbitraries.js'
export {
  PG_BIN_DIR_ENV,
  findPostgresBinDir,
  startPostgresCluster,
  type PostgresCluster,
  type PostgresClusterOptions,
} from './postgres-cluster.js'
export {
  createTemporaryDatabase,
  type TemporaryDatabase,
} from './postgres-database.js'
