import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { BenchServer, BenchServerConfig } from './bench-server.js'

/** @internal IPC from the parent. */
export type ServerChildRequest =
  | {
      readonly id: number
      readonly op: 'start'
      readonly config: BenchServerConfig
    }
  | { readonly id: number; readonly op: 'bytes'; readonly reset: boolean }
  | { readonly id: number; readonly op: 'digest'; readonly collection: string }
  | { readonly id: number; readonly op: 'close' }

/** @internal IPC from the child: one reply per request (id 0: the child is ready). */
export interface ServerChildReply {
  readonly id: number
  readonly url?: string
  readonly bytes?: number
  readonly digest?: string | undefined
  readonly error?: string
}

type Ask =
  | { readonly op: 'start'; readonly config: BenchServerConfig }
  | { readonly op: 'bytes'; readonly reset: boolean }
  | { readonly op: 'digest'; readonly collection: string }
  | { readonly op: 'close' }

const CHILD = fileURLToPath(new URL('./sync-server-child.ts', import.meta.url))

/**
 * A child process (its own event loop and core) that runs benchmark servers one after
 * another, as a deployment runs its server. The process lives across runs, so every run
 * after the warm-up meets a server whose code is already compiled, as a long-running
 * server's is; each run still gets a new, empty store.
 */
export class ServerProcess {
  readonly #child: ChildProcess
  readonly #pending = new Map<number, (reply: ServerChildReply) => void>()
  readonly #exited: Promise<void>
  #nextId = 1

  private constructor(child: ChildProcess) {
    this.#child = child
    child.on('message', (reply: ServerChildReply) => {
      this.#pending.get(reply.id)?.(reply)
      this.#pending.delete(reply.id)
    })
    this.#exited = new Promise((done) => {
      child.once('exit', (code) => {
        // A crashed child answers nothing more: fail what waits instead of hanging.
        for (const answer of this.#pending.values())
          answer({
            id: 0,
            error: `the bench server process exited (code ${code})`,
          })
        this.#pending.clear()
        done()
      })
    })
  }

  static spawn(): Promise<ServerProcess> {
    const child = fork(CHILD, [], {
      // The benchmark runs under tsx; so does its server.
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    return new Promise((done, fail) => {
      child.once('error', fail)
      child.once('exit', (code) =>
        fail(new Error(`the bench server process exited early (code ${code})`)),
      )
      child.once('message', () => {
        child.removeAllListeners('exit')
        done(new ServerProcess(child))
      })
    })
  }

  /** Starts a server on a new store in the child; one at a time. */
  async start(config: BenchServerConfig): Promise<BenchServer> {
    const { url } = await this.#ask({ op: 'start', config })
    return {
      url: url as string,
      bytes: async (reset = false) =>
        (await this.#ask({ op: 'bytes', reset })).bytes as number,
      digest: async (collection) =>
        (await this.#ask({ op: 'digest', collection })).digest,
      close: async () => {
        await this.#ask({ op: 'close' })
      },
    }
  }

  /** Ends the child (close its server first). */
  async exit(): Promise<void> {
    if (this.#child.connected) this.#child.disconnect()
    await this.#exited
  }

  async #ask(request: Ask): Promise<ServerChildReply> {
    const id = this.#nextId++
    const reply = await new Promise<ServerChildReply>((done) => {
      if (!this.#child.connected) {
        done({ id, error: 'the bench server process is gone' })
        return
      }
      this.#pending.set(id, done)
      this.#child.send({ ...request, id })
    })
    if (reply.error !== undefined) throw new Error(reply.error)
    return reply
  }
}
