/**
 * Crash safety of the local store with real SQLite files (DESIGN invariant 1: "a crash
 * (kill -9) of the device at any point loses no acknowledged write").
 *
 * A child process (fixtures/crash-writer.mjs, on the built package) writes to a store in
 * a loop and journals each write on its stdout: an "intent" line before the call, an "ack"
 * line after it returned. This test SIGKILLs it at a random moment, replays the journal
 * into a model of the store, reopens the file in-process and checks:
 *
 * - every acknowledged write is there: each document holds the content of the last write
 *   to it, with one version-vector increment per write;
 * - the one write in flight at the kill (intent without ack) is applied completely or not
 *   at all, never in part (a putMany is one transaction);
 * - the outbox holds exactly one entry per logged write: LSNs 1…lastLsn, strictly
 *   increasing without gaps (nothing compacts here), each naming its document, op and
 *   version, with strictly increasing HLC timestamps (the clock survives the crash too);
 * - `verify()` is clean (SQLite integrity_check, per-document hashes, digest, index size),
 *   and a search sees exactly the live documents (the index is rebuilt from SQLite).
 *
 * Then the next incarnation of the writer continues on the same file. The writer's own
 * `ready` line reports the LSN it recovered, which must match the model as well.
 *
 * Knobs: VELOSYNC_CRASH_SEED (default: random, printed on failure) and
 * VELOSYNC_CRASH_KILLS (kills per store, default 14; four stores).
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { compareHlc, type HlcTimestamp, type LogOp } from '@velosync/core'
import { seededRandom } from '@velosync/testkit'
import { beforeAll, describe, expect } from 'vitest'
import { LocalStore } from '../src/index.js'
import { contentHash } from './fixtures/crash-content.mjs'
import { test } from './fixtures.js'

const WRITER = fileURLToPath(
  new URL('./fixtures/crash-writer.mjs', import.meta.url),
)
const BUILT_CLIENT = fileURLToPath(new URL('../dist/index.js', import.meta.url))
const COLLECTION = 'crash'
const KILLS_PER_STORE = Number(process.env.VELOSYNC_CRASH_KILLS ?? 14)
const SEED = Number(
  process.env.VELOSYNC_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31),
)
/** How long a writer may take to start and open its store before the test gives up. */
const READY_TIMEOUT_MS = 15_000

interface Scenario {
  readonly name: string
  readonly synchronous: 'full' | 'normal'
  readonly metric: 'cosine' | 'dot' | 'l2'
  readonly dtype: 'float32' | 'float64'
  /** The store's idle-checkpoint delay: 0 makes checkpoints (and kills inside them) frequent. */
  readonly checkpointDelayMs: number
  /** Documents are `doc-0` … `doc-(ids-1)`: a small space means many overwrites and deletes. */
  readonly ids: number
  readonly maxBatch: number
}

const SCENARIOS: readonly Scenario[] = [
  {
    name: 'full-cosine',
    synchronous: 'full',
    metric: 'cosine',
    dtype: 'float32',
    checkpointDelayMs: 1000,
    ids: 24,
    maxBatch: 5,
  },
  {
    name: 'normal-checkpointing',
    synchronous: 'normal',
    metric: 'cosine',
    dtype: 'float32',
    checkpointDelayMs: 0,
    ids: 32,
    maxBatch: 6,
  },
  {
    name: 'full-l2-float64',
    synchronous: 'full',
    metric: 'l2',
    dtype: 'float64',
    checkpointDelayMs: 0,
    ids: 48,
    maxBatch: 8,
  },
  {
    name: 'normal-dot',
    synchronous: 'normal',
    metric: 'dot',
    dtype: 'float32',
    checkpointDelayMs: 5,
    ids: 16,
    maxBatch: 4,
  },
]

// ---------------------------------------------------------------------------------------
// The journal

interface JournalDoc {
  readonly id: string
  /** contentHash(vector, metadata) as the writer computed it. */
  readonly h: string
}

type Write =
  | { readonly op: 'put'; readonly docs: readonly JournalDoc[] }
  | { readonly op: 'delete'; readonly id: string }

type JournalLine =
  | { readonly t: 'opening' }
  | {
      readonly t: 'ready'
      readonly deviceId: string
      readonly replicaId: string
      readonly lastLsn: number
    }
  | ({
      readonly t: 'intent'
      readonly n: number
      readonly call: string
    } & Write)
  | { readonly t: 'ack'; readonly n: number; readonly lsns: readonly number[] }

// ---------------------------------------------------------------------------------------
// The model: what the store must hold after a sequence of writes

interface ModelDocument {
  readonly live: boolean
  readonly hash: string | null
  /** Logged writes to this document so far = its version-vector counter for this replica. */
  readonly writes: number
}

interface ModelEntry {
  readonly lsn: number
  readonly docId: string
  readonly op: LogOp
  readonly counter: number
}

class StoreModel {
  constructor(
    readonly docs: ReadonlyMap<string, ModelDocument> = new Map(),
    readonly entries: readonly ModelEntry[] = [],
  ) {}

  /** Outbox LSNs run 1…lastLsn without gaps, so the last one is the entry count. */
  get lastLsn(): number {
    return this.entries.length
  }

  /** The model after `write`, and the LSNs the store must have returned for it. */
  after(write: Write): { readonly model: StoreModel; readonly lsns: number[] } {
    const docs = new Map(this.docs)
    const entries = [...this.entries]
    const lsns: number[] = []
    const log = (
      docId: string,
      op: LogOp,
      next: Omit<ModelDocument, 'writes'>,
    ): void => {
      const writes = (docs.get(docId)?.writes ?? 0) + 1
      docs.set(docId, { ...next, writes })
      entries.push({ lsn: entries.length + 1, docId, op, counter: writes })
      lsns.push(entries.length)
    }
    if (write.op === 'put') {
      for (const doc of write.docs)
        log(doc.id, 'put', { live: true, hash: doc.h })
    } else if (docs.get(write.id)?.live === true) {
      log(write.id, 'delete', { live: false, hash: null })
    } // deleting a missing document logs nothing
    return { model: new StoreModel(docs, entries), lsns }
  }

  get liveIds(): string[] {
    return [...this.docs].filter(([, doc]) => doc.live).map(([id]) => id)
  }
}

// ---------------------------------------------------------------------------------------
// One incarnation of the writer

interface KillPlan {
  /** Kill soon after the writer announces it is opening the store, not after it is ready. */
  readonly early: boolean
  readonly delayMs: number
}

interface WriterRun {
  readonly lines: JournalLine[]
  /** Bytes after the last newline: must be empty (journal lines are written atomically). */
  readonly trailing: string
  readonly stderr: string
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly timedOut: boolean
}

function runWriter(
  args: readonly string[],
  plan: KillPlan,
): Promise<WriterRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const lines: JournalLine[] = []
    let buffered = ''
    let stderr = ''
    let timedOut = false
    let killTimer: NodeJS.Timeout | undefined
    const watchdog = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, READY_TIMEOUT_MS)
    // The kill is the fault being injected, not a wait for a condition: a random delay is
    // the point. Only the first request arms it.
    const killAfter = (ms: number): void => {
      killTimer ??= setTimeout(() => child.kill('SIGKILL'), ms)
    }
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk
      for (
        let newline = buffered.indexOf('\n');
        newline >= 0;
        newline = buffered.indexOf('\n')
      ) {
        const line = JSON.parse(buffered.slice(0, newline)) as JournalLine
        buffered = buffered.slice(newline + 1)
        lines.push(line)
        if (line.t === 'opening' && plan.early) killAfter(plan.delayMs)
        if (line.t === 'ready') {
          clearTimeout(watchdog)
          killAfter(plan.delayMs)
        }
      }
    })
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk: string) => (stderr += chunk))
    child.on('error', reject)
    // 'close' comes after stdout reached EOF: every line the writer got into the pipe
    // before it died has been read.
    child.on('close', (code, signal) => {
      clearTimeout(watchdog)
      clearTimeout(killTimer)
      resolve({ lines, trailing: buffered, stderr, code, signal, timedOut })
    })
  })
}

// ---------------------------------------------------------------------------------------
// Checking a reopened store against the model

function describeWrite(write: Write): string {
  return write.op === 'put'
    ? `put ${write.docs.map((d) => d.id).join(', ')}`
    : `delete ${write.id}`
}

function storeProblems(store: LocalStore, model: StoreModel): string[] {
  const problems: string[] = []
  if (store.getCollection(COLLECTION) === undefined) {
    if (model.lastLsn > 0)
      problems.push(
        `collection ${COLLECTION} is gone after ${model.lastLsn} logged writes`,
      )
    return problems
  }
  const replica = store.replicaId
  if (store.lastLsn !== model.lastLsn)
    problems.push(`lastLsn ${store.lastLsn}, expected ${model.lastLsn}`)

  const entries = store.outbox.entries()
  if (entries.length !== store.lastLsn) {
    problems.push(
      `outbox has ${entries.length} entries but lastLsn is ${store.lastLsn}`,
    )
  }
  let previousHlc: HlcTimestamp | undefined
  entries.forEach((entry, i) => {
    if (entry.lsn !== i + 1)
      problems.push(
        `outbox entry #${i} has LSN ${entry.lsn}, expected ${i + 1} (no gaps)`,
      )
    if (previousHlc !== undefined && compareHlc(previousHlc, entry.hlc) >= 0) {
      problems.push(
        `outbox LSN ${entry.lsn}: HLC ${JSON.stringify(entry.hlc)} not after the previous entry's`,
      )
    }
    previousHlc = entry.hlc
  })
  for (const expected of model.entries) {
    const actual = entries.find((entry) => entry.lsn === expected.lsn)
    const what = `acknowledged LSN ${expected.lsn} (${expected.op} ${expected.docId})`
    if (actual === undefined) {
      problems.push(`${what} is missing from the outbox`)
    } else if (
      actual.collection !== COLLECTION ||
      actual.docId !== expected.docId ||
      actual.op !== expected.op
    ) {
      problems.push(
        `${what}: outbox has ${actual.op} ${actual.collection}/${actual.docId}`,
      )
    } else if (actual.versionVector[replica] !== expected.counter) {
      problems.push(
        `${what}: version vector ${JSON.stringify(actual.versionVector)}, expected ${replica}: ${expected.counter}`,
      )
    }
  }

  for (const [id, doc] of model.docs) {
    const stored = store.get(COLLECTION, id)
    if (!doc.live) {
      if (stored !== undefined)
        problems.push(`${id} was deleted (write #${doc.writes}) but is live`)
      continue
    }
    if (stored === undefined) {
      problems.push(
        `${id} is missing; its last write (#${doc.writes}, content ${doc.hash}) was acknowledged`,
      )
      continue
    }
    const hash = contentHash(stored.vector, stored.metadata)
    if (hash !== doc.hash)
      problems.push(
        `${id} holds content ${hash}, expected ${doc.hash} (write #${doc.writes})`,
      )
    if (stored.versionVector[replica] !== doc.writes) {
      problems.push(
        `${id}: version vector ${JSON.stringify(stored.versionVector)}, expected ${replica}: ${doc.writes}`,
      )
    }
    if (stored.origin !== replica)
      problems.push(`${id}: origin ${stored.origin}, expected ${replica}`)
  }
  const liveIds = model.liveIds.sort()
  const storedIds = [...store.documents(COLLECTION)].map((doc) => doc.id).sort()
  if (JSON.stringify(storedIds) !== JSON.stringify(liveIds)) {
    problems.push(
      `live documents ${JSON.stringify(storedIds)}, expected ${JSON.stringify(liveIds)}`,
    )
  }
  if (store.count(COLLECTION) !== liveIds.length) {
    problems.push(
      `count() is ${store.count(COLLECTION)}, expected ${liveIds.length}`,
    )
  }
  if (liveIds.length > 0) {
    // The index is rebuilt from SQLite on open: a search for everything must see exactly the rows.
    const schema = store.getCollection(COLLECTION)!
    const query = Array.from({ length: schema.dims }, (_, i) =>
      i === 0 ? 1 : 0,
    )
    const hits = store.search(COLLECTION, query, {
      k: liveIds.length + 1,
      includeMetadata: false,
    })
    const hitIds = hits.map((hit) => hit.id).sort()
    if (JSON.stringify(hitIds) !== JSON.stringify(liveIds)) {
      problems.push(
        `search sees ${JSON.stringify(hitIds)}, expected ${JSON.stringify(liveIds)}`,
      )
    }
  }
  for (const problem of store.verify().problems)
    problems.push(`verify(): ${problem}`)
  return problems
}

// ---------------------------------------------------------------------------------------

beforeAll(() => {
  if (!existsSync(BUILT_CLIENT)) {
    throw new Error(
      `${BUILT_CLIENT} is missing: the crash writer runs on the built package; run \`npm run build\` first`,
    )
  }
})

describe('LocalStore survives kill -9 (DESIGN invariant 1)', () => {
  test.for(SCENARIOS)(
    '$name: no acknowledged write is lost, the write in flight is all or nothing',
    { timeout: 120_000 },
    async (scenario, { tmpDir, annotate }) => {
      const path = join(tmpDir, `${scenario.name}.db`)
      const seed = SEED + SCENARIOS.indexOf(scenario)
      const random = seededRandom(seed)
      let model = new StoreModel()
      let deviceId: string | undefined
      const tally = {
        kills: 0,
        acknowledged: 0,
        inFlightCommitted: 0,
        inFlightLost: 0,
        early: 0,
      }

      for (let incarnation = 1; incarnation <= KILLS_PER_STORE; incarnation++) {
        const context = `[${scenario.name}, VELOSYNC_CRASH_SEED=${SEED}, incarnation ${incarnation}]`
        const early = incarnation === 1 || random() < 0.1
        const plan: KillPlan = {
          early,
          delayMs: early
            ? Math.floor(random() * 4)
            : 5 + Math.floor(random() * 56),
        }
        const run = await runWriter(
          [
            `--path=${path}`,
            `--collection=${COLLECTION}`,
            `--seed=${seed * 1000 + incarnation}`,
            `--synchronous=${scenario.synchronous}`,
            `--metric=${scenario.metric}`,
            `--dtype=${scenario.dtype}`,
            `--checkpoint-delay-ms=${scenario.checkpointDelayMs}`,
            `--ids=${scenario.ids}`,
            `--max-batch=${scenario.maxBatch}`,
          ],
          plan,
        )
        expect(
          run.timedOut,
          `${context} writer not ready within ${READY_TIMEOUT_MS} ms: ${run.stderr}`,
        ).toBe(false)
        expect(
          run.signal,
          `${context} writer ended by itself (exit code ${run.code}): ${run.stderr}`,
        ).toBe('SIGKILL')
        expect(run.trailing, `${context} torn journal line`).toBe('')
        tally.kills++
        if (plan.early) tally.early++

        // Replay the journal: acknowledged writes into the model, at most one left in flight.
        let inFlight: Extract<JournalLine, { t: 'intent' }> | undefined
        for (const line of run.lines) {
          if (line.t === 'ready') {
            deviceId ??= line.deviceId
            expect(line.deviceId, `${context} device id changed`).toBe(deviceId)
            expect(
              line.lastLsn,
              `${context} the writer recovered a different lastLsn`,
            ).toBe(model.lastLsn)
          } else if (line.t === 'intent') {
            expect(
              inFlight,
              `${context} intent #${line.n} while #${inFlight?.n} is unacknowledged`,
            ).toBeUndefined()
            inFlight = line
          } else if (line.t === 'ack') {
            expect(line.n, `${context} ack without its intent`).toBe(
              inFlight?.n,
            )
            const next = model.after(inFlight!)
            expect(
              line.lsns,
              `${context} receipts of #${line.n} (${describeWrite(inFlight!)})`,
            ).toEqual(next.lsns)
            model = next.model
            tally.acknowledged++
            inFlight = undefined
          }
        }

        if (!existsSync(path)) {
          // Killed before SQLite created the file: nothing can have been acknowledged.
          expect(model.lastLsn, context).toBe(0)
          continue
        }
        const store = LocalStore.open({ path })
        try {
          deviceId ??= store.deviceId
          expect(store.deviceId, `${context} device id changed`).toBe(deviceId)
          // The store must be in the acknowledged state or, if the write in flight
          // committed before the kill, in the state after it: nothing in between.
          const withInFlight =
            inFlight === undefined ? undefined : model.after(inFlight).model
          let expected = model
          if (
            withInFlight !== undefined &&
            store.lastLsn === withInFlight.lastLsn
          ) {
            expected = withInFlight
            if (withInFlight.lastLsn > model.lastLsn) tally.inFlightCommitted++
          } else if (inFlight !== undefined) {
            tally.inFlightLost++
          }
          const problems = storeProblems(store, expected)
          if (
            store.lastLsn !== model.lastLsn &&
            store.lastLsn !== withInFlight?.lastLsn
          ) {
            problems.unshift(
              `lastLsn ${store.lastLsn}: acknowledged writes end at ${model.lastLsn}` +
                (inFlight === undefined
                  ? ' and none was in flight'
                  : `; the write in flight (#${inFlight.n}: ${describeWrite(inFlight)}) would end at ${withInFlight?.lastLsn}`),
            )
          }
          expect(problems, `${context} store after kill -9 and reopen`).toEqual(
            [],
          )
          model = expected
        } finally {
          store.close()
        }
      }

      // The kills must really have landed among writes, or this test proves nothing.
      expect(tally.kills).toBe(KILLS_PER_STORE)
      expect(tally.acknowledged, `${JSON.stringify(tally)}`).toBeGreaterThan(
        KILLS_PER_STORE,
      )
      expect(model.lastLsn).toBeGreaterThan(0)
      await annotate(
        JSON.stringify({ ...tally, lastLsn: model.lastLsn, seed: SEED }),
      )
    },
  )
})
