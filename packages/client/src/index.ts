/**
 * VeloSync edge client: a device's local store of documents with vector embeddings in
 * SQLite, exact vector search, and the replication log (outbox) that sync pushes.
 *
 * @example
 * ```ts
 * import { LocalStore } from '@velosync/client'
 *
 * const store = LocalStore.open({ path: 'device.db' })
 * store.createCollection({ name: 'notes', dims: 384, metric: 'cosine' })
 * store.put('notes', { id: 'n1', vector: embedding, metadata: { lang: 'en' } })
 * const hits = store.search('notes', queryEmbedding, { k: 10, filter: { lang: 'en' } })
 * ```
 *
 * @packageDocumentation
 */
export {
  LocalStore,
  MAX_K,
  type DocumentInput,
  type LocalStoreOptions,
  type RemoteApplyResult,
  type ServerUpdate,
  type SearchOptions,
  type SearchResult,
  type StoredDocument,
  type VerifyReport,
  type WriteReceipt,
} from './local-store.js'
export {
  DEFAULT_BATCH_OPS,
  MAX_BATCH_OPS,
  Outbox,
  type CompactionResult,
  type OutboxBatch,
  type OutboxEntry,
  type OutboxOp,
} from './outbox.js'
export { STORE_SCHEMA_VERSION } from './schema.js'
export { nodeSha256 } from './sha256.js'
export {
  SyncClient,
  type ConflictEvent,
  type LiveConnectedEvent,
  type LiveDisconnectedEvent,
  type LiveState,
  type StartSyncOptions,
  type SyncClientOptions,
  type SyncRoundResult,
  type SyncState,
  type SyncStatus,
} from './sync/sync-client.js'
export type { SyncTransport } from './sync/sync-transport.js'
export {
  HttpTransport,
  type HttpTransportOptions,
} from './sync/http-transport.js'
