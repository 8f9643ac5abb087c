/*
 * The chaos checker: from the ground-truth history of a run and the final states of every
 * replica, compute the safety figures. It knows nothing about how the run was driven (an
 * in-process simulation or child processes behind a fault proxy), only about what
 * happened: which local writes returned, what the server decided for every op it
 * committed, and what each replica holds at the end.
 *
 * Ground truth for causality is the version vector each device produced when its write
 * returned: write W (replica r, counter c = W.vv[r]) happened before a version V iff
 * V.vv[r] >= c. The server's stored state is NOT taken from its own vectors but rebuilt
 * from its decisions (applied: the pushed write's coverage; conflict: the union of both),
 * so a server that merges, orders or detects wrongly is caught.
 */
import {
  CollectionDigest,
  EMPTY_COLLECTION_DIGEST,
  counterOf,
  hashDocumentVersion,
  resolveIncoming,
  type DocumentVersion,
  type PushOutcome,
  type ReplicaId,
  type Sha256,
  type VectorDType,
} from '@velosync/core'

/** One line of the chaos report: the figures of one scenario over all its runs. */
export interface ChaosRow {
  readonly scenario: string
  readonly runs: number
  /** Local writes that returned, over all runs. */
  readonly operations: number
  /** Returned writes whose effect is neither present nor superseded at the end. */
  readonly lost: number
  /** Ops the server processed twice (two non-duplicate outcomes for one replica and LSN). */
  readonly duplicated: number
  /** Digests that differ: device vs server per collection, and server vs the oracle. */
  readonly diverged: number
  /** Runs whose queues did not drain, or whose replicas did not agree, within the bound. */
  readonly stuck: number
  /** Conflicts flagged for versions that ground truth says were ordered. */
  readonly falseConflicts: number
  /** Ordered outcomes for versions that ground truth says were concurrent. */
  readonly missedConflicts: number
  /** Time from the end of faults to convergence, median over runs (ms). */
  readonly convergeMsP50: number
  /** Same, 99th percentile (ms). */
  readonly convergeMsP99: number
}

/** The figures whose non-zero value means a broken guarantee. */
export const SAFETY_FIGURES = [
  'lost',
  'duplicated',
  'diverged',
  'stuck',
  'falseConflicts',
  'missedConflicts',
] as const satisfies ReadonlyArray<keyof ChaosRow>

/** A local write that returned to the application. */
export interface ChaosWrite {
  readonly device: string
  /** The replica id the write was stamped with (`<deviceId>.<epoch>`). */
  readonly replica: ReplicaId
  readonly lsn: number
  readonly collection: string
  /** The version the write produced (its vector, HLC, content). */
  readonly version: DocumentVersion
}

/** One op of a push the server committed, with the server's decision. */
export interface ChaosServerOp {
  readonly replica: ReplicaId
  readonly lsn: number
  readonly collection: string
  /** The version the device pushed. */
  readonly pushed: DocumentVersion
  readonly outcome: PushOutcome
  /** The stored version after a conflict (the winner's content, merged vector). */
  readonly stored?: DocumentVersion
  /** The server's clock when the push committed (ms), when known. */
  readonly acceptedAtMs?: number
}

/** Everything that happened in one run, in order. */
export interface ChaosHistory {
  /** Every local write that returned, in the order they returned. */
  readonly writes: readonly ChaosWrite[]
  /** Every op result of every committed push, in commit order. */
  readonly serverOps: readonly ChaosServerOp[]
  /**
   * The server's clock bound (`maxClockLeadMs`), if it resolves with one: the oracle then
   * lets each write compete with `min(HLC, first acceptance + bound)`, as the server does.
   */
  readonly maxClockLeadMs?: number
}

/** What every replica holds at the end of a run. */
export interface ChaosFinalState {
  readonly collections: ReadonlyArray<{
    readonly name: string
    readonly dtype: VectorDType
  }>
  /** The server: every stored version (tombstones included) and each collection digest. */
  readonly server: {
    readonly versions: ReadonlyArray<{
      readonly collection: string
      readonly version: DocumentVersion
    }>
    readonly digests: Readonly<Record<string, string>>
  }
  /** Each device's collection digests (a missing collection counts as empty). */
  readonly devices: ReadonlyArray<{
    readonly device: string
    readonly digests: Readonly<Record<string, string>>
  }>
  /** Whether queues drained and replicas agreed within the bound after faults stopped. */
  readonly quiesced: boolean
  /** Time from the end of faults to convergence (ms), when it converged. */
  readonly convergeMs: number | undefined
}

/** The figures of one run, and a line of explanation per problem found. */
export interface RunFigures {
  readonly operations: number
  readonly lost: number
  readonly duplicated: number
  readonly diverged: number
  /** Of `diverged`: server digests that differ from the oracle (devices agreeing or not). */
  readonly oracleDiverged: number
  readonly stuck: number
  readonly falseConflicts: number
  readonly missedConflicts: number
  readonly convergeMs: number | undefined
  readonly problems: readonly string[]
}

interface DocState {
  /** Indices (into the document's writes) of the writes the stored version covers. */
  readonly covers: ReadonlySet<number>
  readonly deleted: boolean
}

const keyOf = (collection: string, id: string): string =>
  `${collection}\u0000${id}`

/**
 * Checks one run.
 *
 * @param sha256 - hashes document encodings for the oracle's digests.
 */
export function checkRun(
  history: ChaosHistory,
  final: ChaosFinalState,
  sha256: Sha256,
): RunFigures {
  const problems: string[] = []
  const writesByDoc = new Map<string, ChaosWrite[]>()
  for (const write of history.writes) {
    const key = keyOf(write.collection, write.version.id)
    let list = writesByDoc.get(key)
    if (list === undefined) writesByDoc.set(key, (list = []))
    list.push(write)
  }
  const withdrawn = withdrawnWrites(history)
  /** The writes of a document that a version's vector has seen. */
  const coverage = (key: string, version: DocumentVersion): Set<number> => {
    const covered = new Set<number>()
    for (const [i, write] of (writesByDoc.get(key) ?? []).entries()) {
      if (withdrawn.has(write)) continue
      const counter = counterOf(write.version.versionVector, write.replica)
      if (counterOf(version.versionVector, write.replica) >= counter) {
        covered.add(i)
      }
    }
    return covered
  }

  // Replay the server's decisions against ground-truth coverage.
  let duplicated = 0
  let falseConflicts = 0
  let missedConflicts = 0
  const processed = new Set<string>()
  const rebuilt = new Map<string, DocState>()
  for (const op of history.serverOps) {
    const opKey = `${op.replica}#${op.lsn}`
    const docKey = keyOf(op.collection, op.pushed.id)
    const what = `${op.collection}/${op.pushed.id} (${op.replica} lsn ${op.lsn})`
    const seen = processed.has(opKey)
    processed.add(opKey)
    if (op.outcome === 'duplicate' && seen) continue
    if (seen) {
      duplicated++
      problems.push(`duplicated: ${what} processed again as ${op.outcome}`)
    }
    const pushed = coverage(docKey, op.pushed)
    const current = rebuilt.get(docKey)
    const concurrent =
      current !== undefined &&
      !isSubset(current.covers, pushed) &&
      !isSubset(pushed, current.covers)
    const flagged =
      op.outcome === 'conflict_won' || op.outcome === 'conflict_lost'
    if (flagged && !concurrent) {
      falseConflicts++
      problems.push(`false conflict: ${what} was not concurrent`)
    } else if (!flagged && concurrent) {
      missedConflicts++
      problems.push(`missed conflict: ${what} was concurrent but ${op.outcome}`)
    }
    switch (op.outcome) {
      case 'applied':
        rebuilt.set(docKey, { covers: pushed, deleted: op.pushed.deleted })
        break
      case 'conflict_won':
      case 'conflict_lost':
        rebuilt.set(docKey, {
          covers: new Set([...pushed, ...(current?.covers ?? [])]),
          deleted: (op.stored ?? op.pushed).deleted,
        })
        break
      case 'duplicate':
      case 'stale':
        break
    }
  }

  // Lost: a returned write that the server's final version has not seen.
  const finalByDoc = new Map<string, DocumentVersion>()
  for (const { collection, version } of final.server.versions) {
    finalByDoc.set(keyOf(collection, version.id), version)
  }
  let lost = 0
  for (const [key, writes] of writesByDoc) {
    const stored = finalByDoc.get(key)
    const decided = rebuilt.get(key)
    let covers: ReadonlySet<number>
    if (stored !== undefined) covers = coverage(key, stored)
    else if (decided !== undefined)
      // A tombstone that garbage collection removed is known only from the decisions.
      covers = decided.deleted ? decided.covers : new Set()
    else {
      // The server never stored the document: correct only if deletes cover every write
      // (a document created and deleted before it was ever pushed is compacted away).
      const deletes = new Set<number>()
      for (const write of writes) {
        if (write.version.deleted) {
          for (const i of coverage(key, write.version)) deletes.add(i)
        }
      }
      covers = deletes
    }
    for (const [i, write] of writes.entries()) {
      if (covers.has(i) || withdrawn.has(write)) continue
      lost++
      problems.push(
        `lost: ${write.collection}/${write.version.id} written by ${write.replica} (lsn ${write.lsn}, ${write.version.deleted ? 'delete' : 'put'})`,
      )
    }
  }

  // Diverged: every device against the server, and the server against the oracle.
  let diverged = 0
  let oracleDiverged = 0
  const oracle = oracleDigests(
    { ...history, writes: history.writes.filter((w) => !withdrawn.has(w)) },
    final.collections,
    sha256,
  )
  for (const { name } of final.collections) {
    const server = final.server.digests[name] ?? EMPTY_COLLECTION_DIGEST
    const expected = oracle.get(name) ?? EMPTY_COLLECTION_DIGEST
    if (server !== expected) {
      diverged++
      oracleDiverged++
      problems.push(`diverged: server ${name} digest differs from the oracle`)
    }
    for (const device of final.devices) {
      if ((device.digests[name] ?? EMPTY_COLLECTION_DIGEST) !== server) {
        diverged++
        problems.push(
          `diverged: device ${device.device} ${name} digest differs from the server`,
        )
      }
    }
  }

  if (!final.quiesced) problems.push('stuck: did not quiesce within the bound')
  return {
    operations: history.writes.length,
    lost,
    duplicated,
    diverged,
    oracleDiverged,
    stuck: final.quiesced ? 0 : 1,
    falseConflicts,
    missedConflicts,
    convergeMs: final.convergeMs,
    problems,
  }
}

/**
 * Writes that compaction legitimately withdrew (DESIGN: "create-then-delete of a
 * never-pushed document sends nothing"). A replica's writes to one document split into
 * lives, each starting where the replica's own counter is 1 (its row held nothing of its
 * own); a life whose last write is a delete and none of whose writes reached the
 * server was purged, tombstone included, and never existed for anyone else.
 */
function withdrawnWrites(history: ChaosHistory): Set<ChaosWrite> {
  const pushed = new Set(
    history.serverOps.map((op) => `${op.replica}#${op.lsn}`),
  )
  const lives = new Map<string, ChaosWrite[][]>()
  for (const write of history.writes) {
    const key = `${write.replica}\u0000${keyOf(write.collection, write.version.id)}`
    let list = lives.get(key)
    if (list === undefined) lives.set(key, (list = []))
    // The replica's own counter restarts at 1 only when its row held nothing of its own
    // (a first write, or one after such a purge): a new life.
    const fresh = counterOf(write.version.versionVector, write.replica) === 1
    if (fresh || list.length === 0) list.push([])
    list[list.length - 1]?.push(write)
  }
  const withdrawn = new Set<ChaosWrite>()
  for (const list of lives.values()) {
    for (const life of list) {
      const last = life[life.length - 1] as ChaosWrite
      const unsent = life.every(
        (write) =>
          !pushed.has(`${write.replica}#${write.lsn}`) &&
          Object.keys(write.version.versionVector).every(
            (replica) => replica === write.replica,
          ),
      )
      if (last.version.deleted && unsent)
        for (const write of life) withdrawn.add(write)
    }
  }
  return withdrawn
}

/**
 * The oracle: every returned write applied serially, in the order the writes returned,
 * under the server's resolution rule (with its clock bound, if any); then each
 * collection's digest of live documents.
 */
export function oracleDigests(
  history: ChaosHistory,
  collections: ChaosFinalState['collections'],
  sha256: Sha256,
): Map<string, string> {
  const acceptedAt = acceptanceTimes(history)
  const state = new Map<
    string,
    { collection: string; version: DocumentVersion; effectiveMs?: number }
  >()
  for (const write of history.writes) {
    const key = keyOf(write.collection, write.version.id)
    const current = state.get(key)
    const bound =
      history.maxClockLeadMs === undefined
        ? undefined
        : {
            nowMs: acceptedAt.get(write) ?? Number.POSITIVE_INFINITY,
            maxLeadMs: history.maxClockLeadMs,
            ...(current?.effectiveMs === undefined
              ? {}
              : { currentEffectiveMs: current.effectiveMs }),
          }
    const resolution = resolveIncoming(
      current?.version,
      write.version,
      undefined,
      bound,
    )
    if (resolution.stored !== undefined)
      state.set(key, {
        collection: write.collection,
        version: resolution.stored,
        ...(resolution.storedEffectiveMs === undefined
          ? {}
          : { effectiveMs: resolution.storedEffectiveMs }),
      })
  }
  const dtypes = new Map(collections.map((c) => [c.name, c.dtype]))
  const digests = new Map<string, CollectionDigest>()
  for (const { collection, version } of state.values()) {
    if (version.deleted) continue
    const dtype = dtypes.get(collection)
    if (dtype === undefined) continue
    let digest = digests.get(collection)
    if (digest === undefined)
      digests.set(collection, (digest = new CollectionDigest()))
    digest.add(hashDocumentVersion(version, dtype, sha256))
  }
  return new Map([...digests].map(([name, digest]) => [name, digest.toHex()]))
}

/**
 * When the server first accepted each write, for the oracle's clock bound. A write that
 * was superseded on its device before it was sent (compaction keeps only the newest op of
 * a document) takes the acceptance time of the write that superseded it: that is when
 * the server learned of its content's successor, and it keeps the oracle's ranking in
 * causal order (a successor never competes earlier than its ancestor). A write with no
 * received successor in its life (a withdrawn create-then-delete) is absent: it competes
 * with its HLC.
 */
function acceptanceTimes(history: ChaosHistory): Map<ChaosWrite, number> {
  // Every op the server committed, with its first known acceptance time (if any).
  const received = new Map<string, number | undefined>()
  for (const op of history.serverOps) {
    const key = `${op.replica}#${op.lsn}`
    if (received.get(key) === undefined) received.set(key, op.acceptedAtMs)
  }
  const times = new Map<ChaosWrite, number>()
  // Walk each replica's writes of a document newest first, carrying the acceptance time
  // of the newest received one down to the unsent writes before it, within one life.
  const successorAcceptedAt = new Map<string, number>()
  for (let i = history.writes.length - 1; i >= 0; i--) {
    const write = history.writes[i] as ChaosWrite
    const document = `${write.replica}#${keyOf(write.collection, write.version.id)}`
    const key = `${write.replica}#${write.lsn}`
    if (received.has(key)) {
      const own = received.get(key)
      if (own === undefined) successorAcceptedAt.delete(document)
      else {
        successorAcceptedAt.set(document, own)
        times.set(write, own)
      }
    } else {
      const inherited = successorAcceptedAt.get(document)
      if (inherited !== undefined) times.set(write, inherited)
    }
    // A replica's first write of a document (its counter 1) starts a life: after a purge
    // the next life starts at 1 again, and nothing carries across.
    if (counterOf(write.version.versionVector, write.replica) === 1)
      successorAcceptedAt.delete(document)
  }
  return times
}

/** Sums the runs of one scenario into a report row. */
export function summarizeRuns(
  scenario: string,
  runs: readonly RunFigures[],
): ChaosRow {
  const sum = (pick: (run: RunFigures) => number): number =>
    runs.reduce((total, run) => total + pick(run), 0)
  const converge = runs
    .map((run) => run.convergeMs)
    .filter((ms): ms is number => ms !== undefined)
    .sort((a, b) => a - b)
  return {
    scenario,
    runs: runs.length,
    operations: sum((r) => r.operations),
    lost: sum((r) => r.lost),
    duplicated: sum((r) => r.duplicated),
    diverged: sum((r) => r.diverged),
    stuck: sum((r) => r.stuck),
    falseConflicts: sum((r) => r.falseConflicts),
    missedConflicts: sum((r) => r.missedConflicts),
    convergeMsP50: percentile(converge, 0.5),
    convergeMsP99: percentile(converge, 0.99),
  }
}

/** The sum of a row's safety figures: 0 exactly when every guarantee held. */
export function safetyViolations(row: ChaosRow | RunFigures): number {
  return SAFETY_FIGURES.reduce((total, figure) => total + row[figure], 0)
}

/** Nearest-rank percentile of an ascending list (0 for an empty one), rounded to 0.1 ms. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0
  const rank = Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)
  return Math.round((sorted[Math.max(0, rank)] as number) * 10) / 10
}

function isSubset(a: ReadonlySet<number>, b: ReadonlySet<number>): boolean {
  for (const x of a) if (!b.has(x)) return false
  return true
}
