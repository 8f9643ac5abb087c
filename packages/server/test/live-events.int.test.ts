/*
 * GET /v1/events (docs/PROTOCOL.md, "Live changes") on a real server on 127.0.0.1 over a
 * real SqliteServerStore file, read as raw server-sent-event text with plain fetch. Pushes
 * come from real device stores through the real sync client.
 */
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { HttpTransport, LocalStore, SyncClient } from '@velosync/client'
import { verifyContentDigest, type HeadChange } from '@velosync/core'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  InProcessChangeSignal,
  createSyncServer,
  createToken,
  hashToken,
  type SyncServerOptions,
} from '../src/index.js'

let dir: string
let store: SqliteServerStore
let signal: InProcessChangeSignal
let listening: { port: number; close(): Promise<void> } | undefined
let base: string
const tokens = new Map<string, string>()
const cleanup: Array<() => Promise<void> | void> = []

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'velosync-live-'))
  store = SqliteServerStore.open({ path: join(dir, 'server.db') })
  for (const name of ['alpha', 'beta']) {
    const token = createToken()
    await store.createDeviceToken(name, hashToken(token))
    tokens.set(name, token)
  }
  signal = new InProcessChangeSignal()
})

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step()
  await listening?.close()
  listening = undefined
  await store.close()
  rmSync(dir, { recursive: true, force: true })
})

async function start(options: Partial<SyncServerOptions> = {}): Promise<void> {
  listening = await createSyncServer({
    store,
    auth: { mode: 'token' },
    changeSignal: signal,
    ...options,
  }).listen({ port: 0 })
  base = `http://127.0.0.1:${listening.port}`
}

/** An open event stream, its text so far, and a way to wait for more. */
interface Stream {
  readonly response: Response
  text(): string
  /** Head events received so far, in order. */
  heads(): number[]
  /** Resolves once the text matches (or rejects after timeoutMs). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>
  cancel(): Promise<void>
}

async function openStream(device = 'alpha'): Promise<Stream> {
  const response = await fetch(`${base}/v1/events`, {
    headers: {
      authorization: `Bearer ${tokens.get(device)}`,
      accept: 'text/event-stream',
    },
  })
  expect(response.status).toBe(200)
  const reader = (response.body as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  let text = ''
  const waiters = new Set<() => void>()
  const ended = (async () => {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      text += decoder.decode(value, { stream: true })
      for (const wake of [...waiters]) wake()
    }
  })()
  const stream: Stream = {
    response,
    text: () => text,
    heads: () =>
      [...text.matchAll(/^event: head\ndata: (\d+)\n\n/gm)].map((match) =>
        Number(match[1]),
      ),
    waitFor: (pattern, timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (!pattern.test(text)) return
          clearTimeout(timer)
          waiters.delete(check)
          resolve()
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`no ${pattern} in ${JSON.stringify(text)}`))
        }, timeoutMs)
        waiters.add(check)
        check()
      }),
    ended,
    cancel: async () => {
      await reader.cancel()
      await ended.catch(() => undefined)
    },
  }
  cleanup.push(() => stream.cancel())
  return stream
}

/** A device store with a sync client over HTTP. */
function device(name: string): { store: LocalStore; sync: SyncClient } {
  const local = LocalStore.open({
    path: join(dir, `${name}.db`),
    deviceId: name,
  })
  local.createCollection({ name: 'notes', dims: 3, metric: 'cosine' })
  const transport = new HttpTransport({ url: base, token: tokens.get(name)! })
  cleanup.push(async () => {
    await transport.close()
    local.close()
  })
  return { store: local, sync: new SyncClient(local, { transport }) }
}

/** Resolves when the signal has `count` subscribers (streams register asynchronously). */
async function subscribers(count: number): Promise<void> {
  const deadline = Date.now() + 5000
  while (signal.listenerCount !== count) {
    if (Date.now() > deadline) {
      throw new Error(`${signal.listenerCount} subscribers, expected ${count}`)
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
}

describe('GET /v1/events', () => {
  it('refuses a missing or unknown token with 401 unauthorized, and subscribes nothing', async () => {
    await start()
    for (const authorization of [undefined, 'Bearer not-a-token']) {
      const response = await fetch(`${base}/v1/events`, {
        headers: authorization === undefined ? {} : { authorization },
      })
      expect(response.status).toBe(401)
      expect(response.headers.get('content-type')).toBe('application/json')
      const body = new Uint8Array(await response.arrayBuffer())
      verifyContentDigest(response.headers.get('content-digest'), body, (b) =>
        createHash('sha256').update(b).digest(),
      )
      const parsed = JSON.parse(new TextDecoder().decode(body)) as {
        error: { code: string }
      }
      expect(parsed.error.code).toBe('unauthorized')
    }
    expect(signal.listenerCount).toBe(0)
  })

  it('opens with the current head, then announces other devices’ pushes but not the listener’s own', async () => {
    await start()
    const alpha = device('alpha')
    const beta = device('beta')
    alpha.store.put('notes', { id: 'a1', vector: [1, 0, 0] })
    await alpha.sync.sync()

    const stream = await openStream('alpha')
    expect(stream.response.headers.get('content-type')).toMatch(
      /^text\/event-stream/,
    )
    expect(stream.response.headers.get('cache-control')).toBe('no-cache')
    await stream.waitFor(/data: 1\n\n/)
    expect(stream.heads()).toEqual([1])

    // alpha's own push (head 2) is not announced to alpha; beta's (head 3) is.
    alpha.store.put('notes', { id: 'a2', vector: [0, 1, 0] })
    await alpha.sync.sync()
    beta.store.put('notes', { id: 'b1', vector: [0, 0, 1] })
    await beta.sync.sync()
    await stream.waitFor(/data: 3\n\n/)
    expect(stream.heads()).toEqual([1, 3])
  })

  it('announces only pushes that stored something', async () => {
    await start()
    const seen: HeadChange[] = []
    cleanup.push(signal.subscribe((change) => seen.push(change)))
    const alpha = device('alpha')
    await alpha.sync.sync() // nothing to push
    alpha.store.put('notes', { id: 'a1', vector: [1, 0, 0] })
    await alpha.sync.sync()
    await alpha.sync.sync() // nothing new
    expect(seen).toEqual([{ head: 1, deviceId: 'alpha' }])
  })

  it('coalesces a burst into one event with the newest head', async () => {
    await start({ liveMinIntervalMs: 1500 })
    const stream = await openStream('alpha')
    await stream.waitFor(/data: 0\n\n/)
    await subscribers(1)
    // The first change after a quiet spell goes out at once (well within the interval)…
    await signal.publish({ head: 1, deviceId: 'beta' })
    await stream.waitFor(/data: 1\n\n/, 1000)
    // …the rest of the burst waits for the interval and goes out as one event.
    for (const head of [2, 3, 4, 5]) {
      await signal.publish({ head, deviceId: 'beta' })
    }
    await signal.publish({ head: 4 }) // late and lower: never sent
    await stream.waitFor(/data: 5\n\n/)
    expect(stream.heads()).toEqual([0, 1, 5])
  })

  it('sends heartbeat comments while nothing happens', async () => {
    await start({ liveHeartbeatMs: 50 })
    const stream = await openStream('alpha')
    await stream.waitFor(/(^|\n): keep-alive\n\n[^]*: keep-alive\n\n/)
    expect(stream.heads()).toEqual([0])
  })

  it("HEAD answers the stream's headers and subscribes nothing", async () => {
    await start()
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${base}/v1/events`, {
        method: 'HEAD',
        headers: { authorization: `Bearer ${tokens.get('alpha')!}` },
      })
      expect(response.status).toBe(200)
      expect(response.headers.get('content-type')).toMatch(
        /^text\/event-stream/,
      )
    }
    // Give a leaked stream the time to register, as an opened one would.
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(signal.listenerCount).toBe(0)
  })

  it('a device that hangs up is unsubscribed', async () => {
    await start()
    const stream = await openStream('alpha')
    await stream.waitFor(/data: 0\n\n/)
    await subscribers(1)
    await stream.cancel()
    await subscribers(0)
  })

  it('closing the listener ends open streams at once and unsubscribes them', async () => {
    await start()
    const streams = [await openStream('alpha'), await openStream('beta')]
    for (const stream of streams) await stream.waitFor(/data: 0\n\n/)
    await subscribers(2)
    const started = performance.now()
    await listening?.close()
    listening = undefined
    // Within the test timeout, rather than after a keep-alive timeout of the stream's socket.
    for (const stream of streams) await stream.ended
    expect(performance.now() - started).toBeLessThan(2000)
    expect(signal.listenerCount).toBe(0)
  })

  it('rejects invalid live options', () => {
    for (const options of [
      { liveHeartbeatMs: 0 },
      { liveMinIntervalMs: -1 },
      { liveHeartbeatMs: 1.5 },
    ]) {
      expect(() =>
        createSyncServer({ store, auth: { mode: 'token' }, ...options }),
      ).toThrow(expect.objectContaining({ code: 'invalid_argument' }))
    }
  })
})
