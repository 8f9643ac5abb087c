/**
 * What the push lock costs: store-level push throughput on PostgreSQL with 1, 4 and 16
 * concurrent writers, beside the SQLite store, with no HTTP in between.
 *
 * Every PostgreSQL push takes the head counter row `FOR UPDATE` first and holds it to
 * COMMIT (that is what keeps the feed gap-free, see docs/OPERATIONS.md), so pushes from
 * all processes run one at a time: the lock is held for the push's statements plus its
 * commit (the WAL flush). More writers overlap only the work before the lock (validation,
 * hashing, reading nothing) and the network round trips of waiting pushes.
 *
 * Each writer is its own `PostgresServerStore` (its own pool, as a separate server process
 * would have) and its own replica; writers touch disjoint documents, so no push conflicts.
 * A writer pushes --pushes batches of --batch documents (384-d float32, small metadata).
 * docsPerSec = all documents / wall time; p50/p95 = one push's latency as its writer saw it
 * (including the wait for the lock).
 *
 * PostgreSQL: VELOSYNC_TEST_PG_URL, or a throwaway cluster started here with durable
 * settings (fsync on, as in production; --fast turns it off like the test cluster).
 * SQLite: one file, synchronous=FULL (its default); better-sqlite3 is synchronous, so only
 * one writer.
 *
 * Usage: npm run bench:push-lock -- [--json] [--pushes N] [--batches 1,100] [--writers 1,4,16] [--fast]
 * Needs `npm run build` first. --json prints one JSON array of rows to stdout and nothing
 * else; progress goes to stderr.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import {
  incrementVersionVector,
  replicaIdOf,
  type PushOp,
  type ReplicaRef,
  type ServerStore,
} from '@velosync/core'
import { PostgresServerStore } from '@velosync/storage-postgres'
import pg from 'pg'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import { clusteredEmbeddings, startPostgresCluster } from '@velosync/testkit'
import { summarize } from './lib/stats.js'

interface Row {
  readonly name: 'store-push'
  readonly store: 'postgres' | 'sqlite'
  readonly writers: number
  readonly batch: number
  readonly pushes: number
  readonly docsPerSec: number
  readonly pushesPerSec: number
  readonly p50Ms: number
  readonly p95Ms: number
}

const DIMS = 384

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    pushes: { type: 'string', default: '200' },
    batches: { type: 'string', default: '1,100' },
    writers: { type: 'string', default: '1,4,16' },
    fast: { type: 'boolean', default: false },
  },
})
const log = (message: string): void => {
  process.stderr.write(`${message}\n`)
}
const pushesPerWriter = positive(args.pushes, '--pushes')
const batches = args.batches.split(',').map((v) => positive(v, '--batches'))
const writerCounts = args.writers
  .split(',')
  .map((v) => positive(v, '--writers'))

const embeddings = clusteredEmbeddings({ count: 1000, dims: DIMS, seed: 3 })
const given = process.env.VELOSYNC_TEST_PG_URL ?? ''
const cluster =
  given === '' ? await startPostgresCluster({ fast: args.fast }) : undefined
const pgUrl = cluster === undefined ? given : cluster.url
const workDir = mkdtempSync(join(tmpdir(), 'velosync-bench-push-lock-'))
const rows: Row[] = []
let run = 0
try {
  for (const batch of batches) {
    for (const writers of writerCounts) {
      const schema = `bench_push_lock_${process.pid}_${++run}`
      const stores = await Promise.all(
        Array.from({ length: writers }, () =>
          PostgresServerStore.open({ url: pgUrl, schema, poolSize: 2 }),
        ),
      )
      try {
        rows.push(await measure('postgres', stores, batch))
      } finally {
        await Promise.all(stores.map((store) => store.close()))
        await dropSchema(schema)
      }
    }
    const sqlite = SqliteServerStore.open({
      path: join(workDir, `sqlite-${batch}.db`),
    })
    try {
      rows.push(await measure('sqlite', [sqlite], batch))
    } finally {
      await sqlite.close()
    }
  }
} finally {
  rmSync(workDir, { recursive: true, force: true })
  await cluster?.stop()
}
if (args.json) process.stdout.write(`${JSON.stringify(rows)}\n`)
else printTable(rows)

/** Every writer pushes its batches back to back; all writers at once. */
async function measure(
  store: Row['store'],
  stores: readonly ServerStore[],
  batch: number,
): Promise<Row> {
  await stores[0]?.ensureCollection({
    name: 'bench',
    dims: DIMS,
    metric: 'cosine',
    dtype: 'float32',
  })
  log(`${store}: ${stores.length} writer(s), ${batch} doc(s) per push`)
  const latencies: number[] = []
  const started = performance.now()
  await Promise.all(
    stores.map(async (writer, w) => {
      const replica: ReplicaRef = {
        deviceId: `writer${w}`,
        epoch: '00000000000000a1',
      }
      const replicaId = replicaIdOf(replica.deviceId, replica.epoch)
      let lsn = 0
      for (let p = 0; p < pushesPerWriter; p++) {
        const ops: PushOp[] = Array.from({ length: batch }, () => {
          lsn++
          return {
            lsn,
            collection: 'bench',
            version: {
              id: `w${w}-${lsn}`,
              deleted: false,
              vector: embeddings.row(lsn % 1000),
              metadataJson: `{"n":${lsn}}`,
              versionVector: incrementVersionVector({}, replicaId),
              hlc: { wallMs: 1_000 + lsn, counter: 0 },
              origin: replicaId,
            },
          }
        })
        const t0 = performance.now()
        await writer.push(replica, ops)
        latencies.push(performance.now() - t0)
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  const pushes = stores.length * pushesPerWriter
  const { p50Ms, p95Ms } = summarize(latencies)
  return {
    name: 'store-push',
    store,
    writers: stores.length,
    batch,
    pushes,
    docsPerSec: Math.round((pushes * batch) / seconds),
    pushesPerSec: Math.round(pushes / seconds),
    p50Ms: round(p50Ms),
    p95Ms: round(p95Ms),
  }
}

async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: pgUrl })
  await client.connect()
  try {
    await client.query(`DROP SCHEMA ${schema} CASCADE`)
  } finally {
    await client.end()
  }
}

function printTable(table: readonly Row[]): void {
  const header = [
    'store',
    'writers',
    'docs/push',
    'pushes/s',
    'docs/s',
    'p50 ms',
    'p95 ms',
  ]
  const lines = table.map((row) => [
    row.store,
    String(row.writers),
    String(row.batch),
    String(row.pushesPerSec),
    String(row.docsPerSec),
    row.p50Ms.toFixed(2),
    row.p95Ms.toFixed(2),
  ])
  const widths = header.map((h, i) =>
    Math.max(h.length, ...lines.map((line) => (line[i] as string).length)),
  )
  for (const line of [header, ...lines]) {
    console.log(
      line.map((cell, i) => cell.padStart(widths[i] as number)).join('  '),
    )
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100
}

function positive(value: string, name: string): number {
  const parsed = Number(value)
  if (!Number.isSafeInteger(parsed) || parsed < 1) {
    log(`${name} must be a positive integer, got ${JSON.stringify(value)}`)
    process.exit(2)
  }
  return parsed
}
