/**
 * The child process of {@link ServerProcess}: runs one benchmark server (see
 * bench-server.ts) at a time, as the parent asks over IPC, until the parent disconnects.
 */
import { startBenchServer, type BenchServer } from './bench-server.js'
import type { ServerChildReply, ServerChildRequest } from './server-process.js'

let server: BenchServer | undefined

async function answer(request: ServerChildRequest): Promise<ServerChildReply> {
  if (request.op === 'start') {
    if (server !== undefined)
      throw new Error('a bench server is already running')
    server = await startBenchServer(request.config)
    return { id: request.id, url: server.url }
  }
  if (server === undefined) throw new Error('no bench server is running')
  switch (request.op) {
    case 'bytes':
      return { id: request.id, bytes: await server.bytes(request.reset) }
    case 'digest':
      return { id: request.id, digest: await server.digest(request.collection) }
    case 'close':
      await server.close()
      server = undefined
      return { id: request.id }
  }
}

process.on('message', (request: ServerChildRequest) => {
  answer(request).then(
    (reply) => process.send?.(reply),
    (error: unknown) =>
      process.send?.({ id: request.id, error: String(error) }),
  )
})
process.on('disconnect', () => {
  void (server?.close() ?? Promise.resolve()).finally(() => process.exit(0))
})
process.send?.({ id: 0 })
