import {
  replicaIdOf,
  type CheckCursorOptions,
  type CollectionSchema,
  type ConflictQuery,
  type ConflictRecord,
  type GarbageCollectionOptions,
  type GarbageCollectionResult,
  type PullOptions,
  type PullResult,
  type PushOp,
  type PushOptions,
  type PushResult,
  type ReplicaProgress,
  type ReplicaRef,
  type Seq,
  type ServerStore,
} from '@velosync/core'
import type { ChaosServerOp } from './checker.js'

/**
 * A {@link ServerStore} that passes every call to another one and records the outcome of
 * every op of every push that committed, in commit order: the server half of a chaos
 * run's ground truth. It changes nothing; a push that throws committed nothing (S1) and
 * is not recorded.
 */
export class RecordingServerStore implements ServerStore {
  readonly #inner: ServerStore
  /** Every committed op, in commit order. */
  readonly ops: ChaosServerOp[] = []

  constructor(inner: ServerStore) {
    this.#inner = inner
  }

  async push(
    replica: ReplicaRef,
    ops: readonly PushOp[],
    options?: PushOptions,
  ): Promise<PushResult> {
    const result = await this.#inner.push(replica, ops, options)
    const replicaId = replicaIdOf(replica.deviceId, replica.epoch)
    for (const [i, op] of ops.entries()) {
      const outcome = result.results[i]
      if (outcome === undefined) continue
      const conflict =
        outcome.outcome === 'conflict_won' ||
        outcome.outcome === 'conflict_lost'
      this.ops.push({
        replica: replicaId,
        lsn: op.lsn,
        collection: op.collection,
        pushed: op.version,
        outcome: outcome.outcome,
        ...(conflict && outcome.version !== undefined
          ? { stored: outcome.version }
          : {}),
        ...(options?.nowMs === undefined
          ? {}
          : { acceptedAtMs: options.nowMs }),
      })
    }
    return result
  }

  ensureCollection(schema: CollectionSchema): Promise<CollectionSchema> {
    return this.#inner.ensureCollection(schema)
  }
  getCollection(name: string): Promise<CollectionSchema | undefined> {
    return this.#inner.getCollection(name)
  }
  listCollections(): Promise<CollectionSchema[]> {
    return this.#inner.listCollections()
  }
  pull(
    replica: ReplicaRef,
    cursor: Seq,
    limit: number,
    options?: PullOptions,
  ): Promise<PullResult> {
    return this.#inner.pull(replica, cursor, limit, options)
  }
  ack(replica: ReplicaRef, cursor: Seq): Promise<void> {
    return this.#inner.ack(replica, cursor)
  }
  digest(collection: string): Promise<string> {
    return this.#inner.digest(collection)
  }
  conflicts(options: ConflictQuery): Promise<ConflictRecord[]> {
    return this.#inner.conflicts(options)
  }
  collectGarbage(
    options: GarbageCollectionOptions,
  ): Promise<GarbageCollectionResult> {
    return this.#inner.collectGarbage(options)
  }
  createDeviceToken(deviceId: string, tokenHash: string): Promise<void> {
    return this.#inner.createDeviceToken(deviceId, tokenHash)
  }
  findDeviceByTokenHash(tokenHash: string): Promise<string | undefined> {
    return this.#inner.findDeviceByTokenHash(tokenHash)
  }
  revokeDeviceTokens(deviceId: string): Promise<number> {
    return this.#inner.revokeDeviceTokens(deviceId)
  }
  head(): Promise<Seq> {
    return this.#inner.head()
  }
  checkCursor(cursor: Seq, options?: CheckCursorOptions): Promise<void> {
    return this.#inner.checkCursor(cursor, options)
  }
  replicaProgress(replica: ReplicaRef): Promise<ReplicaProgress> {
    return this.#inner.replicaProgress(replica)
  }
  close(): Promise<void> {
    return this.#inner.close()
  }
}
