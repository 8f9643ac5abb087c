import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import {
  LocalStore,
  type DocumentInput,
  type SearchResult,
} from '@velosync/client'
import {
  VeloSyncError,
  compileFilter,
  type KernelBackend,
  type MetadataFilter,
} from '@velosync/core'
import {
  clusteredEmbeddings,
  gaussian,
  sampleMetadata,
  seededRandom,
  type ClusteredEmbeddings,
  type SampleMetadata,
} from '@velosync/testkit'
import { formatCount, formatMs, formatTable, truncate } from '../format.js'

/** Options of `velosync demo --local` (after parsing and validation). */
export interface LocalDemoOptions {
  /** Documents to generate. Default 20,000. */
  readonly docs: number
  /** Vector dimensions. Default 384. */
  readonly dims: number
  /** Hits per search. Default 5. */
  readonly top: number
  /** Seed of the generated data. Default 1. */
  readonly seed: number
  /** Keep the store instead of removing its directory. Default false. */
  readonly keep: boolean
  /** SQLite `synchronous`. Default `'full'`. */
  readonly synchronous: 'full' | 'normal'
  /** Search kernel. Default `'auto'`. */
  readonly backend: 'auto' | KernelBackend
}

const COLLECTION = 'notes'
const FILTER: MetadataFilter = { lang: 'en', year: { $gte: 2020 } }
/** Largest docs × dims: 256 MiB of float32 in memory, about as much again in SQLite. */
const MAX_VALUES = 64 * 1024 * 1024
/** Timed repetitions of each search; the median is shown (the first call also warms up). */
const SEARCH_RUNS = 5
/** Documents edited, and how often, in the compaction part. */
const EDITED_DOCS = 5
const EDIT_ROUNDS = 3

/**
 * Refuses docs × dims beyond what a demo holds in memory.
 *
 * @throws `invalid_argument` naming the limit.
 */
export function assertDemoSize(docs: number, dims: number): void {
  if (docs * dims > MAX_VALUES) {
    throw new VeloSyncError(
      'invalid_argument',
      `--docs × --dims = ${formatCount(docs * dims)} values; ` +
        `the demo holds at most ${formatCount(MAX_VALUES)} in memory. Use fewer documents or dimensions.`,
    )
  }
}

/** A search to show: a query vector and what it is. */
interface DemoQuery {
  readonly label: string
  readonly vector: Float32Array
}

/**
 * Runs the local-only demo (one device, no server), printing as it goes. The store lives in a new temporary directory that is
 * removed at the end (also after an error) unless `keep`.
 *
 * @throws `invalid_argument` when docs × dims exceeds what the demo holds in memory.
 */
export function runLocalDemo(
  options: LocalDemoOptions,
  print: (text: string) => void = (text) => console.log(text),
): void {
  assertDemoSize(options.docs, options.dims)
  const dir = mkdtempSync(join(tmpdir(), 'velosync-demo-'))
  const path = join(dir, 'device.db')
  let store: LocalStore | undefined
  try {
    store = LocalStore.open({
      path,
      synchronous: options.synchronous,
      vectorBackend: options.backend,
    })
    runSteps(store, path, options, print)
  } finally {
    store?.close()
    if (options.keep) {
      print(`\nKept the store: velosync status --store ${path}`)
    } else {
      rmSync(dir, { recursive: true, force: true })
      print(`\nRemoved ${dir}`)
    }
  }
}

function runSteps(
  store: LocalStore,
  path: string,
  options: LocalDemoOptions,
  print: (text: string) => void,
): void {
  const { docs, dims } = options
  print('VeloSync demo: one device, local only (no server)')
  print(`  store   ${path}${options.keep ? '' : ' (removed at the end)'}`)
  print(`  device  ${store.deviceId}, epoch ${store.epoch}`)
  print(
    `  data    ${formatCount(docs)} documents: ${dims}-d clustered embeddings (float32, cosine) + ~200-char text`,
  )

  // Write --------------------------------------------------------------------------------
  let started = performance.now()
  const embeddings = clusteredEmbeddings({
    count: docs,
    dims,
    seed: options.seed,
  })
  const metadata = Array.from({ length: docs }, (_, i) =>
    sampleMetadata(i, embeddings.clusterOf[i] as number, options.seed),
  )
  const inputs: DocumentInput[] = metadata.map((meta, i) => ({
    id: docId(i),
    vector: embeddings.row(i),
    metadata: meta,
  }))
  const generateMs = performance.now() - started

  store.createCollection({ name: COLLECTION, dims, metric: 'cosine' })
  started = performance.now()
  const receipts = store.putMany(COLLECTION, inputs)
  const putManyMs = performance.now() - started
  const firstLsn = receipts[0]?.lsn ?? 0
  const lastLsn = receipts[receipts.length - 1]?.lsn ?? 0

  print(`\nWrite: one putMany transaction, synchronous=${options.synchronous}`)
  print(
    formatTable(
      [
        { header: 'step', value: (row) => row[0] },
        { header: 'what', value: (row) => row[1] },
        { header: 'time', align: 'right', value: (row) => row[2] },
        { header: 'rate', align: 'right', value: (row) => row[3] },
      ],
      [
        [
          'generate',
          `${formatCount(docs)} embeddings + metadata`,
          formatMs(generateMs),
          '',
        ],
        [
          'putMany',
          `${formatCount(docs)} documents + their outbox entries`,
          formatMs(putManyMs),
          `${formatCount(docs / (putManyMs / 1000))} docs/s`,
        ],
      ] as const,
    ),
  )
  print(
    `  outbox  ${formatCount(store.outbox.size)} entries, LSN ${formatCount(firstLsn)} … ${formatCount(lastLsn)}`,
  )
  print(`  digest  ${store.digest(COLLECTION)}`)

  // Search -------------------------------------------------------------------------------
  const predicate = compileFilter(FILTER)
  const matching = metadata.filter((meta) => predicate(meta)).length
  print(
    `\nSearch: exact k-NN, k = ${options.top}, kernel ${store.searchBackend(COLLECTION)}, ` +
      `${formatCount(store.count(COLLECTION))} documents; times are medians of ${SEARCH_RUNS} runs`,
  )
  print(
    `  filter F = ${JSON.stringify(FILTER)} matches ${formatCount(matching)} documents`,
  )
  for (const query of demoQueries(embeddings, options.seed)) {
    print(`\n  ${query.label}`)
    for (const filter of [undefined, FILTER]) {
      const timed = timeSearch(() =>
        store.search(COLLECTION, query.vector, {
          k: options.top,
          ...(filter === undefined ? {} : { filter }),
        }),
      )
      print(
        `    ${filter === undefined ? 'no filter' : 'filter F '}  ${formatMs(timed.ms)}`,
      )
      print(formatHits(timed.hits))
    }
  }

  // State --------------------------------------------------------------------------------
  print('\nState')
  print(`  search kernel  ${store.searchBackend(COLLECTION)}`)
  print(`  documents      ${formatCount(store.count(COLLECTION))}`)
  print(`  last LSN       ${formatCount(store.lastLsn)}`)
  print(
    `  outbox         ${formatCount(store.outbox.size)} entries waiting to be pushed`,
  )
  print(`  digest         ${store.digest(COLLECTION)}`)

  // Compaction ---------------------------------------------------------------------------
  compactionDemo(store, embeddings, metadata, print)

  // Verify -------------------------------------------------------------------------------
  started = performance.now()
  const report = store.verify()
  const verifyMs = performance.now() - started
  if (!report.ok) {
    throw new VeloSyncError(
      'internal',
      `verify() found problems:\n  ${report.problems.join('\n  ')}`,
    )
  }
  print(
    `\nVerify  ok: SQLite integrity_check, every document hash, the digest (${formatMs(verifyMs)})`,
  )
}

function compactionDemo(
  store: LocalStore,
  embeddings: ClusteredEmbeddings,
  metadata: readonly SampleMetadata[],
  print: (text: string) => void,
): void {
  const docs = metadata.length
  const edited = [
    ...new Set(
      Array.from({ length: Math.min(EDITED_DOCS, docs) }, (_, j) =>
        Math.floor((j * docs) / EDITED_DOCS),
      ),
    ),
  ]
  for (let round = 1; round <= EDIT_ROUNDS; round++) {
    for (const i of edited) {
      store.put(COLLECTION, {
        id: docId(i),
        vector: embeddings.row(i),
        metadata: { ...(metadata[i] as SampleMetadata), revision: round },
      })
    }
  }
  const temp = 'doc-temp'
  store.put(COLLECTION, {
    id: temp,
    vector: embeddings.row(0),
    metadata: { text: 'created and deleted while offline' },
  })
  store.delete(COLLECTION, temp)

  const watched = docId(edited[0] as number)
  const lsnsOf = (id: string): string => {
    const lsns = store.outbox
      .entries()
      .filter((entry) => entry.docId === id)
      .map((entry) => formatCount(entry.lsn))
    return lsns.length === 0 ? '(none)' : lsns.join(', ')
  }
  const before = {
    step: 'before',
    entries: store.outbox.size,
    watched: lsnsOf(watched),
    temp: lsnsOf(temp),
  }
  const digestBefore = store.digest(COLLECTION)
  const started = performance.now()
  const result = store.outbox.compact()
  const compactMs = performance.now() - started
  const after = {
    step: 'after compact()',
    entries: store.outbox.size,
    watched: lsnsOf(watched),
    temp: lsnsOf(temp),
  }

  print(
    '\nCompaction: offline edits collapse to the newest state before a push',
  )
  print(
    `  edited ${edited.map(docId).join(', ')} ${EDIT_ROUNDS} times each;\n` +
      `  created ${temp}, then deleted it before any push`,
  )
  print(
    formatTable(
      [
        { header: '', value: (row) => row.step },
        {
          header: 'outbox entries',
          align: 'right',
          value: (row) => formatCount(row.entries),
        },
        { header: `${watched} LSNs`, value: (row) => row.watched },
        { header: `${temp} LSNs`, value: (row) => row.temp },
      ],
      [before, after],
    ),
  )
  print(
    `  compact() removed ${formatCount(result.removed)} entries and purged ${result.purged} ` +
      `never-sent document${result.purged === 1 ? '' : 's'} in ${formatMs(compactMs)};\n` +
      `  documents and digest unchanged: ${store.digest(COLLECTION) === digestBefore ? 'yes' : 'NO'}`,
  )
  print(
    `  digest  ${store.digest(COLLECTION)} (after the edits); last LSN ${formatCount(store.lastLsn)}`,
  )
}

/** Three queries: a stored vector (finds itself), a noisy copy of one, a topic centroid. */
function demoQueries(
  embeddings: ClusteredEmbeddings,
  seed: number,
): DemoQuery[] {
  const docs = embeddings.clusterOf.length
  const { dims } = embeddings
  const random = seededRandom(seed + 7919)
  const own = 42 % docs
  const noisy = Math.floor(docs * 0.618) % docs
  const noisyVector = Float32Array.from(
    embeddings.row(noisy),
    (value) => value + (0.3 / Math.sqrt(dims)) * gaussian(random),
  )
  const topic = embeddings.clusterOf[Math.floor(docs * 0.3) % docs] as number
  const members: number[] = []
  for (let i = 0; i < docs && members.length < 3; i++) {
    if (embeddings.clusterOf[i] === topic) members.push(i)
  }
  const centroid = new Float32Array(dims)
  for (const i of members) {
    const row = embeddings.row(i)
    for (let d = 0; d < dims; d++)
      centroid[d] = (centroid[d] as number) + (row[d] as number)
  }
  return [
    {
      label: `query A: the vector of ${docId(own)} (it should come first)`,
      vector: embeddings.row(own).slice(),
    },
    {
      label: `query B: ${docId(noisy)}'s vector plus noise`,
      vector: noisyVector,
    },
    {
      label: `query C: the centroid of ${members.map(docId).join(', ')} (topic-${topic})`,
      vector: centroid,
    },
  ]
}

function timeSearch(search: () => SearchResult[]): {
  hits: SearchResult[]
  ms: number
} {
  let hits = search() // warm-up, and the hits shown
  const times: number[] = []
  for (let run = 0; run < SEARCH_RUNS; run++) {
    const started = performance.now()
    hits = search()
    times.push(performance.now() - started)
  }
  times.sort((a, b) => a - b)
  return { hits, ms: times[Math.floor(times.length / 2)] as number }
}

function formatHits(hits: readonly SearchResult[]): string {
  if (hits.length === 0) return '      (no matches)'
  const field = (hit: SearchResult, name: string): string => {
    const value = hit.metadata?.[name]
    if (value === undefined) return ''
    return typeof value === 'string' ? value : JSON.stringify(value)
  }
  return formatTable(
    [
      {
        header: '#',
        align: 'right',
        value: (hit) => String(hits.indexOf(hit) + 1),
      },
      { header: 'id', value: (hit) => hit.id },
      { header: 'score', align: 'right', value: (hit) => hit.score.toFixed(4) },
      { header: 'lang', value: (hit) => field(hit, 'lang') },
      { header: 'year', value: (hit) => field(hit, 'year') },
      { header: 'kind', value: (hit) => field(hit, 'kind') },
      { header: 'text', value: (hit) => truncate(field(hit, 'text'), 48) },
    ],
    hits,
    '      ',
  )
}

function docId(i: number): string {
  return `doc-${String(i).padStart(6, '0')}`
}
