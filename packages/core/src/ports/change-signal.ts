import type { Seq } from './server-store.js'

/**
 * "The head is now at least `head`": what a server announces after a push stored something.
 *
 * @public
 */
export interface HeadChange {
  /**
   * The server's head after the push. Every version with a seq up to it is committed, so
   * a pull from any smaller cursor returns something new.
   */
  readonly head: Seq
  /**
   * The device whose push moved the head, when known. A live channel does not wake that
   * device for it: the push response already told it everything (DESIGN 6).
   */
  readonly deviceId?: string
}

/**
 * Tells the server's live channels that the head moved: the server publishes after every
 * push that stored something, and every subscriber (one per open `GET /v1/events` stream)
 * is told.
 *
 * @remarks
 * What implementations must keep, and what subscribers may not assume:
 *
 * - **A hint, not a log.** A change is an invitation to pull, never data. Subscribers
 *   must treat it as "the head is at least `head`": changes may arrive duplicated,
 *   coalesced (only the newest of a burst) or out of order when they cross processes,
 *   and one may be lost when a connection between processes drops. Devices therefore
 *   also poll, at a long interval, and read the current head when they (re)connect.
 * - **After the commit.** A change is delivered only once the versions up to `head` are
 *   visible to a pull from any server process sharing the store; announcing earlier
 *   would wake devices that then find nothing.
 * - **Fan-out.** `publish` reaches the subscribers of every server process sharing the
 *   store: in-process when there is one process (SQLite), through the database when there
 *   are several (PostgreSQL `LISTEN/NOTIFY`; see docs/ARCHITECTURE.md, "Live changes").
 * - **Listeners are called synchronously** and must not throw; a listener that throws is
 *   the implementation's to report, and the other listeners still run.
 *
 * @example
 * ```ts
 * const unsubscribe = signal.subscribe(({ head }) => console.log('head is now', head))
 * await signal.publish({ head: 42, deviceId: 'laptop' })
 * unsubscribe()
 * ```
 * @public
 */
export interface ChangeSignal {
  /**
   * Announces a committed head. Best effort: a failure to deliver is reported by the
   * returned promise and loses nothing (devices poll).
   */
  publish(change: HeadChange): Promise<void>
  /** Registers a listener until the returned function is called. */
  subscribe(listener: (change: HeadChange) => void): () => void
}
