/*
 * Process-level chaos: a sync server and N devices, each a child process on its own real
 * SQLite file, talking HTTP through a fault proxy on 127.0.0.1. One run:
 *
 * ```
 *   chaos phase   every device runs a seeded script (puts of 1-4 documents, updates,
 *                 deletes, over two collections, and sync rounds) while the parent kills
 *                 children: at a named point (the child arms itself and SIGKILLs there) or
 *                 at a random time (SIGKILL from outside). Killed children restart from
 *                 their files; the proxy injects its faults (scenario fault-proxy).
 *   faults stop   proxy passes everything, nothing is armed, nobody is killed
 *   quiesce       sync rounds on every device until every outbox is empty and every
 *                 device digest equals the server's, within `quiesceMs` (else: stuck)
 *   check         the checker, on the ground truth the parent recorded: every write that
 *                 returned (from the replies, plus writes a killed device committed but
 *                 could not report, found in its outbox on restart) and every push the
 *                 server committed (the server's journal); the final versions are read
 *                 from the server's file after it shut down
 * ```
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  EMPTY_COLLECTION_DIGEST,
  type DocumentVersion,
  type ReplicaRef,
} from '@velosync/core'
import { nodeSha256 } from '@velosync/client'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import { seededRandom } from '../../random.js'
import {
  checkRun,
  summarizeRuns,
  type ChaosFinalState,
  type ChaosRow,
  type ChaosWrite,
  type RunFigures,
} from '../checker.js'
import { FaultProxy, type ProxyFault } from './fault-proxy.js'
import {
  CHAOS_COLLECTIONS,
  KILL_POINTS,
  readJournal,
  serverOpsOf,
  type ChaosDocument,
  type DeviceChildConfig,
  type DeviceFault,
  type DeviceKillPoint,
  type DeviceReply,
  type DeviceRequest,
  type KillPoint,
  type ServerChildConfig,
  type ServerReply,
  type ServerRequest,
} from './messages.js'

/** Scenarios of {@link runProcessChaos}. */
export type ProcessChaosScenario = 'process-kill' | 'fault-proxy'

/** Options of {@link runProcessChaos}. */
export interface ProcessChaosOptions {
  /** `process-kill`: kills only; `fault-proxy`: proxy faults plus fewer kills. */
  readonly scenario: ProcessChaosScenario
  /** Seed of the first run; run i uses `seed + i`. */
  readonly seed: number
  readonly runs: number
  /** Devices per run. Default 3. */
  readonly devices?: number
  /** Script steps per device. Default 24. */
  readonly steps?: number
  /**
   * Document ids per collection. Default 6: few ids mean many updates, deletes and
   * concurrent edits of one document.
   */
  readonly ids?: number
  /** Kills per run. Default 4 for `process-kill`, 1 for `fault-proxy`. */
  readonly kills?: number
  /** Probability that a request meets a proxy fault. Default 0.3 for `fault-proxy`, else 0. */
  readonly faultRate?: number
  /** The proxy faults to draw from. Default all of {@link PROXY_FAULTS}. */
  readonly proxyFaults?: readonly ProxyFault[]
  /** How long the queues may take to drain after faults stop. Default 30 000 ms. */
  readonly quiesceMs?: number
  /** Break device 0 on purpose (tests of the harness itself). */
  readonly brokenDevice?: DeviceFault
  /** Parent directory of the runs' temporary directories. Default the OS temp dir. */
  readonly tmpDir?: string
  /** Called after each run with its figures and what was injected. */
  readonly onRun?: (report: ProcessRunReport) => void
}

/** What one run did and found. */
export interface ProcessRunReport {
  readonly seed: number
  readonly figures: RunFigures
  /** Children that died by SIGKILL, by where: a kill point or `random`. */
  readonly kills: Readonly<Record<string, number>>
  /** Proxy faults injected, by kind. */
  readonly proxyFaults: Readonly<Record<string, number>>
  /**
   * Server decisions rebuilt from the store after a kill between a push's commit and its
   * journal record (see server-child.ts), not seen returned.
   */
  readonly recoveredServerOps: number
  /** Writes that committed on a device killed before it replied, found in its outbox. */
  readonly recoveredWrites: number
}

/** How long a child may take to start before the run fails. */
const START_TIMEOUT_MS = 30_000

/**
 * Runs `runs` process-chaos runs and sums their figures into one report row.
 *
 * @remarks Needs the built packages (`npm run build`): children import them through
 * `node_modules`. From sources (vitest), the children run under tsx. Each run uses a new
 * temporary directory, removed unless the run found a problem (its path is then the last
 * problem line).
 *
 * @example
 * ```ts
 * const row = await runProcessChaos({ scenario: 'process-kill', seed: 1, runs: 10 })
 * if (safetyViolations(row) > 0) process.exitCode = 1
 * ```
 */
export async function runProcessChaos(
  options: ProcessChaosOptions,
): Promise<ChaosRow> {
  const figures: RunFigures[] = []
  for (let i = 0; i < options.runs; i++) {
    const report = await runOnce(options, options.seed + i)
    figures.push(report.figures)
    options.onRun?.(report)
  }
  return summarizeRuns(options.scenario, figures)
}

/** A child process answering numbered requests over IPC. */
class Child<Request, Reply extends { id: number }> {
  readonly process: ChildProcess
  readonly #pending = new Map<
    number,
    { done: (reply: Reply) => void; fail: (error: Error) => void }
  >()
  #nextId = 1
  #exited = false

  private constructor(child: ChildProcess) {
    this.process = child
    // Sends to a child that was just killed fail; each send reports that itself.
    child.on('error', () => {})
    child.on('message', (reply: Reply) => {
      this.#pending.get(reply.id)?.done(reply)
      this.#pending.delete(reply.id)
    })
    child.on('exit', () => {
      this.#exited = true
      for (const { fail } of this.#pending.values())
        fail(new Error('the child exited'))
      this.#pending.clear()
    })
  }

  /** Forks `script` and waits for its first message (id 0). */
  static start<Request, Reply extends { id: number }>(
    script: string,
    config: object,
    spawned: Set<ChildProcess>,
  ): Promise<{ child: Child<Request, Reply>; first: Reply }> {
    const ts = extname(script) === '.ts'
    const forked = fork(script, [JSON.stringify(config)], {
      execArgv: ts ? ['--import', 'tsx'] : [],
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    })
    spawned.add(forked)
    const child = new Child<Request, Reply>(forked)
    return new Promise((done, fail) => {
      const timer = setTimeout(() => {
        forked.kill('SIGKILL')
        fail(new Error(`${script} did not start within ${START_TIMEOUT_MS} ms`))
      }, START_TIMEOUT_MS)
      child.#pending.set(0, {
        done: (first) => {
          clearTimeout(timer)
          done({ child, first })
        },
        fail: (error) => {
          clearTimeout(timer)
          fail(new Error(`${script} exited while starting`, { cause: error }))
        },
      })
    })
  }

  get alive(): boolean {
    return !this.#exited
  }

  ask(request: Request): Promise<Reply> {
    if (this.#exited) return Promise.reject(new Error('the child exited'))
    const id = this.#nextId++
    return new Promise((done, fail) => {
      this.#pending.set(id, { done, fail })
      // A child killed a moment ago: the write fails (EPIPE); its exit fails the request.
      this.process.send({ ...request, id }, (error) => {
        if (error === null) return
        this.#pending.delete(id)
        fail(error)
      })
    })
  }

  /** Resolves when the child has exited, with the signal that ended it. */
  exited(): Promise<NodeJS.Signals | null> {
    if (this.#exited) return Promise.resolve(this.process.signalCode)
    return new Promise((done) =>
      this.process.once('exit', (_code, signal) => done(signal)),
    )
  }
}

type DeviceChild = Child<DeviceRequest, DeviceReply>
type ServerChild = Child<ServerRequest, ServerReply>

const scriptOf = (name: string): string => {
  const ext = extname(fileURLToPath(import.meta.url))
  return fileURLToPath(new URL(`./${name}${ext}`, import.meta.url))
}

/** One device as the parent sees it: its current incarnation and what it has written. */
interface Device {
  readonly name: string
  readonly config: DeviceChildConfig
  child: DeviceChild
  replica: ReplicaRef
  knownLsn: number
}

/** One run; whatever happens, no child process or proxy outlives it. */
async function runOnce(
  options: ProcessChaosOptions,
  seed: number,
): Promise<ProcessRunReport> {
  const spawned = new Set<ChildProcess>()
  const proxy = await FaultProxy.start(seededRandom(seed ^ 0x5eed))
  try {
    return await runChaos(options, seed, proxy, spawned)
  } finally {
    // The proxy first: a server killed now must not be restarted (see startServer).
    await proxy.close()
    for (const child of spawned) {
      if (child.exitCode === null && child.signalCode === null)
        child.kill('SIGKILL')
    }
  }
}

async function runChaos(
  options: ProcessChaosOptions,
  seed: number,
  proxy: FaultProxy,
  spawned: Set<ChildProcess>,
): Promise<ProcessRunReport> {
  const random = seededRandom(seed)
  const scenario = options.scenario
  const deviceCount = options.devices ?? 3
  const steps = options.steps ?? 24
  const killCount = options.kills ?? (scenario === 'process-kill' ? 4 : 1)
  const quiesceMs = options.quiesceMs ?? 30_000
  const dir = mkdtempSync(join(options.tmpDir ?? tmpdir(), 'velosync-chaos-'))
  const kills: Record<string, number> = {}
  const writes: ChaosWrite[] = []
  let recoveredWrites = 0
  const serverConfig: ServerChildConfig = {
    path: join(dir, 'server.db'),
    journalPath: join(dir, 'server-journal.bin'),
  }
  // Where the next SIGKILL of each child was aimed, to count kills by point.
  const aimedAt = new Map<ChildProcess, KillPoint>()
  const countExit = (
    child: ChildProcess,
    signal: NodeJS.Signals | null,
  ): void => {
    if (signal !== 'SIGKILL') return
    const where = aimedAt.get(child) ?? 'random'
    kills[where] = (kills[where] ?? 0) + 1
  }

  let stopping = false
  let server!: ServerChild
  let serverUp!: Promise<void>
  const startServer = async (): Promise<void> => {
    const started = await Child.start<ServerRequest, ServerReply>(
      scriptOf('server-child'),
      serverConfig,
      spawned,
    )
    server = started.child
    proxy.upstreamPort = started.first.port as number
    const child = server
    void child.exited().then((signal) => {
      countExit(child.process, signal)
      // Restart from the store's file, as an operator's supervisor would.
      if (!stopping && proxy.open) serverUp = startServer()
    })
  }
  serverUp = startServer()
  await serverUp

  const startDevice = async (device: {
    name: string
    config: DeviceChildConfig
  }): Promise<{ child: DeviceChild; replica: ReplicaRef }> => {
    const { child, first } = await Child.start<DeviceRequest, DeviceReply>(
      scriptOf('device-child'),
      device.config,
      spawned,
    )
    const ready = first.ready as NonNullable<DeviceReply['ready']>
    writes.push(...ready.recovered)
    recoveredWrites += ready.recovered.length
    void child.exited().then((signal) => countExit(child.process, signal))
    return { child, replica: { deviceId: device.name, epoch: ready.epoch } }
  }
  const devices: Device[] = await Promise.all(
    Array.from({ length: deviceCount }, async (_, i) => {
      const name = `device-${i}`
      const config: DeviceChildConfig = {
        path: join(dir, `${name}.db`),
        deviceId: name,
        url: `http://127.0.0.1:${proxy.port}`,
        knownLsn: 0,
        ...(i === 0 && options.brokenDevice !== undefined
          ? { fault: options.brokenDevice }
          : {}),
      }
      const started = await startDevice({ name, config })
      return { name, config, knownLsn: 0, ...started }
    }),
  )
  const record = (device: Device, reply: DeviceReply): void => {
    for (const write of reply.writes ?? []) {
      writes.push(write)
      device.knownLsn = Math.max(device.knownLsn, write.lsn)
    }
  }
  /** Sends a request; a device found dead is restarted first (its reply is then lost). */
  const ask = async (
    device: Device,
    request: DeviceRequest,
  ): Promise<DeviceReply | undefined> => {
    if (!device.child.alive) {
      await device.child.exited()
      const started = await startDevice({
        name: device.name,
        config: { ...device.config, knownLsn: device.knownLsn },
      })
      device.child = started.child
      device.replica = started.replica
      for (const write of writes) {
        if (write.device === device.name)
          device.knownLsn = Math.max(device.knownLsn, write.lsn)
      }
    }
    try {
      const reply = await device.child.ask(request)
      record(device, reply)
      return reply
    } catch {
      return undefined
    }
  }

  // Chaos phase.
  proxy.faultRate = options.faultRate ?? (scenario === 'fault-proxy' ? 0.3 : 0)
  if (options.proxyFaults !== undefined) proxy.faults = options.proxyFaults
  const scripts = devices.map(async (device, d) => {
    const rng = seededRandom(seed * 31 + d + 1)
    for (let step = 0; step < steps; step++) {
      await ask(device, nextStep(rng, options.ids ?? 6))
    }
  })
  let scriptsDone = false
  const killer = (async () => {
    for (let k = 0; k < killCount && !scriptsDone; k++) {
      // Short gaps: a script of 24 steps takes about a second on an idle machine.
      await sleep(30 + random() * 300)
      if (scriptsDone) break
      await serverUp
      const targetIndex = Math.floor(random() * (deviceCount + 1))
      const device = devices[targetIndex]
      const named = random() < 0.6
      if (device === undefined) {
        if (named) {
          aimedAt.set(server.process, 'server-after-commit')
          await server
            .ask({ op: 'arm', point: 'server-after-commit' })
            .catch(() => {})
        } else {
          aimedAt.delete(server.process)
          server.process.kill('SIGKILL')
        }
      } else if (device.child.alive) {
        if (named) {
          const point = KILL_POINTS[
            Math.floor(random() * (KILL_POINTS.length - 1))
          ] as DeviceKillPoint
          aimedAt.set(device.child.process, point)
          await device.child.ask({ op: 'arm', point }).catch(() => {})
        } else {
          aimedAt.delete(device.child.process)
          device.child.process.kill('SIGKILL')
        }
      }
    }
  })()
  await Promise.all(scripts)
  scriptsDone = true
  await killer

  // Faults stop: disarm everything, let a killed server come back.
  proxy.faultRate = 0
  await serverUp
  await server.ask({ op: 'arm', point: undefined }).catch(() => {})
  for (const device of devices)
    await ask(device, { op: 'arm', point: undefined })
  await serverUp
  const calm = performance.now()
  let convergeMs: number | undefined
  let deviceDigests: Array<{
    device: string
    digests: Record<string, string>
  }> = []
  while (performance.now() - calm < quiesceMs) {
    for (const device of devices) await ask(device, { op: 'sync' })
    const states = await Promise.all(
      devices.map((device) => ask(device, { op: 'state' })),
    )
    const serverDigests = (
      await server.ask({ op: 'digests' }).catch(() => undefined)
    )?.digests
    deviceDigests = states.map((reply, i) => ({
      device: (devices[i] as Device).name,
      digests: { ...reply?.state?.digests },
    }))
    const drained = states.every((reply) => reply?.state?.pending === 0)
    const agreed =
      serverDigests !== undefined &&
      deviceDigests.every(({ digests }) =>
        CHAOS_COLLECTIONS.every(
          ({ name }) =>
            (digests[name] ?? EMPTY_COLLECTION_DIGEST) ===
            (serverDigests[name] ?? EMPTY_COLLECTION_DIGEST),
        ),
      )
    if (drained && agreed) {
      convergeMs = performance.now() - calm
      break
    }
  }

  // Shut down; read the server's final state from its file.
  stopping = true
  for (const device of devices) {
    await device.child.ask({ op: 'close' }).catch(() => {})
    await device.child.exited()
  }
  await server.ask({ op: 'close' }).catch(() => {})
  await server.exited()
  const final = readServerFinal(serverConfig.path, devices[0] as Device)
  const journal = serverOpsOf(readJournal(serverConfig.journalPath))
  const figures = checkRun(
    { writes, serverOps: journal.ops },
    {
      collections: CHAOS_COLLECTIONS.map(({ name, dtype }) => ({
        name,
        dtype: dtype ?? 'float32',
      })),
      server: await final,
      devices: deviceDigests,
      quiesced: convergeMs !== undefined,
      convergeMs,
    },
    nodeSha256,
  )
  if (figures.problems.length === 0)
    rmSync(dir, { recursive: true, force: true })
  return {
    seed,
    figures:
      figures.problems.length === 0
        ? figures
        : {
            ...figures,
            problems: [...figures.problems, `files kept in ${dir}`],
          },
    kills,
    proxyFaults: Object.fromEntries(proxy.injected),
    recoveredServerOps: journal.recovered,
    recoveredWrites,
  }
}

/** The next step of a device's script. */
function nextStep(rng: () => number, ids: number): DeviceRequest {
  const schema = CHAOS_COLLECTIONS[
    Math.floor(rng() * CHAOS_COLLECTIONS.length)
  ] as (typeof CHAOS_COLLECTIONS)[number]
  const roll = rng()
  const idOf = (n: number): string => `doc-${n}`
  if (roll < 0.35) return { op: 'sync' }
  if (roll < 0.5) {
    return {
      op: 'delete',
      collection: schema.name,
      id: idOf(Math.floor(rng() * ids)),
    }
  }
  // 1-4 distinct documents: new ones and updates of vector and/or metadata.
  const first = Math.floor(rng() * ids)
  const count = 1 + Math.floor(rng() * 4)
  const docs: ChaosDocument[] = []
  for (let i = 0; i < count && i < ids; i++) {
    docs.push({
      id: idOf((first + i) % ids),
      vector: Array.from({ length: schema.dims }, () => rng() * 2 - 1 || 0.5),
      metadata: { n: Math.floor(rng() * 1000), tag: rng() < 0.5 ? 'a' : 'b' },
    })
  }
  return { op: 'put', collection: schema.name, docs }
}

async function readServerFinal(
  path: string,
  observer: Device,
): Promise<ChaosFinalState['server']> {
  const store = SqliteServerStore.open({ path })
  try {
    const versions: Array<{ collection: string; version: DocumentVersion }> = []
    for (let cursor = 0; ;) {
      const page = await store.pull(observer.replica, cursor, 1000, {
        includeEchoes: true,
      })
      for (const { collection, version } of page.versions)
        versions.push({ collection, version })
      cursor = page.cursor
      if (!page.hasMore) break
    }
    const digests: Record<string, string> = {}
    for (const { name } of await store.listCollections())
      digests[name] = await store.digest(name)
    return { versions, digests }
  } finally {
    await store.close()
  }
}

const sleep = (ms: number): Promise<void> =>
  new Promise((done) => setTimeout(done, ms))
