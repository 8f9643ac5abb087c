/**
 * VeloSync server store on SQLite: the embedded default master store of the sync server,
 * one file, no setup. It implements the `ServerStore` port of `@velosync/core` and passes
 * the conformance suite of `@velosync/testkit`.
 *
 * @example
 * ```ts
 * import { SqliteServerStore } from '@velosync/storage-sqlite'
 *
 * const store = SqliteServerStore.open({ path: 'server.db' })
 * await store.ensureCollection({ name: 'notes', dims: 384, metric: 'cosine', dtype: 'float32' })
 * ```
 *
 * @packageDocumentation
 */
export {
  SERVER_SCHEMA_VERSION,
  SqliteServerStore,
  type SqliteServerStoreOptions,
} from './sqlite-server-store.js'
