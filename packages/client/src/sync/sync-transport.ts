import type { SyncRequest, SyncResponse } from '@velosync/core'

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
  ack(
    request: { readonly epoch: string; readonly cursor: number },
    options?: { readonly signal?: AbortSignal },
  ): Promise<void>
}
