/*
 * The HTTP protocol of docs/PROTOCOL.md against a real server on 127.0.0.1 over a real
 * SqliteServerStore file, driven with plain fetch. Every rejected request must leave the
 * store exactly as it was (DESIGN 7).
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import {
  MEDIA_TYPES,
  PROTOCOL_VERSION,
  contentDigestHeader,
  decodeConflictsResponse,
  decodeSyncResponse,
  encodeMessage,
  verifyContentDigest,
  type CollectionSchema,
  type DocumentVersion,
  type Sha256,
  type SyncRequest,
  type SyncResponse,
  type WireFormat,
} from '@velosync/core'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import { pack, unpack } from 'msgpackr'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  PULL_PAGE_BODY_BYTES,
  PULL_PAGE_VECTOR_BYTES,
  createSyncServer,
  createToken,
  hashToken,
} from '../src/index.js'

const sha256: Sha256 = (data) =>
  new Uint8Array(createHash('sha256').update(data).digest())

const DIMS = 4
const MAX_BODY = 256 * 1024
const NOTES: CollectionSchema = {
  name: 'notes',
  dims: DIMS,
  metric: 'cosine',
  dtype: 'float32',
}
const EPOCH_A = 'aaaa0001'
const EPOCH_B = 'bbbb0001'

let dir: string
let store: SqliteServerStore
let server: { port: number; close(): Promise<void> }
let base: string
let tokenA: string
let tokenB: string

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'velosync-http-'))
  store = SqliteServerStore.open({ path: join(dir, 'server.db') })
  tokenA = createToken()
  tokenB = createToken()
  await store.createDeviceToken('alpha', hashToken(tokenA))
  await store.createDeviceToken('beta', hashToken(tokenB))
  server = await createSyncServer({
    store,
    auth: { mode: 'token' },
    maxBodyBytes: MAX_BODY,
  }).listen({ port: 0 })
  base = `http://127.0.0.1:${server.port}`
})

afterEach(async () => {
  await server.close()
  await store.close()
  rmSync(dir, { recursive: true, force: true })
})

function version(
  id: string,
  counter: number,
  overrides: Partial<DocumentVersion> = {},
): DocumentVersion {
  const origin = `alpha.${EPOCH_A}`
  return {
    id,
    deleted: false,
    vector: new Float32Array([1, counter, 0.5, -2]),
    metadataJson: `{"n":${counter}}`,
    versionVector: { [origin]: counter },
    hlc: { wallMs: 1_700_000_000_000 + counter, counter: 0 },
    origin,
    ...overrides,
  }
}

function syncRequest(overrides: Partial<SyncRequest> = {}): SyncRequest {
  return {
    protocol: PROTOCOL_VERSION,
    epoch: EPOCH_A,
    collections: [NOTES],
    push: [
      { lsn: 1, collection: 'notes', version: version('n1', 1) },
      { lsn: 2, collection: 'notes', version: version('n2', 2) },
    ],
    cursor: 0,
    pullLimit: 1000,
    ...overrides,
  }
}

interface Reply {
  status: number
  headers: Headers
  body: Uint8Array
}

interface PostOptions {
  format?: WireFormat
  token?: string | null
  accept?: string
  digest?: string | null
  contentType?: string
  contentEncoding?: string
}

/** POSTs raw bytes; signs them with a correct digest unless told otherwise. */
async function post(
  path: string,
  body: Uint8Array,
  options: PostOptions = {},
): Promise<Reply> {
  const format = options.format ?? 'json'
  const headers: Record<string, string> = {
    'content-type': options.contentType ?? MEDIA_TYPES[format],
    // fetch would gunzip transparently and hide the bytes the digest covers.
    'accept-encoding': 'identity',
  }
  const token = options.token === undefined ? tokenA : options.token
  if (token !== null) headers['authorization'] = `Bearer ${token}`
  const digest =
    options.digest === undefined
      ? contentDigestHeader(body, sha256)
      : options.digest
  if (digest !== null) headers['content-digest'] = digest
  if (options.accept !== undefined) headers['accept'] = options.accept
  if (options.contentEncoding !== undefined) {
    headers['content-encoding'] = options.contentEncoding
  }
  const response = await fetch(`${base}${path}`, {
    method: 'POST',
    headers,
    body: body as Uint8Array<ArrayBuffer>,
  })
  return reply(response)
}

async function get(
  path: string,
  token: string | null = tokenA,
  accept?: string,
): Promise<Reply> {
  const headers: Record<string, string> = { 'accept-encoding': 'identity' }
  if (token !== null) headers['authorization'] = `Bearer ${token}`
  if (accept !== undefined) headers['accept'] = accept
  return reply(await fetch(`${base}${path}`, { headers }))
}

/**
 * A GET with the Host header as given (none for `undefined`), which fetch cannot send; its
 * request target in absolute form (`http://…/path`) with `absolute`.
 */
function getWithHost(
  path: string,
  host: string | undefined,
  absolute = false,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      `${base}${path}`,
      {
        setHost: false,
        headers: host === undefined ? {} : { host },
        ...(absolute ? { path: `${base}${path}` } : {}),
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('error', reject)
        response.on('end', () => {
          const headers = new Headers()
          for (const [name, value] of Object.entries(response.headers))
            if (typeof value === 'string') headers.set(name, value)
          const body = new Uint8Array(Buffer.concat(chunks))
          try {
            verifyContentDigest(headers.get('content-digest'), body, sha256)
            resolve({ status: response.statusCode ?? 0, headers, body })
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)))
          }
        })
      },
    )
    request.on('error', reject)
    request.end()
  })
}

/** Reads a response and checks its Content-Digest, as every client must. */
async function reply(response: Response): Promise<Reply> {
  const body = new Uint8Array(await response.arrayBuffer())
  if (response.status !== 204) {
    verifyContentDigest(response.headers.get('content-digest'), body, sha256)
  }
  return { status: response.status, headers: response.headers, body }
}

function json(reply: Reply): unknown {
  return JSON.parse(new TextDecoder().decode(reply.body))
}

function errorCode(reply: Reply): unknown {
  const data =
    reply.headers.get('content-type') === MEDIA_TYPES.msgpack
      ? (unpack(reply.body) as unknown)
      : json(reply)
  return (data as { error?: { code?: unknown } }).error?.code
}

async function sync(
  request: SyncRequest,
  options: PostOptions = {},
): Promise<SyncResponse> {
  const format = options.format ?? 'json'
  const response = await post(
    '/v1/sync',
    encodeMessage(request, format),
    options,
  )
  expect(response.status, new TextDecoder().decode(response.body)).toBe(200)
  const responseFormat =
    response.headers.get('content-type') === MEDIA_TYPES.msgpack
      ? 'msgpack'
      : 'json'
  return decodeSyncResponse(response.body, responseFormat)
}

/** Everything a bad request must leave untouched. */
async function snapshot() {
  const collections = await store.listCollections()
  const digests: Record<string, string> = {}
  for (const collection of collections) {
    digests[collection.name] = await store.digest(collection.name)
  }
  return {
    head: await store.head(),
    collections,
    digests,
    conflicts: await store.conflicts({ limit: 100 }),
  }
}

/** A JSON wire request whose first op or top-level fields can be altered. */
function wireJson(
  op: Record<string, unknown> = {},
  top: Record<string, unknown> = {},
) {
  return {
    protocol: PROTOCOL_VERSION,
    epoch: EPOCH_A,
    collections: [NOTES],
    push: [
      {
        lsn: 3,
        collection: 'notes',
        id: 'bad',
        deleted: false,
        vector: Buffer.from(new Float32Array([1, 2, 3, 4]).buffer).toString(
          'base64',
        ),
        metadata: '{}',
        versionVector: { [`alpha.${EPOCH_A}`]: 3 },
        hlc: { wallMs: 1, counter: 0 },
        ...op,
      },
    ],
    cursor: 0,
    ...top,
  }
}

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text)
const jsonBytes = (data: unknown): Uint8Array => utf8(JSON.stringify(data))
const floatBytes = (...values: number[]): Uint8Array =>
  new Uint8Array(new Float32Array(values).buffer)

describe('POST /v1/sync happy paths', () => {
  it.each<WireFormat>(['json', 'msgpack'])(
    'pushes and pulls in %s; the pusher gets no echoes (DESIGN 6)',
    async (format) => {
      const pushed = await sync(
        syncRequest({
          push: [
            { lsn: 1, collection: 'notes', version: version('n1', 1) },
            { lsn: 2, collection: 'notes', version: version('n2', 2) },
            {
              lsn: 3,
              collection: 'notes',
              version: version('n3', 3, {
                deleted: true,
                vector: null,
                metadataJson: null,
              }),
            },
          ],
        }),
        { format },
      )
      // Protocol 2: applied ops go without a result; appliedThroughLsn covers them.
      expect(pushed.results).toEqual([])
      expect(pushed.appliedThroughLsn).toBe(3)
      expect(pushed.changes).toEqual([])
      expect(pushed.skippedEchoes).toBe(3)
      expect(pushed.cursor).toBe(3)
      expect(pushed.head).toBe(3)

      const pulled = await sync(
        syncRequest({ epoch: EPOCH_B, collections: [], push: [] }),
        { format, token: tokenB },
      )
      expect(pulled.changes.map((c) => [c.seq, c.version.id])).toEqual([
        [1, 'n1'],
        [2, 'n2'],
        [3, 'n3'],
      ])
      expect(pulled.collections).toEqual([NOTES])
      expect(pulled.changes[0]?.version).toEqual(version('n1', 1))
      expect(pulled.changes[2]?.version.deleted).toBe(true)
      expect(pulled.cursor).toBe(3)
      expect(pulled.hasMore).toBe(false)

      const digest = await get('/v1/collections/notes/digest')
      expect(digest.status).toBe(200)
      expect(json(digest)).toEqual({
        collection: 'notes',
        digest: await store.digest('notes'),
        head: 3,
      })
    },
  )

  it('fullResync returns the device its own versions too', async () => {
    const first = await sync(syncRequest())
    expect(first.skippedEchoes).toBe(2)
    const rebuilt = await sync(
      syncRequest({ push: [], cursor: 0, fullResync: true }),
    )
    expect(rebuilt.changes.map((c) => c.version.id)).toEqual(['n1', 'n2'])
    expect(rebuilt.skippedEchoes).toBe(0)
    expect(rebuilt.collections).toEqual([NOTES])
  })

  it('bounds a pull page by vector bytes: a wide collection gets short pages', async () => {
    const wide: CollectionSchema = {
      name: 'wide',
      dims: 65_536,
      metric: 'l2',
      dtype: 'float64',
    }
    await store.ensureCollection(wide)
    const origin = `beta.${EPOCH_B}`
    const count = Math.floor(PULL_PAGE_VECTOR_BYTES / (wide.dims * 8)) + 3
    for (let i = 1; i <= count; i++) {
      await store.push({ deviceId: 'beta', epoch: EPOCH_B }, [
        {
          lsn: i,
          collection: 'wide',
          version: {
            ...version(`w${i}`, i),
            vector: new Float64Array(wide.dims).fill(i),
            versionVector: { [origin]: 1 },
            origin,
          },
        },
      ])
    }
    const first = await sync(syncRequest({ push: [], pullLimit: 1000 }))
    expect(first.changes).toHaveLength(count - 3)
    expect(first.hasMore).toBe(true)
    const rest = await sync(syncRequest({ push: [], cursor: first.cursor }))
    expect(rest.changes.map((c) => c.version.id)).toEqual(
      [count - 2, count - 1, count].map((i) => `w${i}`),
    )
    expect(rest.hasMore).toBe(false)
  })

  it('cuts a pull page at its document bytes: big metadata gets short pages', async () => {
    const text = 'm'.repeat(65_000)
    const perVersion = 5 + text.length + 10 + 16 // id, metadata, vector
    const count = Math.floor(PULL_PAGE_BODY_BYTES / perVersion) + 40
    for (let first = 1; first <= count; first += 100) {
      const ops = []
      for (let lsn = first; lsn < Math.min(first + 100, count + 1); lsn++) {
        ops.push({
          lsn,
          collection: 'notes',
          version: version(`m${lsn}`, lsn, {
            metadataJson: `{"t":"${text}"}`,
            versionVector: { [`alpha.${EPOCH_A}`]: 1 },
          }),
        })
      }
      await store.ensureCollection(NOTES)
      await store.push({ deviceId: 'alpha', epoch: EPOCH_A }, ops)
    }
    const asB = { format: 'msgpack' as const, token: tokenB }
    const request = { epoch: EPOCH_B, push: [], pullLimit: 10_000 }
    const first = await sync(syncRequest(request), asB)
    expect(first.changes.length).toBeLessThan(count)
    expect(first.changes.length).toBeGreaterThan(count - 100)
    expect(first.hasMore).toBe(true)
    const rest = await sync(
      syncRequest({ ...request, cursor: first.cursor }),
      asB,
    )
    expect(rest.hasMore).toBe(false)
    expect([...first.changes, ...rest.changes].map((c) => c.seq)).toEqual(
      Array.from({ length: count }, (_, i) => i + 1),
    )
  })

  it('answers in the encoding Accept names', async () => {
    const body = encodeMessage(syncRequest(), 'json')
    const response = await post('/v1/sync', body, {
      accept: MEDIA_TYPES.msgpack,
    })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe(MEDIA_TYPES.msgpack)
    expect(decodeSyncResponse(response.body, 'msgpack').head).toBe(2)
  })

  it('DESIGN 8: origin comes from the token, never from the body', async () => {
    // Beta's token, a body that claims to be alpha's replica: the version is beta's.
    const data = wireJson(
      {
        origin: `alpha.${EPOCH_A}`,
        lsn: 1,
        versionVector: { [`beta.${EPOCH_A}`]: 1 },
      },
      { epoch: EPOCH_A },
    )
    const response = await post('/v1/sync', jsonBytes(data), { token: tokenB })
    expect(response.status, new TextDecoder().decode(response.body)).toBe(200)
    const pulled = await sync(syncRequest({ push: [], collections: [] }))
    expect(pulled.changes[0]?.version.origin).toBe(`beta.${EPOCH_A}`)
  })

  it('DESIGN 2: a replayed request body is all duplicate and changes nothing', async () => {
    const body = encodeMessage(syncRequest(), 'msgpack')
    const first = await post('/v1/sync', body, { format: 'msgpack' })
    expect(first.status).toBe(200)
    const before = await snapshot()
    const replay = await post('/v1/sync', body, { format: 'msgpack' })
    expect(replay.status).toBe(200)
    const decoded = decodeSyncResponse(replay.body, 'msgpack')
    expect(decoded.results.map((r) => r.outcome)).toEqual([
      'duplicate',
      'duplicate',
    ])
    expect(decoded.appliedThroughLsn).toBe(2)
    expect(await snapshot()).toEqual(before)
  })

  it('accepts a gzip request body (digest over the gzip bytes)', async () => {
    const gz = gzipSync(encodeMessage(syncRequest(), 'json'))
    const response = await post('/v1/sync', gz, { contentEncoding: 'gzip' })
    expect(response.status).toBe(200)
    expect(await store.head()).toBe(2)
  })

  it('gzips a response above 1 KiB when Accept-Encoding allows it', async () => {
    const push = Array.from({ length: 40 }, (_, i) => ({
      lsn: i + 1,
      collection: 'notes',
      version: version(`d${i}`, i + 1),
    }))
    await sync(syncRequest({ push }))
    const body = encodeMessage(
      syncRequest({ epoch: EPOCH_B, collections: [], push: [] }),
      'json',
    )
    // node:http, not fetch: fetch gunzips on its own and hides the coded bytes.
    const raw = await new Promise<{
      headers: Record<string, string | string[] | undefined>
      body: Buffer
    }>((resolve, reject) => {
      const req = httpRequest(
        `${base}/v1/sync`,
        {
          method: 'POST',
          headers: {
            'content-type': MEDIA_TYPES.json,
            'accept-encoding': 'gzip',
            authorization: `Bearer ${tokenB}`,
            'content-digest': contentDigestHeader(body, sha256),
          },
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('end', () =>
            resolve({ headers: res.headers, body: Buffer.concat(chunks) }),
          )
          res.on('error', reject)
        },
      )
      req.on('error', reject)
      req.end(body)
    })
    expect(raw.headers['content-encoding']).toBe('gzip')
    verifyContentDigest(
      raw.headers['content-digest'] as string,
      raw.body,
      sha256,
    )
    const decoded = decodeSyncResponse(gunzipSync(raw.body), 'json')
    expect(decoded.changes).toHaveLength(40)
  })

  it('lists conflicts with winner and loser (DESIGN 4)', async () => {
    await sync(syncRequest({ push: [syncRequest().push[0]!] }))
    const concurrent = version('n1', 1, {
      origin: `beta.${EPOCH_B}`,
      versionVector: { [`beta.${EPOCH_B}`]: 1 },
      hlc: { wallMs: 1_800_000_000_000, counter: 0 },
      vector: new Float32Array([0, 1, 0, 0]),
    })
    const response = await sync(
      syncRequest({
        epoch: EPOCH_B,
        push: [{ lsn: 1, collection: 'notes', version: concurrent }],
      }),
      { token: tokenB },
    )
    expect(response.results[0]?.outcome).toBe('conflict_won')
    expect(response.results[0]?.version?.versionVector).toEqual({
      [`alpha.${EPOCH_A}`]: 1,
      [`beta.${EPOCH_B}`]: 1,
    })
    for (const format of ['json', 'msgpack'] as const) {
      const listed = await get(
        '/v1/conflicts?collection=notes&limit=10',
        tokenA,
        MEDIA_TYPES[format],
      )
      expect(listed.status).toBe(200)
      const { conflicts } = decodeConflictsResponse(listed.body, format)
      expect(conflicts).toHaveLength(1)
      expect(conflicts[0]?.winner.origin).toBe(`beta.${EPOCH_B}`)
      expect(conflicts[0]?.loser.origin).toBe(`alpha.${EPOCH_A}`)
    }
  })

  it('records acks with 204 and serves health without a token', async () => {
    await sync(syncRequest())
    const ack = await post(
      '/v1/ack',
      jsonBytes({ protocol: PROTOCOL_VERSION, epoch: EPOCH_A, cursor: 2 }),
    )
    expect(ack.status).toBe(204)
    const badAck = await post(
      '/v1/ack',
      jsonBytes({ protocol: PROTOCOL_VERSION, epoch: EPOCH_A, cursor: 99 }),
    )
    expect(badAck.status).toBe(400)
    expect(errorCode(badAck)).toBe('invalid_argument')
    const health = await get('/v1/health', null)
    expect(health.status).toBe(200)
    expect(json(health)).toEqual({
      status: 'ok',
      protocol: PROTOCOL_VERSION,
      head: 2,
    })
  })
})

describe('bad input: right status and code, store unchanged (DESIGN 7)', () => {
  beforeEach(async () => {
    // Some state to protect: two documents and a tombstone-free digest.
    await sync(syncRequest())
  })

  const nanBytes = floatBytes(1, Number.NaN, 0, 0)
  const cases: Array<[string, () => Promise<Reply>, number, string]> = [
    [
      'a wrong digest',
      () =>
        post('/v1/sync', jsonBytes(wireJson()), {
          digest: contentDigestHeader(utf8('something else'), sha256),
        }),
      400,
      'digest_mismatch',
    ],
    [
      'a missing digest',
      () => post('/v1/sync', jsonBytes(wireJson()), { digest: null }),
      400,
      'digest_mismatch',
    ],
    [
      'wrong dims',
      () =>
        post(
          '/v1/sync',
          jsonBytes(
            wireJson({
              vector: Buffer.from(floatBytes(1, 2, 3)).toString('base64'),
            }),
          ),
        ),
      400,
      'invalid_argument',
    ],
    [
      'NaN in a JSON vector',
      () =>
        post(
          '/v1/sync',
          jsonBytes(
            wireJson({ vector: Buffer.from(nanBytes).toString('base64') }),
          ),
        ),
      400,
      'invalid_argument',
    ],
    [
      'Infinity in a MessagePack vector',
      () =>
        post(
          '/v1/sync',
          pack(
            wireJson({
              vector: floatBytes(1, Number.POSITIVE_INFINITY, 0, 0),
            }),
          ),
          { format: 'msgpack' },
        ),
      400,
      'invalid_argument',
    ],
    [
      'malformed JSON',
      () => post('/v1/sync', utf8('{"protocol":1,')),
      400,
      'malformed_body',
    ],
    [
      'malformed MessagePack',
      () =>
        post('/v1/sync', new Uint8Array([0xc1, 0xde, 0xad]), {
          format: 'msgpack',
        }),
      400,
      'malformed_body',
    ],
    [
      'broken gzip',
      () =>
        post('/v1/sync', utf8('not gzip at all'), { contentEncoding: 'gzip' }),
      400,
      'malformed_body',
    ],
    [
      // The digest is checked before anything is parsed or un-gzipped.
      'malformed JSON under a wrong digest',
      () =>
        post('/v1/sync', utf8('{"protocol":1,'), {
          digest: contentDigestHeader(utf8('something else'), sha256),
        }),
      400,
      'digest_mismatch',
    ],
    [
      'broken gzip under a wrong digest',
      () =>
        post('/v1/sync', utf8('not gzip at all'), {
          contentEncoding: 'gzip',
          digest: contentDigestHeader(utf8('something else'), sha256),
        }),
      400,
      'digest_mismatch',
    ],
    [
      'an oversize body',
      () => post('/v1/sync', new Uint8Array(MAX_BODY + 1).fill(0x20)),
      413,
      'payload_too_large',
    ],
    [
      'a gzip body that inflates past the limit',
      () =>
        post('/v1/sync', gzipSync(new Uint8Array(MAX_BODY * 4).fill(0x20)), {
          contentEncoding: 'gzip',
        }),
      413,
      'payload_too_large',
    ],
    [
      'an undeclared collection',
      () => post('/v1/sync', jsonBytes(wireJson({ collection: 'other' }))),
      400,
      'invalid_argument',
    ],
    [
      'a declared collection with other dims',
      () =>
        post(
          '/v1/sync',
          jsonBytes(
            wireJson(
              { vector: Buffer.from(floatBytes(1, 2)).toString('base64') },
              { collections: [{ ...NOTES, dims: 2 }] },
            ),
          ),
        ),
      409,
      'schema_mismatch',
    ],
    [
      'a new collection plus a mismatching one (neither is created)',
      () =>
        post(
          '/v1/sync',
          jsonBytes(
            wireJson(
              {},
              {
                collections: [
                  { name: 'fresh', dims: 4, metric: 'dot', dtype: 'float32' },
                  { ...NOTES, metric: 'l2' },
                ],
              },
            ),
          ),
        ),
      409,
      'schema_mismatch',
    ],
    [
      'a missing token',
      () => post('/v1/sync', jsonBytes(wireJson()), { token: null }),
      401,
      'unauthorized',
    ],
    [
      'an invalid token',
      () => post('/v1/sync', jsonBytes(wireJson()), { token: createToken() }),
      401,
      'unauthorized',
    ],
    [
      'another protocol version',
      () =>
        post(
          '/v1/sync',
          jsonBytes(wireJson({}, { protocol: PROTOCOL_VERSION + 1 })),
        ),
      400,
      'protocol_mismatch',
    ],
    [
      'an unsupported media type',
      () =>
        post('/v1/sync', jsonBytes(wireJson()), { contentType: 'text/plain' }),
      415,
      'unsupported_media_type',
    ],
    [
      'an unsupported content coding',
      () => post('/v1/sync', jsonBytes(wireJson()), { contentEncoding: 'br' }),
      415,
      'unsupported_media_type',
    ],
    [
      'a reused LSN with other content',
      () =>
        post(
          '/v1/sync',
          jsonBytes(wireJson({ lsn: 1, id: 'n1', metadata: '{"n":99}' })),
        ),
      409,
      'lsn_reused',
    ],
    [
      'the digest of an unknown collection',
      () => get('/v1/collections/nope/digest'),
      404,
      'not_found',
    ],
    [
      'conflicts of an unknown collection',
      () => get('/v1/conflicts?collection=nope'),
      404,
      'not_found',
    ],
    [
      'a bad conflicts limit',
      () => get('/v1/conflicts?limit=0'),
      400,
      'invalid_argument',
    ],
    [
      'a conflicts limit given twice',
      () => get('/v1/conflicts?limit=5&limit=abc'),
      400,
      'invalid_argument',
    ],
    ['an unknown route', () => get('/v1/nothing'), 404, 'not_found'],
    [
      'a malformed Host header',
      () => getWithHost('/v1/health', 'bad host name'),
      400,
      'invalid_argument',
    ],
    [
      'no Host header',
      () => getWithHost('/v1/health', undefined),
      400,
      'invalid_argument',
    ],
    [
      'no Host header, with an absolute request target',
      () => getWithHost('/v1/health', undefined, true),
      400,
      'invalid_argument',
    ],
  ]

  it.each(cases)('%s', async (_, send, status, code) => {
    const before = await snapshot()
    const response = await send()
    expect(response.status, new TextDecoder().decode(response.body)).toBe(
      status,
    )
    expect(errorCode(response)).toBe(code)
    expect(await snapshot()).toEqual(before)
  })

  it('answers errors in MessagePack when that was negotiated', async () => {
    const response = await post(
      '/v1/sync',
      pack(wireJson({ vector: nanBytes })),
      { format: 'msgpack' },
    )
    expect(response.status).toBe(400)
    expect(response.headers.get('content-type')).toBe(MEDIA_TYPES.msgpack)
  })

  it('a cursor behind the tombstone horizon gets resync_required before its push is stored', async () => {
    const tombstone = version('n1', 5, {
      deleted: true,
      vector: null,
      metadataJson: null,
    })
    await sync(
      syncRequest({
        push: [{ lsn: 3, collection: 'notes', version: tombstone }],
        cursor: 2,
      }),
    )
    await sync(
      syncRequest({
        push: [{ lsn: 4, collection: 'notes', version: version('n4', 6) }],
        cursor: 3,
      }),
    )
    await store.collectGarbage({ nowMs: Date.now() + 1000, retentionMs: 0 })
    const before = await snapshot()
    const response = await post(
      '/v1/sync',
      encodeMessage(
        syncRequest({
          epoch: EPOCH_B,
          push: [
            {
              lsn: 1,
              collection: 'notes',
              version: version('b1', 1, {
                origin: `beta.${EPOCH_B}`,
                versionVector: { [`beta.${EPOCH_B}`]: 1 },
              }),
            },
          ],
          cursor: 1,
        }),
        'json',
      ),
      { token: tokenB },
    )
    expect(response.status).toBe(410)
    expect(errorCode(response)).toBe('resync_required')
    expect(await snapshot()).toEqual(before)
  })
})
