/*
 * The sync server of a process-chaos run, in a child process of its own: createSyncServer
 * over a SqliteServerStore file, restarted from that file after every kill. The store is
 * wrapped so that every push is journaled (the checker's record of the server's
 * decisions) and so that the `server-after-commit` kill point can fire between the commit
 * and the answer.
 *
 * A push is journaled as an intent before it runs and a result after it returns. An intent
 * without a result means the previous incarnation died in between: if the replica's
 * applied LSN moved, the push committed, and since nothing has run since, the store still
 * shows what each of its ops did (conflict record at the document's seq → conflict, stored
 * vector equal to the pushed one → applied, else stale); that result is journaled before
 * this incarnation listens.
 */
import {
  compareVersionVectors,
  replicaIdOfRef,
  type DocumentVersion,
  type OpResult,
  type PushOp,
  type PushOptions,
  type PushResult,
  type ReplicaRef,
  type ServerStore,
} from '@velosync/core'
import { createSyncServer } from '@velosync/server'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import Database from 'better-sqlite3'
import type { ChaosServerOp } from '../checker.js'
import {
  CHAOS_COLLECTIONS,
  appendJournal,
  readJournal,
  type JournalRecord,
  type ServerChildConfig,
  type ServerReply,
  type ServerRequest,
} from './messages.js'

const config = JSON.parse(process.argv[2] ?? '{}') as ServerChildConfig
const store = SqliteServerStore.open({ path: config.path })
let armed = false

const decisions = (
  replica: ReplicaRef,
  ops: readonly PushOp[],
  results: ReadonlyArray<Pick<OpResult, 'outcome' | 'version'>>,
): ChaosServerOp[] =>
  results.map((result, i) => {
    const op = ops[i] as PushOp
    return {
      replica: replicaIdOfRef(replica),
      lsn: op.lsn,
      collection: op.collection,
      pushed: op.version,
      outcome: result.outcome,
      ...(result.version === undefined ? {} : { stored: result.version }),
    }
  })

await recoverDanglingPushes()

// The replica's applied LSN, read synchronously (a second connection to the store's file)
// so that nothing runs between the intent and the push's own synchronous commit.
const reader = new Database(config.path, { readonly: true })
const appliedLsn = reader.prepare(
  'SELECT applied_lsn FROM vs_replicas WHERE replica_id = ?',
)
let pushes = readJournal(config.journalPath).length
const push = async (
  replica: ReplicaRef,
  ops: readonly PushOp[],
  options?: PushOptions,
): Promise<PushResult> => {
  const id = ++pushes
  const applied = appliedLsn.pluck().get(replicaIdOfRef(replica)) as
    number | undefined
  appendJournal(config.journalPath, {
    kind: 'intent',
    push: id,
    replica,
    appliedBefore: applied ?? 0,
    ops,
  })
  const result = await store.push(replica, ops, options)
  appendJournal(config.journalPath, {
    kind: 'result',
    push: id,
    ops: decisions(replica, ops, result.results),
    recovered: false,
  })
  if (armed) process.kill(process.pid, 'SIGKILL')
  return result
}
// Every other method goes to the store itself (its private fields need it as `this`).
const journaled = new Proxy(store, {
  get: (target, name) => {
    if (name === 'push') return push
    const value: unknown = Reflect.get(target, name, target)
    return typeof value === 'function'
      ? (value as (...args: unknown[]) => unknown).bind(target)
      : value
  },
}) satisfies ServerStore

const listening = await createSyncServer({
  store: journaled,
  auth: { mode: 'open' },
}).listen({ port: 0, host: '127.0.0.1' })

const handle = async (
  request: ServerRequest,
): Promise<Omit<ServerReply, 'id'>> => {
  switch (request.op) {
    case 'arm':
      armed = request.point !== undefined
      return {}
    case 'digests': {
      const digests: Record<string, string> = {}
      for (const { name } of CHAOS_COLLECTIONS) {
        if ((await store.getCollection(name)) !== undefined)
          digests[name] = await store.digest(name)
      }
      return { digests }
    }
    case 'close':
      await listening.close()
      reader.close()
      await store.close()
      return {}
  }
}

// Orphaned (the parent died): stop rather than linger with a port or a file open.
process.on('disconnect', () => process.exit(1))
process.on('message', (message: ServerRequest & { id: number }) => {
  void handle(message).then((reply) => {
    process.send?.({ id: message.id, ...reply } satisfies ServerReply, () => {
      if (message.op === 'close') process.exit(0)
    })
  })
})
process.send?.({ id: 0, port: listening.port } satisfies ServerReply)

async function recoverDanglingPushes(): Promise<void> {
  const records = readJournal(config.journalPath)
  const done = new Set(
    records.flatMap((r) => (r.kind === 'result' ? [r.push] : [])),
  )
  for (const intent of records) {
    if (intent.kind === 'intent' && !done.has(intent.push))
      await recoverPush(intent)
  }
}

async function recoverPush(
  intent: Extract<JournalRecord, { kind: 'intent' }>,
): Promise<void> {
  const { replica, appliedBefore, ops } = intent
  if ((await store.replicaProgress(replica)).appliedLsn === appliedBefore)
    return
  // Committed. Each document's stored row and seq, from the whole feed.
  const stored = new Map<string, { seq: number; version: DocumentVersion }>()
  for (let cursor = 0; ;) {
    const page = await store.pull(replica, cursor, 1000, {
      includeEchoes: true,
    })
    for (const { seq, collection, version } of page.versions)
      stored.set(`${collection}\u0000${version.id}`, { seq, version })
    cursor = page.cursor
    if (!page.hasMore) break
  }
  const results = []
  for (const op of ops) {
    if (op.lsn <= appliedBefore) {
      results.push({ outcome: 'duplicate' as const })
      continue
    }
    const row = stored.get(`${op.collection}\u0000${op.version.id}`)
    const [conflict] =
      row === undefined
        ? []
        : await store.conflicts({
            collection: op.collection,
            afterSeq: row.seq - 1,
            limit: 1,
          })
    if (row !== undefined && conflict?.seq === row.seq) {
      results.push({
        outcome:
          conflict.winner.origin === op.version.origin
            ? ('conflict_won' as const)
            : ('conflict_lost' as const),
        version: row.version,
      })
    } else if (
      row !== undefined &&
      row.version.origin === op.version.origin &&
      compareVersionVectors(
        row.version.versionVector,
        op.version.versionVector,
      ) === 'equal'
    ) {
      results.push({ outcome: 'applied' as const })
    } else {
      results.push({
        outcome: 'stale' as const,
        ...(row && { version: row.version }),
      })
    }
  }
  appendJournal(config.journalPath, {
    kind: 'result',
    push: intent.push,
    ops: decisions(replica, ops, results),
    recovered: true,
  })
}
