import type { Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

/**
 * Counts every byte a server's sockets read and write: what HTTP clients and the server
 * exchange on the wire, headers included. It reads the sockets' own counters, so nothing
 * sits between client and server (a forwarding proxy would add a hop, and CPU on the
 * server's event loop, to every request it measures).
 */
export class SocketByteCounter {
  readonly #live = new Set<Socket>()
  /** Bytes of sockets that have closed. */
  #closed = 0
  /** The total at the last reset. */
  #base = 0

  constructor(server: Server) {
    server.on('connection', (socket: Socket) => {
      this.#live.add(socket)
      socket.once('close', () => {
        this.#live.delete(socket)
        this.#closed += socket.bytesRead + socket.bytesWritten
      })
    })
  }

  /** Bytes since the last reset; `reset` starts counting again. */
  bytes(reset = false): number {
    let total = this.#closed
    for (const socket of this.#live)
      total += socket.bytesRead + socket.bytesWritten
    const bytes = total - this.#base
    if (reset) this.#base = total
    return bytes
  }
}

/** Listens on a free port of 127.0.0.1; resolves with the port. */
export function listen(server: Server): Promise<number> {
  return new Promise<number>((done, fail) => {
    server.once('error', fail)
    server.listen(0, '127.0.0.1', () => {
      done((server.address() as AddressInfo).port)
    })
  })
}
