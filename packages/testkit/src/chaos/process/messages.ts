/*
 * What the process-chaos parent and its children say to each other over IPC (Node's
 * `advanced` serialization, so document versions keep their typed-array vectors), and the
 * server's journal of committed pushes on disk.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs'
import { deserialize, serialize } from 'node:v8'
import type {
  CollectionSchemaInput,
  JsonObject,
  PushOp,
  ReplicaRef,
} from '@velosync/core'
import type { ChaosServerOp, ChaosWrite } from '../checker.js'

/** The collections every run writes to (two, with different dtypes and metrics). */
export const CHAOS_COLLECTIONS: readonly CollectionSchemaInput[] = [
  { name: 'notes', dims: 8, metric: 'cosine', dtype: 'float32' },
  { name: 'items', dims: 5, metric: 'l2', dtype: 'float64' },
]

/**
 * Where a child kills itself (SIGKILL) once armed:
 *
 * - `mid-write`: during a local `putMany` transaction;
 * - `mid-compaction`: during the outbox compaction that starts a push;
 * - `before-send`: after the batch is taken (and marked as possibly sent), before the request;
 * - `mid-pull-apply`: during the local transaction that applies a server answer;
 * - `apply-before-cursor`: late in that transaction, before its commit stores the cursor
 *   (pulled versions and cursor are one transaction, so this is the same window, aimed at
 *   its end);
 * - `server-after-commit`: in the server, after the push transaction committed and before
 *   the answer is sent.
 */
export const KILL_POINTS = [
  'mid-write',
  'mid-compaction',
  'before-send',
  'mid-pull-apply',
  'apply-before-cursor',
  'server-after-commit',
] as const
export type KillPoint = (typeof KILL_POINTS)[number]
export type DeviceKillPoint = Exclude<KillPoint, 'server-after-commit'>

/** How a device child can be broken on purpose, to show the harness notices. */
export type DeviceFault = 'confirm-before-answer'

/** A device child's configuration (its first argument, JSON). */
export interface DeviceChildConfig {
  readonly path: string
  readonly deviceId: string
  /** The proxy's URL. */
  readonly url: string
  /** The highest LSN the parent knows was written: later outbox entries are reported. */
  readonly knownLsn: number
  readonly fault?: DeviceFault
}

/** A server child's configuration (its first argument, JSON). */
export interface ServerChildConfig {
  readonly path: string
  readonly journalPath: string
}

/** A document to write; the vector is plain numbers (converted to the dtype by the store). */
export interface ChaosDocument {
  readonly id: string
  readonly vector: readonly number[]
  readonly metadata: JsonObject
}

/** Parent → device. */
export type DeviceRequest =
  | {
      readonly op: 'put'
      readonly collection: string
      readonly docs: readonly ChaosDocument[]
    }
  | { readonly op: 'delete'; readonly collection: string; readonly id: string }
  | { readonly op: 'sync' }
  | { readonly op: 'state' }
  | { readonly op: 'arm'; readonly point: DeviceKillPoint | undefined }
  | { readonly op: 'close' }

/** Device → parent, one per request (`id` echoes it), and a first one with `ready`. */
export interface DeviceReply {
  readonly id: number
  readonly ready?: {
    readonly replica: string
    readonly epoch: string
    /** Writes that committed but whose reply the previous incarnation never sent. */
    readonly recovered: readonly ChaosWrite[]
  }
  readonly writes?: readonly ChaosWrite[]
  readonly state?: DeviceState
  /** The error message when a sync round failed (faults make that normal). */
  readonly error?: string
}

export interface DeviceState {
  readonly pending: number
  readonly digests: Readonly<Record<string, string>>
}

/** Parent → server. */
export type ServerRequest =
  | { readonly op: 'arm'; readonly point: 'server-after-commit' | undefined }
  | { readonly op: 'digests' }
  | { readonly op: 'close' }

/** Server → parent: `port` first (id 0), then one reply per request. */
export interface ServerReply {
  readonly id: number
  readonly port?: number
  readonly digests?: Readonly<Record<string, string>>
}

/**
 * One record of the server's journal. The server child appends an `intent` before each
 * push and a `result` after it; a kill between the two (the commit's fsync is
 * uninterruptible, so a SIGKILL that arrives during it lands right after the commit)
 * leaves a dangling intent, which the next incarnation resolves from the store before it
 * listens (see server-child.ts).
 */
export type JournalRecord =
  | {
      readonly kind: 'intent'
      /** Pairs the intent with its result (pushes overlap while they await). */
      readonly push: number
      readonly replica: ReplicaRef
      /** The replica's applied LSN before the push. */
      readonly appliedBefore: number
      readonly ops: readonly PushOp[]
    }
  | {
      readonly kind: 'result'
      readonly push: number
      readonly ops: readonly ChaosServerOp[]
      /** Rebuilt from the store after a kill, not seen returned by the push. */
      readonly recovered: boolean
    }

/**
 * Appends one record to the journal. One `write` of a length-prefixed record: a kill
 * leaves at most a torn last record, which {@link readJournal} ignores.
 */
export function appendJournal(path: string, record: JournalRecord): void {
  const body = serialize(record)
  const frame = Buffer.allocUnsafe(4 + body.length)
  frame.writeUInt32LE(body.length, 0)
  body.copy(frame, 4)
  appendFileSync(path, frame)
}

/** Every record of the journal, in order. */
export function readJournal(path: string): JournalRecord[] {
  if (!existsSync(path)) return []
  const bytes = readFileSync(path)
  const records: JournalRecord[] = []
  for (let at = 0; at + 4 <= bytes.length;) {
    const length = bytes.readUInt32LE(at)
    if (at + 4 + length > bytes.length) break
    records.push(
      deserialize(bytes.subarray(at + 4, at + 4 + length)) as JournalRecord,
    )
    at += 4 + length
  }
  return records
}

/** The server's decisions in commit order, and how many were rebuilt after a kill. */
export function serverOpsOf(records: readonly JournalRecord[]): {
  ops: ChaosServerOp[]
  recovered: number
} {
  const ops: ChaosServerOp[] = []
  let recovered = 0
  for (const record of records) {
    if (record.kind !== 'result') continue
    ops.push(...record.ops)
    if (record.recovered) recovered += record.ops.length
  }
  return { ops, recovered }
}
