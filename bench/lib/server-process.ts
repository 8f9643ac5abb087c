import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { BenchServer, BenchServerConfig } from './bench-server.js'

/** @internal IPC from the parent. */
export type ServerChildRequest =
  | { readonly id: number; readonly op: 'bytes'; readonly reset: boolean }
  | { readonly id: number; readonly op: 'digest'; readonly collection: string }
  | { readonly id: number; readonly op: 'close' }

/** @internal IPC from the child: `url` once listening (id 0), then one reply per request. */
export interface ServerChildReply {
  readonly id: number
  readonly url?: string
  readonly bytes?: number
  readonly digest?: string | undefined
}

const CHILD = fileURLToPath(new URL('./sync-server-child.ts', import.meta.url))

/**
 * A benchmark server in a child process (its own event loop and core), reached through
 * a byte-counting proxy in the same child.
 */
export class ServerProcess implements BenchServer {
  readonly url: string
  readonly #child: ChildProcess
  readonly #pending = new Map<number, (reply: ServerChildReply) => void>()
  #nextId = 1

  private constructor(child: ChildProcess, url: string) {
    this.#child = child
    this.url = url
    child.on('message', (reply: ServerChildReply) => {
      this.#pending.get(reply.id)?.(reply)
      this.#pending.delete(reply.id)
    })
  }

  static start(config: BenchServerConfig): Promise<ServerProcess> {
    const child = fork(CHILD, [JSON.stringify(config)], {
      // The benchmark runs under tsx; so does its server.
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    return new Promise((done, fail) => {
      child.once('error', fail)
      child.once('exit', (code) =>
        fail(new Error(`the bench server exited early (code ${code})`)),
      )
      child.once('message', (reply: ServerChildReply) => {
        child.removeAllListeners('exit')
        done(new ServerProcess(child, reply.url as string))
      })
    })
  }

  async bytes(reset = false): Promise<number> {
    return (await this.#ask({ op: 'bytes', reset })).bytes as number
  }

  async digest(collection: string): Promise<string | undefined> {
    return (await this.#ask({ op: 'digest', collection })).digest
  }

  async close(): Promise<void> {
    const exited = new Promise((done) => this.#child.once('exit', done))
    await this.#ask({ op: 'close' })
    await exited
  }

  #ask(
    request:
      | { op: 'bytes'; reset: boolean }
      | { op: 'digest'; collection: string }
      | { op: 'close' },
  ): Promise<ServerChildReply> {
    const id = this.#nextId++
    return new Promise((done) => {
      this.#pending.set(id, done)
      this.#child.send({ ...request, id })
    })
  }
}
