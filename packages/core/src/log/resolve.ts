import { VeloSyncError } from '../errors.js'
import type { DocumentVersion } from '../model/document-version.js'
import { compareHlc } from '../model/hlc.js'
import {
  compareVersionVectors,
  mergeVersionVectors,
  versionVectorToJson,
} from '../model/version-vector.js'

/**
 * What the server did with one pushed version.
 *
 * - `applied`: it was newer than the stored one (or the document was new) and is now stored.
 * - `duplicate`: the stored version has the same version vector; nothing changed.
 * - `stale`: the stored version has already seen it; nothing changed.
 * - `conflict_won` / `conflict_lost`: the two were concurrent; the pushed version's content
 *   won or lost, and the stored version is the winner's content under the merged vector.
 */
export type PushOutcome =
  'applied' | 'duplicate' | 'stale' | 'conflict_won' | 'conflict_lost'

/** The result of {@link resolveIncoming}. */
export interface Resolution {
  readonly outcome: PushOutcome
  /** The new stored version; absent when the stored state does not change. */
  readonly stored?: DocumentVersion
  /** For a conflict: the version whose content lost, exactly as it was. */
  readonly loser?: DocumentVersion
  /**
   * With a {@link ClockBound}: the effective wall time of the stored content, which the
   * store keeps with the row and passes back as `currentEffectiveMs`.
   */
  readonly storedEffectiveMs?: number
}

/**
 * Bounds how far into the future a version's HLC may reach when it competes in a
 * conflict, so that a device whose clock says 2099 does not win every later conflict
 * forever. A version competes with its effective time, `min(hlc.wallMs, acceptedAtMs +
 * maxLeadMs)`, fixed when the server accepts it; equal effective times fall back to the
 * default rule (HLC, then origin). The HLC itself is stored unchanged.
 */
export interface ClockBound {
  /** The server's wall clock now, when the incoming version is accepted (ms). */
  readonly nowMs: number
  /** How far a version's HLC may lead the server's clock (ms, >= 0). */
  readonly maxLeadMs: number
  /** The stored version's effective wall time as recorded; default its HLC wall time. */
  readonly currentEffectiveMs?: number
}

/**
 * Picks the winner of two concurrent versions of one document.
 *
 * @remarks
 * It must return one of its two arguments (the same object), and must be pure and
 * deterministic: it runs only on the server, and every replica converges to its answer.
 * {@link resolveIncoming} always passes the pair in the same order whichever version was
 * stored first, so a resolver that always returns its first or second argument is still
 * order-independent.
 */
export type ConflictResolver = (
  a: DocumentVersion,
  b: DocumentVersion,
) => DocumentVersion

/**
 * The default rule: the later hybrid-logical-clock time wins; on a tie, the larger origin
 * replica id; on a further tie (two different versions that claim the same time and
 * writer, which only a broken or malicious device produces), the larger canonical vector,
 * so that the rule stays a total order.
 *
 * @returns a positive number when `a` wins, negative when `b` wins, 0 only for versions
 *   that agree on time, origin and vector.
 */
export function compareByDefaultRule(
  a: DocumentVersion,
  b: DocumentVersion,
): number {
  const byTime = compareHlc(a.hlc, b.hlc)
  if (byTime !== 0) return byTime
  if (a.origin !== b.origin) return a.origin > b.origin ? 1 : -1
  const aVector = versionVectorToJson(a.versionVector)
  const bVector = versionVectorToJson(b.versionVector)
  return aVector === bVector ? 0 : aVector > bVector ? 1 : -1
}

/**
 * Decides what happens when a version of a document arrives at the server (DESIGN
 * invariant 4). Pure: it reads nothing but its arguments.
 *
 * @remarks
 * - No stored version: `applied`, and `incoming` is stored.
 * - `incoming` dominates the stored vector: `applied`. Equal vectors: `duplicate`.
 *   Dominated: `stale`. Neither of the last two changes anything.
 * - Concurrent: the winner is chosen by `resolver`, or by
 *   {@link compareByDefaultRule}. The stored version is the winner's content, HLC and
 *   origin under the merge of both vectors, so it dominates both and a later write from
 *   either side supersedes it. The outcome says whether `incoming` won, and `loser` is the
 *   other version unchanged, for the conflict record.
 *
 * The result does not depend on which of two versions arrived first: both orders store the
 * same content under the same vector.
 *
 * @throws `internal` when a custom resolver returns something other than one of its
 *   arguments.
 */
export function resolveIncoming(
  current: DocumentVersion | undefined,
  incoming: DocumentVersion,
  resolver?: ConflictResolver,
  bound?: ClockBound,
): Resolution {
  const incomingMs =
    bound === undefined
      ? undefined
      : Math.min(incoming.hlc.wallMs, bound.nowMs + bound.maxLeadMs)
  const applied: Resolution =
    incomingMs === undefined
      ? { outcome: 'applied', stored: incoming }
      : { outcome: 'applied', stored: incoming, storedEffectiveMs: incomingMs }
  if (current === undefined) return applied
  switch (
    compareVersionVectors(incoming.versionVector, current.versionVector)
  ) {
    case 'dominates':
      return applied
    case 'equal':
      return { outcome: 'duplicate' }
    case 'dominated':
      return { outcome: 'stale' }
    case 'concurrent':
      break
  }
  // Hand the pair to the resolver in a fixed order (default-rule winner first), so that a
  // resolver that is not symmetric still cannot make the answer depend on arrival order.
  // Under a clock bound the rule sees effective times first; the resolver still gets the
  // versions as they are.
  const currentMs =
    bound === undefined
      ? undefined
      : (bound.currentEffectiveMs ?? current.hlc.wallMs)
  const [first, second] =
    compareEffective(incoming, incomingMs, current, currentMs) >= 0
      ? [incoming, current]
      : [current, incoming]
  const winner = resolver === undefined ? first : resolver(first, second)
  if (winner !== first && winner !== second) {
    throw new VeloSyncError(
      'internal',
      `the conflict resolver for document ${JSON.stringify(incoming.id)} returned neither of its two arguments`,
    )
  }
  const loser = winner === first ? second : first
  const winnerMs = winner === incoming ? incomingMs : currentMs
  return {
    outcome: winner === incoming ? 'conflict_won' : 'conflict_lost',
    stored: {
      ...winner,
      versionVector: mergeVersionVectors(
        winner.versionVector,
        loser.versionVector,
      ),
    },
    loser,
    ...(winnerMs === undefined ? {} : { storedEffectiveMs: winnerMs }),
  }
}

/**
 * The default rule under a clock bound: the later effective time wins, and only a tie
 * falls back to the full rule. The HLC, not a clamped stand-in, breaks that tie because
 * it follows causality (a write is stamped after the version it replaces, and is
 * accepted no earlier), so a successor never ranks below its ancestor and the stored
 * state is the same whatever order the versions arrive in.
 */
function compareEffective(
  a: DocumentVersion,
  aMs: number | undefined,
  b: DocumentVersion,
  bMs: number | undefined,
): number {
  if (aMs !== undefined && bMs !== undefined && aMs !== bMs)
    return aMs > bMs ? 1 : -1
  return compareByDefaultRule(a, b)
}
