/*
 * SIGKILL in the middle of synchronous work. A better-sqlite3 transaction holds the event
 * loop, so no timer of the process itself can fire inside it; a worker thread can. It
 * sleeps on a shared word; `during()` wakes it with a delay in microseconds, runs the work,
 * and the worker kills the whole process when the delay is up: inside the work when the
 * delay is shorter than the work, just after it otherwise.
 */
import { Worker } from 'node:worker_threads'

const WORKER = `
const { workerData } = require('node:worker_threads')
const word = new Int32Array(workerData)
Atomics.wait(word, 0, 0)
const until = process.hrtime.bigint() + BigInt(Atomics.load(word, 1)) * 1000n
while (process.hrtime.bigint() < until) {}
process.kill(process.pid, 'SIGKILL')
`

/** Kills this process during synchronous work, at a random point of its usual duration. */
export class Killer {
  readonly #word = new Int32Array(new SharedArrayBuffer(8))
  readonly #worker: Worker
  /** Recent duration of each kind of work (µs), to aim the delay inside it. */
  readonly #durationUs = new Map<string, number>()

  constructor() {
    this.#worker = new Worker(WORKER, {
      eval: true,
      workerData: this.#word.buffer,
    })
    this.#worker.unref()
  }

  /**
   * Runs `work`, timing it. With `aim` (a fraction range of the usual duration), first
   * arms the worker to kill the process that far into it.
   */
  during<T>(
    kind: string,
    work: () => T,
    aim: readonly [number, number] | undefined,
    random: () => number,
  ): T {
    if (aim !== undefined) {
      const usual = this.#durationUs.get(kind) ?? 1000
      const fraction = aim[0] + (aim[1] - aim[0]) * random()
      Atomics.store(this.#word, 1, Math.max(0, Math.round(usual * fraction)))
      Atomics.store(this.#word, 0, 1)
      Atomics.notify(this.#word, 0)
    }
    const started = process.hrtime.bigint()
    const result = work()
    const took = Number(process.hrtime.bigint() - started) / 1000
    const before = this.#durationUs.get(kind)
    this.#durationUs.set(
      kind,
      before === undefined ? took : 0.7 * before + 0.3 * took,
    )
    return result
  }
}
