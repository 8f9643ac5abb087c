/**
 * A benchmark server (see bench-server.ts) in a child process of its own, as a real
 * deployment has it. Started by {@link ServerProcess}; answers it over IPC.
 */
import { startBenchServer, type BenchServerConfig } from './bench-server.js'
import type { ServerChildReply, ServerChildRequest } from './server-process.js'

const config = JSON.parse(process.argv[2] ?? '{}') as BenchServerConfig
const server = await startBenchServer(config)
const send = (message: ServerChildReply, then: () => void = () => {}): void => {
  process.send?.(message, () => then())
}

process.on('message', (request: ServerChildRequest) => {
  void (async () => {
    switch (request.op) {
      case 'bytes':
        send({ id: request.id, bytes: await server.bytes(request.reset) })
        return
      case 'digest':
        send({
          id: request.id,
          digest: await server.digest(request.collection),
        })
        return
      case 'close':
        await server.close()
        send({ id: request.id }, () => process.disconnect())
        return
    }
  })()
})
send({ id: 0, url: server.url })
