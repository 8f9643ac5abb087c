/*
 * readBody on Node's own request stream (the path `listen()` takes), over real sockets on
 * 127.0.0.1: exact bytes, the size limit without Content-Length, and a client that left
 * before its body was read.
 */
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { isVeloSyncError } from '@velosync/core'
import { afterEach, describe, expect, it } from 'vitest'
import { readBody } from '../src/http-body.js'

let server: Server | undefined

afterEach(async () => {
  await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined))
  server = undefined
})

/** Starts a server whose requests go to `handle`; resolves with its port. */
async function serving(
  handle: (incoming: IncomingMessage) => Promise<void>,
): Promise<number> {
  server = createServer((incoming, response) => {
    void handle(incoming).finally(() => response.end())
  })
  await new Promise<void>((resolve) =>
    server!.listen(0, '127.0.0.1', () => resolve()),
  )
  return (server.address() as AddressInfo).port
}

/** Sends `chunks` as a chunked body (no Content-Length). */
function postChunked(port: number, chunks: Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    const request = httpRequest(
      { port, host: '127.0.0.1', method: 'POST' },
      (response) => {
        response.resume()
        response.on('end', resolve)
      },
    )
    request.on('error', () => resolve())
    for (const chunk of chunks) request.write(chunk)
    request.end()
  })
}

const noHeaders = new Request('http://local/', { method: 'POST' })

describe('readBody from an IncomingMessage', () => {
  it('returns exactly the bytes sent, across chunks', async () => {
    let got: Uint8Array | undefined
    const port = await serving(async (incoming) => {
      got = await readBody(noHeaders, 1 << 20, incoming)
    })
    const chunks = [Buffer.alloc(70_000, 1), Buffer.alloc(5, 2)]
    await postChunked(port, chunks)
    expect(Buffer.from(got!).equals(Buffer.concat(chunks))).toBe(true)
  })

  it('refuses a chunked body above the limit with payload_too_large', async () => {
    let error: unknown
    const port = await serving(async (incoming) => {
      error = await readBody(noHeaders, 1000, incoming).catch((e: unknown) => e)
    })
    await postChunked(port, [Buffer.alloc(600), Buffer.alloc(600)])
    expect(isVeloSyncError(error, 'payload_too_large')).toBe(true)
  })

  it('settles with malformed_body when the client left before the body was read', async () => {
    let error: unknown
    let left!: () => void
    const clientGone = new Promise<void>((resolve) => (left = resolve))
    const port = await serving(async (incoming) => {
      await clientGone // the server was busy (say, authenticating) meanwhile
      await new Promise((resolve) => setTimeout(resolve, 50))
      error = await readBody(noHeaders, 1 << 20, incoming).catch(
        (e: unknown) => e,
      )
    })
    const request = httpRequest({ port, host: '127.0.0.1', method: 'POST' })
    request.on('error', () => undefined)
    request.write(Buffer.alloc(10))
    await new Promise((resolve) => setTimeout(resolve, 50))
    request.destroy()
    left()
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(isVeloSyncError(error, 'malformed_body')).toBe(true)
  })
})
