import { invalidArgument } from '../errors.js'

/**
 * A hybrid logical clock timestamp: wall-clock milliseconds plus a counter that orders
 * events within (or stuck at) the same millisecond.
 */
export interface HlcTimestamp {
  readonly wallMs: number
  readonly counter: number
}

/** Largest counter before the clock borrows the next millisecond. */
export const HLC_MAX_COUNTER = 0xffff_ffff

/** Default bound on how far a remote timestamp may pull this clock ahead of the wall clock. */
export const DEFAULT_MAX_FORWARD_DRIFT_MS = 60_000

export interface HybridLogicalClockOptions {
  /** Source of wall-clock milliseconds. Default `Date.now`. */
  readonly wallClock?: () => number
  /**
   * Remote timestamps are absorbed only up to `wall + maxForwardDriftMs`. Default 60 000.
   * This keeps one peer with a clock in the far future from dragging every clock it
   * talks to (and every later write) into that future.
   */
  readonly maxForwardDriftMs?: number
  /** The last timestamp issued before a restart, so the clock never goes backwards. */
  readonly last?: HlcTimestamp
}

/** Orders timestamps: negative when `a` is earlier, 0 when equal, positive when later. */
export function compareHlc(a: HlcTimestamp, b: HlcTimestamp): number {
  return a.wallMs - b.wallMs || a.counter - b.counter
}

/**
 * A hybrid logical clock (Kulkarni et al.), monotonic across calls and restarts.
 *
 * @remarks
 * Guarantees:
 * - `now()` is strictly greater than every timestamp it returned before and than every
 *   timestamp passed to `observe()` (after clamping, below).
 * - If the wall clock moves backwards, timestamps keep their last `wallMs` and the counter
 *   advances; when the counter is exhausted the clock borrows the next millisecond.
 * - Bound: `observe(remote)` never moves this clock beyond `wall + maxForwardDriftMs`. A
 *   remote timestamp from the far future is clamped to that bound, so this clock leads its
 *   own wall clock by at most `maxForwardDriftMs` because of peers. (Only this device's own
 *   wall clock can put its timestamps further ahead; the server applies the same bound to
 *   what devices send.)
 */
export class HybridLogicalClock {
  readonly #wallClock: () => number
  readonly #maxForwardDriftMs: number
  #last: HlcTimestamp

  constructor(options: HybridLogicalClockOptions = {}) {
    this.#wallClock = options.wallClock ?? Date.now
    this.#maxForwardDriftMs =
      options.maxForwardDriftMs ?? DEFAULT_MAX_FORWARD_DRIFT_MS
    if (
      !Number.isFinite(this.#maxForwardDriftMs) ||
      this.#maxForwardDriftMs < 0
    ) {
      throw invalidArgument(`maxForwardDriftMs must be a non-negative number`)
    }
    this.#last = options.last
      ? assertHlc(options.last)
      : { wallMs: 0, counter: 0 }
  }

  /** The last timestamp issued or absorbed. */
  get last(): HlcTimestamp {
    return this.#last
  }

  /** A new timestamp for a local event. */
  now(): HlcTimestamp {
    const wall = Math.floor(this.#wallClock())
    this.#last =
      wall > this.#last.wallMs
        ? { wallMs: wall, counter: 0 }
        : successor(this.#last)
    return this.#last
  }

  /** Moves the clock past a timestamp received from a peer (clamped, see remarks). */
  observe(remote: HlcTimestamp): void {
    assertHlc(remote)
    const bound = Math.floor(this.#wallClock()) + this.#maxForwardDriftMs
    const absorbed =
      remote.wallMs > bound ? { wallMs: bound, counter: 0 } : remote
    if (compareHlc(absorbed, this.#last) > 0) this.#last = absorbed
  }
}

/**
 * `t`, or the first timestamp after `floor` when `t` is not later: the timestamp of a write
 * that replaces a version stamped `floor`.
 *
 * @remarks
 * The clock's bound (see {@link HybridLogicalClock}) may keep it from absorbing a peer's
 * far-future timestamp, and then `now()` could stamp a write that supersedes that peer's
 * version with an earlier time. Each write is therefore stamped later than the version it
 * replaces, without moving the clock itself: the document's timeline stays causal (every
 * version is later than every version it dominates, which makes the conflict rule's result
 * independent of arrival order), and the clock stays within its bound for other documents.
 */
export function laterThan(t: HlcTimestamp, floor: HlcTimestamp): HlcTimestamp {
  return compareHlc(t, floor) > 0 ? t : successor(floor)
}

function successor(t: HlcTimestamp): HlcTimestamp {
  return t.counter < HLC_MAX_COUNTER
    ? { wallMs: t.wallMs, counter: t.counter + 1 }
    : { wallMs: t.wallMs + 1, counter: 0 }
}

/** Validates an HLC timestamp from untrusted input and returns it. */
export function assertHlc(value: HlcTimestamp): HlcTimestamp {
  if (
    typeof value !== 'object' ||
    value === null ||
    !Number.isSafeInteger(value.wallMs) ||
    value.wallMs < 0 ||
    !Number.isSafeInteger(value.counter) ||
    value.counter < 0 ||
    value.counter > HLC_MAX_COUNTER
  ) {
    throw invalidArgument(
      `HLC timestamp must be { wallMs: integer >= 0, counter: integer in 0..${HLC_MAX_COUNTER} }`,
    )
  }
  return value
}
