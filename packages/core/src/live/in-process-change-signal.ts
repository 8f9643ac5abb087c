import type { ChangeSignal, HeadChange } from '../ports/change-signal.js'

/** Core is compiled against ES2022 alone; every runtime we target has `queueMicrotask`. */
const platform = globalThis as unknown as {
  queueMicrotask(task: () => void): void
}

/**
 * A {@link ChangeSignal} within one process: `publish` calls every subscriber at once.
 *
 * @remarks
 * This is all a server on SQLite needs (one process owns the store). With several server
 * processes on one PostgreSQL, `PostgresChangeSignal` (`@velosync/storage-postgres`)
 * receives every process's changes through `LISTEN/NOTIFY` and hands them to one of these
 * for the local fan-out.
 *
 * @example
 * ```ts
 * const signal = new InProcessChangeSignal()
 * signal.subscribe(({ head }) => console.log(head))
 * await signal.publish({ head: 7 }) // logs 7
 * ```
 * @public
 */
export class InProcessChangeSignal implements ChangeSignal {
  readonly #listeners = new Set<(change: HeadChange) => void>()
  readonly #onListenerError: (error: unknown) => void

  /**
   * @param options.onListenerError - Receives what a listener threw (the other listeners
   *   still run). Default: rethrown asynchronously, so that it reaches the process's
   *   `uncaughtException` handling instead of disappearing.
   */
  constructor(
    options: { readonly onListenerError?: (error: unknown) => void } = {},
  ) {
    this.#onListenerError =
      options.onListenerError ??
      ((error) =>
        platform.queueMicrotask(() => {
          throw error
        }))
  }

  /** How many listeners are subscribed (one per open live stream of the server). */
  get listenerCount(): number {
    return this.#listeners.size
  }

  publish(change: HeadChange): Promise<void> {
    // A copy: a listener may unsubscribe (its stream closed) while we iterate.
    for (const listener of [...this.#listeners]) {
      try {
        listener(change)
      } catch (error) {
        this.#onListenerError(error)
      }
    }
    return Promise.resolve()
  }

  subscribe(listener: (change: HeadChange) => void): () => void {
    // Each subscription is its own entry, even for the same function.
    const entry = (change: HeadChange): void => listener(change)
    this.#listeners.add(entry)
    return () => {
      this.#listeners.delete(entry)
    }
  }
}
