/*
 * One LISTEN connection per server process, and what happens when it drops:
 *
 *   open() ── connect, LISTEN ──► listening ── connection lost ──► waiting (backoff)
 *                                    ▲                                  │
 *                                    └── connect, LISTEN, publish head ◄┘ (failure: wait longer)
 *   close() from any state: closed (the timer cleared, the connection ended)
 */
import pg from 'pg'
import {
  InProcessChangeSignal,
  VeloSyncError,
  describe,
  invalidArgument,
  type ChangeSignal,
  type HeadChange,
} from '@velosync/core'
import { parseHeadPayload } from './head-notification.js'
import {
  storeConnection,
  type PostgresServerStore,
  type StoreConnection,
} from './postgres-server-store.js'

/** Options of {@link PostgresChangeSignal.open}. */
export interface PostgresChangeSignalOptions {
  /**
   * The store whose pushes are announced: the signal listens on its database and channel,
   * and reads its head after a reconnection. Required.
   */
  readonly store: PostgresServerStore
  /**
   * Wait before the first reconnection attempt, in ms; it doubles after every failed
   * attempt, up to {@link maxReconnectDelayMs}. Default 100.
   */
  readonly reconnectDelayMs?: number
  /** Longest wait between reconnection attempts, in ms. Default 5000. */
  readonly maxReconnectDelayMs?: number
  /**
   * Receives what the signal ignored or survived, as a `VeloSyncError`: a notification
   * that is not a head (`invalid_argument`), a lost connection or a failed reconnection
   * (`storage_failure`); and whatever a subscriber threw. Default: a process warning.
   */
  readonly onError?: (error: unknown) => void
}

/** The defaults of {@link PostgresChangeSignalOptions}. */
export const POSTGRES_CHANGE_SIGNAL_DEFAULTS = {
  reconnectDelayMs: 100,
  maxReconnectDelayMs: 5000,
} as const

/**
 * TCP keepalive on the LISTEN connection: it only ever waits, so without probes a peer
 * that vanished (no FIN: a failover, a cut network) would leave it waiting forever.
 */
const KEEPALIVE_INITIAL_DELAY_MS = 10_000

/**
 * The {@link ChangeSignal} of several server processes on one PostgreSQL: every push,
 * from any process, reaches the live streams of every process through `LISTEN/NOTIFY`.
 *
 * @remarks
 * The store's push transaction notifies `'<head> <deviceId>'` on the store's channel;
 * PostgreSQL delivers it at COMMIT, in commit order, to every listening session. This
 * signal holds one dedicated connection per process that listens, and hands every head
 * it receives to an {@link InProcessChangeSignal} for the process's own streams.
 *
 * - `publish` fans out locally at once (a device on the pushing process hears sooner);
 *   the same head arriving later by NOTIFY is dropped by the streams, which only send
 *   heads above what they sent.
 * - A payload that is not a head is ignored and reported to `onError`.
 * - When the connection drops it reconnects with exponential backoff, and then publishes
 *   the store's current head to every device: notifications sent meanwhile are lost.
 *   While it is down, devices on this process hear only this process's pushes (and poll).
 *
 * @example
 * ```ts
 * const store = await PostgresServerStore.open({ url })
 * const changeSignal = await PostgresChangeSignal.open({ store })
 * const server = createSyncServer({ store, changeSignal, auth: { mode: 'token' } })
 * // … on shutdown: close the listener, then changeSignal.close(), then store.close()
 * ```
 */
export class PostgresChangeSignal implements ChangeSignal {
  readonly #store: PostgresServerStore
  readonly #connection: StoreConnection
  readonly #local: InProcessChangeSignal
  readonly #onError: (error: unknown) => void
  readonly #firstDelayMs: number
  readonly #maxDelayMs: number
  /** The listening connection; `undefined` while connecting, waiting or closed. */
  #client: pg.Client | undefined
  /** A connection attempt in flight, for `close()` to wait for. */
  #connecting: Promise<void> | undefined
  #timer: ReturnType<typeof setTimeout> | undefined
  /** Failed attempts since the connection was last up. */
  #failures = 0
  #closed = false

  private constructor(
    store: PostgresServerStore,
    options: PostgresChangeSignalOptions,
  ) {
    this.#store = store
    this.#connection = storeConnection(store)
    this.#onError =
      options.onError ??
      ((error) =>
        process.emitWarning(
          `VeloSync PostgreSQL change signal: ${(error as Error).message}`,
        ))
    this.#local = new InProcessChangeSignal({ onListenerError: this.#onError })
    this.#firstDelayMs = delay(options, 'reconnectDelayMs')
    this.#maxDelayMs = delay(options, 'maxReconnectDelayMs')
  }

  /**
   * Connects and listens; resolves once notifications are being received.
   *
   * @throws `invalid_argument` for bad options; `storage_failure` when the database cannot
   *   be reached.
   */
  static async open(
    options: PostgresChangeSignalOptions,
  ): Promise<PostgresChangeSignal> {
    if (typeof options !== 'object' || options === null) {
      throw invalidArgument(
        'PostgresChangeSignal.open needs an options object with a store',
      )
    }
    if (
      options.onError !== undefined &&
      typeof options.onError !== 'function'
    ) {
      throw invalidArgument(
        `onError must be a function, got ${describe(options.onError)}`,
      )
    }
    const signal = new PostgresChangeSignal(options.store, options)
    await signal.#connect()
    return signal
  }

  /** Whether the LISTEN connection is up (false while reconnecting and after close). */
  get listening(): boolean {
    return this.#client !== undefined
  }

  publish(change: HeadChange): Promise<void> {
    return this.#local.publish(change)
  }

  subscribe(listener: (change: HeadChange) => void): () => void {
    return this.#local.subscribe(listener)
  }

  /**
   * Stops listening and ends the connection (waiting for an attempt in flight).
   * Subscribers hear nothing more from other processes. Idempotent.
   */
  async close(): Promise<void> {
    this.#closed = true
    clearTimeout(this.#timer)
    this.#timer = undefined
    await this.#connecting
    await this.#drop()
  }

  /** One attempt: connect and LISTEN (the connection is ended again on failure). */
  #connect(): Promise<void> {
    const attempt = this.#listen()
    this.#connecting = attempt
    return attempt.finally(() => {
      if (this.#connecting === attempt) this.#connecting = undefined
    })
  }

  async #listen(): Promise<void> {
    const client = new pg.Client({
      ...this.#connection.config,
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_INITIAL_DELAY_MS,
    })
    let lost = false
    // pg emits a broken connection as `error` (with the reason) and then `end`.
    client.on('error', (error) => this.#lost(client, error))
    client.on('end', () => {
      lost = true
      this.#lost(client, undefined)
    })
    client.on('notification', (message) => this.#received(message))
    try {
      await client.connect()
      await client.query(`LISTEN "${this.#connection.channel}"`)
    } catch (error) {
      await client.end().catch(() => undefined)
      throw new VeloSyncError(
        'storage_failure',
        `cannot LISTEN for live changes at ${this.#connection.where}: ${(error as Error).message}`,
        { cause: error },
      )
    }
    if (this.#closed || lost) {
      await client.end().catch(() => undefined)
      return
    }
    this.#client = client
  }

  #received(message: pg.Notification): void {
    const change =
      message.payload === undefined
        ? undefined
        : parseHeadPayload(message.payload)
    if (change === undefined) {
      this.#onError(
        invalidArgument(
          `ignored a notification on ${this.#connection.channel} that is not '<head> [deviceId]': ${describe(message.payload)}`,
        ),
      )
      return
    }
    void this.#local.publish(change)
  }

  /** The connection broke: report it and reconnect (once per connection). */
  #lost(client: pg.Client, error: Error | undefined): void {
    if (client !== this.#client) return
    this.#client = undefined
    if (this.#closed) return
    this.#onError(
      new VeloSyncError(
        'storage_failure',
        `lost the LISTEN connection for live changes (${error?.message ?? 'connection ended'}); reconnecting`,
        { cause: error },
      ),
    )
    this.#retry()
  }

  #retry(): void {
    const waitMs = Math.min(
      this.#maxDelayMs,
      this.#firstDelayMs * 2 ** this.#failures,
    )
    this.#failures++
    this.#timer = setTimeout(() => void this.#reconnect(), waitMs)
  }

  async #reconnect(): Promise<void> {
    this.#timer = undefined
    try {
      await this.#connect()
      if (this.#closed) return
      // Heads committed while nobody listened were announced to nobody: the current head
      // covers them all (committed after LISTEN, anything newer is notified).
      const head = await this.#store.head()
      this.#failures = 0
      await this.#local.publish({ head })
    } catch (error) {
      if (this.#closed) return
      this.#onError(error)
      // Listening without having announced the head would leave devices behind: retry all.
      await this.#drop()
      if (!this.#closed) this.#retry()
    }
  }

  /** Ends the current connection, if any, without treating it as lost. */
  async #drop(): Promise<void> {
    const client = this.#client
    this.#client = undefined
    await client?.end().catch(() => undefined)
  }
}

function delay(
  options: PostgresChangeSignalOptions,
  name: keyof typeof POSTGRES_CHANGE_SIGNAL_DEFAULTS,
): number {
  const value: unknown = options[name] ?? POSTGRES_CHANGE_SIGNAL_DEFAULTS[name]
  if (
    !Number.isSafeInteger(value) ||
    (value as number) < 1 ||
    (value as number) > 3_600_000
  ) {
    throw invalidArgument(
      `${name} must be an integer from 1 to 3600000 ms, got ${describe(value)}`,
    )
  }
  return value as number
}
