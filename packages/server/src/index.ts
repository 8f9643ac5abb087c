/**
 * VeloSync sync server: the HTTP protocol of `docs/PROTOCOL.md` as a Web-standard fetch
 * handler (Hono) over any `ServerStore`, plus a Node listener. It picks no storage: pass
 * one (the CLI uses `@velosync/storage-sqlite`).
 *
 * @example
 * ```ts
 * import { createSyncServer, createToken, hashToken } from '@velosync/server'
 * import { SqliteServerStore } from '@velosync/storage-sqlite'
 *
 * const store = SqliteServerStore.open({ path: 'server.db' })
 * const token = createToken()
 * await store.createDeviceToken('laptop', hashToken(token))
 * const server = createSyncServer({ store, auth: { mode: 'token' } })
 * const { port, close } = await server.listen({ port: 8787 })
 * ```
 *
 * @packageDocumentation
 */
export {
  DEFAULT_CONFLICTS_LIMIT,
  DEFAULT_LIVE_HEARTBEAT_MS,
  DEFAULT_LIVE_MIN_INTERVAL_MS,
  DEFAULT_MAX_BODY_BYTES,
  PULL_PAGE_BODY_BYTES,
  PULL_PAGE_VECTOR_BYTES,
  DEFAULT_TOMBSTONE_RETENTION_MS,
  GC_INTERVAL_MS,
  GZIP_THRESHOLD_BYTES,
  MAX_CONFLICTS_LIMIT,
  createSyncServer,
  type SyncServer,
  type SyncServerAuth,
  type SyncServerLogger,
  type SyncServerOptions,
} from './sync-server.js'
// Moved to core (a PostgreSQL signal composes it too); still exported here, where the
// server's `changeSignal` option is.
export { InProcessChangeSignal } from '@velosync/core'
export { createToken, hashToken } from './tokens.js'
