/*
 * The parts of a ServerStore that do not depend on the database: argument checks, the
 * validation and hashing of a push, the per-op decisions of a push (S2, S3, S4, S8) and the
 * paging of a pull (S5). Every backend runs these same functions inside its own
 * transactions, so SQLite and PostgreSQL cannot drift apart in behaviour; a backend only
 * reads rows, hands them over, and writes what the plan says.
 */
import { VeloSyncError, invalidArgument, isVeloSyncError } from '../errors.js'
import {
  resolveIncoming,
  type ClockBound,
  type ConflictResolver,
  type Resolution,
} from '../log/resolve.js'
import { CollectionDigest } from '../model/collection-digest.js'
import type { CollectionSchema } from '../model/collection.js'
import {
  hashDocumentVersion,
  type DocumentVersion,
  type Sha256,
} from '../model/document-version.js'
import { assertHlc } from '../model/hlc.js'
import {
  assertCollectionName,
  assertDocumentId,
  describe,
  replicaIdOf,
  type ReplicaId,
} from '../model/ids.js'
import { canonicalMetadataJson } from '../model/metadata.js'
import { isValidatedFor } from '../model/validated-version.js'
import { toStoredVector } from '../model/vector.js'
import {
  compareVersionVectors,
  counterOf,
  parseVersionVector,
  type VersionVector,
} from '../model/version-vector.js'
import type {
  OpResult,
  PullResult,
  PulledVersion,
  PushOp,
  ReplicaRef,
  Seq,
} from './server-store.js'

/** Longest accepted token hash (hex or base64 of any reasonable digest fits). */
export const MAX_TOKEN_HASH_LENGTH = 256

/** The replica id of an authenticated replica, or `invalid_argument`. */
export function replicaIdOfRef(replica: ReplicaRef): ReplicaId {
  if (typeof replica !== 'object' || replica === null) {
    throw invalidArgument(
      `replica must be { deviceId, epoch }, got ${describe(replica)}`,
    )
  }
  return replicaIdOf(replica.deviceId, replica.epoch)
}

/** Throws `invalid_argument` unless `value` is a safe integer ≥ 0. */
export function assertSeq(value: unknown, what: string): asserts value is Seq {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw invalidArgument(
      `${what} must be a non-negative integer, got ${describe(value)}`,
    )
  }
}

/** Throws `invalid_argument` unless `value` is a safe integer ≥ 1. */
export function assertLimit(
  value: unknown,
  what = 'limit',
): asserts value is number {
  if (!Number.isSafeInteger(value) || (value as number) < 1) {
    throw invalidArgument(
      `${what} must be a positive integer, got ${describe(value)}`,
    )
  }
}

/** Throws `invalid_argument` unless `tokenHash` is a non-empty string of sane length. */
export function assertTokenHash(
  tokenHash: unknown,
): asserts tokenHash is string {
  if (
    typeof tokenHash !== 'string' ||
    tokenHash.length === 0 ||
    tokenHash.length > MAX_TOKEN_HASH_LENGTH
  ) {
    throw invalidArgument(
      `a token hash must be a non-empty string of at most ${MAX_TOKEN_HASH_LENGTH} characters`,
    )
  }
}

/** `value`, or the wall clock when absent; `invalid_argument` unless a safe integer ≥ 0. */
export function timeMs(
  value: number | undefined,
  wallClock: () => number,
  what: string,
): number {
  const nowMs = value ?? Math.floor(wallClock())
  if (!Number.isSafeInteger(nowMs) || nowMs < 0) {
    throw invalidArgument(
      `${what} must be a non-negative integer of milliseconds, got ${describe(nowMs)}`,
    )
  }
  return nowMs
}

/**
 * The `resync_required` error of S6 for `cursor`, or `undefined` when a pull may proceed.
 *
 * @param pushedBefore - see `CheckCursorOptions.pushedBefore`.
 */
export function staleCursorError(
  cursor: Seq,
  head: Seq,
  horizon: Seq,
  pushedBefore = false,
): VeloSyncError | undefined {
  if (cursor > head) {
    return new VeloSyncError(
      'resync_required',
      `cursor ${cursor} is ahead of the server's head ${head} (the server's data is older than this device's); pull again from cursor 0`,
    )
  }
  if (cursor > 0 && cursor < horizon) {
    return new VeloSyncError(
      'resync_required',
      `cursor ${cursor} is older than the tombstone horizon ${horizon}: deletes it has not seen were collected; pull again from cursor 0`,
    )
  }
  if (cursor === 0 && pushedBefore && horizon > 0) {
    return new VeloSyncError(
      'resync_required',
      `this replica already pushed but pulls from cursor 0 (the answer to its first push was lost), and tombstones up to ${horizon} were collected since; pull again with fullResync`,
    )
  }
  return undefined
}

/** The `not_found` error for a collection the server does not have. */
export function unknownCollection(name: string, what?: string): VeloSyncError {
  return new VeloSyncError(
    'not_found',
    `${what === undefined ? '' : `${what}: `}collection ${describe(name)} does not exist on the server`,
  )
}

/** The `already_exists` error of S10, or `undefined` when the schemas agree. */
export function collectionMismatch(
  existing: CollectionSchema,
  wanted: CollectionSchema,
): VeloSyncError | undefined {
  if (
    existing.dims === wanted.dims &&
    existing.metric === wanted.metric &&
    existing.dtype === wanted.dtype
  ) {
    return undefined
  }
  return new VeloSyncError(
    'already_exists',
    `collection ${describe(wanted.name)} exists with dims ${existing.dims}, metric ${existing.metric}, dtype ${existing.dtype}; ` +
      `a collection's settings cannot change (they are part of every document hash), so use another name`,
  )
}

/** A backend's handle on a collection: its schema plus whatever key the backend uses. */
export interface StoreCollection {
  readonly schema: CollectionSchema
}

/** A validated push op, with everything computed that needs no transaction. */
export interface PreparedOp<C extends StoreCollection> {
  readonly lsn: number
  readonly collection: C
  readonly version: DocumentVersion
  /** SHA-256 of the version's canonical encoding (its digest contribution when live). */
  readonly versionHash: Uint8Array
  /** Identifies the op for replays: SHA-256 of collection name and version hash. */
  readonly opHash: Uint8Array
}

/**
 * Validates and hashes a push before any transaction (S2 order, S9): bad input must change
 * nothing, and the write lock should not be held for work that needs no database.
 *
 * @param findCollection - the backend's collection by name (`undefined` if unknown); it
 *   must not do I/O here, so an async backend looks the names up first.
 * @throws `invalid_argument`, `not_found`.
 */
export function preparePush<C extends StoreCollection>(
  replicaId: ReplicaId,
  ops: unknown,
  findCollection: (name: string) => C | undefined,
  sha256: Sha256,
): PreparedOp<C>[] {
  if (!Array.isArray(ops)) {
    throw invalidArgument(`ops must be an array, got ${describe(ops)}`)
  }
  const prepared: PreparedOp<C>[] = []
  let previousLsn = 0
  let previous: { name: string; collection: C } | undefined
  for (const [i, op] of (ops as unknown[]).entries()) {
    const what = `ops[${i}]`
    if (typeof op !== 'object' || op === null) {
      throw invalidArgument(`${what} must be an object, got ${describe(op)}`)
    }
    const { lsn, collection: name, version: input } = op as PushOp
    if (!Number.isSafeInteger(lsn) || lsn < 1) {
      throw invalidArgument(
        `${what}.lsn must be a positive integer, got ${describe(lsn)}`,
      )
    }
    if (lsn <= previousLsn) {
      throw invalidArgument(
        `${what}.lsn ${lsn} does not follow ${previousLsn}: ops must be in strictly increasing LSN order`,
      )
    }
    previousLsn = lsn
    // A push is usually one collection over and over: check and look up each name once.
    let collection = previous?.name === name ? previous.collection : undefined
    if (collection === undefined) {
      assertCollectionName(name)
      collection = findCollection(name)
      if (collection === undefined) throw unknownCollection(name, what)
      previous = { name, collection }
    }
    const version = checkPushedVersion(
      collection.schema,
      input,
      replicaId,
      `${what}.version`,
    )
    const versionHash = hashDocumentVersion(
      version,
      collection.schema.dtype,
      sha256,
    )
    prepared.push({
      lsn,
      collection,
      version,
      versionHash,
      opHash: opHashOf(collection.schema.name, versionHash, sha256),
    })
  }
  return prepared
}

/** A stored document as a push sees it. */
export interface StoredDocument {
  readonly version: DocumentVersion
  /** Its hash (its digest contribution); `null` for a tombstone. */
  readonly hash: Uint8Array | null
  /**
   * The effective wall time it competes with in conflicts (S13), as recorded when it was
   * stored; `null` or absent: its HLC wall time.
   */
  readonly effectiveMs?: number | null
}

/** What the backend supplies to {@link planPush}, read inside its push transaction. */
export interface PushState<C extends StoreCollection> {
  /** The replica's applied LSN (0 if it never pushed). */
  readonly appliedLsn: number
  /** The first LSN of the replica's previous push: its plan's `firstLsn` (0 if none). */
  readonly lastPushFirstLsn: number
  /** The last seq handed out. */
  readonly head: Seq
  /** The stored version (before this push) of a document that an op names, replays included; or `undefined`. */
  storedDocument(collection: C, id: string): StoredDocument | undefined
  /** The op hash recorded for this replica's `lsn`, or `undefined`. */
  recordedOpHash(lsn: number): Uint8Array | undefined
  /** The collection's digest (64 hex) before this push. */
  digest(collection: C): string
}

/** One document row to write: upsert by (collection, id), moving it to `seq`. */
export interface DocumentWrite<C extends StoreCollection> {
  readonly seq: Seq
  readonly collection: C
  readonly version: DocumentVersion
  /** Digest contribution; `null` for a tombstone. */
  readonly hash: Uint8Array | null
  /** The pusher when the version was stored exactly as pushed (echo suppression), else `null`. */
  readonly unchangedFrom: ReplicaId | null
  /** Set when a conflict was resolved: the losing version, to record. */
  readonly loser?: DocumentVersion
  /** The effective wall time to record with the row (S13); `null` without a clock bound. */
  readonly effectiveMs: number | null
}

/** The effect of a push, to be written by the backend in the same transaction. */
export interface PushPlan<C extends StoreCollection> {
  readonly results: OpResult[]
  /** In seq order; a document may appear twice (the later write wins). */
  readonly writes: DocumentWrite<C>[]
  /** Op hashes to record for new ops (S2). */
  readonly opHashes: { readonly lsn: number; readonly opHash: Uint8Array }[]
  /** The new digest of every collection the push changed. */
  readonly digests: Map<C, string>
  readonly head: Seq
  readonly appliedThroughLsn: number
  /**
   * Op hashes of this replica below this LSN can be forgotten: the smaller of this push's
   * first LSN and the previous push's. A device sends its oldest pending entries first,
   * and sends a batch once the previous one was answered, before its own confirm of that
   * answer is on disk; so a push proves that the entries before the previous push left
   * its outbox, not yet the previous push's own. A crash in between replays those, and
   * they must still be recognized. A backup-restored device that replays an older one gets
   * `lsn_reused`, which is safe (see `ServerStore` S2). Keeps about two batches of hashes
   * per replica. `undefined` for a push with no new op.
   */
  readonly forgetBelowLsn: number | undefined
  /**
   * The first LSN to record as this replica's latest push: this push's, or with no new op
   * the lower of this push's and the previous one's.
   */
  readonly firstLsn: number
}

/** The server's clock for a push with a bounded clock lead (S13). */
export interface PushClock {
  /** The time the push is accepted (ms). */
  readonly nowMs: number
  /** How far a pushed HLC may lead `nowMs` when it competes in a conflict (ms). */
  readonly maxLeadMs: number
}

/**
 * The {@link PushClock} of a push's options: `undefined` without `maxClockLeadMs`.
 *
 * @throws `invalid_argument` unless `maxClockLeadMs` is a non-negative integer.
 */
export function pushClockOf(
  maxClockLeadMs: unknown,
  nowMs: number,
): PushClock | undefined {
  if (maxClockLeadMs === undefined) return undefined
  if (
    typeof maxClockLeadMs !== 'number' ||
    !Number.isSafeInteger(maxClockLeadMs) ||
    maxClockLeadMs < 0
  ) {
    throw invalidArgument(
      `maxClockLeadMs must be a non-negative integer, got ${describe(maxClockLeadMs)}`,
    )
  }
  return { nowMs, maxLeadMs: maxClockLeadMs }
}

/**
 * The clock a push resolves with under S13: its acceptance time is never earlier than
 * the latest one the store has used (`lastAcceptedMs`), so a version is never accepted
 * "before" one that was there when its device wrote it, even when the server's wall clock
 * steps back or several server processes' clocks disagree. The store records the result's
 * `nowMs` as its new latest.
 */
export function monotonePushClock(
  clock: PushClock | undefined,
  lastAcceptedMs: number,
): PushClock | undefined {
  return clock === undefined || clock.nowMs >= lastAcceptedMs
    ? clock
    : { ...clock, nowMs: lastAcceptedMs }
}

/**
 * Decides the effect of a validated push (S2 exactly-once, S3 conflict rule, S4 seqs, S8
 * digests) from the state the backend read inside its push transaction. Pure: the backend
 * writes the plan in the same transaction, or nothing.
 *
 * @throws `lsn_reused` (the backend must roll back); `internal` when a custom resolver
 *   throws.
 */
export function planPush<C extends StoreCollection>(
  replicaId: ReplicaId,
  ops: readonly PreparedOp<C>[],
  state: PushState<C>,
  resolver: ConflictResolver | undefined,
  sha256: Sha256,
  clock?: PushClock,
): PushPlan<C> {
  const { appliedLsn } = state
  let head = state.head
  // Documents this push already changed: a later op on the same document sees them.
  const touched = new Map<C, Map<string, StoredDocument>>()
  const digests = new Map<C, CollectionDigest>()
  const results: OpResult[] = []
  const writes: DocumentWrite<C>[] = []
  const opHashes: PushPlan<C>['opHashes'] = []
  // Replays answered with the stored version: where in `results`, and the collection.
  const replaysAnswered: { index: number; collection: C }[] = []
  for (const op of ops) {
    const { schema } = op.collection
    const id = op.version.id
    const base = { lsn: op.lsn, id, collection: schema.name }
    if (op.lsn <= appliedLsn) {
      const recorded = state.recordedOpHash(op.lsn)
      if (recorded === undefined || !sameBytes(recorded, op.opHash)) {
        // Throwing rolls the whole push back: exactly-once beats partial progress.
        throw new VeloSyncError(
          'lsn_reused',
          `replica ${replicaId} already used LSN ${op.lsn} ` +
            (recorded === undefined
              ? '(its applied LSN is past it)'
              : 'for different content') +
            '; nothing was stored: start a new epoch on the device (startNewEpoch) and push again',
        )
      }
      // The device may have skipped a newer version of this document in a pull while the
      // op was pending (its answer was lost): the answer to the replay carries the stored
      // version when it is no longer the one pushed, or the device would never get it.
      // (Replays precede new ops, so this is the version from before the push.)
      const stored = state.storedDocument(op.collection, id)
      if (
        stored === undefined ||
        compareVersionVectors(
          stored.version.versionVector,
          op.version.versionVector,
        ) === 'equal'
      ) {
        results.push({ ...base, outcome: 'duplicate' })
      } else {
        replaysAnswered.push({
          index: results.length,
          collection: op.collection,
        })
        results.push({ ...base, outcome: 'duplicate', version: stored.version })
      }
      continue
    }
    opHashes.push({ lsn: op.lsn, opHash: op.opHash })
    let docs = touched.get(op.collection)
    if (docs === undefined) {
      docs = new Map()
      touched.set(op.collection, docs)
    }
    const row = docs.has(id)
      ? docs.get(id)
      : state.storedDocument(op.collection, id)
    const current = row?.version
    const resolution = resolve(
      current,
      op.version,
      resolver,
      clock === undefined
        ? undefined
        : {
            nowMs: clock.nowMs,
            maxLeadMs: clock.maxLeadMs,
            ...(row?.effectiveMs == null
              ? {}
              : { currentEffectiveMs: row.effectiveMs }),
          },
    )
    const stored = resolution.stored
    if (stored === undefined) {
      results.push(
        resolution.outcome === 'stale' && current !== undefined
          ? { ...base, outcome: 'stale', version: current }
          : { ...base, outcome: resolution.outcome },
      )
      continue
    }
    const seq = ++head
    const asPushed = resolution.outcome === 'applied'
    const storedHash = stored.deleted
      ? null
      : asPushed
        ? op.versionHash
        : hashDocumentVersion(stored, schema.dtype, sha256)
    let digest = digests.get(op.collection)
    if (digest === undefined) {
      digest = new CollectionDigest(state.digest(op.collection))
      digests.set(op.collection, digest)
    }
    if (row?.hash) digest.remove(row.hash)
    if (storedHash !== null) digest.add(storedHash)
    const effectiveMs = resolution.storedEffectiveMs ?? null
    docs.set(id, { version: stored, hash: storedHash, effectiveMs })
    const write = {
      seq,
      collection: op.collection,
      version: stored,
      hash: storedHash,
      unchangedFrom: asPushed ? replicaId : null,
      effectiveMs,
    }
    if (resolution.loser !== undefined) {
      writes.push({ ...write, loser: resolution.loser })
      results.push({
        ...base,
        outcome: resolution.outcome,
        seq,
        version: stored,
      })
    } else {
      writes.push(write)
      results.push({ ...base, outcome: resolution.outcome, seq })
    }
  }
  // A new op of this push on a replayed document answers for it (its own result, or none
  // when applied as pushed): the version from before the push would undo the device's
  // newer write when the device applies the answer.
  for (const { index, collection } of replaysAnswered) {
    const { lsn, collection: name, id, outcome } = results[index]!
    if (touched.get(collection)?.has(id) === true)
      results[index] = { lsn, collection: name, id, outcome }
  }
  const firstOp = ops[0]
  const lastOp = ops[ops.length - 1]
  // A push of replays only (a request delivered twice, a device replaying after a crash)
  // proves nothing about the device's outbox, so it forgets nothing; and as the device may
  // still lack its confirm, it counts as the latest push only when it starts lower (after
  // a restart the device's batches may be cut differently from the first time).
  const proves = firstOp !== undefined && opHashes.length > 0
  return {
    results,
    writes,
    opHashes,
    digests: new Map(
      [...digests].map(([collection, digest]) => [collection, digest.toHex()]),
    ),
    head,
    appliedThroughLsn: Math.max(appliedLsn, lastOp?.lsn ?? 0),
    forgetBelowLsn: proves
      ? Math.min(firstOp.lsn, state.lastPushFirstLsn)
      : undefined,
    firstLsn: proves
      ? firstOp.lsn
      : Math.min(firstOp?.lsn ?? Infinity, state.lastPushFirstLsn),
  }
}

/**
 * What a backend reads after a pull page (S5), with the page's last seq as `after`: the
 * feed past the page, where the replica's own echoes are skipped.
 */
export interface PullTail {
  /** The next row to send after the page; `null` when only echoes (or nothing) follow. */
  readonly next: Seq | null
  /** The last seq before `next` (every row when `next` is `null`); `null` for an empty feed. */
  readonly end: Seq | null
  /** The replica's echoes skipped since the request's cursor, up to `next`. */
  readonly echoes: number
}

/** The seq a pull page ends at: its last version's, or the cursor when it is empty. */
export function pullPageEnd(
  versions: readonly PulledVersion[],
  cursor: Seq,
): Seq {
  return versions.at(-1)?.seq ?? cursor
}

/**
 * A pull's result (S5): the page also takes the echoes that follow it, up to the next row
 * to send, so that a device whose only remaining changes are its own hears `hasMore: false`.
 */
export function pullResult(
  versions: PulledVersion[],
  cursor: Seq,
  tail: PullTail,
): PullResult {
  const last = pullPageEnd(versions, cursor)
  return {
    versions,
    cursor: Math.max(last, tail.end ?? last),
    hasMore: tail.next !== null,
    skippedEchoes: tail.echoes,
  }
}

/** Runs the conflict rule; a throwing custom resolver is reported as `internal`. */
function resolve(
  current: DocumentVersion | undefined,
  incoming: DocumentVersion,
  resolver: ConflictResolver | undefined,
  bound: ClockBound | undefined,
): Resolution {
  try {
    return resolveIncoming(current, incoming, resolver, bound)
  } catch (error) {
    if (isVeloSyncError(error)) throw error
    throw new VeloSyncError(
      'internal',
      `the conflict resolver failed for document ${describe(incoming.id)}: ${(error as Error).message}; nothing was stored`,
      { cause: error },
    )
  }
}

/**
 * Validates a pushed version against its collection and the pushing replica, and returns
 * a copy holding only the known fields (vector copied into the collection's dtype).
 *
 * @remarks
 * The server stores and re-serves exactly these bytes, and every replica hashes them, so
 * anything a device could not have produced itself is refused rather than normalized:
 * a vector of another dtype, non-canonical metadata, an origin other than the pusher, or a
 * version vector without the pusher's own write in it.
 */
function checkPushedVersion(
  schema: CollectionSchema,
  version: DocumentVersion,
  replicaId: ReplicaId,
  what: string,
): DocumentVersion {
  if (typeof version !== 'object' || version === null) {
    throw invalidArgument(
      `${what} must be a document version object, got ${describe(version)}`,
    )
  }
  assertDocumentId(version.id)
  if (typeof version.deleted !== 'boolean') {
    throw invalidArgument(
      `${what}.deleted must be a boolean, got ${describe(version.deleted)}`,
    )
  }
  if (version.origin !== replicaId) {
    throw invalidArgument(
      `${what}.origin is ${describe(version.origin)}, but the pushing replica is ${replicaId}; a replica can only push its own writes`,
    )
  }
  // Decoded by the protocol codec, which checked everything else already.
  const validated = isValidatedFor(version, schema)
  const versionVector: VersionVector = validated
    ? version.versionVector
    : parseVersionVector(version.versionVector)
  if (counterOf(versionVector, replicaId) < 1) {
    throw invalidArgument(
      `${what}.versionVector has no entry for the pushing replica ${replicaId}; every write counts itself`,
    )
  }
  if (validated) return version
  const hlc = assertHlc(version.hlc)
  const common = {
    id: version.id,
    versionVector,
    hlc: { wallMs: hlc.wallMs, counter: hlc.counter },
    origin: replicaId,
  }
  if (version.deleted) {
    if (version.vector != null || version.metadataJson != null) {
      throw invalidArgument(
        `${what} is a tombstone but carries a vector or metadata`,
      )
    }
    return { ...common, deleted: true, vector: null, metadataJson: null }
  }
  const expected = schema.dtype === 'float32' ? Float32Array : Float64Array
  if (!(version.vector instanceof expected)) {
    throw invalidArgument(
      `${what}.vector: collection ${schema.name} stores ${schema.dtype} vectors, got ${describeVector(version.vector)}`,
    )
  }
  const vector = toStoredVector(schema, version.vector, `${what}.vector`)
  if (typeof version.metadataJson !== 'string') {
    throw invalidArgument(
      `${what}.metadataJson must be a string of canonical JSON, got ${describe(version.metadataJson)}`,
    )
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(version.metadataJson)
  } catch {
    throw invalidArgument(`${what}.metadataJson is not valid JSON`)
  }
  const canonical = canonicalMetadataJson(parsed, `${what}.metadata`)
  if (canonical !== version.metadataJson) {
    throw invalidArgument(
      `${what}.metadataJson is not in canonical form (sorted keys, no whitespace); it would hash differently on other replicas`,
    )
  }
  return { ...common, deleted: false, vector, metadataJson: canonical }
}

function describeVector(value: unknown): string {
  if (value === null || value === undefined) return String(value)
  if (ArrayBuffer.isView(value)) return value.constructor.name
  return describe(value)
}

/** A web-platform global (browsers, Node); typed here because `core` has no DOM lib. */
const utf8 = new (
  globalThis as unknown as {
    TextEncoder: new () => { encode(text: string): Uint8Array }
  }
).TextEncoder()

/** Identifies a pushed op for replay checks: the collection and the exact version. */
function opHashOf(
  collection: string,
  versionHash: Uint8Array,
  sha256: Sha256,
): Uint8Array {
  const name = utf8.encode(collection)
  const bytes = new Uint8Array(name.length + 1 + versionHash.length)
  bytes.set(name)
  bytes.set(versionHash, name.length + 1)
  return sha256(bytes)
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
