/**
 * Scale-out: push throughput of many devices at once, and how fast a write on one device
 * reaches another over the live channel. Real HTTP on 127.0.0.1, real SQLite files, and
 * every server in a child process of its own (`velosync serve` from the built CLI), so
 * that the devices here do not share an event loop with a server.
 *
 * Rows, per target (a store and the servers in front of it):
 * - push-throughput  --devices devices (default 20) with --docs documents each (default
 *                    500 × 384-d float32, ~200 characters of text) push them all at once,
 *                    --batch operations per request (default 100). docsPerSec = every
 *                    document / wall time from the first request to the last answer;
 *                    median of --runs runs after one warm-up, each against empty storage.
 *                    The pushes ask for one pulled version per request (the protocol's
 *                    least): the row measures ingest, not every device downloading every
 *                    other device's documents.
 * - live-latency     a writer device and a reader device in live mode
 *                    (`startSync({ live: true })`, its timers an hour, so only the live
 *                    channel can wake it), on the first and the last server of the target
 *                    (two processes when there are several: the signal crosses them).
 *                    --samples single-document writes (default 50), --gap ms apart
 *                    (default 50, so that each write is announced on its own rather than
 *                    coalesced with the previous one): time from `put()` on the writer to
 *                    the end of the reader's round that brought the document (the
 *                    writer's put and push, the announcement, the reader's pull, local
 *                    commit and ack; the writer's ack runs meanwhile). p50/p95.
 *                    Target: p50 <= 50 ms on loopback.
 *
 * Targets (one pair of rows each; repeat the options for more):
 * - by default, one `velosync serve` on a fresh SQLite file per run (store "sqlite", one
 *   server); `--no-sqlite` leaves it out;
 * - by default too, PostgreSQL with 1 and 3 `velosync serve --postgres` processes
 *   (`--pg-servers 1,3`), on a fresh database per run, the live signal crossing them by
 *   LISTEN/NOTIFY. The server is `--postgres URL` (a role that may CREATE DATABASE), else
 *   VELOSYNC_TEST_PG_URL, else a throwaway cluster started here with fsync on (the testkit
 *   helper; `initdb`/`pg_ctl` needed). When none works the PostgreSQL rows are skipped and
 *   the reason is printed loudly; `--no-postgres` leaves them out;
 * - `--spawn STORE:N=ARGS` starts N `velosync serve` processes per run with the extra
 *   arguments ARGS (split at spaces), e.g. three processes on one PostgreSQL:
 *   `--spawn 'postgres:3=--postgres postgres://127.0.0.1:5432/velosync'`;
 * - `--target STORE=URL[,URL…]` uses servers that are already running, e.g.
 *   `--target postgres=http://127.0.0.1:8801,http://127.0.0.1:8802`.
 * Devices are spread over a target's servers round robin. Every server runs in open mode
 * (`--open`; the benchmark adds it to the processes it starts): the benchmark names its
 * devices with `X-VeloSync-Device` instead of minting tokens in a store it may not reach
 * (a token check is one indexed lookup per request, well under 1 % of a push here). Each
 * run writes a collection and device ids of its own, so runs sharing a database do not
 * disturb each other.
 *
 * The devices all live in this process: on a machine with few cores they compete with the
 * servers for CPU, so docs/s is a floor for what the servers can ingest.
 *
 * Usage: npm run bench:scale -- [--json] [--runs N] [--devices N] [--docs N] [--dims N]
 *   [--batch N] [--samples N] [--gap MS] [--no-sqlite] [--no-postgres] [--postgres URL]
 *   [--pg-servers N,N…] [--spawn STORE:N=ARGS]… [--target STORE=URL[,URL…]]…
 * Needs `npm run build` first (the packages and the CLI are used from their builds).
 * --json prints one JSON array of rows to stdout and nothing else; progress goes to stderr.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { HttpTransport, LocalStore, SyncClient } from '@velosync/client'
import { PROTOCOL_VERSION, type CollectionSchema } from '@velosync/core'
import {
  createTemporaryDatabase,
  startPostgresCluster,
  type PostgresCluster,
} from '@velosync/testkit'
import { integerArg } from './lib/args.js'
import { benchDocuments, type BenchDocument } from './lib/documents.js'
import { median, round, summarize } from './lib/stats.js'

/** One row of issue 4's shape, plus what it was measured with. */
type Row =
  | {
      readonly name: 'push-throughput'
      readonly store: string
      readonly servers: number
      readonly docsPerSec: number
      readonly devices: number
      readonly docsPerDevice: number
      readonly dims: number
      readonly batch: number
      readonly runs: number
    }
  | {
      readonly name: 'live-latency'
      readonly store: string
      readonly servers: number
      readonly p50Ms: number
      readonly p95Ms: number
      readonly samples: number
    }

/** Where the devices sync: one store behind one or more server processes. */
type Target =
  /** Servers started for each run: `count` × `velosync serve --open … ARGS`. */
  | {
      readonly store: string
      readonly count: number
      /**
       * Extra `serve` arguments; `undefined`: a fresh SQLite file (`--db`) per run, or with
       * {@link postgresServer}, a fresh database on that server per run.
       */
      readonly args: readonly string[] | undefined
      /** A PostgreSQL server URL: each run creates a database there and drops it after. */
      readonly postgresServer?: string
    }
  /** Servers already running. */
  | { readonly store: string; readonly urls: readonly string[] }

/** Servers ready for one run, and how to let them go. */
interface Servers {
  readonly urls: readonly string[]
  close(): Promise<void>
}

/** Issue 4's target for the live channel on loopback. */
const TARGET_LIVE_P50_MS = 50
const HOUR_MS = 3_600_000
const CLI_MAIN = fileURLToPath(
  new URL('../packages/cli/dist/main.js', import.meta.url),
)
/** How long a `velosync serve` child may take to print its URL. */
const SERVE_START_TIMEOUT_MS = 30_000

const log = (message: string): void => {
  process.stderr.write(`${message}\n`)
}

const { values: args } = parseArgs({
  allowNegative: true,
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    devices: { type: 'string', default: '20' },
    docs: { type: 'string', default: '500' },
    dims: { type: 'string', default: '384' },
    batch: { type: 'string', default: '100' },
    samples: { type: 'string', default: '50' },
    gap: { type: 'string', default: '50' },
    sqlite: { type: 'boolean', default: true },
    // `--no-postgres` (allowNegative) sets it to false.
    postgres: { type: 'string' },
    'pg-servers': { type: 'string', default: '1,3' },
    spawn: { type: 'string', multiple: true, default: [] },
    target: { type: 'string', multiple: true, default: [] },
  },
})
const runs = integerArg(args.runs, '--runs', 1)
const deviceCount = integerArg(args.devices, '--devices', 1)
const docsPerDevice = integerArg(args.docs, '--docs', 1)
const dims = integerArg(args.dims, '--dims', 1)
const batch = integerArg(args.batch, '--batch', 1)
const samples = integerArg(args.samples, '--samples', 1)
const gapMs = integerArg(args.gap, '--gap', 0)
const pgServerCounts = args['pg-servers']
  .split(',')
  .map((count) => integerArg(count, '--pg-servers', 1))

/** The PostgreSQL server for the default rows, or why there is none. */
const postgres =
  (args.postgres as unknown) === false ? undefined : await findPostgres()
const postgresServer = postgres?.url
const targets: Target[] = [
  ...(args.sqlite ? [{ store: 'sqlite', count: 1, args: undefined }] : []),
  ...(postgresServer === undefined
    ? []
    : pgServerCounts.map((count) => ({
        store: 'postgres',
        count,
        args: undefined,
        postgresServer,
      }))),
  ...args.spawn.map(parseSpawn),
  ...args.target.map(parseTarget),
]
if (targets.length === 0) {
  log('nothing to measure: --no-sqlite and no --spawn or --target')
  process.exit(2)
}

/** Child processes still running, killed if this process exits without stopping them. */
const children = new Set<ReturnType<typeof spawn>>()
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

async function main(): Promise<void> {
  const workDir = mkdtempSync(join(tmpdir(), 'velosync-bench-scale-'))
  const loadBefore = loadavg()[0] as number
  try {
    log(`generating ${deviceCount} × ${docsPerDevice} documents, ${dims}-d`)
    const documents = benchDocuments({
      count: deviceCount * docsPerDevice,
      dims,
      seed: 7,
      idDigits: 7,
    })
    const rows: Row[] = []
    for (const target of targets) {
      const servers = 'urls' in target ? target.urls.length : target.count
      const label = `${target.store} × ${servers}`
      const times: number[] = []
      // Run 0 warms up the JIT of both sides and the page cache; it is not counted.
      for (let run = 0; run <= runs; run++) {
        const servers = await openServers(target, workDir)
        try {
          const ms = await pushAll(servers.urls, documents, workDir)
          log(
            `${label} push ${run === 0 ? 'warm-up' : `run ${run}/${runs}`}: ${ms.toFixed(0)} ms`,
          )
          if (run > 0) times.push(ms)
        } finally {
          await servers.close()
        }
      }
      rows.push({
        name: 'push-throughput',
        store: target.store,
        servers,
        docsPerSec: Math.round(documents.length / (median(times) / 1000)),
        devices: deviceCount,
        docsPerDevice,
        dims,
        batch,
        runs,
      })

      const latencyServers = await openServers(target, workDir)
      try {
        const latencies = await liveLatencies(latencyServers.urls, workDir)
        const { p50Ms, p95Ms } = summarize(latencies)
        log(`${label} live latency: p50 ${p50Ms.toFixed(1)} ms`)
        rows.push({
          name: 'live-latency',
          store: target.store,
          servers,
          p50Ms: round(p50Ms, 2),
          p95Ms: round(p95Ms, 2),
          samples,
        })
      } finally {
        await latencyServers.close()
      }
    }
    const load = `load average ${loadBefore.toFixed(1)} before, ${(loadavg()[0] as number).toFixed(1)} after`
    log(load)
    if (args.json) process.stdout.write(`${JSON.stringify(rows)}\n`)
    else printTable(rows, load)
    if (postgres?.skipped !== undefined) warnSkipped(postgres.skipped)
  } finally {
    rmSync(workDir, { recursive: true, force: true })
    await postgres?.cluster?.stop()
  }
}

/**
 * `--postgres`, else VELOSYNC_TEST_PG_URL, else a throwaway cluster with fsync on (as in
 * production, and as the SQLite server runs); when that fails, the reason to skip.
 */
async function findPostgres(): Promise<{
  readonly url?: string
  readonly cluster?: PostgresCluster
  readonly skipped?: string
}> {
  const given = args.postgres ?? process.env.VELOSYNC_TEST_PG_URL ?? ''
  if (given !== '') return { url: given }
  try {
    log('starting a throwaway PostgreSQL cluster (fsync on)')
    const cluster = await startPostgresCluster({ fast: false })
    return { url: cluster.url, cluster }
  } catch (error) {
    const skipped = `no --postgres URL, no VELOSYNC_TEST_PG_URL, and no throwaway cluster: ${(error as Error).message}`
    warnSkipped(skipped)
    return { skipped }
  }
}

function warnSkipped(reason: string): void {
  log(
    `\n!!! PostgreSQL rows SKIPPED: ${reason}\n!!! Pass --postgres postgres://… (a role that may CREATE DATABASE), or --no-postgres to silence this.\n`,
  )
}

/**
 * Every device pushes its share of `documents` at the same time.
 *
 * @returns the wall time in ms from the first request to the last answer
 */
async function pushAll(
  urls: readonly string[],
  documents: readonly BenchDocument[],
  workDir: string,
): Promise<number> {
  const runId = randomBytes(4).toString('hex')
  const collection = `scale_${runId}`
  const devices = Array.from({ length: deviceCount }, (_, i) => {
    const deviceId = `push${i}-${runId}`
    const store = LocalStore.open({
      path: join(workDir, `${deviceId}.db`),
      deviceId,
    })
    const schema = store.createCollection({ name: collection, dims })
    store.putMany(
      collection,
      documents.slice(i * docsPerDevice, (i + 1) * docsPerDevice),
    )
    const transport = new HttpTransport({
      url: urls[i % urls.length] as string,
      deviceId,
    })
    return { store, schema, transport }
  })
  try {
    const started = performance.now()
    const pushed = await Promise.all(
      devices.map((device) =>
        pushOutbox(device.store, device.schema, device.transport),
      ),
    )
    const elapsedMs = performance.now() - started
    const short = pushed.findIndex((count) => count !== docsPerDevice)
    if (short !== -1) {
      throw new Error(
        `device ${short} pushed ${pushed[short]} of ${docsPerDevice} documents`,
      )
    }
    return elapsedMs
  } finally {
    for (const { store, transport } of devices) {
      await transport.close()
      store.close()
    }
  }
}

/**
 * Pushes a device's whole outbox, `batch` operations per request, pulling one version per
 * request: what `SyncClient.sync()` does, minus downloading the other devices' pushes.
 *
 * @returns how many operations the server committed
 */
async function pushOutbox(
  store: LocalStore,
  schema: CollectionSchema,
  transport: HttpTransport,
): Promise<number> {
  let pushed = 0
  for (;;) {
    const taken = store.outbox.takeBatch({ maxOps: batch })
    if (taken === undefined) return pushed
    const response = await transport.sync({
      protocol: PROTOCOL_VERSION,
      epoch: store.epoch,
      collections: [schema],
      push: taken.ops.map(({ lsn, collection, version }) => ({
        lsn,
        collection,
        version,
      })),
      cursor: 0,
      pullLimit: 1,
      fullResync: false,
      lastLsn: store.lastLsn,
    })
    store.outbox.confirm(taken, response.appliedThroughLsn)
    pushed += taken.ops.filter(
      (op) => op.lsn <= response.appliedThroughLsn,
    ).length
  }
}

/** Write-to-other-device latencies over the live channel, in ms. */
async function liveLatencies(
  urls: readonly string[],
  workDir: string,
): Promise<number[]> {
  const runId = randomBytes(4).toString('hex')
  const collection = `live_${runId}`
  const device = (role: string, url: string) => {
    const deviceId = `${role}-${runId}`
    const store = LocalStore.open({
      path: join(workDir, `${deviceId}.db`),
      deviceId,
    })
    store.createCollection({ name: collection, dims })
    const transport = new HttpTransport({ url, deviceId })
    const sync = new SyncClient(store, { transport })
    return { store, transport, sync }
  }
  const writer = device('writer', urls[0] as string)
  const reader = device('reader', urls[urls.length - 1] as string)
  const vectors = benchDocuments({
    count: samples,
    dims,
    seed: 11,
    idDigits: 4,
  })
  try {
    const ready = Promise.all([
      once(reader.sync, 'liveConnected', () => true),
      once(reader.sync, 'synced', () => true),
    ])
    reader.sync.startSync({
      live: true,
      intervalMs: HOUR_MS,
      liveIntervalMs: HOUR_MS,
    })
    await ready
    const latencies: number[] = []
    for (const doc of vectors) {
      await new Promise((resolve) => setTimeout(resolve, gapMs))
      const arrived = once(
        reader.sync,
        'synced',
        () => reader.store.get(collection, doc.id) !== undefined,
      )
      const started = performance.now()
      writer.store.put(collection, doc)
      await writer.sync.sync()
      // When the reader had it, which can be before the writer's round (and its ack) ends.
      latencies.push((await arrived) - started)
    }
    return latencies
  } finally {
    await reader.sync.stopSync()
    for (const { store, transport } of [writer, reader]) {
      await transport.close()
      store.close()
    }
  }
}

/**
 * The time (`performance.now()`) of the first `event` of `client` that passes `accept`;
 * rejects after 10 s without one.
 */
function once(
  client: SyncClient,
  event: 'synced' | 'liveConnected',
  accept: () => boolean,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`no ${event} within 10 s: is the live channel up?`))
    }, 10_000)
    const off = client.on(event, () => {
      if (!accept()) return
      const at = performance.now()
      clearTimeout(timer)
      off()
      resolve(at)
    })
  })
}

/** The target's servers for one run: started now, or the running ones. */
async function openServers(target: Target, workDir: string): Promise<Servers> {
  if ('urls' in target) {
    return { urls: target.urls, close: () => Promise.resolve() }
  }
  const database =
    target.postgresServer === undefined
      ? undefined
      : await createTemporaryDatabase(target.postgresServer, 'vs_bench_scale')
  const serverArgs =
    target.args ??
    (database === undefined
      ? ['--db', join(workDir, `server-${randomBytes(4).toString('hex')}.db`)]
      : ['--postgres', database.url])
  const started = await Promise.allSettled(
    Array.from({ length: target.count }, () => startServer(serverArgs)),
  )
  const servers = started.flatMap((result) =>
    result.status === 'fulfilled' ? [result.value] : [],
  )
  const close = async (): Promise<void> => {
    const errors = (
      await Promise.allSettled(servers.map((server) => server.close()))
    )
      .concat(
        // After the servers: dropping the database would cut their sessions.
        await Promise.allSettled([database?.drop()]),
      )
      .flatMap((result): unknown[] =>
        result.status === 'rejected' ? [result.reason] : [],
      )
    if (errors.length > 0) throw new AggregateError(errors, 'a server failed')
  }
  const failure = started.find((result) => result.status === 'rejected')
  if (failure !== undefined) {
    await close()
    throw failure.reason
  }
  return { urls: servers.map((server) => server.url), close }
}

/** Starts `velosync serve --port 0 --open … args` and waits for the URL it prints. */
async function startServer(
  extraArgs: readonly string[],
): Promise<{ url: string; close(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      CLI_MAIN,
      'serve',
      '--port',
      '0',
      '--open',
      '--log-level',
      'warn',
      ...extraArgs,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  children.add(child)
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      children.delete(child)
      resolve(code)
    }),
  )
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`velosync serve printed no URL:\n${stderr}`))
    }, SERVE_START_TIMEOUT_MS)
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk
      const found = /listening on (http:\/\/\S+)/.exec(stdout)?.[1]
      if (found === undefined) return
      clearTimeout(timer)
      resolve(found)
    })
    void exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`velosync serve exited with ${code}:\n${stderr}`))
    })
  }).catch(async (error: unknown) => {
    child.kill('SIGKILL')
    await exited
    throw error
  })
  return {
    url,
    close: async () => {
      child.kill('SIGTERM')
      const code = await exited
      if (code !== 0)
        throw new Error(`velosync serve exited with ${code}:\n${stderr}`)
    },
  }
}

/** `--spawn STORE:N=ARGS`. */
function parseSpawn(text: string): Target {
  const match = /^([a-z][a-z0-9-]*):(\d+)=(.*\S.*)$/.exec(text)
  const count = Number(match?.[2])
  // Without arguments every process would open ./velosync-server.db: never what is meant.
  if (match === null || !Number.isSafeInteger(count) || count < 1) {
    log(
      `--spawn takes STORE:N=ARGS, e.g. 'postgres:3=--postgres postgres://127.0.0.1:5432/velosync'; got ${JSON.stringify(text)}`,
    )
    process.exit(2)
  }
  const extra = (match[3] as string).split(' ').filter((arg) => arg !== '')
  return { store: match[1] as string, count, args: extra }
}

/** `--target STORE=URL[,URL…]`. */
function parseTarget(text: string): Target {
  const match = /^([a-z][a-z0-9-]*)=(.+)$/.exec(text)
  const urls = match?.[2]?.split(',').map((url) => url.trim()) ?? []
  if (
    match === null ||
    urls.some((url) => !/^https?:\/\/[^/\s]+\/?$/.test(url))
  ) {
    log(
      `--target takes STORE=URL[,URL…], e.g. postgres=http://127.0.0.1:8801; got ${JSON.stringify(text)}`,
    )
    process.exit(2)
  }
  return { store: match[1] as string, urls }
}

function printTable(rows: readonly Row[], load: string): void {
  const lines = [
    `scale over HTTP on 127.0.0.1: ${deviceCount} devices × ${docsPerDevice} docs × ${dims}-d, ` +
      `${batch} per push (median of ${runs} runs); live latency over ${samples} writes; ${load}`,
    '',
    'name             store       servers   docs/s   p50 ms   p95 ms  target',
  ]
  for (const row of rows) {
    const head = `${row.name.padEnd(16)} ${row.store.padEnd(10)} ${String(row.servers).padStart(8)}`
    if (row.name === 'push-throughput') {
      lines.push(`${head} ${String(row.docsPerSec).padStart(8)}`)
    } else {
      const ok = row.p50Ms <= TARGET_LIVE_P50_MS
      lines.push(
        `${head} ${''.padStart(8)} ${row.p50Ms.toFixed(1).padStart(8)} ${row.p95Ms.toFixed(1).padStart(8)}  ` +
          `${ok ? 'ok' : 'MISSED'} (p50 <= ${TARGET_LIVE_P50_MS} ms)`,
      )
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`)
}

await main()
