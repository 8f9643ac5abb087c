/*
 * Server options and failure handling: open mode, garbage collection scheduling, and how
 * store failures and bugs reach the wire. Real HTTP on 127.0.0.1 over a SqliteServerStore
 * file, except where a broken store is simulated.
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  MEDIA_TYPES,
  PROTOCOL_VERSION,
  VeloSyncError,
  contentDigestHeader,
  decodeSyncResponse,
  encodeMessage,
  isVeloSyncError,
  type DocumentVersion,
  type ServerStore,
  type Sha256,
  type SyncRequest,
} from '@velosync/core'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  GC_INTERVAL_MS,
  createSyncServer,
  type SyncServerLogger,
} from '../src/index.js'

const sha256: Sha256 = (data) =>
  new Uint8Array(createHash('sha256').update(data).digest())
const EPOCH = 'cafe0001'

let dir: string
let store: SqliteServerStore

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'velosync-server-'))
  store = SqliteServerStore.open({ path: join(dir, 'server.db') })
})

afterEach(async () => {
  await store.close()
  rmSync(dir, { recursive: true, force: true })
})

function version(
  device: string,
  id: string,
  counter: number,
  deleted = false,
): DocumentVersion {
  const origin = `${device}.${EPOCH}`
  return {
    id,
    deleted,
    vector: deleted ? null : new Float32Array([1, counter]),
    metadataJson: deleted ? null : '{}',
    versionVector: { [origin]: counter },
    hlc: { wallMs: 1_700_000_000_000 + counter, counter: 0 },
    origin,
  }
}

function request(device: string, ops: DocumentVersion[], firstLsn = 1) {
  const message: SyncRequest = {
    protocol: PROTOCOL_VERSION,
    epoch: EPOCH,
    collections: [{ name: 'notes', dims: 2, metric: 'dot', dtype: 'float32' }],
    push: ops.map((v, i) => ({
      lsn: firstLsn + i,
      collection: 'notes',
      version: v,
    })),
    cursor: 0,
    pullLimit: 1000,
  }
  return encodeMessage(message, 'json')
}

function init(body: Uint8Array, headers: Record<string, string>): RequestInit {
  return {
    method: 'POST',
    headers: {
      'content-type': MEDIA_TYPES.json,
      'content-digest': contentDigestHeader(body, sha256),
      ...headers,
    },
    body: body as Uint8Array<ArrayBuffer>,
  }
}

function recordingLogger() {
  const entries: Array<{ level: string; obj: object; msg?: string }> = []
  const logger: SyncServerLogger = {
    info: (obj, msg) =>
      entries.push({
        level: 'info',
        obj,
        ...(msg === undefined ? {} : { msg }),
      }),
    warn: (obj, msg) =>
      entries.push({
        level: 'warn',
        obj,
        ...(msg === undefined ? {} : { msg }),
      }),
    error: (obj, msg) =>
      entries.push({
        level: 'error',
        obj,
        ...(msg === undefined ? {} : { msg }),
      }),
  }
  return { entries, logger }
}

describe('open mode', () => {
  it('takes the device from X-VeloSync-Device and still refuses a bad one', async () => {
    const server = await createSyncServer({
      store,
      auth: { mode: 'open' },
    }).listen({ port: 0 })
    try {
      const url = `http://127.0.0.1:${server.port}/v1/sync`
      const body = request('laptop', [version('laptop', 'a', 1)])
      const ok = await fetch(url, init(body, { 'x-velosync-device': 'laptop' }))
      expect(ok.status).toBe(200)
      const decoded = decodeSyncResponse(
        new Uint8Array(await ok.arrayBuffer()),
        'json',
      )
      expect(decoded.results).toEqual([])
      expect(decoded.appliedThroughLsn).toBe(1)

      const bad = await fetch(url, init(body, { 'x-velosync-device': '../x' }))
      expect(bad.status).toBe(401)
      const none = await fetch(url, init(body, {}))
      expect(none.status).toBe(401)
    } finally {
      await server.close()
    }
  })

  it('token mode ignores X-VeloSync-Device', async () => {
    const server = await createSyncServer({
      store,
      auth: { mode: 'token' },
    }).listen({ port: 0 })
    try {
      const body = request('laptop', [version('laptop', 'a', 1)])
      const response = await fetch(
        `http://127.0.0.1:${server.port}/v1/sync`,
        init(body, { 'x-velosync-device': 'laptop' }),
      )
      expect(response.status).toBe(401)
      expect(await store.head()).toBe(0)
    } finally {
      await server.close()
    }
  })
})

describe('garbage collection', () => {
  it(`runs after a push at most once per ${GC_INTERVAL_MS} ms`, async () => {
    let now = 1_000_000
    const { entries, logger } = recordingLogger()
    const server = await createSyncServer({
      store,
      auth: { mode: 'open' },
      tombstoneRetentionMs: 0,
      clock: () => now,
      logger,
    }).listen({ port: 0 })
    const url = `http://127.0.0.1:${server.port}/v1/sync`
    const headers = { 'x-velosync-device': 'laptop' }
    const push = async (ops: DocumentVersion[], firstLsn: number) => {
      const response = await fetch(
        url,
        init(request('laptop', ops, firstLsn), headers),
      )
      expect(response.status).toBe(200)
      await response.arrayBuffer()
    }
    try {
      await push([version('laptop', 'a', 1)], 1) // collection runs: nothing to collect
      await push([version('laptop', 'a', 2, true)], 2) // within the minute: no run
      now += GC_INTERVAL_MS
      await push([version('laptop', 'b', 3)], 3) // runs: collects the tombstone
    } finally {
      // close() waits for a collection still running in the background.
      await server.close()
    }
    const collected = entries.filter((e) => e.msg === 'collected tombstones')
    expect(collected).toHaveLength(1)
    expect(collected[0]?.obj).toMatchObject({ removedTombstones: 1 })
  })
})

describe('failures on the wire', () => {
  /** The real store with one method replaced. */
  function brokenStore(method: keyof ServerStore, error: Error): ServerStore {
    return new Proxy(store, {
      get(target, key, receiver) {
        if (key === method) {
          return () => Promise.reject(error)
        }
        const value: unknown = Reflect.get(target, key, receiver)
        return typeof value === 'function'
          ? (value as (...args: unknown[]) => unknown).bind(target)
          : value
      },
    })
  }

  it('a storage failure is 503 with retryAfterMs and Retry-After', async () => {
    const { entries, logger } = recordingLogger()
    const server = createSyncServer({
      store: brokenStore(
        'head',
        new VeloSyncError('storage_failure', 'disk I/O error'),
      ),
      auth: { mode: 'token' },
      logger,
    })
    const response = await server.fetch(new Request('http://local/v1/health'))
    expect(response.status).toBe(503)
    expect(response.headers.get('retry-after')).toBe('1')
    const body = (await response.json()) as {
      error: { code: string; retryAfterMs?: number }
    }
    expect(body.error.code).toBe('storage_failure')
    expect(body.error.retryAfterMs).toBeGreaterThan(0)
    expect(entries.some((e) => e.level === 'error')).toBe(true)
  })

  it('a bug is 500 internal, logged, and leaks nothing', async () => {
    const { entries, logger } = recordingLogger()
    const bug = new TypeError('cannot read /srv/secret/path of undefined')
    const server = createSyncServer({
      store: brokenStore('head', bug),
      auth: { mode: 'token' },
      logger,
    })
    const response = await server.fetch(new Request('http://local/v1/health'))
    expect(response.status).toBe(500)
    const text = await response.text()
    expect(JSON.parse(text)).toMatchObject({ error: { code: 'internal' } })
    expect(text).not.toContain('secret')
    expect(text).not.toContain('TypeError')
    expect(entries).toContainEqual(
      expect.objectContaining({
        level: 'error',
        obj: expect.objectContaining({ err: bug }) as unknown,
      }),
    )
  })

  it('rejects bad options', () => {
    const code = (run: () => unknown): unknown => {
      try {
        run()
        return undefined
      } catch (error) {
        return isVeloSyncError(error) ? error.code : error
      }
    }
    expect(
      code(() =>
        createSyncServer({
          store,
          auth: { mode: 'none' } as unknown as { mode: 'open' },
        }),
      ),
    ).toBe('invalid_argument')
    expect(
      code(() =>
        createSyncServer({ store, auth: { mode: 'token' }, maxBodyBytes: 0 }),
      ),
    ).toBe('invalid_argument')
  })
})
