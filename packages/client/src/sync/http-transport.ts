import { createHash, type Hash } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
import {
  MEDIA_TYPES,
  PROTOCOL_VERSION,
  VeloSyncError,
  contentDigestHeader,
  decodeErrorBody,
  decodeSyncResponse,
  describe,
  encodeMessage,
  encodePushAhead,
  encodedPushPrefix,
  errorCodeFromWire,
  invalidArgument,
  verifyContentDigest,
  type AckRequest,
  type EncodedPush,
  type PushOp,
  type SyncRequest,
  type SyncResponse,
  type WireFormat,
} from '@velosync/core'
import { createParser } from 'eventsource-parser'
import { Agent, request as httpRequest } from 'undici'
import { nodeSha256 } from '../sha256.js'
import type { SyncTransport } from './sync-transport.js'

/** Options of {@link HttpTransport}. */
export interface HttpTransportOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8787`. */
  readonly url: string
  /** The device's bearer token (`velosync token create`). */
  readonly token?: string
  /** Open mode only (local development): the device id sent instead of a token. */
  readonly deviceId?: string
  /** Body encoding. Default `msgpack` (vectors as raw bytes). */
  readonly format?: WireFormat
  /**
   * gzip request bodies above 1 KiB. Default: for JSON only (base64 text shrinks by about a
   * quarter; float32 vectors in MessagePack barely compress, so the CPU is wasted there).
   */
  readonly compress?: boolean
  /** Per-request timeout. Default 30 000 ms. */
  readonly timeoutMs?: number
  /**
   * The live channel ({@link HttpTransport.heads}) counts as broken after this long
   * without a byte. Default 45 000 ms: three of the server's 15 s heartbeats.
   */
  readonly liveTimeoutMs?: number
  /**
   * Sends each sync and ack request through this function instead of the network, e.g. a
   * sync server's in-process `fetch` handler. Encoding, compression and digests are
   * unchanged; the response body must be the bytes as sent (not decompressed). Default:
   * HTTP via undici. (The live channel always uses the network.)
   */
  readonly fetch?: (request: Request) => Promise<Response>
}

/** A response reduced to what {@link HttpTransport} reads. */
interface RawResponse {
  readonly status: number
  header(name: string): string | undefined
  readonly body: Uint8Array
}

const COMPRESS_ABOVE_BYTES = 1024
/**
 * Entries of the sync requests a SyncClient sends (protocol, epoch, collections, cursor,
 * pullLimit, lastLsn, push): the shape whose first bytes {@link HttpTransport.encodeAhead}
 * hashes ahead. Other shapes are hashed whole.
 */
const SYNC_CLIENT_FIELDS = 7

/** A push encoded ahead, and the hash of the request bytes it starts (see encodeAhead). */
interface PushAhead {
  readonly encoded: EncodedPush
  readonly prefix:
    | {
        readonly lead: Uint8Array
        readonly length: number
        readonly hash: Hash
      }
    | undefined
}

/** The media type of the live channel (server-sent events). */
const EVENT_STREAM = 'text/event-stream'
/**
 * Most characters of one event the live channel buffers: a head event is a few dozen, so
 * anything near this is a broken or hostile stream, not a reason to grow memory.
 */
const MAX_EVENT_CHARS = 64 * 1024

/**
 * A {@link SyncTransport} over HTTP/1.1 (undici).
 *
 * @remarks
 * undici's `request` rather than `fetch`: `fetch` decompresses a gzip response before the
 * caller sees it, and the `Content-Digest` of a response covers the bytes as sent, so they
 * must be checked before decompression. Connections are kept alive and reused.
 */
export class HttpTransport implements SyncTransport {
  readonly #base: URL
  readonly #headers: Record<string, string>
  readonly #format: WireFormat
  readonly #compress: boolean
  readonly #timeoutMs: number
  readonly #liveTimeoutMs: number
  readonly #fetch: ((request: Request) => Promise<Response>) | undefined
  readonly #agent = new Agent({ keepAliveTimeout: 30_000 })
  /** The live stream holds its connection for as long as it runs: not one of the sync pool's. */
  readonly #liveAgent = new Agent()
  /** The ops {@link encodeAhead} encoded last, until the next request. */
  #ahead: PushAhead | undefined

  constructor(options: HttpTransportOptions) {
    let base: URL
    try {
      base = new URL(options.url)
    } catch {
      throw invalidArgument(
        `url must be an absolute http(s) URL, got ${describe(options.url)}`,
      )
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw invalidArgument(
        `url must use http or https, got ${describe(options.url)}`,
      )
    }
    if ((options.token === undefined) === (options.deviceId === undefined)) {
      throw invalidArgument(
        'give either a token or, for an open-mode server, a deviceId',
      )
    }
    const format = options.format ?? 'msgpack'
    if (format !== 'json' && format !== 'msgpack') {
      throw invalidArgument(
        `format must be 'json' or 'msgpack', got ${describe(format)}`,
      )
    }
    this.#base = base
    this.#format = format
    this.#compress = options.compress ?? format === 'json'
    this.#timeoutMs = options.timeoutMs ?? 30_000
    this.#liveTimeoutMs = options.liveTimeoutMs ?? 45_000
    if (options.fetch !== undefined && typeof options.fetch !== 'function') {
      throw invalidArgument(
        `fetch must be a function, got ${describe(options.fetch)}`,
      )
    }
    this.#fetch = options.fetch
    this.#headers = {
      accept: MEDIA_TYPES[format],
      // Same reasoning as for requests: gzip pays for base64 text, not for raw float bytes.
      'accept-encoding': this.#compress ? 'gzip' : 'identity',
      ...(options.token === undefined
        ? { 'x-velosync-device': options.deviceId as string }
        : { authorization: `Bearer ${options.token}` }),
    }
  }

  async sync(
    request: SyncRequest,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<SyncResponse> {
    // Used by this request or by none: a batch released unsent is not sent again.
    const ahead = this.#ahead
    this.#ahead = undefined
    const payload = encodeMessage(request, this.#format, ahead?.encoded)
    const body = await this.#post(
      '/v1/sync',
      payload,
      options.signal,
      ahead?.encoded.push === request.push
        ? digestAfterPrefix(payload, ahead)
        : undefined,
    )
    return decodeSyncResponse(body, this.#format)
  }

  /**
   * Encodes `push` for the next {@link sync} that carries it (MessagePack only: its bytes
   * can be spliced into a request; JSON requests are encoded whole).
   */
  encodeAhead(push: readonly PushOp[]): void {
    if (this.#format !== 'msgpack') return
    const encoded = encodePushAhead(push)
    // A compressed body has a digest of its own; so does a request of another shape.
    if (this.#compress) {
      this.#ahead = { encoded, prefix: undefined }
      return
    }
    const parts = encodedPushPrefix(encoded, SYNC_CLIENT_FIELDS)
    const hash = createHash('sha256')
    let length = 0
    for (const part of parts) {
      hash.update(part)
      length += part.length
    }
    // The parts before the ops (map header, `push` key): a body that starts with them
    // carries the ops there (see digestAfterPrefix).
    const lead = Buffer.concat(parts.slice(0, -1))
    this.#ahead = { encoded, prefix: { lead, length, hash } }
  }

  async ack(
    request: { readonly epoch: string; readonly cursor: number },
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<void> {
    const message: AckRequest = {
      protocol: PROTOCOL_VERSION,
      epoch: request.epoch,
      cursor: request.cursor,
    }
    await this.#post(
      '/v1/ack',
      encodeMessage(message, this.#format),
      options.signal,
    )
  }

  /**
   * The live channel: `GET /v1/events`, a stream of server-sent `head` events
   * (docs/PROTOCOL.md). See {@link SyncTransport.heads}.
   *
   * @throws `unauthorized` and the server's other codes when it refuses the stream;
   *   `unavailable` when it cannot be reached, answers something else than an event
   *   stream, or the stream breaks or stays silent for `liveTimeoutMs`;
   *   `malformed_body` for a head that is not a seq.
   */
  async *heads(
    options: { readonly signal?: AbortSignal } = {},
  ): AsyncGenerator<number, void, undefined> {
    const { signal } = options
    const url = new URL('/v1/events', this.#base)
    let response: Awaited<ReturnType<typeof httpRequest>>
    try {
      response = await httpRequest(url, {
        method: 'GET',
        headers: {
          ...this.#headers,
          accept: EVENT_STREAM,
          'accept-encoding': 'identity',
        },
        dispatcher: this.#liveAgent,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#liveTimeoutMs,
        ...(signal === undefined ? {} : { signal }),
      })
    } catch (cause) {
      if (signal?.aborted === true) return
      throw this.#unreachable(cause)
    }
    try {
      if (response.statusCode !== 200) {
        this.#checkedBody(await rawResponse(response))
        throw new VeloSyncError(
          'internal',
          `GET /v1/events answered ${response.statusCode} instead of a stream`,
        )
      }
      if (
        headerOf(response.headers, 'content-type')?.startsWith(EVENT_STREAM) !==
        true
      ) {
        throw new VeloSyncError(
          'unavailable',
          `GET /v1/events at ${this.#base.origin} answered ${describe(headerOf(response.headers, 'content-type') ?? 'no Content-Type')} instead of ${EVENT_STREAM} (a proxy in between?)`,
        )
      }
      const heads: number[] = []
      let broken: VeloSyncError | undefined
      const parser = createParser({
        maxBufferSize: MAX_EVENT_CHARS,
        onEvent: (event) => {
          // Other event types are for newer clients: ignored, as SSE intends.
          if (event.event !== 'head') return
          const head = /^\d{1,16}$/.test(event.data) ? Number(event.data) : NaN
          if (Number.isSafeInteger(head)) heads.push(head)
          else
            broken ??= new VeloSyncError(
              'malformed_body',
              `the live channel announced head ${describe(event.data)}, not a seq`,
            )
        },
        onError: (error) => {
          // Unknown fields and bad retry values are skipped, as SSE intends; only a
          // runaway event ends the stream.
          if (error.type === 'max-buffer-size-exceeded')
            broken ??= new VeloSyncError(
              'malformed_body',
              `the live channel sent an event over ${MAX_EVENT_CHARS} characters`,
            )
        },
      })
      const decoder = new TextDecoder()
      try {
        for await (const chunk of response.body) {
          parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }))
          if (broken !== undefined) throw broken
          yield* heads.splice(0)
        }
      } catch (cause) {
        if (signal?.aborted === true) return
        if (cause === broken) throw cause
        throw new VeloSyncError(
          'unavailable',
          `the live channel from ${this.#base.origin} broke: ${(cause as Error).message}`,
          { cause },
        )
      }
    } finally {
      // Ends the request when the caller stops early (break, return, throw). The error
      // that destroying an unread body raises is this call's own doing, as in undici's
      // own dump(): an 'error' event without a listener would crash the process.
      response.body.on('error', () => undefined).destroy()
    }
  }

  /** Closes pooled connections, and with them a running live stream. */
  async close(): Promise<void> {
    await Promise.all([this.#agent.close(), this.#liveAgent.destroy()])
  }

  /**
   * POSTs a body; returns the verified, decompressed response body of a 2xx answer.
   *
   * @param digest - the SHA-256 of `payload` when the caller has it (see encodeAhead); used
   *   only if the body goes out uncompressed.
   */
  async #post(
    path: string,
    payload: Uint8Array,
    signal: AbortSignal | undefined,
    digest?: Uint8Array,
  ): Promise<Uint8Array> {
    const compressed = this.#compress && payload.length > COMPRESS_ABOVE_BYTES
    const body = compressed ? gzipSync(payload, { level: 1 }) : payload
    const known = compressed ? undefined : digest
    const headers: Record<string, string> = {
      ...this.#headers,
      'content-type': MEDIA_TYPES[this.#format],
      'content-digest': contentDigestHeader(
        body,
        (bytes) => known ?? nodeSha256(bytes),
      ),
      ...(compressed ? { 'content-encoding': 'gzip' } : {}),
    }
    const timeout = AbortSignal.timeout(this.#timeoutMs)
    const url = new URL(path, this.#base)
    const aborted =
      signal === undefined ? timeout : AbortSignal.any([signal, timeout])
    let response: RawResponse
    try {
      response =
        this.#fetch === undefined
          ? await this.#send(url, headers, body, aborted)
          : await fetchRaw(this.#fetch, url, headers, body, aborted)
    } catch (cause) {
      signal?.throwIfAborted()
      throw this.#unreachable(cause)
    }
    return this.#checkedBody(response)
  }

  #unreachable(cause: unknown): VeloSyncError {
    return new VeloSyncError(
      'unavailable',
      `cannot reach the VeloSync server at ${this.#base.origin}: ${(cause as Error).message}`,
      { cause },
    )
  }

  /** The verified, decompressed body of a 2xx answer; the server's error otherwise. */
  #checkedBody(response: RawResponse): Uint8Array {
    const raw = response.body
    if (response.status === 204) return raw
    verifyContentDigest(response.header('content-digest'), raw, nodeSha256)
    const bytes =
      response.header('content-encoding') === 'gzip' ? gunzipSync(raw) : raw
    if (response.status >= 200 && response.status < 300) return bytes
    throw this.#errorOf(response.status, response.header('content-type'), bytes)
  }

  async #send(
    url: URL,
    headers: Record<string, string>,
    body: Uint8Array,
    signal: AbortSignal,
  ): Promise<RawResponse> {
    return rawResponse(
      await httpRequest(url, {
        method: 'POST',
        headers,
        body,
        dispatcher: this.#agent,
        signal,
      }),
    )
  }

  /** Maps an error response back to a VeloSyncError with the server's code. */
  #errorOf(
    status: number,
    contentType: string | undefined,
    bytes: Uint8Array,
  ): VeloSyncError {
    const format: WireFormat =
      contentType?.startsWith(MEDIA_TYPES.msgpack) === true ? 'msgpack' : 'json'
    try {
      const { error } = decodeErrorBody(bytes, format)
      const failure = new VeloSyncError(
        errorCodeFromWire(error.code),
        `server answered ${status} ${error.code}: ${error.message}`,
      )
      return error.retryAfterMs === undefined
        ? failure
        : Object.assign(failure, { retryAfterMs: error.retryAfterMs })
    } catch {
      // Not a VeloSync error body: a proxy or load balancer answered.
      return new VeloSyncError(
        status >= 500 ? 'unavailable' : 'internal',
        `HTTP ${status} without a VeloSync error body (a proxy in between?)`,
      )
    }
  }
}

/** An undici response, read to the end. */
async function rawResponse(
  response: Awaited<ReturnType<typeof httpRequest>>,
): Promise<RawResponse> {
  return {
    status: response.statusCode,
    header: (name) => headerOf(response.headers, name),
    body: new Uint8Array(await response.body.arrayBuffer()),
  }
}

async function fetchRaw(
  fetch: (request: Request) => Promise<Response>,
  url: URL,
  headers: Record<string, string>,
  body: Uint8Array,
  signal: AbortSignal,
): Promise<RawResponse> {
  const response = await fetch(
    new Request(url, {
      method: 'POST',
      headers,
      body: body as Uint8Array<ArrayBuffer>,
      signal,
    }),
  )
  return {
    status: response.status,
    header: (name) => response.headers.get(name) ?? undefined,
    body: new Uint8Array(await response.arrayBuffer()),
  }
}

function headerOf(
  headers: Record<string, string | string[] | undefined>,
  name: string,
): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value.join(', ') : value
}

/**
 * The SHA-256 of a request body that starts with `ahead`'s prefix, from the prefix's hash
 * and the rest of the bytes (a few dozen: the other fields); `undefined` when the body
 * starts otherwise (another number of fields).
 *
 * @remarks
 * Hashing 1.6 MB takes ~1 ms, between an answer and the next request, while the server
 * waits; encodeAhead does it while the server works on the previous request.
 */
function digestAfterPrefix(
  body: Uint8Array,
  ahead: PushAhead,
): Uint8Array | undefined {
  const { prefix } = ahead
  if (prefix === undefined || body.length < prefix.length) return undefined
  // The field count, and `push` as the first key: only a body encodeMessage spliced
  // `ahead` into starts so (a request encoded whole puts `protocol` first).
  for (let i = 0; i < prefix.lead.length; i++)
    if (body[i] !== prefix.lead[i]) return undefined
  return prefix.hash.copy().update(body.subarray(prefix.length)).digest()
}
