import type { PushOp, SyncRequest, SyncResponse } from '@velosync/core'

/**
 * How a {@link SyncClient} reaches a server. {@link HttpTransport} speaks HTTP; tests may
 * wrap it to drop, delay or duplicate exchanges.
 *
 * @remarks
 * Implementations reject with a `VeloSyncError` whose code is the server's error code
 * (`lsn_reused`, `resync_required`, `unauthorized`, …) or `unavailable` when the server
 * could not be reached, and never report success for a response whose integrity they
 * could not verify.
 */
export interface SyncTransport {
  sync(
    request: SyncRequest,
    options?: { readonly signal?: AbortSignal },
  ): Promise<SyncResponse>
  /**
   * Optional: encodes `push` now, typically while the previous request is at the server.
   * A later `sync` whose request carries this very array may send these bytes instead of
   * encoding it then. Only a hint: `sync` must work without it.
   */
  encodeAhead?(push: readonly PushOp[]): void
  ack(
    request: { readonly epoch: string; readonly cursor: number },
    options?: { readonly signal?: AbortSignal },
  ): Promise<void>
  /**
   * Opens the server's live channel (`GET /v1/events`) and yields every head it announces:
   * first the head when the stream opened, then newer ones as other devices push. Optional:
   * a transport without it cannot run `startSync({ live: true })`.
   *
   * @remarks
   * The iteration ends when the server ends the stream (e.g. it shuts down) or `signal`
   * aborts, and throws when the stream cannot be opened (the server's code, e.g.
   * `unauthorized`, or `unavailable`) or breaks. Heads are hints (see `ChangeSignal` in
   * core): a device pulls to learn what changed.
   */
  heads?(options?: { readonly signal?: AbortSignal }): AsyncIterable<number>
}
