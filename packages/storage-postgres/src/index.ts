/**
 * VeloSync server store on PostgreSQL: the master store that several stateless
 * `velosync serve` processes share, behind a load balancer, with PostgreSQL's own
 * replication for high availability. It implements the `ServerStore` port of
 * `@velosync/core`, passes the same conformance suite as the SQLite store, and creates and
 * migrates its schema by itself. `PostgresChangeSignal` carries live "new data" announcements
 * between the server processes (`LISTEN/NOTIFY`).
 *
 * @example
 * ```ts
 * import { PostgresServerStore } from '@velosync/storage-postgres'
 *
 * const store = await PostgresServerStore.open({ url: 'postgres://velosync@db:5432/velosync' })
 * await store.ensureCollection({ name: 'notes', dims: 384, metric: 'cosine', dtype: 'float32' })
 * await store.close()
 * ```
 *
 * @packageDocumentation
 */
export {
  POSTGRES_STORE_DEFAULTS,
  PostgresServerStore,
  type PostgresServerStoreOptions,
} from './postgres-server-store.js'
export { POSTGRES_SCHEMA_VERSION } from './migrations.js'
export {
  POSTGRES_CHANGE_SIGNAL_DEFAULTS,
  PostgresChangeSignal,
  type PostgresChangeSignalOptions,
} from './postgres-change-signal.js'
export { HEAD_CHANNEL, headChannel } from './head-notification.js'
