/**
 * Exact k-nearest-neighbour search latency, one query at a time, on clustered
 * embedding-like data (testkit's clusteredEmbeddings).
 *
 * Rows per size:
 * - velosync-exact     LocalStore.search through the public client API (WASM SIMD)
 * - velosync-exact-js  the same store reopened with the plain TS kernel
 * - velosync-kernel    VectorMatrix.scoreAll + topK alone: the store's overhead is the gap
 * - naive-f64          the original prototype: float64 BLOB rows in SQLite, read and
 *                      decoded per query, cosine in a JS loop, full sort
 * - c-scan             bench/c/scan.c, cc -O3 -march=native: the memory-bandwidth floor
 *
 * Usage: npm run bench:search -- [--json] [--queries N] [--naive-queries N]
 *                                 [--sizes 10000x384,100000x384,100000x768]
 * Needs `npm run build` first (the store is imported from the built packages).
 * --json prints one JSON array of rows to stdout; progress always goes to stderr.
 */
import { spawnSync } from 'node:child_process'
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type * as Client from '@velosync/client'
import type * as Core from '@velosync/core'
import Database from 'better-sqlite3'
import { clusteredEmbeddings } from '@velosync/testkit'
import { summarize, type LatencySummary } from './lib/stats.js'

const K = 10
const WARMUP_QUERIES = 5
const COLLECTION = 'bench'
/** Documents per putMany call: one transaction each, bounded memory for the receipts. */
const LOAD_BATCH = 5_000

interface Size {
  readonly n: number
  readonly dims: number
}

interface Row extends LatencySummary {
  readonly name: string
  readonly n: number
  readonly dims: number
  readonly k: number
  readonly queries: number
  /** Mean share of naive-f64's top-k ids also returned, over the queries naive ran. */
  readonly recallVsNaive?: number
}

/** Ordered top-k ids per query, for the agreement check. */
type Answers = readonly (readonly string[])[]

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    queries: { type: 'string', default: '100' },
    'naive-queries': { type: 'string' },
    sizes: { type: 'string', default: '10000x384,100000x384,100000x768' },
  },
})
const queryCount = positiveInteger(args.queries, '--queries')
const sizes: Size[] = args.sizes.split(',').map((text) => {
  const match = /^(\d+)x(\d+)$/.exec(text.trim())
  if (match === null)
    throw new Error(`--sizes: expected NxDIMS like 100000x384, got ${text}`)
  const size = { n: Number(match[1]), dims: Number(match[2]) }
  if (size.n < K || size.dims < 1)
    throw new Error(
      `--sizes: need at least ${K} rows and 1 dimension, got ${text}`,
    )
  return size
})

const log = (message: string): void => {
  process.stderr.write(`${message}\n`)
}
const docId = (index: number): string => `doc-${String(index).padStart(7, '0')}`

const WORK_DIR_PREFIX = 'velosync-bench-search-'
removeAbandonedWorkDirs()
const workDir = mkdtempSync(join(tmpdir(), `${WORK_DIR_PREFIX}${process.pid}-`))
const removeWorkDir = (): void =>
  rmSync(workDir, { recursive: true, force: true })

try {
  const client = await import('@velosync/client').catch(
    notBuilt('@velosync/client'),
  )
  const core = await import('@velosync/core').catch(notBuilt('@velosync/core'))
  const scanBinary = compileScan()
  const rows: Row[] = []
  const notes: string[] = []
  for (const size of sizes) {
    rows.push(...benchSize(size, client, core, scanBinary, notes))
  }
  if (args.json) {
    process.stdout.write(`${JSON.stringify(rows)}\n`)
    for (const note of notes) log(`note: ${note}`)
  } else {
    printTable(rows)
    for (const note of notes) process.stdout.write(`note: ${note}\n`)
  }
} finally {
  removeWorkDir()
}

/** Runs every row for one size; its files (up to ~1 GB at 100k x 768) are removed after. */
function benchSize(size: Size, ...rest: BenchDeps): Row[] {
  const sizeDir = join(workDir, `${size.n}x${size.dims}`)
  mkdirSync(sizeDir)
  try {
    return benchSizeIn(sizeDir, size, ...rest)
  } finally {
    rmSync(sizeDir, { recursive: true, force: true })
  }
}

type BenchDeps = [
  client: typeof Client | undefined,
  core: typeof Core | undefined,
  scanBinary: string | undefined,
  notes: string[],
]

function benchSizeIn(
  sizeDir: string,
  { n, dims }: Size,
  client: typeof Client | undefined,
  core: typeof Core | undefined,
  scanBinary: string | undefined,
  notes: string[],
): Row[] {
  const naiveQueries = Math.min(
    queryCount,
    args['naive-queries'] === undefined
      ? n <= 20_000
        ? 20
        : 5
      : positiveInteger(args['naive-queries'], '--naive-queries'),
  )
  // The plain TS kernel is 6-9x slower: fewer queries keep the run short on shared cores.
  const jsQueries = Math.max(10, Math.ceil(queryCount / 4))
  log(`\n== ${n} x ${dims}: generating clustered data`)
  const data = clusteredEmbeddings({ count: n, dims, seed: 1 })
  const allQueries = data.queries(queryCount + WARMUP_QUERIES, 2)
  const query = (i: number): Float32Array =>
    allQueries.subarray(i * dims, (i + 1) * dims)
  const warmup = (run: (q: Float32Array) => void): void => {
    for (let i = 0; i < WARMUP_QUERIES; i++) run(query(queryCount + i))
  }
  const row = (name: string, timesMs: number[]): Row => ({
    name,
    n,
    dims,
    k: K,
    ...summarize(timesMs),
    queries: timesMs.length,
  })

  const results: { row: Row; answers: Answers }[] = []

  const normalized = normalizeRows(data.matrix, dims)
  const normalizedQueries = normalizeRows(allQueries, dims)
  const normalizedQuery = (i: number): Float32Array =>
    normalizedQueries.subarray(i * dims, (i + 1) * dims)

  if (core !== undefined) {
    const matrix = new core.VectorMatrix({
      dims,
      initialCapacity: n,
      backend: 'wasm-simd',
    })
    for (let i = 0; i < n; i++)
      matrix.append(normalized.subarray(i * dims, (i + 1) * dims))
    const search = (q: Float32Array): Uint32Array =>
      core.topK(matrix.scoreAll(q, 'dot'), matrix.size, K, true)
    for (let i = 0; i < WARMUP_QUERIES; i++)
      search(normalizedQuery(queryCount + i))
    const timesMs: number[] = []
    const answers: string[][] = []
    for (let i = 0; i < queryCount; i++) {
      const q = normalizedQuery(i)
      const t0 = performance.now()
      const best = search(q)
      timesMs.push(performance.now() - t0)
      answers.push(Array.from(best, docId))
    }
    matrix.clear()
    results.push({ row: row('velosync-kernel', timesMs), answers })
  }

  if (client !== undefined) {
    const path = join(sizeDir, 'store.db')
    let store = client.LocalStore.open({ path })
    store.createCollection({ name: COLLECTION, dims, metric: 'cosine' })
    let started = performance.now()
    for (let from = 0; from < n; from += LOAD_BATCH) {
      const documents = []
      for (let i = from; i < Math.min(n, from + LOAD_BATCH); i++) {
        documents.push({
          id: docId(i),
          vector: data.matrix.subarray(i * dims, (i + 1) * dims),
          metadata: { cluster: data.clusterOf[i] as number },
        })
      }
      store.putMany(COLLECTION, documents)
    }
    log(
      `velosync: putMany of ${n} documents took ${(performance.now() - started).toFixed(0)} ms`,
    )
    const searchAll = (
      count: number,
      name: string,
    ): { row: Row; answers: Answers } => {
      const search = (q: Float32Array) => store.search(COLLECTION, q, { k: K })
      warmup(search)
      const timesMs: number[] = []
      const answers: string[][] = []
      for (let i = 0; i < count; i++) {
        const t0 = performance.now()
        const hits = search(query(i))
        timesMs.push(performance.now() - t0)
        answers.push(hits.map((hit) => hit.id))
      }
      log(
        `${name}: backend ${store.searchBackend(COLLECTION)}, ${count} queries`,
      )
      return { row: row(name, timesMs), answers }
    }
    results.push(searchAll(queryCount, 'velosync-exact'))
    store.close()
    started = performance.now()
    store = client.LocalStore.open({ path, vectorBackend: 'js' })
    log(
      `velosync: reopening (index rebuilt from SQLite) took ${(performance.now() - started).toFixed(0)} ms`,
    )
    results.push(searchAll(jsQueries, 'velosync-exact-js'))
    store.close()
  } else {
    notes.push(
      'velosync-exact rows skipped: @velosync/client did not load (run npm run build)',
    )
  }

  log(`naive-f64: loading ${n} float64 BLOB rows into SQLite`)
  const naive = naiveSearch(join(sizeDir, 'naive.db'), data.matrix, dims)
  // One untimed warm-up only: each of these queries costs ~100 velosync queries.
  naive.search(query(queryCount))
  const naiveTimes: number[] = []
  const naiveAnswers: string[][] = []
  for (let i = 0; i < naiveQueries; i++) {
    const t0 = performance.now()
    const ids = naive.search(query(i))
    naiveTimes.push(performance.now() - t0)
    naiveAnswers.push(ids)
  }
  naive.close()
  const naiveRow = row('naive-f64', naiveTimes)

  if (scanBinary !== undefined) {
    const matrixFile = join(sizeDir, 'matrix.f32')
    const queryFile = join(sizeDir, 'queries.f32')
    writeFileSync(matrixFile, normalized)
    writeFileSync(queryFile, normalizedQueries.subarray(0, queryCount * dims))
    const run = spawnSync(
      scanBinary,
      [
        matrixFile,
        `${n}`,
        `${dims}`,
        queryFile,
        `${queryCount}`,
        `${K}`,
        `${WARMUP_QUERIES}`,
      ],
      { encoding: 'utf8', maxBuffer: 64 << 20 },
    )
    if (run.status === 0) {
      const output = JSON.parse(run.stdout) as {
        timesMs: number[]
        ids: number[][]
      }
      results.push({
        row: row('c-scan', output.timesMs),
        answers: output.ids.map((ids) => ids.map(docId)),
      })
    } else {
      notes.push(
        `c-scan at ${n}x${dims} failed: ${run.stderr || run.error?.message}`,
      )
    }
  }

  const rowsOut = results.map(({ row: measured, answers }) => {
    const { recall, identical, compared } = agreement(answers, naiveAnswers)
    log(
      `${measured.name}: recall@${K} vs naive-f64 ${recall.toFixed(4)}, identical ordered top-${K} lists ${identical}/${compared}`,
    )
    return { ...measured, recallVsNaive: recall }
  })
  return [...rowsOut, naiveRow]
}

/** The prototype's search, kept deliberately as it was designed. */
function naiveSearch(path: string, vectors: Float32Array, dims: number) {
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.exec(
    'CREATE TABLE embeddings (id TEXT PRIMARY KEY, vector BLOB NOT NULL, metadata TEXT NOT NULL)',
  )
  const insert = db.prepare(
    'INSERT INTO embeddings (id, vector, metadata) VALUES (?, ?, ?)',
  )
  db.transaction(() => {
    for (let i = 0; i * dims < vectors.length; i++) {
      const vector = Float64Array.from(
        vectors.subarray(i * dims, (i + 1) * dims),
      )
      insert.run(docId(i), Buffer.from(vector.buffer), '{}')
    }
  })()
  const select = db.prepare('SELECT id, vector FROM embeddings')
  return {
    search(query: Float32Array): string[] {
      let queryNorm = 0
      for (const value of query) queryNorm += value * value
      queryNorm = Math.sqrt(queryNorm)
      const hits: { id: string; score: number }[] = []
      // iterate() rather than all(): same per-row work, without holding every BLOB at once.
      for (const { id, vector } of select.iterate() as Iterable<{
        id: string
        vector: Buffer
      }>) {
        // Copied because SQLite's buffers are not 8-byte aligned, as the prototype did.
        const row = new Float64Array(new Uint8Array(vector).buffer)
        let dot = 0
        let rowNorm = 0
        for (let j = 0; j < dims; j++) {
          const value = row[j] as number
          dot += value * (query[j] as number)
          rowNorm += value * value
        }
        hits.push({ id, score: dot / (Math.sqrt(rowNorm) * queryNorm) })
      }
      hits.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1))
      return hits.slice(0, K).map((hit) => hit.id)
    },
    close: () => db.close(),
  }
}

/** Compiles bench/c/scan.c once; `undefined` (with a printed note) when there is no cc. */
function compileScan(): string | undefined {
  const source = fileURLToPath(new URL('c/scan.c', import.meta.url))
  const binary = join(workDir, 'scan')
  const build = spawnSync(
    'cc',
    ['-O3', '-march=native', '-o', binary, source],
    {
      encoding: 'utf8',
    },
  )
  if (build.error !== undefined || build.status !== 0) {
    log(
      `c-scan skipped: cc -O3 -march=native failed: ${build.error?.message ?? build.stderr}`,
    )
    return undefined
  }
  return binary
}

function notBuilt(name: string): (error: unknown) => undefined {
  return (error) => {
    log(
      `${name} could not be imported (${String(error)}); run npm run build first`,
    )
    return undefined
  }
}

/**
 * Agreement with the reference over the queries both answered: the share of the
 * reference's ids found, and how many ordered lists are identical.
 */
function agreement(
  answers: Answers,
  reference: Answers,
): { recall: number; identical: number; compared: number } {
  const compared = Math.min(answers.length, reference.length)
  let found = 0
  let total = 0
  let identical = 0
  for (let i = 0; i < compared; i++) {
    const ids = reference[i] as readonly string[]
    const mine = answers[i] as readonly string[]
    const mineSet = new Set(mine)
    for (const id of ids) if (mineSet.has(id)) found++
    total += ids.length
    if (mine.length === ids.length && mine.every((id, j) => id === ids[j]))
      identical++
  }
  return {
    recall: total === 0 ? Number.NaN : found / total,
    identical,
    compared,
  }
}

function printTable(rows: readonly Row[]): void {
  const header = [
    'name',
    'n',
    'dims',
    'queries',
    'p50 ms',
    'p95 ms',
    'qps',
    'naive/this',
    'this/C',
    `recall@${K}`,
  ]
  const lines = rows.map((r) => {
    const naive = rows.find(
      (o) => o.name === 'naive-f64' && o.n === r.n && o.dims === r.dims,
    )
    const c = rows.find(
      (o) => o.name === 'c-scan' && o.n === r.n && o.dims === r.dims,
    )
    return [
      r.name,
      `${r.n}`,
      `${r.dims}`,
      `${r.queries}`,
      r.p50Ms.toFixed(3),
      r.p95Ms.toFixed(3),
      r.qps.toFixed(1),
      naive === undefined ? '-' : `${(naive.p50Ms / r.p50Ms).toFixed(1)}x`,
      c === undefined ? '-' : `${(r.p50Ms / c.p50Ms).toFixed(2)}x`,
      r.recallVsNaive === undefined ? '-' : r.recallVsNaive.toFixed(4),
    ]
  })
  const widths = header.map((h, i) =>
    Math.max(h.length, ...lines.map((l) => (l[i] as string).length)),
  )
  const format = (cells: readonly string[]): string =>
    cells
      .map((cell, i) =>
        i === 0
          ? cell.padEnd(widths[i] as number)
          : cell.padStart(widths[i] as number),
      )
      .join('  ')
  process.stdout.write(
    `\nExact kNN, k=${K}, medians over one query at a time (clustered data)\n`,
  )
  process.stdout.write(`${format(header)}\n`)
  for (const line of lines) process.stdout.write(`${format(line)}\n`)
}

/**
 * Removes work directories of earlier runs whose process is gone. An interrupted run
 * cannot clean up itself: the benchmark is synchronous, so a SIGINT listener would only
 * run after the current phase, and tsx SIGKILLs a child that does not react in ~60 ms.
 */
function removeAbandonedWorkDirs(): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(WORK_DIR_PREFIX)) continue
    const pid = Number.parseInt(name.slice(WORK_DIR_PREFIX.length), 10)
    if (!Number.isSafeInteger(pid) || pid === process.pid || isRunning(pid))
      continue
    rmSync(join(tmpdir(), name), { recursive: true, force: true })
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function positiveInteger(text: string, flag: string): number {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 1)
    throw new Error(`${flag}: expected a positive integer, got ${text}`)
  return value
}

/** Unit-length copies of each `dims`-long row (what a cosine index stores). */
function normalizeRows(vectors: Float32Array, dims: number): Float32Array {
  const out = new Float32Array(vectors.length)
  for (let at = 0; at < vectors.length; at += dims) {
    let sum = 0
    for (let j = 0; j < dims; j++) sum += (vectors[at + j] as number) ** 2
    const scale = 1 / Math.sqrt(sum)
    for (let j = 0; j < dims; j++)
      out[at + j] = (vectors[at + j] as number) * scale
  }
  return out
}
