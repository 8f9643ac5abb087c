/*
 * The device's sync loop.
 *
 * ```
 *            startSync()                 sync() resolves
 *   stopped ───────────► idle ──timer──► syncing ─────────────► idle (timer: intervalMs)
 *      ▲                  ▲  ▲              │ rejects
 *      │ stopSync()       │  └─ a head beyond the cursor (live channel): timer 0
 *      │                  └──── timer ──── backoff (min·2^failures, ±50 % jitter, ≤ max)
 * ```
 *
 * One round = as many round trips as it takes to empty the outbox and reach the server's
 * head: each takes a batch (compacted), pushes it and pulls in the same request, then
 * applies the answer in one local transaction. A failure re-arms the timer by itself: the
 * loop never waits for the next local write to retry.
 *
 * Live mode runs a second loop beside the timer: it holds the server's event stream open
 * (`SyncTransport.heads`), and a head beyond the cursor fires the timer at once. While the
 * stream is up, a timer tick runs a round only to push local writes (or, once per
 * liveIntervalMs, as a safety net): others' writes are announced. While it is down the
 * timer polls as without live mode, and the stream reconnects with the round backoff.
 */
import {
  PROTOCOL_VERSION,
  VeloSyncError,
  describe,
  invalidArgument,
  isVeloSyncError,
  type DocumentVersion,
  type PushOp,
  type PushOutcome,
  type SyncRequest,
  type SyncResponse,
} from '@velosync/core'
import type { LocalStore } from '../local-store.js'
import type { OutboxBatch } from '../outbox.js'
import type { SyncTransport } from './sync-transport.js'

/** Options of {@link SyncClient}. */
export interface SyncClientOptions {
  readonly transport: SyncTransport
  /** Operations per push request. Default 1000. */
  readonly maxOpsPerPush?: number
  /** Versions per pull. Default 1000. */
  readonly pullLimit?: number
  /** Milliseconds since the epoch. Default `Date.now`. */
  readonly now?: () => number
  /** Uniform in [0, 1), for backoff jitter. Default `Math.random`. */
  readonly random?: () => number
}

/** Options of {@link SyncClient.startSync}. */
export interface StartSyncOptions {
  /** Pause between successful rounds. Default 5000. */
  readonly intervalMs?: number
  /** First retry delay after a failure. Default 500. */
  readonly minBackoffMs?: number
  /** Longest retry delay. Default 60 000. */
  readonly maxBackoffMs?: number
  /**
   * Also listen to the server's live channel and sync as soon as it announces a head
   * beyond this device's cursor. Needs a transport with `heads` (HttpTransport has it).
   * The stream's open connection keeps a Node process alive: call {@link
   * SyncClient.stopSync} before exiting. Default false.
   */
  readonly live?: boolean
  /**
   * While the live channel is connected, a timer tick with nothing to push skips its round
   * unless this long has passed since the last one: a safety net for an announcement lost
   * between server processes. Default 60 000.
   */
  readonly liveIntervalMs?: number
}

/** What one {@link SyncClient.sync} call did. */
export interface SyncRoundResult {
  /** Operations the server committed from this device. */
  readonly pushed: number
  /** Versions received and applied (conflict answers and pulled changes). */
  readonly pulled: number
  /** Versions of this device's own the server skipped (echo suppression). */
  readonly skippedEchoes: number
  /** Pushed operations that met a concurrent version. */
  readonly conflicts: number
  /** HTTP round trips. */
  readonly requests: number
  /** The cursor after the round. */
  readonly cursor: number
  /** Whether the device had to rebuild from cursor 0 (its cursor was below the tombstone horizon). */
  readonly resynced: boolean
}

/** A pushed write met a concurrent version; the server's verdict. */
export interface ConflictEvent {
  readonly collection: string
  readonly id: string
  readonly outcome: Extract<PushOutcome, 'conflict_won' | 'conflict_lost'>
  /** The version the server stored (the winner's content, merged version vector). */
  readonly version: DocumentVersion | undefined
}

export type SyncState = 'stopped' | 'idle' | 'syncing' | 'backoff'

/**
 * The live channel: `off` (not asked for), `connecting` (opening it, or waiting to reopen
 * it after it dropped; the loop polls meanwhile) or `connected`.
 */
export type LiveState = 'off' | 'connecting' | 'connected'

/** The live channel opened. */
export interface LiveConnectedEvent {
  /** The server's head when the stream opened. */
  readonly head: number
}

/** The live channel dropped, or could not be opened; the loop polls and retries it. */
export interface LiveDisconnectedEvent {
  /** Why; `undefined` when the server ended the stream (it shuts down, for one). */
  readonly error: Error | undefined
}

/** A snapshot for status displays. */
export interface SyncStatus {
  readonly state: SyncState
  /** Entries waiting in the outbox. */
  readonly pendingOps: number
  readonly cursor: number
  readonly lastSyncAtMs: number | undefined
  readonly lastError: Error | undefined
  readonly consecutiveFailures: number
  /** Whether the live channel is connected (`startSync({ live: true })`). */
  readonly live: LiveState
}

interface Events {
  synced: SyncRoundResult
  conflict: ConflictEvent
  error: Error
  liveConnected: LiveConnectedEvent
  liveDisconnected: LiveDisconnectedEvent
}

/** Round trips one round may take before it stops (a runaway-loop guard, not a limit in practice). */
const MAX_REQUESTS_PER_ROUND = 100_000

/**
 * Synchronizes a {@link LocalStore} with a VeloSync server.
 *
 * @remarks
 * - One round runs at a time. A `sync()` call made while one runs gets the next round,
 *   queued behind it and shared by every call made meanwhile: the running round may be past
 *   its last push, and a resolved `sync()` means that every write made before the call was
 *   pushed (or that the round failed).
 * - An outbox entry leaves the log only after the server's answer says it committed it;
 *   the answer, its pulled changes and the new cursor are applied in one transaction.
 * - `lsn_reused` (the store was restored from a backup) starts a new epoch and retries;
 *   `resync_required` rebuilds from cursor 0, keeping unpushed local writes, and removes
 *   local documents the server no longer has.
 *
 * @example
 * ```ts
 * const sync = new SyncClient(store, { transport: new HttpTransport({ url, token }) })
 * sync.on('conflict', (c) => console.log(c.id, c.outcome))
 * await sync.sync()                      // one round now
 * sync.startSync({ intervalMs: 10_000 }) // and keep going
 * sync.startSync({ live: true })         // or: sync whenever the server says there is news
 * ```
 */
export class SyncClient {
  readonly #store: LocalStore
  readonly #transport: SyncTransport
  readonly #maxOpsPerPush: number
  readonly #pullLimit: number
  readonly #now: () => number
  readonly #random: () => number
  readonly #listeners: {
    [E in keyof Events]: Set<(event: Events[E]) => void>
  } = {
    synced: new Set(),
    conflict: new Set(),
    error: new Set(),
    liveConnected: new Set(),
    liveDisconnected: new Set(),
  }
  #round: Promise<SyncRoundResult> | undefined
  /** The round queued behind the running one (see `sync()`), and what starts it. */
  #queued:
    | { readonly round: Promise<SyncRoundResult>; readonly start: () => void }
    | undefined
  #state: SyncState = 'stopped'
  #timer: ReturnType<typeof setTimeout> | undefined
  #loop: Required<StartSyncOptions> | undefined
  #lastSyncAtMs: number | undefined
  #lastError: Error | undefined
  #failures = 0
  #liveState: LiveState = 'off'
  /** Stops the live loop; set while it runs. */
  #liveAbort: AbortController | undefined
  #liveTask: Promise<void> | undefined
  /** The newest head the live channel announced. */
  #announcedHead = 0
  /**
   * The announced head when the latest round started: that round pulls past it, so an
   * announcement up to it needs no other round (even when tombstone collection keeps the
   * cursor below the head for good).
   */
  #coveredHead = 0

  constructor(store: LocalStore, options: SyncClientOptions) {
    if (typeof options?.transport?.sync !== 'function') {
      throw invalidArgument(
        'SyncClient needs a transport (e.g. new FetchTransport({ url, token }))',
      )
    }
    this.#store = store
    this.#transport = options.transport
    this.#maxOpsPerPush = positiveInteger(
      options.maxOpsPerPush ?? 1000,
      'maxOpsPerPush',
      100_000,
    )
    this.#pullLimit = positiveInteger(
      options.pullLimit ?? 1000,
      'pullLimit',
      10_000,
    )
    this.#now = options.now ?? Date.now
    this.#random = options.random ?? Math.random
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<E extends keyof Events>(
    event: E,
    listener: (payload: Events[E]) => void,
  ): () => void {
    const listeners = this.#listeners[event] as Set<
      (payload: Events[E]) => void
    >
    listeners.add(listener)
    return () => listeners.delete(listener)
  }

  /**
   * Runs one round now or, while one runs, right after it (joining a round already queued
   * there). When it resolves, every write made before the call has been pushed.
   */
  sync(
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<SyncRoundResult> {
    if (this.#round === undefined) return this.#startRound(options.signal)
    if (this.#queued === undefined) {
      // Shared by every caller until it starts, so it runs under no one caller's signal:
      // each caller stops waiting when its own signal aborts (see untilAborted).
      let start!: () => void
      const round = new Promise<SyncRoundResult>((resolve) => {
        start = () => resolve(this.#startRound(undefined))
      })
      this.#queued = { round, start }
    }
    return untilAborted(this.#queued.round, options.signal)
  }

  #startRound(signal: AbortSignal | undefined): Promise<SyncRoundResult> {
    const round = this.#runRound(signal).finally(() => {
      // The queued round starts in the same step, so that no call in between sees no
      // round running and starts a second one beside it.
      this.#round = undefined
      const queued = this.#queued
      this.#queued = undefined
      queued?.start()
    })
    this.#round = round
    return round
  }

  /**
   * Keeps syncing in the background until {@link stopSync}. Errors go to `error` listeners.
   * Calling it again changes the options of the running loop.
   *
   * @throws `invalid_argument` for a bad option, or `live` with a transport that has no
   *   live channel.
   */
  startSync(options: StartSyncOptions = {}): void {
    const live = options.live ?? false
    if (live && typeof this.#transport.heads !== 'function') {
      throw invalidArgument(
        'live: true needs a transport with a live channel (heads()), such as HttpTransport',
      )
    }
    const loop = {
      intervalMs: positiveInteger(options.intervalMs ?? 5000, 'intervalMs'),
      minBackoffMs: positiveInteger(
        options.minBackoffMs ?? 500,
        'minBackoffMs',
      ),
      maxBackoffMs: positiveInteger(
        options.maxBackoffMs ?? 60_000,
        'maxBackoffMs',
      ),
      live,
      liveIntervalMs: positiveInteger(
        options.liveIntervalMs ?? 60_000,
        'liveIntervalMs',
      ),
    }
    if (loop.maxBackoffMs < loop.minBackoffMs) {
      throw invalidArgument('maxBackoffMs must be at least minBackoffMs')
    }
    this.#loop = loop
    if (this.#state === 'stopped') this.#schedule(0, 'idle')
    if (live && this.#liveAbort === undefined) this.#startLive()
    else if (!live) void this.#stopLive()
  }

  /** Stops the loop (and the live channel) and waits for running and queued rounds. */
  async stopSync(): Promise<void> {
    this.#loop = undefined
    clearTimeout(this.#timer)
    this.#state = 'stopped'
    await this.#stopLive()
    // A round queued behind the running one starts when it ends: wait for that one too.
    while (this.#round !== undefined) await this.#round.catch(() => undefined)
  }

  status(): SyncStatus {
    return {
      state: this.#state,
      pendingOps: this.#store.outbox.size,
      cursor: this.#store.syncCursor,
      lastSyncAtMs: this.#lastSyncAtMs,
      lastError: this.#lastError,
      consecutiveFailures: this.#failures,
      live: this.#liveState,
    }
  }

  #startLive(): void {
    const controller = new AbortController()
    this.#liveAbort = controller
    this.#liveState = 'connecting'
    this.#liveTask = this.#runLive(controller.signal)
  }

  /**
   * Stops the live loop. The state is `off` at once: a loop that is still winding down
   * touches nothing once aborted, so a live loop started right after cannot be confused
   * with it.
   */
  async #stopLive(): Promise<void> {
    const task = this.#liveTask
    this.#liveAbort?.abort()
    this.#liveAbort = undefined
    this.#liveTask = undefined
    this.#liveState = 'off'
    await task
  }

  /** Holds the live channel open, reopening it with backoff, until `signal` aborts. */
  async #runLive(signal: AbortSignal): Promise<void> {
    const heads = (
      this.#transport.heads as NonNullable<SyncTransport['heads']>
    ).bind(this.#transport)
    let failures = 0
    while (!signal.aborted) {
      let error: Error | undefined
      try {
        for await (const head of heads({ signal })) {
          if (signal.aborted) break
          if (this.#liveState !== 'connected') {
            this.#liveState = 'connected'
            failures = 0
            this.#emit('liveConnected', { head })
          }
          this.#announce(head)
        }
      } catch (caught) {
        error = caught instanceof Error ? caught : new Error(String(caught))
      }
      if (signal.aborted) break
      // Announcements may be missed from now on: timer ticks poll until the stream is back.
      this.#liveState = 'connecting'
      this.#emit('liveDisconnected', { error })
      await abortableDelay(this.#backoffMs(++failures), signal)
    }
  }

  /** A head from the live channel: sync now if it is news, else just remember it. */
  #announce(head: number): void {
    this.#announcedHead = Math.max(this.#announcedHead, head)
    if (this.#state === 'idle' && this.#hasNews()) this.#schedule(0, 'idle')
  }

  /** Whether an announced head asks for a round that no round started since has covered. */
  #hasNews(): boolean {
    return (
      this.#announcedHead > this.#coveredHead &&
      this.#announcedHead > this.#store.syncCursor
    )
  }

  /**
   * Whether a timer tick can skip its round: the live channel is up and announced nothing
   * new, there is nothing to push, and the last round is less than liveIntervalMs old.
   */
  #canSkipRound(loop: Required<StartSyncOptions>): boolean {
    if (
      this.#liveState !== 'connected' ||
      this.#hasNews() ||
      this.#lastSyncAtMs === undefined ||
      this.#now() - this.#lastSyncAtMs >= loop.liveIntervalMs
    ) {
      return false
    }
    try {
      return this.#store.outbox.size === 0
    } catch {
      // A closed or failing store: let the round run, so that its error is reported.
      return false
    }
  }

  /** Exponential backoff with ±50 % jitter (see the diagram above). */
  #backoffMs(failures: number): number {
    const loop = this.#loop
    if (loop === undefined) return 0
    const exponential = loop.minBackoffMs * 2 ** Math.min(failures - 1, 30)
    const capped = Math.min(loop.maxBackoffMs, exponential)
    return Math.round(capped * (0.5 + this.#random() / 2))
  }

  #schedule(delayMs: number, state: SyncState): void {
    this.#state = state
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => void this.#tick(), delayMs)
    // A background sync loop must not keep a process alive on its own.
    this.#timer.unref?.()
  }

  async #tick(): Promise<void> {
    const loop = this.#loop
    if (loop === undefined) return
    this.#state = 'syncing'
    try {
      if (!this.#canSkipRound(loop)) await this.sync()
      if (this.#loop !== undefined)
        this.#schedule(this.#hasNews() ? 0 : this.#loop.intervalMs, 'idle')
    } catch {
      // Already recorded and reported by #runRound; back off and try again by ourselves.
      if (this.#loop === undefined) return
      this.#schedule(this.#backoffMs(this.#failures), 'backoff')
    }
  }

  async #runRound(signal: AbortSignal | undefined): Promise<SyncRoundResult> {
    this.#coveredHead = this.#announcedHead
    try {
      const result = await this.#exclusiveExchange(signal)
      this.#lastSyncAtMs = this.#now()
      this.#lastError = undefined
      this.#failures = 0
      this.#emit('synced', result)
      return result
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error))
      this.#lastError = failure
      this.#failures++
      this.#emit('error', failure)
      throw failure
    }
  }

  /**
   * {@link #exchange}, after any other client's exchange on the same store: interleaved,
   * two rounds would move the cursor back and forth, and the server would take a page
   * asked for below a cursor already acknowledged for a restored store.
   */
  async #exclusiveExchange(
    signal: AbortSignal | undefined,
  ): Promise<SyncRoundResult> {
    // First come, first served: each round queues behind the one before it. A round
    // that gives up waiting (its signal aborted) still holds its place until the round
    // before it ends, so the next never overlaps that one.
    let turns = turnsByStore.get(this.#store)
    if (turns === undefined)
      turnsByStore.set(
        this.#store,
        (turns = { last: Promise.resolve(), open: 0 }),
      )
    const before = turns.last
    // With no round running or waiting, this one starts at once, in the caller's step: a
    // write made right after sync() is then the next round's, as with one client.
    const mustWait = turns.open > 0
    let done!: () => void
    const mine = new Promise<void>((resolve) => (done = resolve))
    turns.last = before.then(() => mine)
    turns.open++
    try {
      if (mustWait) await untilAborted(before, signal)
      return await this.#exchange(signal)
    } finally {
      turns.open--
      done()
    }
  }

  async #exchange(signal: AbortSignal | undefined): Promise<SyncRoundResult> {
    const store = this.#store
    let pushed = 0
    let pulled = 0
    let skippedEchoes = 0
    let conflicts = 0
    let requests = 0
    let epochRenewed = false
    // A version skipped for an unpushed local write holds the stored cursor below it until
    // the round ends: if the write's answer is lost (a failure, a crash), the skipped version
    // may be the device's only news of the document, so the next round must pull it again.
    // The ack stays below it until the write has reached the server: a tombstone collected
    // meanwhile would never meet the write (the delete lost without a conflict). A result
    // without a seq holds at the start. The pull goes on from `pullCursor` meanwhile.
    const startCursor = store.syncCursor
    let pullCursor = startCursor
    let cursorCeiling = Number.POSITIVE_INFINITY
    // During a full resync the cursor lives in memory until the end: a crash midway must
    // leave the old (too old) cursor, so the next round resyncs again and still prunes.
    let resync: { cursor: number; seen: Map<string, Set<string>> } | undefined
    // Ends a page requested ahead when the round fails before it is awaited.
    const leftBehind = new AbortController()
    const requestSignal =
      signal === undefined
        ? leftBehind.signal
        : AbortSignal.any([signal, leftBehind.signal])
    // Async, so that every failure is a rejection of the request's promise, never a throw
    // at the call (a call sending ahead sits outside the handling of failed requests).
    const send = async (
      batch: OutboxBatch | undefined,
      cursor: number,
    ): Promise<SyncResponse> => {
      if (requests >= MAX_REQUESTS_PER_ROUND) {
        throw new VeloSyncError(
          'internal',
          `sync round exceeded ${MAX_REQUESTS_PER_ROUND} requests`,
        )
      }
      requests++
      const request: SyncRequest = {
        protocol: PROTOCOL_VERSION,
        epoch: store.epoch,
        collections: collectionsOf(store, batch),
        push: batch === undefined ? [] : pushOf(batch),
        cursor,
        pullLimit: this.#pullLimit,
        // Rebuilding: the pull must include this device's own versions too.
        fullResync: resync !== undefined,
        // Lets the server notice a store restored from an older copy (lsn_reused).
        lastLsn: store.lastLsn,
      }
      return await this.#transport.sync(request, { signal: requestSignal })
    }
    // The next request, when it was sent before the answer in hand was applied: the next
    // page of a pull, or the next push batch (`aheadBatch`).
    let ahead: Promise<SyncResponse> | undefined
    // The next push batch, taken while the previous one was at the server; sent once that
    // one is answered in full (one push in flight at a time).
    let prepared: OutboxBatch | undefined
    // The batch that the request in `ahead` pushes, if it pushes.
    let aheadBatch: OutboxBatch | undefined
    // Every batch this round took from the outbox.
    const taken = new WeakSet<OutboxBatch>()
    const take = (after?: OutboxBatch): OutboxBatch | undefined => {
      const batch = store.outbox.takeBatch({
        maxOps: this.#maxOpsPerPush,
        ...(after === undefined ? {} : { after }),
      })
      if (batch !== undefined) taken.add(batch)
      return batch
    }

    try {
      for (;;) {
        signal?.throwIfAborted()
        const sentAhead = ahead
        ahead = undefined
        const batch =
          sentAhead === undefined ? (prepared ?? take()) : aheadBatch
        aheadBatch = undefined
        prepared = undefined
        let response: SyncResponse
        try {
          const answer = sentAhead ?? send(batch, resync?.cursor ?? pullCursor)
          if (batch !== undefined) {
            // Read the next batch while the server works on this one: on another machine
            // (or core) the two overlap. Awaited below; a failure meanwhile is handled there.
            answer.catch(() => {})
            await letRequestOut()
            prepared = take(batch)
            // And encode it: the one request in flight leaves the CPU idle meanwhile.
            if (prepared !== undefined) encodeAhead(this.#transport, prepared)
          }
          response = await answer
        } catch (error) {
          // Releasing the batch releases the one prepared after it too.
          if (batch !== undefined) store.outbox.release(batch)
          prepared = undefined
          if (isVeloSyncError(error, 'lsn_reused') && !epochRenewed) {
            // This store was restored from an older copy: its LSNs were already used for
            // other content. Re-stamp the unpushed writes under a new replica, and rebuild
            // from 0: versions the lost incarnation pushed may sit behind the stored cursor.
            store.startNewEpoch()
            epochRenewed = true
            resync ??= { cursor: 0, seen: new Map() }
            continue
          }
          if (
            isVeloSyncError(error, 'resync_required') &&
            resync === undefined
          ) {
            resync = { cursor: 0, seen: new Map() }
            continue
          }
          throw error
        }

        const versions: Array<{
          collection: string
          version: DocumentVersion
          seq: number
        }> = []
        for (const result of response.results) {
          if (result.version !== undefined) {
            versions.push({
              collection: result.collection,
              version: result.version,
              seq: result.seq ?? startCursor + 1,
            })
          }
        }
        for (const change of response.changes) versions.push(change)
        if (batch === undefined && response.hasMore) {
          // A pull page, and more wait: ask for the next one now, from the cursor this page
          // ends at, so the server reads and sends it while this one is applied. Nothing
          // moves on either side until it is applied (the request is no acknowledgement),
          // and no push rides along: one push in flight at most, as ever.
          ahead = send(undefined, response.cursor)
          // Awaited by the next iteration; if this round fails first, its outcome is moot.
          ahead.catch(() => {})
          await letRequestOut()
        } else if (
          batch !== undefined &&
          prepared !== undefined &&
          response.appliedThroughLsn >= batch.lastLsn
        ) {
          // All of this push is in: send the next batch now, and confirm this one while the
          // server works on that. Still one push in flight. A crash before this confirm is
          // on disk sends this batch again after the next, and the server still tells
          // both apart from new writes: it keeps the op hashes of the push before its
          // latest (S2).
          aheadBatch = prepared
          prepared = undefined
          ahead = send(aheadBatch, response.cursor)
          ahead.catch(() => {})
          await letRequestOut()
        }
        try {
          const { skipped } = store.applyServerUpdate({
            versions,
            collections: response.collections,
            ...(batch === undefined
              ? {}
              : { confirm: { batch, throughLsn: response.appliedThroughLsn } }),
            ...(resync === undefined
              ? { cursor: Math.min(response.cursor, cursorCeiling) }
              : {}),
            // A pull page with more to come need not wait for the disk: the round's last
            // commit does (FULL, and WAL order carries this one with it) before the ack
            // tells the server anything.
            ...(batch === undefined && response.hasMore
              ? { durability: 'deferred' as const }
              : {}),
          })
          for (const position of skipped)
            cursorCeiling = Math.min(cursorCeiling, versions[position]!.seq - 1)
          pullCursor = response.cursor
        } catch (error) {
          // The local transaction rolled back, the in-memory in-flight marks did not: the
          // batch (or, once its confirm ran, the one prepared or sent after it) would stay
          // taken and wedge every later round with 'busy'. Whatever of this round's is still
          // taken goes back to the log.
          const held = store.outbox.inFlight
          if (
            held !== undefined &&
            (held === batch || held === prepared || held === aheadBatch)
          )
            store.outbox.release(held)
          prepared = undefined
          throw error
        }
        // A partial confirm returned the rest of the batch to the log, and with it the
        // batch prepared after it (it must not overtake them).
        if (batch !== undefined && response.appliedThroughLsn < batch.lastLsn)
          prepared = undefined
        // After the apply: listeners get versions the store has already taken (and a copy of
        // the vector, which they may keep or change without touching anything else).
        for (const result of response.results) {
          if (
            result.outcome === 'conflict_won' ||
            result.outcome === 'conflict_lost'
          ) {
            conflicts++
            this.#emit('conflict', {
              collection: result.collection,
              id: result.id,
              outcome: result.outcome,
              version:
                result.version === undefined
                  ? undefined
                  : {
                      ...result.version,
                      vector: result.version.vector?.slice() ?? null,
                    },
            })
          }
        }
        if (resync !== undefined) {
          resync.cursor = response.cursor
          // With fullResync the pulls return every version the server holds (this round's
          // pushes included, at their new seqs): exactly the set to keep.
          for (const { collection, version } of versions) {
            let ids = resync.seen.get(collection)
            if (ids === undefined)
              resync.seen.set(collection, (ids = new Set()))
            ids.add(version.id)
          }
        }
        pushed +=
          batch?.ops.filter((op) => op.lsn <= response.appliedThroughLsn)
            .length ?? 0
        pulled += response.changes.length
        skippedEchoes += response.skippedEchoes
        if (!response.hasMore) {
          if (batch === undefined) break
          // The last batch's answer carried the pull to the head, so another request would
          // only ask again: done, unless writes or a returned remainder wait in the log.
          if (prepared === undefined && store.outbox.size === 0) break
        }
      }
    } finally {
      // Normally nothing is left here. After a failure (or an abort between two requests),
      // stop a request still out, and put back in the log what this round still holds: a
      // batch prepared but never sent, or one sent ahead whose answer it will not apply.
      if (ahead !== undefined) leftBehind.abort()
      const held = store.outbox.inFlight
      if (held !== undefined && taken.has(held)) store.outbox.release(held)
    }

    if (resync !== undefined) store.removeAbsentDocuments(resync.seen)
    // Every write this round sent was answered: what a skip waited for came back in that
    // answer. A write still in the log was made during the round and is yet to be sent; it
    // meets what it skipped when it is (the ack below keeps tombstones for it). Nothing on
    // the server can be equal to or newer than a write never sent, so that push is applied
    // or a conflict: it stores the document at a new seq, past this cursor, and a lost
    // answer to it is caught up by a later pull (or, collected, by a resync).
    const reached = resync?.cursor ?? pullCursor
    if (reached !== store.syncCursor)
      store.applyServerUpdate({ versions: [], cursor: reached })
    const cursor = store.syncCursor
    const acked =
      store.outbox.size === 0 ? cursor : Math.min(cursor, cursorCeiling)
    await this.#transport.ack(
      { epoch: store.epoch, cursor: acked },
      signal === undefined ? {} : { signal },
    )
    return {
      pushed,
      pulled,
      skippedEchoes,
      conflicts,
      requests,
      cursor,
      resynced: resync !== undefined,
    }
  }

  #emit<E extends keyof Events>(event: E, payload: Events[E]): void {
    for (const listener of this.#listeners[event] as Set<
      (payload: Events[E]) => void
    >) {
      try {
        listener(payload)
      } catch (error) {
        // A throwing listener must not break the sync loop; surface it as an error event
        // (unless it was an error listener, which would recurse).
        if (event !== 'error')
          this.#emit(
            'error',
            error instanceof Error ? error : new Error(String(error)),
          )
      }
    }
  }
}

/**
 * Per store: `last` settles when the last round queued on it (by any client) has ended;
 * `open` counts the rounds running or waiting there.
 */
const turnsByStore = new WeakMap<
  LocalStore,
  { last: Promise<void>; open: number }
>()

/** Resolves after `ms`, or at once when `signal` aborts; never keeps a process alive. */
function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    timer.unref?.()
    signal.addEventListener('abort', done, { once: true })
    function done(): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
  })
}

/** The push of a batch's request: one array per batch, so that encodeAhead can match it. */
const pushes = new WeakMap<OutboxBatch, PushOp[]>()
function pushOf(batch: OutboxBatch): PushOp[] {
  let push = pushes.get(batch)
  if (push === undefined) {
    push = batch.ops.map(({ lsn, collection, version }) => ({
      lsn,
      collection,
      version,
    }))
    pushes.set(batch, push)
  }
  return push
}

/**
 * Lets a request just started reach the socket before synchronous work (the next batch,
 * a page's apply) holds the thread, so that the server works meanwhile. undici writes a
 * request on an idle keep-alive socket from an Immediate (it first lets a close by the
 * server arrive), and on a new connection once the connect event is in: two turns of the
 * event loop cover both on a local network. With one turn, the first two requests of a
 * round went out 10–30 ms late, after the next batch was read and encoded (measured).
 */
function letRequestOut(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)))
}

/** Hands a batch's push to the transport's optional encodeAhead: a hint, so never fatal. */
function encodeAhead(transport: SyncTransport, batch: OutboxBatch): void {
  try {
    transport.encodeAhead?.(pushOf(batch))
  } catch {
    // The request that sends the batch encodes it whole instead.
  }
}

/** Specs of the collections a batch names (the server creates unknown ones). */
function collectionsOf(store: LocalStore, batch: OutboxBatch | undefined) {
  const names = new Set(batch?.ops.map((op) => op.collection) ?? [])
  return store.listCollections().filter((schema) => names.has(schema.name))
}

function positiveInteger(
  value: number,
  name: string,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw invalidArgument(
      `${name} must be an integer in 1..${max}, got ${describe(value)}`,
    )
  }
  return value
}

/** `promise`, or a rejection with the signal's reason as soon as `signal` aborts. */
function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T> {
  if (signal === undefined) return promise
  if (signal.aborted) return Promise.reject(signal.reason as Error)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(error instanceof Error ? error : new Error(String(error)))
      },
    )
  })
}
