import { IncomingMessage, createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { getRequestListener } from '@hono/node-server'
import {
  DEFAULT_MAX_FORWARD_DRIFT_MS,
  InProcessChangeSignal,
  MEDIA_TYPES,
  PROTOCOL_VERSION,
  VeloSyncError,
  assertDeviceId,
  contentDigestHeader,
  decodeAckRequest,
  decodeSyncRequest,
  encodeMessage,
  errorStatus,
  invalidArgument,
  isVeloSyncError,
  negotiate,
  verifyContentDigest,
  wireErrorCode,
  type ChangeSignal,
  type CollectionSchema,
  type ConflictResolver,
  type ErrorBody,
  type Message,
  type PullResult,
  type PulledVersion,
  type ReplicaProgress,
  type ReplicaRef,
  type ServerStore,
  type SyncRequest,
  type WireFormat,
} from '@velosync/core'
import { Hono, type Context } from 'hono'
import { streamSSE } from 'hono/streaming'
import {
  acceptsGzip,
  decodeContentEncoding,
  gzipBody,
  readBody,
} from './http-body.js'
import { nodeSha256 } from './node-sha256.js'
import { hashToken } from './tokens.js'

/**
 * Vector bytes one pull page may carry (metadata adds at most 64 KiB of text per version):
 * a page of a 65,536-d float64 collection holds 32 versions, of a 384-d float32 one all
 * 1,000 a device asks for by default. Without it such a JSON answer outgrew the longest
 * string V8 can build, and the device could never sync past it.
 */
export const PULL_PAGE_VECTOR_BYTES = 16 * 1024 * 1024

/**
 * Document bytes (vectors, metadata text, ids) one pull answer may carry. The vector bound
 * keeps ordinary pages far below it, but metadata (up to 64 KiB of text per version) could
 * still make a page of thousands longer than a JSON answer can be.
 */
export const PULL_PAGE_BODY_BYTES = 64 * 1024 * 1024

/** Default {@link SyncServerOptions.maxBodyBytes}: 32 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
/** Default {@link SyncServerOptions.tombstoneRetentionMs}: 30 days. */
export const DEFAULT_TOMBSTONE_RETENTION_MS = 30 * 24 * 60 * 60 * 1000
/** Garbage collection runs after a push at most this often. */
export const GC_INTERVAL_MS = 60_000
/** Responses above this many bytes are gzipped when the client accepts it (PROTOCOL.md). */
export const GZIP_THRESHOLD_BYTES = 1024
/** `limit` of `GET /v1/conflicts` when the query leaves it out. */
export const DEFAULT_CONFLICTS_LIMIT = 100
/** Largest `limit` of `GET /v1/conflicts`: bounds one response (two versions per record). */
export const MAX_CONFLICTS_LIMIT = 1000
/** What a `storage_failure` response tells the client to wait before retrying. */
const STORAGE_RETRY_AFTER_MS = 1000
/**
 * Default {@link SyncServerOptions.liveHeartbeatMs}: 15 s, below the idle timeouts of
 * common proxies and load balancers (nginx 60 s, AWS ALB 60 s).
 */
export const DEFAULT_LIVE_HEARTBEAT_MS = 15_000
/**
 * Default {@link SyncServerOptions.liveMinIntervalMs}: the first change of a burst goes out
 * at once, the rest of the burst waits for at most this long and goes out as one event.
 */
export const DEFAULT_LIVE_MIN_INTERVAL_MS = 20

/**
 * The subset of a pino logger the server calls (pino itself fits).
 *
 * @public
 */
export interface SyncServerLogger {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

/**
 * How clients authenticate.
 *
 * - `token`: `Authorization: Bearer <token>`; the device is the token's owner (DESIGN 8).
 * - `open`: local development only. A bearer token still works; without one, the device
 *   is whatever `X-VeloSync-Device` names. Never expose such a server.
 *
 * @public
 */
export type SyncServerAuth = { mode: 'token' } | { mode: 'open' }

/**
 * Options of {@link createSyncServer}.
 *
 * @public
 */
export interface SyncServerOptions {
  /** The master store. No default: the composition root (the CLI) picks one. */
  readonly store: ServerStore
  /** How devices authenticate. */
  readonly auth: SyncServerAuth
  /** Largest accepted request body, before and after gunzip. Default 32 MiB. */
  readonly maxBodyBytes?: number
  /** Picks the winner of concurrent versions. Default: the store's rule (HLC, then origin). */
  readonly resolver?: ConflictResolver
  /** How long tombstones (and silent devices' claims on them) are kept. Default 30 days. */
  readonly tombstoneRetentionMs?: number
  /**
   * How far a pushed version's HLC may lead this server's clock when it competes in a
   * conflict (ServerStore S13): a device whose clock says 2099 competes at acceptance time
   * plus this bound. Default 60 000 (the HLC's own forward-drift bound).
   */
  readonly maxClockLeadMs?: number
  /** Milliseconds since the epoch. Default `Date.now`. */
  readonly clock?: () => number
  /** Where requests, failures and garbage collections are logged. Default: nowhere. */
  readonly logger?: SyncServerLogger
  /**
   * Carries "the head moved" from pushes to the live streams (`GET /v1/events`) of every
   * server process sharing the store. Default: an {@link InProcessChangeSignal} (one
   * process, e.g. on SQLite); its owner, not the server, releases a signal passed here.
   */
  readonly changeSignal?: ChangeSignal
  /** How often each live stream gets a comment line, so that proxies keep it open. Default 15 000. */
  readonly liveHeartbeatMs?: number
  /** Shortest pause between two events of one live stream (bursts coalesce). Default 20. */
  readonly liveMinIntervalMs?: number
}

/**
 * A running VeloSync sync server: a Web-standard fetch handler plus a Node listener.
 *
 * @public
 */
export interface SyncServer {
  /** Handles one request (usable without a socket, e.g. by an in-memory transport). */
  fetch(request: Request): Promise<Response>
  /**
   * Listens on `port` (0: any free port) of `host` (default `127.0.0.1`).
   *
   * @returns the bound port, the Node server (for what only it offers, such as socket
   *   events) and a `close()` that ends the open live streams, stops listening and waits
   *   for a running garbage collection. The store stays open: its owner closes it.
   */
  listen(options: {
    port: number
    host?: string
  }): Promise<{ port: number; server: Server; close(): Promise<void> }>
}

/** What a route handler gets: the request after authentication and negotiation. */
interface Call {
  readonly request: Request
  /** The authenticated device ('' on routes without authentication). */
  readonly deviceId: string
  /** The request body's encoding (JSON on routes without a body). */
  readonly format: WireFormat
  readonly responseFormat: WireFormat
  /** Hono's context of the request (streaming responses need it). */
  readonly context: Context
  param(name: string): string
}

const silentLogger: SyncServerLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
}

/**
 * Creates the sync server of `docs/PROTOCOL.md` over a {@link ServerStore}.
 *
 * @remarks
 * Every request is checked completely before the store is written (DESIGN 7): for
 * `POST /v1/sync` the order is authentication, media type, size, `Content-Digest` over
 * the raw bytes, gunzip, decoding and validation of the whole body, the declared
 * collections, and only then one `push` transaction followed by a pull. Error bodies use
 * the negotiated encoding and carry a `Content-Digest` too.
 *
 * @example
 * ```ts
 * import { createSyncServer } from '@velosync/server'
 * import { SqliteServerStore } from '@velosync/storage-sqlite'
 *
 * const store = SqliteServerStore.open({ path: 'server.db' })
 * const server = createSyncServer({ store, auth: { mode: 'token' } })
 * const { port, close } = await server.listen({ port: 8787 })
 * ```
 * @public
 */
export function createSyncServer(options: SyncServerOptions): SyncServer {
  const { store } = options
  if (
    options.auth?.mode !== 'token' &&
    (options.auth as { mode?: unknown } | undefined)?.mode !== 'open'
  ) {
    throw invalidArgument("auth must be { mode: 'token' } or { mode: 'open' }")
  }
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 1) {
    throw invalidArgument('maxBodyBytes must be a positive integer')
  }
  const retentionMs =
    options.tombstoneRetentionMs ?? DEFAULT_TOMBSTONE_RETENTION_MS
  if (!Number.isSafeInteger(retentionMs) || retentionMs < 0) {
    throw invalidArgument('tombstoneRetentionMs must be a non-negative integer')
  }
  const maxClockLeadMs = options.maxClockLeadMs ?? DEFAULT_MAX_FORWARD_DRIFT_MS
  if (!Number.isSafeInteger(maxClockLeadMs) || maxClockLeadMs < 0) {
    throw invalidArgument('maxClockLeadMs must be a non-negative integer')
  }
  const clock = options.clock ?? Date.now
  const logger = options.logger ?? silentLogger
  const openMode = options.auth.mode === 'open'
  const heartbeatMs = options.liveHeartbeatMs ?? DEFAULT_LIVE_HEARTBEAT_MS
  if (!Number.isSafeInteger(heartbeatMs) || heartbeatMs < 1) {
    throw invalidArgument('liveHeartbeatMs must be a positive integer')
  }
  const minIntervalMs =
    options.liveMinIntervalMs ?? DEFAULT_LIVE_MIN_INTERVAL_MS
  if (!Number.isSafeInteger(minIntervalMs) || minIntervalMs < 0) {
    throw invalidArgument('liveMinIntervalMs must be a non-negative integer')
  }
  const changeSignal =
    options.changeSignal ??
    new InProcessChangeSignal({
      onListenerError: (error) =>
        logger.error({ err: error }, 'a live stream listener failed'),
    })
  /** Ends every open live stream (by resolving what keeps its handler waiting). */
  const liveStreams = new Set<() => void>()
  /**
   * Set while a listener closes: no stream may open (it would hold the close open), and
   * every answer closes its connection, or a client that keeps a keep-alive connection
   * busy (a live channel retrying, say) would hold the close open just as well.
   */
  let closing = false

  let lastGcAtMs = Number.NEGATIVE_INFINITY
  let gcRunning: Promise<void> | undefined

  /** Starts a garbage collection in the background, at most once per interval. */
  function maybeCollectGarbage(): void {
    const now = clock()
    if (gcRunning !== undefined || now - lastGcAtMs < GC_INTERVAL_MS) return
    lastGcAtMs = now
    gcRunning = store
      .collectGarbage({ nowMs: now, retentionMs })
      .then((result) => {
        if (result.removedTombstones > 0) {
          logger.info(result, 'collected tombstones')
        }
      })
      .catch((error: unknown) => {
        // Best effort: the next push tries again after the interval.
        logger.warn({ err: error }, 'tombstone garbage collection failed')
      })
      .finally(() => {
        gcRunning = undefined
      })
  }

  async function authenticate(request: Request): Promise<string> {
    const authorization = request.headers.get('authorization')
    if (authorization !== null) {
      const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
      if (match === null) {
        throw new VeloSyncError(
          'unauthorized',
          'the Authorization header must be "Bearer <token>"',
        )
      }
      const deviceId = await store.findDeviceByTokenHash(
        hashToken(match[1] as string),
      )
      if (deviceId === undefined) {
        throw new VeloSyncError(
          'unauthorized',
          'unknown or revoked token; create one with `velosync token create --device <name>`',
        )
      }
      return deviceId
    }
    if (openMode) {
      const deviceId = request.headers.get('x-velosync-device')
      if (deviceId !== null) {
        try {
          assertDeviceId(deviceId)
        } catch (error) {
          throw new VeloSyncError(
            'unauthorized',
            `X-VeloSync-Device: ${(error as Error).message}`,
          )
        }
        return deviceId
      }
    }
    throw new VeloSyncError(
      'unauthorized',
      openMode
        ? 'send Authorization: Bearer <token> or, on this open-mode server, X-VeloSync-Device: <deviceId>'
        : 'send Authorization: Bearer <token>',
    )
  }

  /**
   * `pullLimit`, lowered so that a page of the widest collection's vectors stays within
   * {@link PULL_PAGE_VECTOR_BYTES}; a page may be short while `hasMore` is true (S5).
   */
  async function pageLimit(pullLimit: number): Promise<number> {
    let widest = 0
    for (const { dims, dtype } of await store.listCollections())
      widest = Math.max(widest, dims * (dtype === 'float64' ? 8 : 4))
    return widest === 0
      ? pullLimit
      : Math.max(
          1,
          Math.min(pullLimit, Math.floor(PULL_PAGE_VECTOR_BYTES / widest)),
        )
  }

  /** Reads, size-checks, digest-checks and un-gzips a request body (in that order). */
  async function readCheckedBody(call: Call): Promise<Uint8Array> {
    const { request } = call
    // Served by @hono/node-server, the Node request is at hand: read it directly.
    const incoming = (call.context.env as { incoming?: unknown } | undefined)
      ?.incoming
    const raw = await readBody(
      request,
      maxBodyBytes,
      incoming instanceof IncomingMessage ? incoming : undefined,
    )
    verifyContentDigest(request.headers.get('content-digest'), raw, nodeSha256)
    return decodeContentEncoding(
      raw,
      request.headers.get('content-encoding'),
      maxBodyBytes,
    )
  }

  /**
   * Ensures the declared collections. All are checked before any is created, so a
   * mismatch on the second one does not leave the first one behind.
   */
  async function ensureCollections(
    specs: readonly CollectionSchema[],
  ): Promise<void> {
    const missing: CollectionSchema[] = []
    for (const spec of specs) {
      const existing = await store.getCollection(spec.name)
      if (existing === undefined) missing.push(spec)
      else if (
        existing.dims !== spec.dims ||
        existing.metric !== spec.metric ||
        existing.dtype !== spec.dtype
      ) {
        throw schemaMismatch(spec, existing)
      }
    }
    for (const spec of missing) {
      try {
        await store.ensureCollection(spec)
      } catch (error) {
        // Another request created it in between, with other settings.
        if (isVeloSyncError(error, 'already_exists')) {
          const existing = await store.getCollection(spec.name)
          throw existing === undefined ? error : schemaMismatch(spec, existing)
        }
        throw error
      }
    }
  }

  async function handleSync(call: Call): Promise<Response> {
    const { request, deviceId, format, responseFormat } = call
    const body = await readCheckedBody(call)
    const sync: SyncRequest = decodeSyncRequest(body, format, { deviceId })
    const replica: ReplicaRef = { deviceId, epoch: sync.epoch }
    const fromZero = sync.cursor === 0 && sync.fullResync !== true
    const progress = await store.replicaProgress(replica)
    const restored = restoredCopyError(sync, progress)
    if (restored !== undefined) {
      throw new VeloSyncError(
        'lsn_reused',
        `replica ${deviceId}.${sync.epoch}: ${restored}, so its store was restored from an older copy; start a new epoch (the sync client does this by itself) and sync again`,
      )
    }
    // The pull below could still refuse the cursor (resync_required) after the push
    // committed; checking it first (and before any collection is created) keeps "an
    // error changes nothing" (DESIGN 7), except for a garbage collection racing in between.
    const pullOptions = { includeEchoes: sync.fullResync === true }
    await store.checkCursor(sync.cursor, {
      pushedBefore: fromZero && progress.appliedLsn > 0,
    })
    await ensureCollections(sync.collections)
    const pushed = await store.push(replica, sync.push, {
      nowMs: clock(),
      maxClockLeadMs,
      ...(options.resolver === undefined ? {} : { resolver: options.resolver }),
    })
    if (sync.push.length > 0) maybeCollectGarbage()
    if (pushed.results.some((result) => result.seq !== undefined)) {
      // Not awaited: the live channel is a hint, and the device that pushed waits for its
      // answer, not for the others to be told.
      changeSignal
        .publish({ head: pushed.head, deviceId })
        .catch((error: unknown) =>
          logger.warn({ err: error }, 'announcing a new head failed'),
        )
    }
    const pulled = withinPageBudget(
      await store.pull(
        replica,
        sync.cursor,
        await pageLimit(sync.pullLimit),
        pullOptions,
      ),
    )
    const head = Math.max(pushed.head, await store.head())

    // Every collection a returned version belongs to, so that the device can decode
    // vectors of collections it has not seen yet.
    const named = new Set<string>()
    for (const result of pushed.results) {
      if (result.version !== undefined) named.add(result.collection)
    }
    for (const change of pulled.versions) named.add(change.collection)
    const collections: CollectionSchema[] = []
    for (const name of named) {
      const schema = await store.getCollection(name)
      if (schema !== undefined) collections.push(schema)
    }

    logger.info(
      {
        deviceId,
        epoch: sync.epoch,
        pushed: sync.push.length,
        pulled: pulled.versions.length,
        skippedEchoes: pulled.skippedEchoes,
        head,
      },
      'sync',
    )
    return respond(
      request,
      200,
      {
        protocol: PROTOCOL_VERSION,
        collections,
        // Plain `applied` goes without saying (protocol 2): it is most ops of a push.
        results: pushed.results.filter(
          (result) => result.outcome !== 'applied',
        ),
        appliedThroughLsn: pushed.appliedThroughLsn,
        changes: pulled.versions,
        cursor: pulled.cursor,
        hasMore: pulled.hasMore,
        skippedEchoes: pulled.skippedEchoes,
        head,
      },
      responseFormat,
    )
  }

  async function handleAck(call: Call): Promise<Response> {
    const body = await readCheckedBody(call)
    const ack = decodeAckRequest(body, call.format)
    const deviceId = call.deviceId
    await store.ack({ deviceId, epoch: ack.epoch }, ack.cursor)
    return new Response(null, { status: 204 })
  }

  async function handleDigest(call: Call, name: string): Promise<Response> {
    const { request, responseFormat } = call
    if ((await store.getCollection(name)) === undefined) {
      throw new VeloSyncError(
        'not_found',
        `no collection named ${JSON.stringify(name.slice(0, 80))}`,
      )
    }
    const digest = await store.digest(name)
    const head = await store.head()
    return respond(
      request,
      200,
      { collection: name, digest, head },
      responseFormat,
    )
  }

  async function handleConflicts(call: Call): Promise<Response> {
    const { request, responseFormat } = call
    const query = new URL(request.url).searchParams
    const collection = queryValue(query, 'collection') ?? undefined
    const afterSeq = queryInteger(queryValue(query, 'after'), 'after', 0, 0)
    const limit = queryInteger(
      queryValue(query, 'limit'),
      'limit',
      DEFAULT_CONFLICTS_LIMIT,
      1,
      MAX_CONFLICTS_LIMIT,
    )
    if (
      collection !== undefined &&
      (await store.getCollection(collection)) === undefined
    ) {
      throw new VeloSyncError(
        'not_found',
        `no collection named ${JSON.stringify(collection.slice(0, 80))}`,
      )
    }
    const conflicts = await store.conflicts({
      limit,
      afterSeq,
      ...(collection === undefined ? {} : { collection }),
    })
    const collections: CollectionSchema[] = []
    for (const name of new Set(conflicts.map((record) => record.collection))) {
      const schema = await store.getCollection(name)
      if (schema !== undefined) collections.push(schema)
    }
    return respond(request, 200, { collections, conflicts }, responseFormat)
  }

  /**
   * `GET /v1/events`: a server-sent event stream announcing the head (docs/PROTOCOL.md).
   *
   * The first event is the head when the stream opens, so a device that reconnects
   * learns at once whether it missed something. After that, every change from another
   * device's push that moves the head past what this stream last sent is announced; the
   * first of a burst at once, the rest coalesced into one event per `liveMinIntervalMs`.
   */
  async function handleEvents(call: Call): Promise<Response> {
    const { deviceId, context } = call
    const refuseWhileClosing = (): void => {
      if (closing) {
        throw new VeloSyncError(
          'unavailable',
          'this server is shutting down; reconnect (to another process, or later)',
        )
      }
    }
    refuseWhileClosing()
    // HEAD shares this route; a stream nobody reads would keep its subscription and
    // heartbeat until shutdown, so it gets the headers only.
    if (call.request.method === 'HEAD') {
      return new Response(null, {
        status: 200,
        headers: {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
        },
      })
    }
    let sent = 0
    let pending = 0
    let lastSentAt = Number.NEGATIVE_INFINITY
    let flushTimer: ReturnType<typeof setTimeout> | undefined
    let send: ((head: number) => void) | undefined
    const flush = (): void => {
      flushTimer = undefined
      if (pending <= sent || send === undefined) return
      sent = pending
      lastSentAt = performance.now()
      send(sent)
    }
    // Subscribed before the head is read: a push committing in between is not missed.
    const unsubscribe = changeSignal.subscribe((change) => {
      // The pusher learnt everything from its push response (DESIGN 6).
      if (change.deviceId === deviceId || change.head <= pending) return
      pending = change.head
      if (flushTimer !== undefined || send === undefined) return
      const waitMs = lastSentAt + minIntervalMs - performance.now()
      if (waitMs <= 0) flush()
      else flushTimer = setTimeout(flush, waitMs)
    })
    let head: number
    try {
      head = await store.head()
      // A close that began meanwhile could not end this stream: it is not registered yet.
      refuseWhileClosing()
    } catch (error) {
      unsubscribe()
      throw error
    }
    pending = Math.max(pending, head)
    // Proxies such as nginx buffer responses unless told not to.
    context.header('X-Accel-Buffering', 'no')
    const response = streamSSE(context, async (stream) => {
      let end!: () => void
      const ended = new Promise<void>((resolve) => {
        end = resolve
      })
      liveStreams.add(end)
      stream.onAbort(end)
      const heartbeat = setInterval(() => {
        void stream.write(': keep-alive\n\n')
      }, heartbeatMs)
      send = (value) => {
        void stream.writeSSE({ event: 'head', data: String(value) })
      }
      try {
        // Not throttled: a change right after the opening head still goes out at once.
        sent = pending
        send(sent)
        await ended
      } finally {
        liveStreams.delete(end)
        unsubscribe()
        clearInterval(heartbeat)
        clearTimeout(flushTimer)
      }
    })
    // A stream has its connection to itself: when it ends, the connection goes too, instead
    // of idling in keep-alive and holding a closing listener open until it times out.
    response.headers.set('connection', 'close')
    return response
  }

  /** Encodes, gzips when it pays and is accepted, and signs a response body. */
  async function respond(
    request: Request | undefined,
    status: number,
    message: Message,
    format: WireFormat,
    extraHeaders: Record<string, string> = {},
  ): Promise<Response> {
    let body = encodeMessage(message, format)
    const headers = new Headers({
      'content-type': MEDIA_TYPES[format],
      vary: 'Accept, Accept-Encoding',
      ...extraHeaders,
    })
    if (
      body.length > GZIP_THRESHOLD_BYTES &&
      acceptsGzip(request?.headers.get('accept-encoding') ?? null)
    ) {
      body = await gzipBody(body)
      headers.set('content-encoding', 'gzip')
    }
    headers.set('content-digest', contentDigestHeader(body, nodeSha256))
    return new Response(body as Uint8Array<ArrayBuffer>, { status, headers })
  }

  /** An error body; `request` is absent when the adapter could not build one. */
  async function respondError(
    request: Request | undefined,
    error: unknown,
    format: WireFormat,
  ): Promise<Response> {
    let body: ErrorBody
    let status: number
    if (isVeloSyncError(error)) {
      const code = wireErrorCode(error.code)
      status = errorStatus(error.code)
      body = {
        error: {
          code,
          message: error.message,
          ...(code === 'storage_failure'
            ? { retryAfterMs: STORAGE_RETRY_AFTER_MS }
            : {}),
        },
      }
      if (status >= 500) {
        logger.error(
          { err: error, ...requestFields(request) },
          'request failed',
        )
      }
    } else {
      // A bug: log everything, tell the client nothing about internals.
      status = 500
      body = {
        error: {
          code: 'internal',
          message: 'internal server error; the server log has the details',
        },
      }
      logger.error(
        { err: error, ...requestFields(request) },
        'unexpected error',
      )
    }
    const extra: Record<string, string> =
      body.error.retryAfterMs === undefined
        ? {}
        : { 'retry-after': String(Math.ceil(body.error.retryAfterMs / 1000)) }
    return respond(request, status, body, format, extra)
  }

  const app = new Hono()

  /**
   * Wraps a handler: authentication first (401 before 415, so an unauthenticated caller
   * learns nothing about what the server accepts), then media type negotiation; every
   * failure becomes a protocol error body in the best encoding the headers allow.
   */
  function route(
    kind: { auth: boolean; body: boolean },
    handler: (call: Call) => Promise<Response>,
  ) {
    return async (c: Context): Promise<Response> => {
      const request = c.req.raw
      const contentType = request.headers.get('content-type')
      const accept = request.headers.get('accept')
      let responseFormat: WireFormat
      try {
        responseFormat = negotiate(
          kind.body ? contentType : undefined,
          accept,
        ).response
      } catch {
        responseFormat = negotiate(undefined, accept).response
      }
      try {
        const deviceId = kind.auth ? await authenticate(request) : ''
        let format: WireFormat = 'json'
        if (kind.body) {
          // A POST without Content-Type is as unsupported as one with a foreign type.
          format = negotiate(contentType ?? '', accept).request ?? 'json'
        }
        return await handler({
          request,
          deviceId,
          format,
          responseFormat,
          context: c,
          param: (name) => c.req.param(name) ?? '',
        })
      } catch (error) {
        return respondError(request, error, responseFormat)
      }
    }
  }

  app.post(
    '/v1/sync',
    route({ auth: true, body: true }, (call) => handleSync(call)),
  )
  app.post(
    '/v1/ack',
    route({ auth: true, body: true }, (call) => handleAck(call)),
  )
  app.get(
    '/v1/collections/:name/digest',
    route({ auth: true, body: false }, (call) =>
      handleDigest(call, call.param('name')),
    ),
  )
  app.get(
    '/v1/conflicts',
    route({ auth: true, body: false }, (call) => handleConflicts(call)),
  )
  app.get(
    '/v1/events',
    route({ auth: true, body: false }, (call) => handleEvents(call)),
  )
  app.get(
    '/v1/health',
    route({ auth: false, body: false }, async (call) =>
      respond(
        call.request,
        200,
        { status: 'ok', protocol: PROTOCOL_VERSION, head: await store.head() },
        call.responseFormat,
      ),
    ),
  )
  app.notFound((c) =>
    respondError(
      c.req.raw,
      new VeloSyncError(
        'not_found',
        `no route ${c.req.method} ${new URL(c.req.url).pathname}; see docs/PROTOCOL.md`,
      ),
      'json',
    ),
  )
  app.onError((error, c) => respondError(c.req.raw, error, 'json'))

  /** The last word on every answer: a closing server asks clients to reconnect. */
  const closingAware = (response: Response): Response => {
    if (closing) response.headers.set('connection', 'close')
    return response
  }

  // `incoming` is Node's request when @hono/node-server serves (see readCheckedBody).
  const serve = async (request: Request, env?: object): Promise<Response> => {
    const incoming = (env as { incoming?: unknown } | undefined)?.incoming
    // Node lets requests without Host through (see listen) so that they get a protocol
    // error body; the adapter refuses those in origin form, this the rest (RFC 9112 3.2).
    if (
      incoming instanceof IncomingMessage &&
      incoming.httpVersion === '1.1' &&
      incoming.headers.host === undefined
    ) {
      return closingAware(
        await respondError(
          request,
          invalidArgument(
            'bad request: an HTTP/1.1 request needs a Host header',
          ),
          'json',
        ),
      )
    }
    return closingAware(await app.fetch(request, env))
  }

  return {
    fetch: (request) => serve(request),
    listen: ({ port, host = '127.0.0.1' }) =>
      new Promise((resolve, reject) => {
        const listener = getRequestListener(serve, {
          overrideGlobalObjects: false,
          // The adapter throws before any handler runs when it cannot build the request's
          // URL (a missing or malformed Host header): still a protocol error body.
          errorHandler: async (error) =>
            closingAware(
              await respondError(
                undefined,
                error instanceof Error && error.name === 'RequestError'
                  ? invalidArgument(`bad request: ${error.message}`)
                  : error,
                'json',
              ),
            ),
        })
        // A request without Host reaches the adapter too, rather than Node's bare 400.
        const server = createServer(
          { requireHostHeader: false },
          (incoming, outgoing) => void listener(incoming, outgoing),
        )
        server.once('error', reject)
        server.listen(port, host, () => {
          server.off('error', reject)
          closing = false
          const bound = (server.address() as AddressInfo).port
          logger.info({ host, port: bound }, 'sync server listening')
          resolve({
            port: bound,
            server,
            close: () =>
              new Promise<void>((done, fail) => {
                // Open streams would hold close() open forever; ending them tells their
                // devices to reconnect (to another process, or to this one restarted).
                closing = true
                for (const end of liveStreams) end()
                server.close((error) => {
                  const finish = (): void => {
                    if (error === undefined) done()
                    else fail(error)
                  }
                  if (gcRunning === undefined) finish()
                  else void gcRunning.then(finish)
                })
                // Keep-alive sockets would otherwise hold close() open until they time out.
                if ('closeIdleConnections' in server) {
                  server.closeIdleConnections()
                }
              }),
          })
        })
      }),
  }
}

/**
 * `pulled`, cut after the last version that keeps it within {@link PULL_PAGE_BODY_BYTES}
 * (never before the first): the cursor stops there and `hasMore` tells the device to go
 * on. Echoes past the cut are counted again by the next page.
 */
function withinPageBudget(pulled: PullResult): PullResult {
  let bytes = 0
  for (const [index, { version }] of pulled.versions.entries()) {
    bytes +=
      version.id.length +
      (version.metadataJson?.length ?? 0) +
      (version.vector?.byteLength ?? 0)
    if (bytes > PULL_PAGE_BODY_BYTES && index > 0) {
      const versions = pulled.versions.slice(0, index)
      const last = versions[index - 1] as PulledVersion
      return { ...pulled, versions, cursor: last.seq, hasMore: true }
    }
  }
  return pulled
}

/**
 * Why a sync request shows that the device's store went back in time (a restore from an
 * older copy, or a power loss with relaxed durability), or `undefined`. Either sign
 * suffices: compaction can hide reused LSNs when the restored store wrote more than its
 * lost incarnation, but its cursor is still the old one. A device stores its cursor before
 * it acknowledges it, so a cursor below the acknowledged one cannot happen otherwise; a
 * full resync starts from 0 on purpose.
 */
function restoredCopyError(
  sync: SyncRequest,
  progress: ReplicaProgress,
): string | undefined {
  if (sync.lastLsn !== undefined && progress.appliedLsn > sync.lastLsn)
    return `this server applied its LSN ${progress.appliedLsn}, but the device's newest is ${sync.lastLsn}`
  if (sync.fullResync !== true && sync.cursor < progress.ackedCursor)
    return `it acknowledged cursor ${progress.ackedCursor}, but now syncs from ${sync.cursor}`
  return undefined
}

function schemaMismatch(
  declared: CollectionSchema,
  existing: CollectionSchema,
): VeloSyncError {
  return new VeloSyncError(
    'schema_mismatch',
    `collection ${declared.name} exists with dims ${existing.dims}, metric ${existing.metric}, dtype ${existing.dtype}; the request declares dims ${declared.dims}, metric ${declared.metric}, dtype ${declared.dtype}`,
  )
}

/** A query parameter given at most once: which of two values was meant is not for us to guess. */
function queryValue(query: URLSearchParams, name: string): string | null {
  const values = query.getAll(name)
  if (values.length > 1) {
    throw invalidArgument(
      `query parameter ${name} is given ${values.length} times; give it once`,
    )
  }
  return values[0] ?? null
}

/** A request's method and path for the log; nothing when there was no request. */
function requestFields(request: Request | undefined): {
  method?: string
  path?: string
} {
  return request === undefined
    ? {}
    : { method: request.method, path: new URL(request.url).pathname }
}

/** A query parameter as an integer in [min, max], or `fallback` when absent. */
function queryInteger(
  text: string | null,
  name: string,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (text === null || text === '') return fallback
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw invalidArgument(
      `query parameter ${name} must be an integer in ${min}..${max}, got ${JSON.stringify(text.slice(0, 40))}`,
    )
  }
  return value
}
