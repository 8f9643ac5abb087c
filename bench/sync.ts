/**
 * Sync throughput and bytes on the wire, over real HTTP on 127.0.0.1 with real SQLite files.
 *
 * Rows (per wire format: `binary` = MessagePack, `json` = JSON with base64 vectors and
 * gzip, `naive-json-f64` = the original prototype's design, see below):
 * - push       one device pushes N documents (default 10,000 × 384-d float32, ~200-char
 *              text + small metadata) to an empty server: one `SyncClient.sync()` round
 *              (push batches, their pulls, the ack). docsPerSec = N / median time.
 * - pull       a fresh device pulls those N documents: one `sync()` round.
 * - idle-pull  the pushing device syncs again right after its push, with nothing new: the
 *              bytes of that whole round (one sync exchange + the ack).
 *
 * Bytes are counted on the wire: the server's sockets count what they read and write, so
 * request and status lines, headers and bodies in both directions all count (nothing sits
 * in between). rawBytesPerDoc is what the documents themselves hold: vector bytes
 * (float32) + metadata JSON (with the text) + id. By default (`--server child`) the server
 * runs in one long-lived child process, as a deployment has it: device and server
 * each have a core, and the server is warm after the warm-up run (each run still gets a
 * new, empty store). `--server in-process` puts both ends in this process (one event
 * loop), so docs/s then measures the work of both ends done one after the other.
 *
 * naive-json-f64: the prototype posted documents as JSON with the vector as a float64
 * number array to an endpoint that parsed them and inserted them into SQLite, and served
 * them back the same way. Simulated here with a tiny node:http server, placed like the
 * VeloSync server (better-sqlite3 with SQLite's defaults, float64 BLOBs, one transaction per
 * batch); the pulling client inserts
 * what it gets into its own SQLite file, in batches of --batch documents like the sync client.
 *
 * Each configuration runs --runs times (default 3) after one warm-up run; medians shown.
 *
 * Options: --batch N documents per request, push and pull (default 1000, the sync client's
 * default); --synchronous full|normal for every SQLite file of the VeloSync runs (default
 * full, the stores' default); --server child|in-process where the servers run (above).
 *
 * Usage: npm run bench:sync -- [--json] [--runs N] [--docs N] [--dims N] [--formats a,b]
 *   [--batch N] [--synchronous full|normal] [--server child|in-process]
 * Needs `npm run build` first (the packages are imported from their builds).
 * --json prints one JSON array of rows to stdout and nothing else; progress goes to stderr.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { HttpTransport, LocalStore, SyncClient } from '@velosync/client'
import type { WireFormat } from '@velosync/core'
import { createToken, hashToken } from '@velosync/server'
import Database from 'better-sqlite3'
import { integerArg } from './lib/args.js'
import {
  startBenchServer,
  type BenchServer,
  type BenchServerConfig,
} from './lib/bench-server.js'
import { benchDocuments, type BenchDocument } from './lib/documents.js'
import { float64Blob, type NaiveDocument } from './lib/naive.js'
import { ServerProcess } from './lib/server-process.js'
import { median, round } from './lib/stats.js'

type Format = 'binary' | 'json' | 'naive-json-f64'

interface ThroughputRow {
  readonly name: 'push' | 'pull'
  readonly format: Format
  /** Where the server ran: its own process, or the benchmark's. */
  readonly server: 'child' | 'in-process'
  readonly docs: number
  readonly dims: number
  readonly runs: number
  readonly docsPerSec: number
  /** The slowest and the fastest run: how much the shared machine moved meanwhile. */
  readonly slowestDocsPerSec: number
  readonly fastestDocsPerSec: number
  readonly medianMs: number
  readonly wireBytesPerDoc: number
  readonly rawBytesPerDoc: number
  /** wireBytesPerDoc / rawBytesPerDoc. */
  readonly wireToRaw: number
}

interface IdleRow {
  readonly name: 'idle-pull'
  readonly format: Format
  readonly runs: number
  readonly wireBytes: number
}

type Row = ThroughputRow | IdleRow

/** What one run of one format measured. */
interface RunResult {
  readonly pushMs: number
  readonly pushBytes: number
  readonly pullMs: number
  readonly pullBytes: number
  /** Undefined for the naive design, which has no incremental pull. */
  readonly idleBytes: number | undefined
}

const COLLECTION = 'bench'
/** Issue 3's targets for this machine. */
const TARGET_DOCS_PER_SEC = 20_000
const TARGET_WIRE_TO_RAW = 1.1
const TARGET_IDLE_BYTES = 2048

const log = (message: string): void => {
  process.stderr.write(`${message}\n`)
}

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    docs: { type: 'string', default: '10000' },
    dims: { type: 'string', default: '384' },
    formats: { type: 'string', default: 'binary,json,naive-json-f64' },
    synchronous: { type: 'string', default: 'full' },
    batch: { type: 'string', default: '1000' },
    server: { type: 'string', default: 'child' },
  },
})
const runs = integerArg(args.runs, '--runs', 1)
const docCount = integerArg(args.docs, '--docs', 1)
const dims = integerArg(args.dims, '--dims', 1)
const batch = integerArg(args.batch, '--batch', 1)
if (args.synchronous !== 'full' && args.synchronous !== 'normal') {
  log(`--synchronous takes full or normal, got ${args.synchronous}`)
  process.exit(2)
}
const synchronous: 'full' | 'normal' = args.synchronous
if (args.server !== 'in-process' && args.server !== 'child') {
  log(`--server takes child or in-process, got ${args.server}`)
  process.exit(2)
}
const serverPlace: 'child' | 'in-process' = args.server
/** The child process the servers run in with `--server child` (one for the whole run). */
const serverProcess =
  serverPlace === 'child' ? await ServerProcess.spawn() : undefined
const startServer = (config: BenchServerConfig): Promise<BenchServer> =>
  serverProcess?.start(config) ?? startBenchServer(config)
const FORMATS: readonly Format[] = ['binary', 'json', 'naive-json-f64']
const formats = args.formats.split(',').map((name) => {
  const format = FORMATS.find((known) => known === name.trim())
  if (format === undefined) {
    log(`--formats takes a list of ${FORMATS.join(', ')}; got ${name}`)
    process.exit(2)
  }
  return format
})

/** Runs every configuration and prints the rows (classes below must be initialized first). */
async function main(): Promise<void> {
  const workDir = mkdtempSync(join(tmpdir(), 'velosync-bench-sync-'))
  try {
    log(`generating ${docCount} documents, ${dims}-d`)
    const documents = benchDocuments({
      count: docCount,
      dims,
      seed: 42,
      idDigits: 6,
    })
    const rawBytesPerDoc = rawBytesOf(documents) / docCount
    const rows: Row[] = []
    let runIndex = 0
    for (const format of formats) {
      const results: RunResult[] = []
      // Run 0 warms up the JIT, the page cache and the connection code; it is not counted.
      for (let run = 0; run <= runs; run++) {
        const dir = join(workDir, `run-${runIndex++}`)
        mkdirSync(dir)
        const result =
          format === 'naive-json-f64'
            ? await runNaive(documents, dir)
            : await runVeloSync(
                documents,
                format === 'binary' ? 'msgpack' : 'json',
                dir,
              )
        rmSync(dir, { recursive: true, force: true })
        log(
          `${format} ${run === 0 ? 'warm-up' : `run ${run}/${runs}`}: ` +
            `push ${result.pushMs.toFixed(0)} ms, pull ${result.pullMs.toFixed(0)} ms`,
        )
        if (run > 0) results.push(result)
      }
      for (const name of ['push', 'pull'] as const) {
        const times = results.map((r) =>
          name === 'push' ? r.pushMs : r.pullMs,
        )
        const medianMs = median(times)
        const perSec = (ms: number): number =>
          Math.round(docCount / (ms / 1000))
        const wireBytesPerDoc =
          median(
            results.map((r) => (name === 'push' ? r.pushBytes : r.pullBytes)),
          ) / docCount
        rows.push({
          name,
          format,
          server: serverPlace,
          docs: docCount,
          dims,
          runs,
          docsPerSec: perSec(medianMs),
          slowestDocsPerSec: perSec(Math.max(...times)),
          fastestDocsPerSec: perSec(Math.min(...times)),
          medianMs: round(medianMs, 1),
          wireBytesPerDoc: round(wireBytesPerDoc, 1),
          rawBytesPerDoc: round(rawBytesPerDoc, 1),
          wireToRaw: round(wireBytesPerDoc / rawBytesPerDoc, 3),
        })
      }
      const idle = results
        .map((r) => r.idleBytes)
        .filter((bytes) => bytes !== undefined)
      if (idle.length > 0) {
        rows.push({
          name: 'idle-pull',
          format,
          runs,
          wireBytes: median(idle),
        })
      }
    }
    if (args.json) process.stdout.write(`${JSON.stringify(rows)}\n`)
    else printTable(rows)
  } finally {
    await serverProcess?.exit()
    rmSync(workDir, { recursive: true, force: true })
  }
}

/** Push, idle pull and pull of every document through a VeloSync server. */
async function runVeloSync(
  documents: readonly BenchDocument[],
  format: WireFormat,
  dir: string,
): Promise<RunResult> {
  const tokens = new Map(
    ['pusher', 'puller'].map((name) => [name, createToken()]),
  )
  const server = await startServer({
    mode: 'velosync',
    dir,
    synchronous,
    devices: [...tokens].map(([deviceId, token]) => ({
      deviceId,
      tokenHash: hashToken(token),
    })),
  })
  const devices: Array<{ store: LocalStore; transport: HttpTransport }> = []
  const device = (name: string) => {
    const store = LocalStore.open({
      path: join(dir, `${name}.db`),
      deviceId: name,
      synchronous,
    })
    const transport = new HttpTransport({
      url: server.url,
      token: tokens.get(name) as string,
      format,
    })
    devices.push({ store, transport })
    const client = new SyncClient(store, {
      transport,
      maxOpsPerPush: batch,
      pullLimit: batch,
    })
    return { store, client }
  }
  try {
    const pusher = device('pusher')
    pusher.store.createCollection({ name: COLLECTION, dims, metric: 'cosine' })
    pusher.store.putMany(COLLECTION, documents)

    await server.bytes(true)
    let started = performance.now()
    const pushed = await pusher.client.sync()
    const pushMs = performance.now() - started
    const pushBytes = await server.bytes(true)
    if (pushed.pushed !== documents.length) {
      throw new Error(`pushed ${pushed.pushed} of ${documents.length}`)
    }

    await pusher.client.sync()
    const idleBytes = await server.bytes(true)

    const puller = device('puller')
    started = performance.now()
    const pulled = await puller.client.sync()
    const pullMs = performance.now() - started
    const pullBytes = await server.bytes(true)
    if (
      pulled.pulled !== documents.length ||
      puller.store.digest(COLLECTION) !== (await server.digest(COLLECTION))
    ) {
      throw new Error(
        `the pulling device did not converge (${pulled.pulled} pulled)`,
      )
    }
    return { pushMs, pushBytes, pullMs, pullBytes, idleBytes }
  } finally {
    for (const { store, transport } of devices) {
      await transport.close()
      store.close()
    }
    await server.close()
  }
}

/** The prototype's design: float64 vectors as JSON number arrays, in and out. */
async function runNaive(
  documents: readonly BenchDocument[],
  dir: string,
): Promise<RunResult> {
  const server = await startServer({ mode: 'naive', dir, batch })
  const local = new Database(join(dir, 'naive-device.db'))
  local.exec(
    'CREATE TABLE docs (id TEXT PRIMARY KEY, vector BLOB NOT NULL, metadata TEXT NOT NULL)',
  )
  const localInsert = local.prepare(
    'INSERT OR REPLACE INTO docs (id, vector, metadata) VALUES (?, ?, ?)',
  )
  const localInsertAll = local.transaction((docs: readonly NaiveDocument[]) => {
    for (const doc of docs) {
      localInsert.run(
        doc.id,
        float64Blob(doc.vector),
        JSON.stringify(doc.metadata),
      )
    }
  })
  try {
    await server.bytes(true)
    let started = performance.now()
    for (let i = 0; i < documents.length; i += batch) {
      const docs = documents.slice(i, i + batch).map((doc) => ({
        id: doc.id,
        vector: Array.from(doc.vector),
        metadata: doc.metadata,
      }))
      const response = await fetch(`${server.url}/docs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ docs }),
      })
      if (!response.ok) throw new Error(await response.text())
      await response.arrayBuffer()
    }
    const pushMs = performance.now() - started
    const pushBytes = await server.bytes(true)

    started = performance.now()
    let after = 0
    let pulled = 0
    for (;;) {
      const response = await fetch(`${server.url}/docs?after=${after}`)
      const body = (await response.json()) as {
        docs: NaiveDocument[]
        next: number
      }
      if (body.docs.length === 0) break
      localInsertAll(body.docs)
      pulled += body.docs.length
      after = body.next
    }
    const pullMs = performance.now() - started
    if (pulled !== documents.length) {
      throw new Error(`naive pull got ${pulled} of ${documents.length}`)
    }
    return {
      pushMs,
      pushBytes,
      pullMs,
      pullBytes: await server.bytes(true),
      idleBytes: undefined,
    }
  } finally {
    await server.close()
    local.close()
  }
}

/** Vector bytes (float32) + metadata JSON (UTF-8, text included) + id, summed over docs. */
function rawBytesOf(documents: readonly BenchDocument[]): number {
  let total = 0
  for (const doc of documents) {
    total +=
      doc.vector.byteLength +
      Buffer.byteLength(JSON.stringify(doc.metadata)) +
      Buffer.byteLength(doc.id)
  }
  return total
}

function printTable(rows: readonly Row[]): void {
  const lines = [
    `sync over HTTP on 127.0.0.1, server ${serverPlace === 'child' ? 'in a child process' : 'in this process'}: ` +
      `${docCount} docs × ${dims}-d float32, median of ${runs} runs`,
    '',
    'name       format          docs/s  runs from–to   wire B/doc  raw B/doc  wire/raw  target',
  ]
  for (const row of rows) {
    if (row.name === 'idle-pull') {
      const ok = row.wireBytes <= TARGET_IDLE_BYTES
      lines.push(
        `${row.name.padEnd(10)} ${row.format.padEnd(14)} ${'—'.padStart(7)}  ${''.padStart(13)}  ${`${row.wireBytes} B total`.padStart(10)}  ` +
          `${''.padStart(9)}  ${''.padStart(8)}  ${ok ? 'ok' : 'MISSED'} (≤ ${TARGET_IDLE_BYTES} B)`,
      )
      continue
    }
    const target =
      row.format === 'binary'
        ? `${row.docsPerSec >= TARGET_DOCS_PER_SEC ? 'ok' : 'MISSED'} (≥ ${TARGET_DOCS_PER_SEC} docs/s), ` +
          `${row.wireToRaw <= TARGET_WIRE_TO_RAW ? 'ok' : 'MISSED'} (≤ ${TARGET_WIRE_TO_RAW}× raw)`
        : ''
    lines.push(
      `${row.name.padEnd(10)} ${row.format.padEnd(14)} ${String(row.docsPerSec).padStart(7)}  ` +
        `${`${row.slowestDocsPerSec}–${row.fastestDocsPerSec}`.padStart(13)}  ` +
        `${row.wireBytesPerDoc.toFixed(0).padStart(10)}  ${row.rawBytesPerDoc.toFixed(0).padStart(9)}  ` +
        `${row.wireToRaw.toFixed(2).padStart(8)}  ${target}`.trimEnd(),
    )
  }
  process.stdout.write(`${lines.join('\n')}\n`)
}

await main()
