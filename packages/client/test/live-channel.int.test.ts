/*
 * HttpTransport.heads() against hand-written event streams from a node:http server on
 * 127.0.0.1: what a real VeloSync server never sends (split events, unknown event types,
 * garbage, silence, the wrong media type) but a proxy, a newer server or a broken network
 * may. The real server's stream is covered in packages/server/test/live-*.test.ts.
 */
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { isVeloSyncError } from '@velosync/core'
import { afterEach, describe, expect, it } from 'vitest'
import { HttpTransport } from '../src/index.js'

let server: Server | undefined
let transport: HttpTransport | undefined

afterEach(async () => {
  await transport?.close()
  transport = undefined
  server?.closeAllConnections()
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined))
  server = undefined
})

/** A transport on a server that answers GET /v1/events with `handler`. */
async function serve(
  handler: (request: IncomingMessage, response: ServerResponse) => void,
  options: { liveTimeoutMs?: number } = {},
): Promise<HttpTransport> {
  server = createServer(handler)
  await new Promise<void>((resolve) =>
    server?.listen(0, '127.0.0.1', () => resolve()),
  )
  const { port } = server.address() as AddressInfo
  transport = new HttpTransport({
    url: `http://127.0.0.1:${port}`,
    token: 'secret',
    ...options,
  })
  return transport
}

function eventStream(response: ServerResponse): void {
  response.writeHead(200, { 'content-type': 'text/event-stream' })
}

/** Collects what heads() yields until it ends, and how it ended. */
async function drain(
  heads: AsyncIterable<number>,
): Promise<{ heads: number[]; error: unknown }> {
  const seen: number[] = []
  try {
    for await (const head of heads) seen.push(head)
    return { heads: seen, error: undefined }
  } catch (error) {
    return { heads: seen, error }
  }
}

describe('HttpTransport.heads()', () => {
  it('sends the bearer token and asks for an event stream', async () => {
    let seen: IncomingMessage | undefined
    const live = await serve((request, response) => {
      seen = request
      eventStream(response)
      response.end('event: head\ndata: 3\n\n')
    })
    expect(await drain(live.heads())).toEqual({ heads: [3], error: undefined })
    expect(seen?.method).toBe('GET')
    expect(seen?.url).toBe('/v1/events')
    expect(seen?.headers.authorization).toBe('Bearer secret')
    expect(seen?.headers.accept).toBe('text/event-stream')
  })

  it('yields heads split across chunks, skipping comments, other events and unknown fields', async () => {
    const live = await serve((_request, response) => {
      eventStream(response)
      const chunks = [
        'event: head\nda',
        'ta: 1\n\n: keep-alive\n\n',
        'event: someday\ndata: {"x":1}\n\n',
        'event: head\nflavour: new\ndata: 2\r\n\r\n',
        'retry: soon\n\nevent: head\ndata: 9007199254740991\n\n',
      ]
      const next = (): void => {
        const chunk = chunks.shift()
        if (chunk === undefined) response.end()
        else response.write(chunk, () => setImmediate(next))
      }
      next()
    })
    expect(await drain(live.heads())).toEqual({
      heads: [1, 2, Number.MAX_SAFE_INTEGER],
      error: undefined,
    })
  })

  it('a head that is not a seq ends the stream with malformed_body', async () => {
    const bad = ['-1', '1.5', 'ten', '9007199254740993', '']
    let request = 0
    const live = await serve((_request, response) => {
      eventStream(response)
      // The good head and the bad one in one chunk: the bad one stops both.
      response.end(
        `event: head\ndata: 1\n\nevent: head\ndata: ${bad[request++]}\n\n`,
      )
    })
    for (const data of bad) {
      const { heads, error } = await drain(live.heads())
      expect(heads, data).toEqual([])
      expect(isVeloSyncError(error, 'malformed_body'), data).toBe(true)
    }
  })

  it('an endless event ends the stream with malformed_body instead of growing memory', async () => {
    const live = await serve((_request, response) => {
      eventStream(response)
      response.write(`event: head\ndata: ${'1'.repeat(70 * 1024)}`)
    })
    const { error } = await drain(live.heads())
    expect(isVeloSyncError(error, 'malformed_body')).toBe(true)
  })

  it('a 200 that is not an event stream (a proxy in between) is unavailable', async () => {
    const live = await serve((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/html' })
      response.end('<h1>Welcome to the hotel wifi</h1>')
    })
    const { error } = await drain(live.heads())
    expect(isVeloSyncError(error, 'unavailable')).toBe(true)
    expect((error as Error).message).toMatch(/text\/html/)
  })

  it('a stream silent for liveTimeoutMs is unavailable', async () => {
    const live = await serve(
      (_request, response) => {
        eventStream(response)
        response.write('event: head\ndata: 4\n\n')
      },
      { liveTimeoutMs: 200 },
    )
    const { heads, error } = await drain(live.heads())
    expect(heads).toEqual([4])
    expect(isVeloSyncError(error, 'unavailable')).toBe(true)
  })

  it('a dropped connection is unavailable; an unreachable server too', async () => {
    const live = await serve((request, response) => {
      eventStream(response)
      response.write('event: head\ndata: 5\n\n', () => request.socket.destroy())
    })
    const dropped = await drain(live.heads())
    expect(dropped.heads).toEqual([5])
    expect(isVeloSyncError(dropped.error, 'unavailable')).toBe(true)

    const unreachable = new HttpTransport({
      url: 'http://127.0.0.1:1',
      token: 'secret',
    })
    const { error } = await drain(unreachable.heads())
    await unreachable.close()
    expect(isVeloSyncError(error, 'unavailable')).toBe(true)
  })

  it('aborting ends the iteration quietly and closes the request', async () => {
    let closed!: () => void
    const requestClosed = new Promise<void>((resolve) => {
      closed = resolve
    })
    const live = await serve((request, response) => {
      eventStream(response)
      response.write('event: head\ndata: 6\n\n')
      request.socket.on('close', closed)
    })
    const controller = new AbortController()
    const seen: number[] = []
    for await (const head of live.heads({ signal: controller.signal })) {
      seen.push(head)
      controller.abort()
    }
    expect(seen).toEqual([6])
    await requestClosed
  })
})
