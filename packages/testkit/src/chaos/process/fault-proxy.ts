/*
 * An HTTP proxy on 127.0.0.1 between the devices and the server that misbehaves on
 * purpose. Each request is read whole, then (when faults are on) one fault is drawn:
 *
 *   delay             forward after a pause
 *   reset-request     close the device's connection; the server never sees the request
 *   reset-response    forward, let the server commit, close the connection instead of answering
 *   corrupt-request   flip one byte of the body (the server must refuse it: Content-Digest)
 *   truncate-request  forward half the body (the same)
 *   corrupt-response  flip one byte of the answer (the device must refuse it)
 *   truncate-response send half the answer, then close
 *   replay            forward the request twice, answer with one of the two responses
 *
 * The upstream port can change (the server restarts on a new one); while the server is
 * down, connections are closed.
 */
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'

export const PROXY_FAULTS = [
  'delay',
  'reset-request',
  'reset-response',
  'corrupt-request',
  'truncate-request',
  'corrupt-response',
  'truncate-response',
  'replay',
] as const
export type ProxyFault = (typeof PROXY_FAULTS)[number]

interface Upstream {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'host',
])

/** The fault proxy. `faultRate` 0 forwards everything untouched. */
export class FaultProxy {
  /** Where the server listens now. */
  upstreamPort = 0
  /** Probability that a request meets a fault. */
  faultRate = 0
  /** The faults drawn from, uniformly. */
  faults: readonly ProxyFault[] = PROXY_FAULTS
  /** Faults drawn, by kind. */
  readonly injected = new Map<ProxyFault, number>()
  readonly #server: Server
  readonly #random: () => number

  private constructor(server: Server, random: () => number) {
    this.#server = server
    this.#random = random
  }

  static async start(random: () => number): Promise<FaultProxy> {
    const server = createServer()
    const proxy = new FaultProxy(server, random)
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      void proxy.handle(req, res)
    })
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done))
    return proxy
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port
  }

  /** Whether it still listens (until {@link close}). */
  get open(): boolean {
    return this.#server.listening
  }

  /** Stops listening and drops open connections. Idempotent. */
  async close(): Promise<void> {
    if (!this.open) return
    this.#server.closeAllConnections()
    await new Promise((done) => this.#server.close(done))
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    let body: Buffer = Buffer.concat(chunks)
    const fault =
      this.#random() < this.faultRate
        ? this.faults[Math.floor(this.#random() * this.faults.length)]
        : undefined
    if (fault !== undefined)
      this.injected.set(fault, (this.injected.get(fault) ?? 0) + 1)
    const drop = (): void => {
      res.socket?.destroy()
    }
    try {
      switch (fault) {
        case 'delay':
          await new Promise((done) =>
            setTimeout(done, 20 + this.#random() * 400),
          )
          break
        case 'reset-request':
          return drop()
        case 'corrupt-request':
          body = flipByte(body, this.#random)
          break
        case 'truncate-request':
          body = body.subarray(0, Math.floor(body.length / 2))
          break
        default:
      }
      let answer = await this.#forward(req, body)
      if (fault === 'replay') {
        const again = await this.#forward(req, body)
        if (this.#random() < 0.5) answer = again
      }
      if (fault === 'reset-response') return drop()
      const headers: Record<string, string | string[]> = {}
      for (const [name, value] of Object.entries(answer.headers)) {
        if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value
      }
      headers['content-length'] = String(answer.body.length)
      res.writeHead(answer.status, headers)
      if (fault === 'truncate-response') {
        res.write(answer.body.subarray(0, Math.floor(answer.body.length / 2)))
        return drop()
      }
      res.end(
        fault === 'corrupt-response'
          ? flipByte(answer.body, this.#random)
          : answer.body,
      )
    } catch {
      // The server is down (killed, restarting): the device sees a reset.
      drop()
    }
  }

  #forward(req: IncomingMessage, body: Buffer): Promise<Upstream> {
    const headers: Record<string, string | string[]> = {}
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value
    }
    headers['content-length'] = String(body.length)
    return new Promise((done, fail) => {
      const upstream = httpRequest(
        {
          host: '127.0.0.1',
          port: this.upstreamPort,
          method: req.method,
          path: req.url,
          headers,
          agent: false,
        },
        (response) => {
          const parts: Buffer[] = []
          response.on('data', (chunk: Buffer) => parts.push(chunk))
          response.on('end', () =>
            done({
              status: response.statusCode ?? 502,
              headers: response.headers,
              body: Buffer.concat(parts),
            }),
          )
          response.on('error', fail)
        },
      )
      upstream.on('error', fail)
      upstream.end(body)
    })
  }
}

function flipByte(bytes: Buffer, random: () => number): Buffer {
  if (bytes.length === 0) return bytes
  const copy = Buffer.from(bytes)
  const at = Math.floor(random() * copy.length)
  copy[at] = (copy[at] as number) ^ (1 + Math.floor(random() * 255))
  return copy
}
