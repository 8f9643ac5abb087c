/*
 * Live mode of the sync client, end to end: real device stores (SQLite files), the real
 * HttpTransport, a real server on 127.0.0.1 over a real SqliteServerStore. Device beta's
 * timers are set so long that only the live channel (or, where the test says so, the
 * polling fallback) can explain what it receives.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  HttpTransport,
  LocalStore,
  SyncClient,
  type LiveConnectedEvent,
  type LiveDisconnectedEvent,
  type StartSyncOptions,
  type SyncRoundResult,
} from '@velosync/client'
import { isVeloSyncError } from '@velosync/core'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  InProcessChangeSignal,
  createSyncServer,
  createToken,
  hashToken,
} from '../src/index.js'

const HOUR = 3_600_000
/** Long enough that a timer never fires during a test. */
const NEVER: StartSyncOptions = { intervalMs: HOUR, liveIntervalMs: HOUR }
/** Quick reconnects, so that tests wait on events rather than on backoff. */
const QUICK_RETRY: StartSyncOptions = { minBackoffMs: 20, maxBackoffMs: 100 }

let dir: string
let serverStore: SqliteServerStore
let listening: { port: number; close(): Promise<void> } | undefined
let port: number
/** The server's change signal: its listener count is the number of open streams. */
let changeSignal: InProcessChangeSignal
const cleanup: Array<() => Promise<void> | void> = []

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'velosync-live-sync-'))
  serverStore = SqliteServerStore.open({ path: join(dir, 'server.db') })
  changeSignal = new InProcessChangeSignal()
  await listen(0)
})

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step()
  await listening?.close()
  await serverStore.close()
  rmSync(dir, { recursive: true, force: true })
})

async function listen(onPort: number): Promise<void> {
  listening = await createSyncServer({
    store: serverStore,
    auth: { mode: 'token' },
    changeSignal,
  }).listen({ port: onPort })
  port = listening.port
}

interface Device {
  readonly store: LocalStore
  readonly sync: SyncClient
  /** Every round this device completed. */
  readonly rounds: number[]
}

async function device(
  name: string,
  options: { url?: string; token?: string } = {},
): Promise<Device> {
  const token = createToken()
  await serverStore.createDeviceToken(name, hashToken(token))
  const store = LocalStore.open({
    path: join(dir, `${name}.db`),
    deviceId: name,
  })
  store.createCollection({ name: 'notes', dims: 3, metric: 'cosine' })
  const transport = new HttpTransport({
    url: options.url ?? `http://127.0.0.1:${port}`,
    token: options.token ?? token,
  })
  const sync = new SyncClient(store, { transport })
  const rounds: number[] = []
  sync.on('synced', (round) => rounds.push(round.cursor))
  cleanup.push(async () => {
    await sync.stopSync()
    await transport.close()
    store.close()
  })
  return { store, sync, rounds }
}

interface Events {
  synced: SyncRoundResult
  liveConnected: LiveConnectedEvent
  liveDisconnected: LiveDisconnectedEvent
}

/** Resolves with the first payload of `event` that passes `accept` (5 s at most). */
function next<E extends keyof Events>(
  client: SyncClient,
  event: E,
  accept: (payload: Events[E]) => boolean = () => true,
): Promise<Events[E]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`no ${event} within 5 s`))
    }, 5000)
    const off = client.on(event, (payload) => {
      if (!accept(payload)) return
      clearTimeout(timer)
      off()
      resolve(payload)
    })
  })
}

/**
 * Resolves once the loop waits on its timer. With the live channel connected that timer is
 * liveIntervalMs (an hour here), so what arrives after this came over the stream.
 */
async function settled(client: SyncClient): Promise<void> {
  const deadline = Date.now() + 5000
  while (client.status().state !== 'idle') {
    if (Date.now() > deadline) throw new Error('the sync loop never settled')
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/** Resolves once `id` is in the device's store (checked after each of its rounds). */
function arrival(target: Device, id: string): Promise<unknown> {
  if (target.store.get('notes', id) !== undefined) return Promise.resolve()
  return next(
    target.sync,
    'synced',
    () => target.store.get('notes', id) !== undefined,
  )
}

async function write(writer: Device, id: string): Promise<void> {
  writer.store.put('notes', { id, vector: [1, Math.random(), 0] })
  await writer.sync.sync()
}

describe('SyncClient live mode', () => {
  it('a write on device A reaches device B through the live channel alone', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    const ready = Promise.all([
      next(b.sync, 'liveConnected'),
      next(b.sync, 'synced'), // the first round, which startSync runs at once
    ])
    b.sync.startSync({ ...NEVER, live: true })
    await ready
    await settled(b.sync)
    expect(b.sync.status().live).toBe('connected')
    const roundsBefore = b.rounds.length

    const arrived = arrival(b, 'n1')
    await write(a, 'n1')
    await arrived
    expect(b.store.get('notes', 'n1')).toBeDefined()
    expect(b.rounds.length).toBe(roundsBefore + 1)
    expect(b.store.digest('notes')).toBe(await serverStore.digest('notes'))

    // A burst of writes: B ends up with all of them, in fewer rounds than writes.
    const last = arrival(b, 'n11')
    for (let i = 2; i <= 11; i++) await write(a, `n${i}`)
    await last
    expect(b.store.count('notes')).toBe(11)
    expect(b.store.digest('notes')).toBe(await serverStore.digest('notes'))
  })

  it('a device is not woken by its own pushes', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    const ready = Promise.all(
      [a, b].flatMap((d) => [
        next(d.sync, 'liveConnected'),
        next(d.sync, 'synced'),
      ]),
    )
    a.sync.startSync({ ...NEVER, live: true })
    b.sync.startSync({ ...NEVER, live: true })
    await ready
    await Promise.all([settled(a.sync), settled(b.sync)])
    const aRounds = a.rounds.length
    // A writes twice, then B writes once: A is woken once (for B's write), B twice.
    await write(a, 'a1')
    await write(a, 'a2')
    await arrival(b, 'a2')
    await settled(b.sync)
    const woken = next(
      a.sync,
      'synced',
      () => a.store.get('notes', 'b1') !== undefined,
    )
    await write(b, 'b1')
    await woken
    // A's rounds: its two explicit ones and the one B's write woke; none for its own.
    expect(a.rounds.length - aRounds).toBe(3)
  })

  it('when the server restarts, the stream ends, the client reconnects and live updates resume', async () => {
    const a = await device('alpha')
    const b = await device('beta')
    const disconnections: LiveDisconnectedEvent[] = []
    b.sync.on('liveDisconnected', (event) => disconnections.push(event))
    let connected = next(b.sync, 'liveConnected')
    b.sync.startSync({ ...NEVER, ...QUICK_RETRY, live: true })
    await connected

    const dropped = next(b.sync, 'liveDisconnected')
    const samePort = port
    await listening?.close()
    listening = undefined
    await dropped
    // The server ended the stream cleanly: no error.
    expect(disconnections[0]?.error).toBeUndefined()
    expect(b.sync.status().live).toBe('connecting')

    connected = next(b.sync, 'liveConnected')
    await listen(samePort)
    await connected
    await settled(b.sync)
    expect(b.sync.status().live).toBe('connected')
    const arrived = arrival(b, 'after-restart')
    await write(a, 'after-restart')
    await arrived
  })

  it('while the stream is down the client polls, and it reconnects when the stream is back', async () => {
    const proxy = await EventStreamBreaker.start(port)
    cleanup.push(() => proxy.close())
    const a = await device('alpha')
    const b = await device('beta', { url: `http://127.0.0.1:${proxy.port}` })
    let connected = next(b.sync, 'liveConnected')
    b.sync.startSync({
      intervalMs: 100,
      liveIntervalMs: HOUR,
      ...QUICK_RETRY,
      live: true,
    })
    await connected
    await settled(b.sync) // now waiting on liveIntervalMs (an hour)

    // Connection reset of the stream, and every reconnect refused for now.
    const dropped = next(b.sync, 'liveDisconnected')
    proxy.blocking = true
    proxy.resetStreams()
    expect(isVeloSyncError((await dropped).error, 'unavailable')).toBe(true)
    expect(b.sync.status().live).toBe('connecting')
    // Only polling can bring this write over while the stream is refused.
    const polled = arrival(b, 'while-down')
    await write(a, 'while-down')
    await polled
    expect(b.sync.status().live).toBe('connecting')

    connected = next(b.sync, 'liveConnected')
    proxy.blocking = false
    await connected
    // Polling is off again (liveIntervalMs is an hour): this one comes over the stream.
    await settled(b.sync)
    const live = arrival(b, 'after-reconnect')
    await write(a, 'after-reconnect')
    await live
    expect(b.sync.status().live).toBe('connected')
    expect(b.store.digest('notes')).toBe(await serverStore.digest('notes'))
  })

  it('bad credentials on the stream: 401 unauthorized, reported and retried', async () => {
    const b = await device('beta', { token: 'not-a-token' })
    const transport = new HttpTransport({
      url: `http://127.0.0.1:${port}`,
      token: 'not-a-token',
    })
    cleanup.push(() => transport.close())
    const heads = transport.heads()[Symbol.asyncIterator]()
    const failure: unknown = await heads.next().catch((error: unknown) => error)
    expect(isVeloSyncError(failure, 'unauthorized')).toBe(true)
    expect((failure as Error).message).toMatch(/401 unauthorized/)

    const refused = next(b.sync, 'liveDisconnected')
    b.sync.startSync({ ...NEVER, ...QUICK_RETRY, live: true })
    expect(isVeloSyncError((await refused).error, 'unauthorized')).toBe(true)
    expect(b.sync.status().live).toBe('connecting')
    await b.sync.stopSync()
    expect(b.sync.status().live).toBe('off')
  })

  it('while connected, a tick pushes local writes but skips idle rounds until liveIntervalMs', async () => {
    const b = await device('beta')
    const ready = Promise.all([
      next(b.sync, 'liveConnected'),
      next(b.sync, 'synced'),
    ])
    b.sync.startSync({ intervalMs: 20, liveIntervalMs: 400, live: true })
    await ready
    // A local write goes out on a tick: no sync() call, no announcement.
    const pushed = next(b.sync, 'synced', (round) => round.pushed === 1)
    b.store.put('notes', { id: 'local', vector: [1, 0, 0] })
    await pushed
    expect(b.store.digest('notes')).toBe(await serverStore.digest('notes'))
    // Nothing to push or pull: ticks every 20 ms skip, until the safety round.
    const started = performance.now()
    await next(b.sync, 'synced')
    expect(performance.now() - started).toBeGreaterThanOrEqual(350)
  })

  it('turning live mode off and on again leaves one stream, connected', async () => {
    const b = await device('beta')
    let connected = next(b.sync, 'liveConnected')
    b.sync.startSync({ ...NEVER, live: true })
    await connected
    b.sync.startSync({ ...NEVER, live: false })
    expect(b.sync.status().live).toBe('off')
    connected = next(b.sync, 'liveConnected')
    b.sync.startSync({ ...NEVER, live: true })
    await connected
    await settled(b.sync)
    expect(b.sync.status().live).toBe('connected')
    const deadline = Date.now() + 5000
    while (changeSignal.listenerCount !== 1 && Date.now() < deadline) {
      await new Promise((resolve) => setImmediate(resolve))
    }
    expect(changeSignal.listenerCount).toBe(1)
    await b.sync.stopSync()
    expect(b.sync.status().live).toBe('off')
  })

  it('live mode needs a transport with a live channel', async () => {
    const b = await device('beta')
    const bare = new SyncClient(b.store, {
      transport: {
        sync: () => Promise.reject(new Error('unused')),
        ack: () => Promise.resolve(),
      },
    })
    expect(() => bare.startSync({ live: true })).toThrow(
      expect.objectContaining({ code: 'invalid_argument' }),
    )
    expect(bare.status().state).toBe('stopped')
  })
})

describe('SyncClient.sync() during a round', () => {
  it('runs another round after the running one, so that writes made meanwhile are pushed', async () => {
    const token = createToken()
    await serverStore.createDeviceToken('gamma', hashToken(token))
    const store = LocalStore.open({
      path: join(dir, 'gamma.db'),
      deviceId: 'gamma',
    })
    store.createCollection({ name: 'notes', dims: 3, metric: 'cosine' })
    const http = new HttpTransport({ url: `http://127.0.0.1:${port}`, token })
    cleanup.push(async () => {
      await http.close()
      store.close()
    })
    // The real transport, holding the first exchange until the test lets it go: the
    // round is then certainly past its last push when the write below happens.
    let release!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    let exchanges = 0
    const client = new SyncClient(store, {
      transport: {
        sync: async (request, options) => {
          if (exchanges++ === 0) await gate
          return http.sync(request, options)
        },
        ack: (request, options) => http.ack(request, options),
      },
    })
    const first = client.sync()
    store.put('notes', { id: 'late', vector: [0, 1, 0] })
    const second = client.sync()
    const third = client.sync() // shares the queued round
    release()
    expect((await first).pushed).toBe(0)
    expect((await second).pushed).toBe(1)
    expect(await third).toBe(await second)
    expect(store.outbox.size).toBe(0)
    expect(store.digest('notes')).toBe(await serverStore.digest('notes'))
  })
})

/**
 * A TCP proxy on 127.0.0.1 that can break live streams: `resetStreams()` destroys every
 * connection that carries `GET /v1/events` (a connection reset, as a crashed proxy or a
 * network change would cause), and while `blocking` is set it resets such connections as
 * soon as they send their request. Sync requests pass untouched.
 */
class EventStreamBreaker {
  blocking = false
  port = 0
  readonly #streams = new Set<Socket>()
  readonly #sockets = new Set<Socket>()
  readonly #server = createServer((downstream) => {
    const upstream = connect(this.target, '127.0.0.1')
    for (const socket of [downstream, upstream]) {
      this.#sockets.add(socket)
      socket.on('close', () => this.#sockets.delete(socket))
      socket.on('error', () => {
        downstream.destroy()
        upstream.destroy()
      })
    }
    downstream.once('data', (first: Buffer) => {
      if (first.toString('latin1').startsWith('GET /v1/events')) {
        if (this.blocking) {
          downstream.resetAndDestroy()
          upstream.destroy()
          return
        }
        this.#streams.add(downstream)
        downstream.on('close', () => this.#streams.delete(downstream))
      }
      upstream.write(first)
      downstream.pipe(upstream)
      upstream.pipe(downstream)
    })
  })

  private constructor(readonly target: number) {}

  static async start(target: number): Promise<EventStreamBreaker> {
    const proxy = new EventStreamBreaker(target)
    await new Promise<void>((resolve) => {
      proxy.#server.listen(0, '127.0.0.1', () => resolve())
    })
    proxy.port = (proxy.#server.address() as AddressInfo).port
    return proxy
  }

  resetStreams(): void {
    for (const socket of this.#streams) socket.resetAndDestroy()
  }

  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    return new Promise((resolve) => this.#server.close(() => resolve()))
  }
}
