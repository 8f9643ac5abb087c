import type { Server } from 'node:http'
import {
  connect,
  createServer as createTcpServer,
  type AddressInfo,
  type Socket,
} from 'node:net'

/**
 * A TCP proxy on 127.0.0.1 that counts every byte it forwards, both directions: what an
 * HTTP client and server exchange on the wire, headers included.
 */
export class ByteCountingProxy {
  /** Bytes forwarded since the last reset (assign 0 to reset). */
  bytes = 0
  port = 0
  readonly #sockets = new Set<Socket>()
  readonly #server: ReturnType<typeof createTcpServer>

  private constructor(targetPort: number) {
    this.#server = createTcpServer((downstream) => {
      const upstream = connect(targetPort, '127.0.0.1')
      for (const socket of [downstream, upstream]) {
        // Nagle would hold back small writes (headers) waiting for an ACK.
        socket.setNoDelay(true)
        this.#sockets.add(socket)
        socket.on('close', () => this.#sockets.delete(socket))
        socket.on('error', () => {
          downstream.destroy()
          upstream.destroy()
        })
        socket.on('data', (chunk: Buffer) => {
          this.bytes += chunk.length
        })
      }
      downstream.pipe(upstream)
      upstream.pipe(downstream)
    })
  }

  static async start(targetPort: number): Promise<ByteCountingProxy> {
    const proxy = new ByteCountingProxy(targetPort)
    proxy.port = await listen(proxy.#server)
    return proxy
  }

  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    return new Promise((done) => this.#server.close(() => done()))
  }
}

/** Listens on a free port of 127.0.0.1; resolves with the port. */
export function listen(
  server: Server | ReturnType<typeof createTcpServer>,
): Promise<number> {
  return new Promise<number>((done, fail) => {
    server.once('error', fail)
    server.listen(0, '127.0.0.1', () => {
      done((server.address() as AddressInfo).port)
    })
  })
}
