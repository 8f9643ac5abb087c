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
  errorCodeFromWire,
  invalidArgument,
  verifyContentDigest,
  type AckRequest,
  type SyncRequest,
  type SyncResponse,
  type WireFormat,
} from '@velosync/core'
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
   * Sends each request through this function instead of the network, e.g. a sync server's
   * in-process `fetch` handler. Encoding, compression and digests are unchanged; the
   * response body must be the bytes as sent (not decompressed). Default: HTTP via undici.
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
  readonly #fetch: ((request: Request) => Promise<Response>) | undefined
  readonly #agent = new Agent({ keepAliveTimeout: 30_000 })

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
    const body = await this.#post(
      '/v1/sync',
      encodeMessage(request, this.#format),
      options.signal,
    )
    return decodeSyncResponse(body, this.#format)
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

  /** Closes pooled connections. */
  async close(): Promise<void> {
    await this.#agent.close()
  }

  /** POSTs a body; returns the verified, decompressed response body of a 2xx answer. */
  async #post(
    path: string,
    payload: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<Uint8Array> {
    const compressed = this.#compress && payload.length > COMPRESS_ABOVE_BYTES
    const body = compressed ? gzipSync(payload, { level: 1 }) : payload
    const headers: Record<string, string> = {
      ...this.#headers,
      'content-type': MEDIA_TYPES[this.#format],
      'content-digest': contentDigestHeader(body, nodeSha256),
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
      throw new VeloSyncError(
        'unavailable',
        `cannot reach the VeloSync server at ${this.#base.origin}: ${(cause as Error).message}`,
        { cause },
      )
    }
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
    const response = await httpRequest(url, {
      method: 'POST',
      headers,
      body,
      dispatcher: this.#agent,
      signal,
    })
    return {
      status: response.statusCode,
      header: (name) => headerOf(response.headers, name),
      body: new Uint8Array(await response.body.arrayBuffer()),
    }
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
