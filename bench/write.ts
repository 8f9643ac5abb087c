/**
 * Write throughput and latency of the local store, with its replication log: every
 * document written also appends its outbox entry, in the same transaction.
 *
 * Rows:
 * - putMany            LocalStore.putMany of N documents (default 10,000 × 384-d float32,
 *                      ~200-char text + small metadata) into a fresh store file, one run per
 *                      file; synchronous 'full' and 'normal'. docsPerSec = docs / median time.
 * - put                single LocalStore.put latency, one document per call (its own
 *                      transaction and commit), synchronous 'full' and 'normal'
 * - naive-f64-putMany  the original prototype's write design for the same documents:
 *                      float64 BLOB rows plus, per write, a row in a separate log table
 *                      holding the operation as one JSON line (vector as JSON numbers),
 *                      better-sqlite3 with SQLite's defaults (rollback journal,
 *                      synchronous FULL), one transaction for all N
 *
 * Timing covers the write call only: generating data, opening and closing stores are
 * outside it. Each putMany configuration runs once to warm up, then --runs times.
 *
 * Usage: npm run bench:write -- [--json] [--runs N] [--docs N] [--puts N] [--dims N]
 * Needs `npm run build` first (the store is imported from the built packages).
 * --json prints one JSON array of rows to stdout and nothing else; progress goes to stderr.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type * as Client from '@velosync/client'
import Database from 'better-sqlite3'
import { integerArg } from './lib/args.js'
import { benchDocuments, type BenchDocument } from './lib/documents.js'
import { summarize } from './lib/stats.js'

type Synchronous = 'full' | 'normal'

interface PutManyRow {
  readonly name: 'putMany' | 'naive-f64-putMany'
  readonly docs: number
  readonly dims: number
  readonly synchronous: Synchronous
  readonly runs: number
  readonly docsPerSec: number
  /** Median and 95th percentile (nearest rank) of one whole putMany call. */
  readonly p50Ms: number
  readonly p95Ms: number
}

interface PutRow {
  readonly name: 'put'
  readonly dims: number
  readonly synchronous: Synchronous
  readonly puts: number
  readonly p50Ms: number
  readonly p95Ms: number
  /** One writer, one document per call: 1000 / mean latency. */
  readonly putsPerSec: number
}

type Row = PutManyRow | PutRow

const COLLECTION = 'bench'
/** Single puts before the measured ones, per store. */
const WARMUP_PUTS = 50
const WORK_DIR_PREFIX = 'velosync-bench-write-'

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '7' },
    docs: { type: 'string', default: '10000' },
    puts: { type: 'string', default: '500' },
    dims: { type: 'string', default: '384' },
  },
})
const runs = integerArg(args.runs, '--runs', 1)
const docCount = integerArg(args.docs, '--docs', 1)
const putCount = integerArg(args.puts, '--puts', 1)
const dims = integerArg(args.dims, '--dims', 1)

const log = (message: string): void => {
  process.stderr.write(`${message}\n`)
}

const client = await import('@velosync/client').catch((error: unknown) => {
  log(
    `@velosync/client could not be imported (${String(error)}); run npm run build first`,
  )
  process.exit(1)
})

removeAbandonedWorkDirs()
const workDir = mkdtempSync(join(tmpdir(), `${WORK_DIR_PREFIX}${process.pid}-`))
try {
  log(`generating ${docCount + WARMUP_PUTS + putCount} documents, ${dims}-d`)
  const documents = benchDocuments({
    count: Math.max(docCount, WARMUP_PUTS + putCount),
    dims,
    seed: 1,
    idDigits: 7,
  })
  const batch = documents.slice(0, docCount)
  const rows: Row[] = []
  for (const synchronous of ['full', 'normal'] as const) {
    rows.push(benchPutMany(client, batch, synchronous))
  }
  rows.push(benchNaivePutMany(batch))
  for (const synchronous of ['full', 'normal'] as const) {
    rows.push(benchPut(client, documents, synchronous))
  }
  if (args.json) process.stdout.write(`${JSON.stringify(rows)}\n`)
  else printTable(rows)
} finally {
  rmSync(workDir, { recursive: true, force: true })
}

/** A fresh, empty store file for one run; the caller closes the store. */
function openFreshStore(
  { LocalStore }: typeof Client,
  name: string,
  synchronous: Synchronous,
): Client.LocalStore {
  const store = LocalStore.open({
    path: join(workDir, `${name}.db`),
    synchronous,
  })
  store.createCollection({ name: COLLECTION, dims, metric: 'cosine' })
  return store
}

function removeStoreFiles(name: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) {
    rmSync(join(workDir, `${name}.db${suffix}`), { force: true })
  }
}

function benchPutMany(
  module: typeof Client,
  batch: readonly BenchDocument[],
  synchronous: Synchronous,
): PutManyRow {
  log(
    `putMany ${batch.length} docs, synchronous=${synchronous}: 1 warm-up + ${runs} runs`,
  )
  const timesMs: number[] = []
  for (let run = 0; run <= runs; run++) {
    const name = `putMany-${synchronous}-${run}`
    const store = openFreshStore(module, name, synchronous)
    const started = performance.now()
    const receipts = store.putMany(COLLECTION, batch)
    const elapsed = performance.now() - started
    // The log entries are part of what is measured: check they are all there.
    if (
      receipts.length !== batch.length ||
      store.outbox.size !== batch.length
    ) {
      throw new Error(
        `putMany run ${run}: ${store.outbox.size} outbox entries for ${batch.length} documents`,
      )
    }
    store.close()
    removeStoreFiles(name)
    if (run > 0) timesMs.push(elapsed)
  }
  return putManyRow('putMany', batch.length, synchronous, timesMs)
}

function benchPut(
  module: typeof Client,
  documents: readonly BenchDocument[],
  synchronous: Synchronous,
): PutRow {
  log(`put x ${WARMUP_PUTS} warm-up + ${putCount}, synchronous=${synchronous}`)
  const name = `put-${synchronous}`
  const store = openFreshStore(module, name, synchronous)
  const timesMs: number[] = []
  try {
    for (let i = 0; i < WARMUP_PUTS + putCount; i++) {
      const document = documents[i] as BenchDocument
      const started = performance.now()
      store.put(COLLECTION, document)
      const elapsed = performance.now() - started
      if (i >= WARMUP_PUTS) timesMs.push(elapsed)
    }
  } finally {
    store.close()
    removeStoreFiles(name)
  }
  const { p50Ms, p95Ms } = summarize(timesMs)
  const meanMs = timesMs.reduce((sum, t) => sum + t, 0) / timesMs.length
  return {
    name: 'put',
    dims,
    synchronous,
    puts: putCount,
    p50Ms,
    p95Ms,
    putsPerSec: 1000 / meanMs,
  }
}

/**
 * The prototype's design, rebuilt from its description for comparison: each write
 * converts the vector to float64, upserts the document row with it as a BLOB and the
 * metadata as JSON, then appends the operation to a log table as one JSON line.
 */
function benchNaivePutMany(batch: readonly BenchDocument[]): PutManyRow {
  log(`naive-f64-putMany ${batch.length} docs: 1 warm-up + ${runs} runs`)
  const timesMs: number[] = []
  for (let run = 0; run <= runs; run++) {
    const name = `naive-${run}`
    const db = new Database(join(workDir, `${name}.db`))
    try {
      db.pragma('synchronous = FULL')
      db.exec(`
        CREATE TABLE documents (
          id TEXT PRIMARY KEY, vector BLOB NOT NULL, metadata TEXT NOT NULL, version INTEGER NOT NULL
        );
        CREATE TABLE wal (lsn INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
      `)
      const upsert = db.prepare(
        `INSERT INTO documents (id, vector, metadata, version) VALUES (?, ?, ?, 1)
         ON CONFLICT (id) DO UPDATE SET vector = excluded.vector, metadata = excluded.metadata,
           version = version + 1`,
      )
      const append = db.prepare('INSERT INTO wal (line) VALUES (?)')
      const writeAll = db.transaction((documents: readonly BenchDocument[]) => {
        for (const document of documents) {
          const vector = Float64Array.from(document.vector)
          const metadata = JSON.stringify(document.metadata)
          upsert.run(document.id, Buffer.from(vector.buffer), metadata)
          append.run(
            JSON.stringify({
              op: 'put',
              id: document.id,
              vector: Array.from(vector),
              metadata: document.metadata,
              clock: { 'device-1': 1 },
              ts: Date.now(),
            }),
          )
        }
      })
      const started = performance.now()
      writeAll(batch)
      const elapsed = performance.now() - started
      const logged = db
        .prepare('SELECT count(*) FROM wal')
        .pluck()
        .get() as number
      if (logged !== batch.length)
        throw new Error(
          `naive run ${run}: ${logged} log lines for ${batch.length} documents`,
        )
      if (run > 0) timesMs.push(elapsed)
    } finally {
      db.close()
      removeStoreFiles(name)
    }
  }
  return putManyRow('naive-f64-putMany', batch.length, 'full', timesMs)
}

function putManyRow(
  name: PutManyRow['name'],
  docs: number,
  synchronous: Synchronous,
  timesMs: readonly number[],
): PutManyRow {
  const { p50Ms, p95Ms } = summarize(timesMs)
  return {
    name,
    docs,
    dims,
    synchronous,
    runs: timesMs.length,
    docsPerSec: docs / (p50Ms / 1000),
    p50Ms,
    p95Ms,
  }
}

function printTable(rows: readonly Row[]): void {
  const naive = rows.find(
    (row): row is PutManyRow => row.name === 'naive-f64-putMany',
  )
  const count = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })
  const header = [
    'name',
    'synchronous',
    'writes',
    'docs/s',
    'p50 ms',
    'p95 ms',
    'vs naive',
  ]
  const lines = rows.map((row) =>
    row.name === 'put'
      ? [
          row.name,
          row.synchronous,
          `${row.puts} x 1`,
          count.format(row.putsPerSec),
          row.p50Ms.toFixed(3),
          row.p95Ms.toFixed(3),
          '',
        ]
      : [
          row.name,
          row.synchronous,
          `${row.runs} x ${count.format(row.docs)}`,
          count.format(row.docsPerSec),
          row.p50Ms.toFixed(1),
          row.p95Ms.toFixed(1),
          naive === undefined
            ? ''
            : `${(row.docsPerSec / naive.docsPerSec).toFixed(1)}x`,
        ],
  )
  const widths = header.map((title, c) =>
    Math.max(title.length, ...lines.map((line) => (line[c] as string).length)),
  )
  const format = (cells: readonly string[]): string =>
    cells
      .map((cell, c) =>
        c < 2
          ? cell.padEnd(widths[c] as number)
          : cell.padStart(widths[c] as number),
      )
      .join('  ')
      .trimEnd()
  const cpu = cpus()
  process.stdout.write(
    `\nWrites with their outbox entries: ${count.format(docCount)} docs x ${dims}-d float32 + ~200-char text\n` +
      `(putMany: median over ${runs} fresh stores after a warm-up; put: ${putCount} single writes; ` +
      `node ${process.version}, ${cpu.length} x ${cpu[0]?.model ?? 'unknown CPU'})\n\n`,
  )
  process.stdout.write(`${format(header)}\n`)
  for (const line of lines) process.stdout.write(`${format(line)}\n`)
  process.stdout.write(
    '\ndocs/s: putMany = docs / median time; put = 1000 / mean latency (one writer, one document per commit)\n',
  )
}

/**
 * Removes work directories left by interrupted runs whose process is gone: the benchmark
 * is synchronous, so it cannot clean up on SIGINT itself.
 */
function removeAbandonedWorkDirs(): void {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(WORK_DIR_PREFIX)) continue
    const pid = Number.parseInt(entry.slice(WORK_DIR_PREFIX.length), 10)
    if (!Number.isSafeInteger(pid) || pid === process.pid || processExists(pid))
      continue
    rmSync(join(tmpdir(), entry), { recursive: true, force: true })
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
