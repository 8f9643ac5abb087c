import type { ConflictResolver, PushOutcome } from '../log/resolve.js'
import type { CollectionSchema } from '../model/collection.js'
import type { DocumentVersion } from '../model/document-version.js'

/**
 * A server sequence number: a safe integer ≥ 0. Every version the server stores gets the
 * next one; 0 means "before everything" (the cursor of a device that has pulled nothing).
 */
export type Seq = number

/**
 * One incarnation of one device, as authenticated by the server: the device id comes from
 * its token, never from a request body (DESIGN 8). Its replica id, the key in version
 * vectors, is `replicaIdOf(deviceId, epoch)`.
 */
export interface ReplicaRef {
  readonly deviceId: string
  readonly epoch: string
}

/** One operation of a push: the version a replica's log entry `lsn` produced. */
export interface PushOp {
  /** The replica's log sequence number: a safe integer ≥ 1. */
  readonly lsn: number
  readonly collection: string
  /**
   * The pushed version. Its `origin` must be the pushing replica's id: the server sets it
   * from the credentials before it calls the store, and the store rejects any other.
   */
  readonly version: DocumentVersion
}

/** What happened to one pushed operation. */
export interface OpResult {
  readonly lsn: number
  readonly id: string
  readonly collection: string
  readonly outcome: PushOutcome
  /** The sequence number of the version this op stored; absent when nothing changed. */
  readonly seq?: Seq
  /**
   * The server's version when it differs from what was pushed: the merged version after a
   * conflict (won or lost), or the newer stored version when the push was stale.
   */
  readonly version?: DocumentVersion
}

/** The result of {@link ServerStore.push}. */
export interface PushResult {
  /** One per op, in the order pushed. */
  readonly results: readonly OpResult[]
  /**
   * The highest LSN of this replica that the server has durably applied (after this push).
   * The device may drop every outbox entry up to it.
   */
  readonly appliedThroughLsn: number
  /** The server's head sequence number after this push. */
  readonly head: Seq
}

/** One version returned by a pull. */
export interface PulledVersion {
  readonly seq: Seq
  readonly collection: string
  readonly version: DocumentVersion
}

/** The result of {@link ServerStore.pull}. */
export interface PullResult {
  /** Versions with `seq` greater than the request's cursor, ascending. */
  readonly versions: readonly PulledVersion[]
  /**
   * The cursor for the next pull: the seq of the last version examined, returned or
   * skipped as an echo (the request's cursor when there was nothing after it).
   */
  readonly cursor: Seq
  /** Whether versions after `cursor` exist (pull again without waiting). */
  readonly hasMore: boolean
  /** How many of this replica's own unchanged versions were skipped (DESIGN 6). */
  readonly skippedEchoes: number
}

/** A resolved conflict, kept so that no losing write disappears silently (DESIGN 4). */
export interface ConflictRecord {
  /** The seq of the merged version that resolved the conflict. */
  readonly seq: Seq
  readonly collection: string
  readonly id: string
  /** The version stored after resolution: the winner's content under the merged vector. */
  readonly winner: DocumentVersion
  /** The losing version, exactly as it was. */
  readonly loser: DocumentVersion
  readonly resolvedAtMs: number
}

/** Options of {@link ServerStore.pull}. */
export interface PullOptions {
  /**
   * Return this replica's own unchanged versions too (no echo suppression). A device
   * rebuilding from cursor 0 after `resync_required` needs every version to know which
   * of its documents the server no longer has. Default `false`.
   */
  readonly includeEchoes?: boolean
}

/** Options of {@link ServerStore.push}. */
export interface PushOptions {
  /** Picks the winner of concurrent versions. Default: the rule of `resolveIncoming`. */
  readonly resolver?: ConflictResolver
  /** The time recorded for this push (replica last seen, conflicts, document updates). Default: the store's clock. */
  readonly nowMs?: number
  /**
   * Bounds how far a pushed version's HLC may lead `nowMs` in conflict resolution (S13):
   * a non-negative number of ms. Default: unbounded (HLCs compete as they are).
   */
  readonly maxClockLeadMs?: number
}

/** Options of {@link ServerStore.conflicts}. */
export interface ConflictQuery {
  /** Only conflicts of this collection. Default: all. */
  readonly collection?: string
  /** Only conflicts with a greater seq (pagination). Default 0. */
  readonly afterSeq?: Seq
  /** At most this many, a positive integer. */
  readonly limit: number
}

/** Options of {@link ServerStore.collectGarbage}. */
export interface GarbageCollectionOptions {
  /** The current time. */
  readonly nowMs: number
  /** How long a tombstone (and a silent replica's claim on it) is kept, in ms. */
  readonly retentionMs: number
}

/** The result of {@link ServerStore.collectGarbage}. */
export interface GarbageCollectionResult {
  readonly removedTombstones: number
  /** The tombstone horizon after the collection (see {@link ServerStore.pull}). */
  readonly horizon: Seq
}

/** What a store knows of one replica (see {@link ServerStore.replicaProgress}). */
export interface ReplicaProgress {
  /** The highest LSN applied (S2); 0 if it never pushed. */
  readonly appliedLsn: number
  /** The cursor it last acknowledged (S7); 0 if it never did. */
  readonly ackedCursor: Seq
}

/** Options of {@link ServerStore.checkCursor}. */
export interface CheckCursorOptions {
  /**
   * The replica had pushes applied before this request and does not ask for a full
   * resync. At cursor 0 it then lost the answer to its first push, and cursor 0 would skip
   * the horizon: deletes it never saw may have been collected, so it must resync.
   */
  readonly pushedBefore?: boolean
}

/**
 * The sync server's master store: collections, the newest version of every document, the
 * ordered change feed, per-replica exactly-once state, conflict records and device tokens.
 * Implemented by `@velosync/storage-sqlite` (embedded) and `@velosync/storage-postgres`
 * (several server processes); both run the shared rules of `server-store-rules.ts` and
 * must pass the conformance suite `describeServerStore` in `@velosync/testkit`, whose test
 * titles cite the guarantees below by number.
 *
 * @remarks
 * Guarantees:
 *
 * 1. **S1 Atomic push.** `push` commits every op's effect, their seqs, the conflict records,
 *    the collection digests and the replica's applied LSN in one transaction, or nothing.
 *
 * 2. **S2 Exactly-once (DESIGN 2).** Ops must come in strictly increasing LSN order
 *    (else `invalid_argument`). The store keeps, per replica, the highest applied LSN and
 *    a hash of every op it accepted (collection + pushed version). An op whose LSN is at
 *    or below the applied LSN is a replay: if its hash equals the one recorded for
 *    (replica, lsn) the outcome is `duplicate` and nothing changes; otherwise (different
 *    content, or an LSN this replica skipped) the whole push fails with `lsn_reused` and
 *    nothing is stored: the device must call `startNewEpoch()` and push again under its new
 *    replica id. Ops above the applied LSN are new and are resolved by S3. A store may
 *    forget the hashes of LSNs below the first LSN of the push before a replica's latest:
 *    a device pushes its oldest pending entries first, and sends a batch once the one
 *    before was answered, so it no longer holds those (it may still hold the answered
 *    one's, if a crash cut its confirm short). A replay of such an LSN is then answered
 *    with `lsn_reused`, which is safe: under a new epoch the same content is pushed again
 *    as new writes: nothing is lost, and the worst case is a newer version with the same
 *    content.
 *
 * 3. **S3 Conflict rule (DESIGN 4).** A new op is resolved against the stored version of
 *    its document by `resolveIncoming` (with `options.resolver` if given): `applied`,
 *    `duplicate`, `stale`, `conflict_won` or `conflict_lost`. After a conflict the merged
 *    version is stored and a {@link ConflictRecord} (winner and loser) is kept, listed by
 *    `conflicts()` in seq order.
 *
 * 4. **S4 Gap-free ordered feed (DESIGN 5).** Every op that changes stored state gets the
 *    next seq: the seqs handed out are exactly 1, 2, 3, … with no gap and no reuse, and a
 *    reader never sees seq n+1 committed without seq n. The store keeps only the newest
 *    version per (collection, id), indexed by seq: that table is the compacted change log.
 *
 * 5. **S5 Pull and echo suppression (DESIGN 6).** `pull(replica, cursor, limit)` returns the
 *    stored versions with seq > cursor in ascending order, at most `limit` of them. It
 *    skips versions that this replica pushed and the server stored exactly as pushed
 *    (outcome `applied`), but advances the returned cursor past them and counts them in
 *    `skippedEchoes`, unless the caller asks for `includeEchoes` (a full resync).
 *    Merged versions after a conflict, won or lost, are not echoes: the
 *    pusher receives them. Echoes that directly follow a full page are skipped too, so
 *    `hasMore` is false when only the replica's own versions remain. A page may hold
 *    fewer than `limit` versions, even none, while `hasMore` is true (a store may bound
 *    the rows one pull examines); the cursor still advances.
 *
 * 6. **S6 Resync.** `pull` with `0 < cursor < horizon` throws `resync_required`: tombstones
 *    at or below the horizon were collected, so such a device may have missed deletes. So
 *    does a cursor above the head (the server's data is older than the device's, e.g.
 *    restored from a backup). The device recovers by pulling from 0; cursor 0 never
 *    throws from `pull`. `checkCursor` refuses it too for a replica that pushed before
 *    (the answer to its first push was lost) once tombstones were collected.
 *
 * 7. **S7 Acks and tombstone retention.** `ack` records the replica's cursor (at most the
 *    head; a lower one than recorded, such as a late duplicate request, leaves it as it
 *    is) and when it was last seen; `push` also marks the replica seen. `collectGarbage`
 *    removes every tombstone whose seq is at or below the smallest acked cursor of the
 *    replicas seen within `retentionMs`, and every tombstone older than `retentionMs`;
 *    the horizon becomes the highest removed seq (it never goes down). Live documents are
 *    never collected.
 *
 * 8. **S8 Digest (DESIGN 3).** `digest(collection)` is the `CollectionDigest` of the live
 *    documents (the sum of `hashDocumentVersion` over the stored versions), maintained in the
 *    push transaction: a device holding exactly the pulled versions has the same digest.
 *
 * 9. **S9 Bad input changes nothing (DESIGN 7).** An unknown collection (`not_found`), a
 *    version that does not fit its collection (vector length or dtype, NaN/Infinity,
 *    non-canonical metadata, a live version without a body, a bad id, vector or HLC), an
 *    origin other than the pusher, bad LSNs or options (`invalid_argument`) are all
 *    rejected before anything is written.
 *
 * 10. **S10 Collections.** `ensureCollection` creates a collection or returns the existing
 *    one with the same settings; a different schema under an existing name throws
 *    `already_exists` (collections are immutable: their dtype and dims are in every hash).
 *
 * 11. **S11 Device tokens (DESIGN 8).** Only hashes of tokens are stored. A hash maps to
 *    one device until revoked; `findDeviceByTokenHash` ignores revoked tokens; creating a
 *    hash that exists throws `already_exists`.
 *
 * 12. **S12 Lifecycle.** `close()` is idempotent; any other call after it throws `closed`.
 *    Driver failures surface as `storage_failure` with the driver's error as `cause`.
 *
 * 13. **S13 Bounded clock lead.** A stored document may carry an effective wall time.
 *    When `push` resolves an op with `maxClockLeadMs` set, it passes `resolveIncoming` a
 *    `ClockBound` of `{ nowMs, maxLeadMs: maxClockLeadMs, currentEffectiveMs }` (the stored
 *    row's effective time; absent for rows stored without one, which then compete with
 *    their HLC) and stores the resolution's `storedEffectiveMs` with the new row. A version
 *    whose HLC says 2099 thus competes at its acceptance time plus the bound, for as long
 *    as it is stored; equal effective times fall back to the HLC as sent. Acceptance
 *    times never go back: `nowMs` is raised to the latest one the store used before
 *    (`monotonePushClock`), so a successor never competes earlier than its ancestor
 *    when a server clock steps back or several servers' clocks disagree. Without
 *    `maxClockLeadMs`, rows are stored without an effective time.
 *
 * All methods are async so that a networked backend can implement the same port.
 */
export interface ServerStore {
  /**
   * Creates a collection, or returns the existing one of that name (S10).
   *
   * @throws `already_exists` when it exists with other dims, metric or dtype;
   *   `invalid_argument` for an invalid schema.
   */
  ensureCollection(schema: CollectionSchema): Promise<CollectionSchema>
  /** The collection's schema, or `undefined`. */
  getCollection(name: string): Promise<CollectionSchema | undefined>
  /** All collections, sorted by name. */
  listCollections(): Promise<CollectionSchema[]>
  /**
   * Applies a replica's batch atomically (S1–S4, S9).
   *
   * @throws `invalid_argument`, `not_found`, `lsn_reused` (nothing stored in any case).
   */
  push(
    replica: ReplicaRef,
    ops: readonly PushOp[],
    options?: PushOptions,
  ): Promise<PushResult>
  /**
   * The changes after `cursor` for `replica`, at most `limit` (a positive integer) (S5, S6).
   *
   * @throws `resync_required` (see S6); `invalid_argument` for a bad cursor or limit.
   */
  pull(
    replica: ReplicaRef,
    cursor: Seq,
    limit: number,
    options?: PullOptions,
  ): Promise<PullResult>
  /**
   * Records that `replica` has pulled through `cursor` (S7).
   *
   * @throws `invalid_argument` for a cursor that is negative or above the head.
   */
  ack(replica: ReplicaRef, cursor: Seq): Promise<void>
  /**
   * The collection digest: 64 hex digits (S8).
   *
   * @throws `not_found` for an unknown collection.
   */
  digest(collection: string): Promise<string>
  /** Recorded conflicts in seq order (S3). */
  conflicts(options: ConflictQuery): Promise<ConflictRecord[]>
  /** Removes tombstones that no replica needs any more and raises the horizon (S7). */
  collectGarbage(
    options: GarbageCollectionOptions,
  ): Promise<GarbageCollectionResult>
  /**
   * Registers a token (by its hash: the raw token is never stored) for `deviceId` (S11).
   *
   * @throws `already_exists` when the hash is registered already; `invalid_argument`
   *   for a bad device id or hash.
   */
  createDeviceToken(deviceId: string, tokenHash: string): Promise<void>
  /** The device a live (not revoked) token hash belongs to, or `undefined`. */
  findDeviceByTokenHash(tokenHash: string): Promise<string | undefined>
  /** Revokes every live token of a device. @returns how many were revoked. */
  revokeDeviceTokens(deviceId: string): Promise<number>
  /** The highest seq handed out (0 for an empty store). */
  head(): Promise<Seq>
  /**
   * Throws `resync_required` when `pull` from `cursor` would (S6), without reading any
   * version: lets a server refuse a stale cursor before it pushes. With
   * `pushedBefore`, also for cursor 0 once tombstones were collected.
   */
  checkCursor(cursor: Seq, options?: CheckCursorOptions): Promise<void>
  /**
   * The highest LSN applied for `replica` and the cursor it last acknowledged (0 and 0 for
   * a replica never seen). A device whose newest LSN is lower than the one, or whose
   * cursor is lower than the other, was restored from an older copy of its store.
   */
  replicaProgress(replica: ReplicaRef): Promise<ReplicaProgress>
  /** Releases the store (S12). */
  close(): Promise<void>
}
