import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import {
  HttpTransport,
  LocalStore,
  SyncClient,
  type ConflictEvent,
  type SearchResult,
  type SyncRoundResult,
  type SyncTransport,
} from '@velosync/client'
import {
  VeloSyncError,
  compareHlc,
  versionVectorToJson,
  type DocumentVersion,
  type HlcTimestamp,
  type KernelBackend,
  type SyncRequest,
  type SyncResponse,
} from '@velosync/core'
import { createSyncServer, createToken, hashToken } from '@velosync/server'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import {
  clusteredEmbeddings,
  sampleMetadata,
  type SampleMetadata,
} from '@velosync/testkit'
import { formatCount, formatMs, formatTable, truncate } from '../format.js'
import { assertDemoSize } from './local-demo.js'

/** Options of `velosync demo` (the sync story; after parsing and validation). */
export interface SyncDemoOptions {
  /** Documents in the shared base set. Default 2,000. */
  readonly docs: number
  /** Vector dimensions. Default 384. */
  readonly dims: number
  /** Hits per search. Default 5. */
  readonly top: number
  /** Seed of the generated data. Default 1. */
  readonly seed: number
  /** Keep the temporary directory (server and device stores). Default false. */
  readonly keep: boolean
  /** SQLite `synchronous` of the device stores. Default `'full'`. */
  readonly synchronous: 'full' | 'normal'
  /** Search kernel of the devices. Default `'auto'`. */
  readonly backend: 'auto' | KernelBackend
}

/** Fewest base documents: the offline part edits and deletes the first few. */
export const MIN_SYNC_DEMO_DOCS = 10

const COLLECTION = 'notes'
/** New documents each device writes while offline. */
const OFFLINE_NEW_DOCS = 5

/** One device of the demo: its store, its sync client and what its transport saw. */
interface Device {
  readonly name: string
  readonly store: LocalStore
  readonly client: SyncClient
  readonly transport: ObservedTransport
  readonly conflicts: ConflictEvent[]
}

/** One row of the sync table. */
interface SyncRow {
  readonly step: string
  readonly device: string
  readonly result: SyncRoundResult
  /** Pulled versions that this device wrote itself (echo suppression makes it 0). */
  readonly ownPulled: number
  readonly mergedOwnPulled: number
  readonly ms: number
}

/**
 * A transport that passes every exchange through and checks what comes back, so that the
 * demo can show that no device pulls its own writes (the client reports totals only).
 */
class ObservedTransport implements SyncTransport {
  /** Pulled versions identical to one this device pushed: echoes (DESIGN 6 says 0). */
  echoesPulled = 0
  /**
   * Pulled versions that carry this device's content under a vector the server made: the
   * merged version of a conflict it won. They are new versions, not echoes.
   */
  mergedOwnPulled = 0
  readonly #inner: HttpTransport
  readonly #replicaId: () => string
  /** Every version this device pushed, as `id version-vector`. */
  readonly #pushed = new Set<string>()

  constructor(inner: HttpTransport, replicaId: () => string) {
    this.#inner = inner
    this.#replicaId = replicaId
  }

  async sync(
    request: SyncRequest,
    options?: { readonly signal?: AbortSignal },
  ): Promise<SyncResponse> {
    for (const op of request.push) this.#pushed.add(versionKey(op.version))
    const response = await this.#inner.sync(request, options)
    const own = this.#replicaId()
    for (const { version } of response.changes) {
      if (version.origin !== own) continue
      if (this.#pushed.has(versionKey(version))) this.echoesPulled++
      else this.mergedOwnPulled++
    }
    return response
  }

  ack(
    request: { readonly epoch: string; readonly cursor: number },
    options?: { readonly signal?: AbortSignal },
  ): Promise<void> {
    return this.#inner.ack(request, options)
  }

  close(): Promise<void> {
    return this.#inner.close()
  }
}

/**
 * Runs the whole sync story on this machine: an embedded server (SQLite, token auth) on
 * 127.0.0.1, two devices with their own store files, a shared base set, offline writes on
 * both including a concurrent edit of one document, three syncs, the conflict and how it
 * was resolved, echo statistics, digests and a search on each device.
 *
 * @throws `invalid_argument` for fewer than {@link MIN_SYNC_DEMO_DOCS} documents or more
 *   values than a demo holds in memory; `internal` when the replicas do not converge (the digests differ), so that a
 *   broken build cannot print a happy ending.
 */
export async function runSyncDemo(
  options: SyncDemoOptions,
  print: (text: string) => void = (text) => console.log(text),
): Promise<void> {
  if (options.docs < MIN_SYNC_DEMO_DOCS) {
    throw new VeloSyncError(
      'invalid_argument',
      `the sync demo needs at least ${MIN_SYNC_DEMO_DOCS} documents, got --docs ${options.docs}`,
    )
  }
  assertDemoSize(options.docs, options.dims)
  const root = mkdtempSync(join(tmpdir(), 'velosync-demo-'))
  const cleanup: Array<() => Promise<void> | void> = []
  // Ctrl-C or a kill must not leave the demo's files behind either (unless --keep). The
  // exit codes are the shell's for a death by that signal.
  const interrupted = (signal: NodeJS.Signals): void => {
    if (!options.keep) rmSync(root, { recursive: true, force: true })
    process.exit(signal === 'SIGINT' ? 130 : 143)
  }
  process.once('SIGINT', interrupted)
  process.once('SIGTERM', interrupted)
  try {
    await runStory(root, options, print, cleanup)
  } finally {
    // Best effort and in reverse order: clients before the server, the server before its store.
    for (const step of cleanup.reverse()) {
      try {
        await step()
      } catch (error) {
        process.stderr.write(
          `warning: cleanup failed: ${(error as Error).message}\n`,
        )
      }
    }
    process.off('SIGINT', interrupted)
    process.off('SIGTERM', interrupted)
    if (options.keep) {
      print(`\nKept ${root}:`)
      print(`  velosync status --store ${join(root, 'laptop', 'device.db')}`)
      print(`  velosync status --store ${join(root, 'phone', 'device.db')}`)
      print(`  velosync serve --db ${join(root, 'server', 'server.db')}`)
    } else {
      rmSync(root, { recursive: true, force: true })
      print(`\nRemoved ${root}`)
    }
  }
}

async function runStory(
  root: string,
  options: SyncDemoOptions,
  print: (text: string) => void,
  cleanup: Array<() => Promise<void> | void>,
): Promise<void> {
  const { docs, dims } = options

  // Server --------------------------------------------------------------------------------
  mkdirSync(join(root, 'server'))
  const serverPath = join(root, 'server', 'server.db')
  const serverStore = SqliteServerStore.open({ path: serverPath })
  cleanup.push(() => serverStore.close())
  const server = createSyncServer({
    store: serverStore,
    auth: { mode: 'token' },
  })
  const listening = await server.listen({ port: 0, host: '127.0.0.1' })
  cleanup.push(() => listening.close())
  const url = `http://127.0.0.1:${listening.port}`

  // Devices -------------------------------------------------------------------------------
  const devices: Device[] = []
  for (const name of ['laptop', 'phone']) {
    const token = createToken()
    await serverStore.createDeviceToken(name, hashToken(token))
    mkdirSync(join(root, name))
    const store = LocalStore.open({
      path: join(root, name, 'device.db'),
      deviceId: name,
      synchronous: options.synchronous,
      vectorBackend: options.backend,
    })
    cleanup.push(() => store.close())
    const transport = new ObservedTransport(
      new HttpTransport({ url, token, format: 'msgpack' }),
      () => store.replicaId,
    )
    cleanup.push(() => transport.close())
    const client = new SyncClient(store, { transport })
    const conflicts: ConflictEvent[] = []
    client.on('conflict', (event) => conflicts.push(event))
    devices.push({ name, store, client, transport, conflicts })
  }
  const [laptop, phone] = devices as [Device, Device]

  print('VeloSync demo: two devices sync through a server, all on this machine')
  print(`  server  ${url}  (SQLite ${serverPath}, token auth)`)
  for (const device of devices) {
    print(
      `  ${device.name.padEnd(6)}  replica ${device.store.replicaId}, its own SQLite file, MessagePack over HTTP`,
    )
  }
  print(
    `  data    ${formatCount(docs)} documents: ${dims}-d clustered embeddings (float32, cosine) + ~200-char text`,
  )

  const rows: SyncRow[] = []
  const syncDevice = async (step: string, device: Device): Promise<SyncRow> => {
    const echoesBefore = device.transport.echoesPulled
    const mergedBefore = device.transport.mergedOwnPulled
    const started = performance.now()
    const result = await device.client.sync()
    const row: SyncRow = {
      step,
      device: device.name,
      result,
      ownPulled: device.transport.echoesPulled - echoesBefore,
      mergedOwnPulled: device.transport.mergedOwnPulled - mergedBefore,
      ms: performance.now() - started,
    }
    rows.push(row)
    return row
  }

  // 1. Shared base set --------------------------------------------------------------------
  const embeddings = clusteredEmbeddings({
    count: docs + 2 * OFFLINE_NEW_DOCS,
    dims,
    seed: options.seed,
  })
  const metadata = (i: number): SampleMetadata =>
    sampleMetadata(i, embeddings.clusterOf[i] as number, options.seed)
  laptop.store.createCollection({ name: COLLECTION, dims, metric: 'cosine' })
  laptop.store.putMany(
    COLLECTION,
    Array.from({ length: docs }, (_, i) => ({
      id: docId(i),
      vector: embeddings.row(i),
      metadata: metadata(i),
    })),
  )
  print(`\n1. Shared base set`)
  print(
    `  laptop writes ${formatCount(docs)} documents, then both devices sync`,
  )
  await syncDevice('base', laptop)
  await syncDevice('base', phone)
  print(syncTable(rows.slice(-2)))

  // 2. Offline writes ---------------------------------------------------------------------
  // The same document is edited on both devices before either syncs: their versions are
  // concurrent (neither version vector contains the other), which is what a conflict is.
  const contested = docId(1)
  const edit = (device: Device, i: number, note: string): void => {
    device.store.put(COLLECTION, {
      id: docId(i),
      vector: embeddings.row(i),
      metadata: { ...metadata(i), text: note },
    })
  }
  edit(laptop, 1, 'Edited on the laptop while offline.')
  laptop.store.delete(COLLECTION, docId(2))
  edit(phone, 1, 'Edited on the phone while offline.')
  edit(phone, 3, 'Also edited on the phone while offline.')
  for (const [offset, device] of [
    [0, laptop],
    [OFFLINE_NEW_DOCS, phone],
  ] as const) {
    for (let j = 0; j < OFFLINE_NEW_DOCS; j++) {
      const i = docs + offset + j
      device.store.put(COLLECTION, {
        id: `${device.name}-new-${j + 1}`,
        vector: embeddings.row(i),
        metadata: metadata(i),
      })
    }
  }
  print('\n2. Offline: both devices write without syncing')
  print(
    `  laptop  edits ${contested}, deletes ${docId(2)}, adds laptop-new-1…${OFFLINE_NEW_DOCS}   ` +
      `(outbox ${laptop.store.outbox.size})`,
  )
  print(
    `  phone   edits ${contested} and ${docId(3)}, adds phone-new-1…${OFFLINE_NEW_DOCS}   ` +
      `(outbox ${phone.store.outbox.size})`,
  )
  print(
    `  ${contested} now has two concurrent versions: ` +
      `laptop ${versionVectorToJson(versionOf(laptop, contested).versionVector)}, ` +
      `phone ${versionVectorToJson(versionOf(phone, contested).versionVector)}`,
  )

  // 3. Sync ---------------------------------------------------------------------------------
  print('\n3. Back online: sync laptop, then phone, then laptop')
  const firstRound = rows.length
  await syncDevice('online', laptop)
  await syncDevice('online', phone)
  await syncDevice('online', laptop)
  print(syncTable(rows.slice(firstRound)))

  // 4. Conflict -----------------------------------------------------------------------------
  print(`\n4. Conflict on ${contested}`)
  for (const device of devices) {
    for (const event of device.conflicts) {
      print(
        `  ${device.name} was told: ${event.outcome === 'conflict_won' ? 'its edit won' : 'its edit lost'} (${event.outcome})`,
      )
    }
  }
  const recorded = await serverStore.conflicts({
    collection: COLLECTION,
    limit: 100,
  })
  print(
    `  the server recorded ${recorded.length} conflict${recorded.length === 1 ? '' : 's'} (GET /v1/conflicts lists them):`,
  )
  for (const record of recorded) {
    print(
      formatTable(
        [
          { header: '', value: (row) => row.role },
          { header: 'replica', value: (row) => row.version.origin },
          { header: 'HLC', value: (row) => formatHlc(row.version.hlc) },
          { header: 'text', value: (row) => textOf(row.version) },
        ],
        [
          { role: 'winner', version: record.winner },
          { role: 'loser', version: record.loser },
        ],
        '    ',
      ),
    )
    print(`    why: ${explainWinner(record.winner, record.loser)}`)
    print(
      `    stored at seq ${record.seq} under the merged vector ${versionVectorToJson(record.winner.versionVector)}; ` +
        'the loser is kept in the list, not lost',
    )
  }
  for (const device of devices) {
    print(`  ${device.name} now reads: ${textOf(versionOf(device, contested))}`)
  }

  // 5. Echoes -------------------------------------------------------------------------------
  print('\n5. Echo suppression: nobody downloads its own writes')
  print(
    formatTable(
      [
        { header: 'device', value: (row) => row.device },
        {
          header: 'pushed',
          align: 'right',
          value: (row) => formatCount(row.pushed),
        },
        {
          header: 'pulled',
          align: 'right',
          value: (row) => formatCount(row.pulled),
        },
        {
          header: 'skipped echoes',
          align: 'right',
          value: (row) => formatCount(row.skippedEchoes),
        },
        {
          header: 'own versions pulled',
          align: 'right',
          value: (row) => formatCount(row.ownPulled),
        },
      ],
      devices.map((device) => {
        const mine = rows.filter((row) => row.device === device.name)
        const sum = (pick: (row: SyncRow) => number): number =>
          mine.reduce((total, row) => total + pick(row), 0)
        return {
          device: device.name,
          pushed: sum((row) => row.result.pushed),
          pulled: sum((row) => row.result.pulled),
          skippedEchoes: sum((row) => row.result.skippedEchoes),
          ownPulled: sum((row) => row.ownPulled),
        }
      }),
    ),
  )
  print(
    "  the server skips versions a device pushed and stored unchanged, and moves the device's cursor past them",
  )
  for (const device of devices) {
    const merged = rows
      .filter((row) => row.device === device.name)
      .reduce((total, row) => total + row.mergedOwnPulled, 0)
    if (merged > 0) {
      print(
        `  ${device.name} also pulled ${merged} merged version${merged === 1 ? '' : 's'} of a conflict it won: ` +
          'its content under a vector the server made, so a new version rather than an echo',
      )
    }
  }

  // 6. Digests ------------------------------------------------------------------------------
  const serverDigest = await serverStore.digest(COLLECTION)
  const replicas = [
    ...devices.map((device) => ({
      name: device.name,
      documents: formatCount(device.store.count(COLLECTION)),
      digest: device.store.digest(COLLECTION),
    })),
    { name: 'server', documents: '', digest: serverDigest },
  ]
  const converged = replicas.every((replica) => replica.digest === serverDigest)
  print('\n6. Digests (order-independent hash of every live document)')
  print(
    formatTable(
      [
        { header: 'replica', value: (row) => row.name },
        { header: 'documents', align: 'right', value: (row) => row.documents },
        { header: 'digest', value: (row) => row.digest },
      ],
      replicas,
    ),
  )
  if (!converged) {
    throw new VeloSyncError(
      'internal',
      'the replicas did not converge: the digests above differ',
    )
  }
  print('  all equal: both devices hold exactly what the server holds')

  // 7. Search -------------------------------------------------------------------------------
  const query = embeddings.row(1)
  print(
    `\n7. Search on each device (local, no network): k = ${options.top}, the vector of ${contested}`,
  )
  for (const device of devices) {
    const started = performance.now()
    const hits = device.store.search(COLLECTION, query, { k: options.top })
    const ms = performance.now() - started
    print(`  ${device.name} (${formatMs(ms)})`)
    print(formatHits(hits))
  }
}

function syncTable(rows: readonly SyncRow[]): string {
  return formatTable(
    [
      { header: 'sync', value: (row) => row.device },
      {
        header: 'pushed',
        align: 'right',
        value: (row) => formatCount(row.result.pushed),
      },
      {
        header: 'pulled',
        align: 'right',
        value: (row) => formatCount(row.result.pulled),
      },
      {
        header: 'echoes skipped',
        align: 'right',
        value: (row) => formatCount(row.result.skippedEchoes),
      },
      {
        header: 'conflicts',
        align: 'right',
        value: (row) => formatCount(row.result.conflicts),
      },
      {
        header: 'requests',
        align: 'right',
        value: (row) => formatCount(row.result.requests),
      },
      {
        header: 'cursor',
        align: 'right',
        value: (row) => formatCount(row.result.cursor),
      },
      { header: 'time', align: 'right', value: (row) => formatMs(row.ms) },
    ],
    rows,
  )
}

/** Why the default rule (DESIGN 4) picked this winner of two concurrent versions. */
function explainWinner(
  winner: DocumentVersion,
  loser: DocumentVersion,
): string {
  const byTime = compareHlc(winner.hlc, loser.hlc)
  if (byTime > 0) {
    return `the versions are concurrent, so the later hybrid logical clock wins: ${formatHlc(winner.hlc)} > ${formatHlc(loser.hlc)}`
  }
  if (byTime === 0 && winner.origin > loser.origin) {
    return `the versions are concurrent with equal HLC ${formatHlc(winner.hlc)}, so the greater replica id wins: ${winner.origin} > ${loser.origin}`
  }
  return 'a custom resolver picked it (the default rule would not have)'
}

function formatHlc(hlc: HlcTimestamp): string {
  return `${new Date(hlc.wallMs).toISOString().slice(11, 23)}+${hlc.counter}`
}

function versionKey(version: DocumentVersion): string {
  return `${version.id} ${versionVectorToJson(version.versionVector)}`
}

function versionOf(device: Device, id: string): DocumentVersion {
  const stored = device.store.get(COLLECTION, id)
  if (stored === undefined) {
    throw new VeloSyncError('internal', `${device.name} has no ${id}`)
  }
  return {
    id,
    deleted: false,
    vector: stored.vector,
    metadataJson: JSON.stringify(stored.metadata),
    versionVector: stored.versionVector,
    hlc: stored.hlc,
    origin: stored.origin,
  }
}

function textOf(version: DocumentVersion): string {
  if (version.metadataJson === null) return '(deleted)'
  const text = (JSON.parse(version.metadataJson) as { text?: unknown }).text
  return JSON.stringify(truncate(typeof text === 'string' ? text : '', 60))
}

function formatHits(hits: readonly SearchResult[]): string {
  return formatTable(
    [
      {
        header: '#',
        align: 'right',
        value: (hit) => String(hits.indexOf(hit) + 1),
      },
      { header: 'id', value: (hit) => hit.id },
      { header: 'score', align: 'right', value: (hit) => hit.score.toFixed(4) },
      {
        header: 'text',
        value: (hit) => {
          const text = hit.metadata?.text
          return truncate(typeof text === 'string' ? text : '', 56)
        },
      },
    ],
    hits,
    '    ',
  )
}

function docId(i: number): string {
  return `doc-${String(i).padStart(6, '0')}`
}
