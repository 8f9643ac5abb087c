/*
 * One device of a process-chaos run, in a child process of its own: a LocalStore on a real
 * SQLite file, a SyncClient over HTTP (through the fault proxy), driven by the parent over
 * IPC. Kill points are injected here, around the store and the transport, not in the
 * product: the parent arms one and the child SIGKILLs itself when it gets there.
 *
 * On start it reports the outbox entries above the LSN the parent knows: writes that
 * committed while the previous incarnation was killed before it could reply. Between a
 * write and its reply nothing else runs, so such an entry is still the document's newest
 * write and the stored row is exactly the version it produced.
 */
import {
  canonicalMetadataJson,
  type DocumentVersion,
  type SyncRequest,
  type SyncResponse,
} from '@velosync/core'
import {
  HttpTransport,
  LocalStore,
  SyncClient,
  type SyncTransport,
  type WriteReceipt,
} from '@velosync/client'
import type { ChaosWrite } from '../checker.js'
import { Killer } from './killer.js'
import {
  CHAOS_COLLECTIONS,
  type DeviceChildConfig,
  type DeviceKillPoint,
  type DeviceReply,
  type DeviceRequest,
  type DeviceState,
} from './messages.js'

const config = JSON.parse(process.argv[2] ?? '{}') as DeviceChildConfig
const killer = new Killer()
let armed: DeviceKillPoint | undefined
const fire = (point: DeviceKillPoint): boolean => {
  if (armed !== point) return false
  armed = undefined
  return true
}
const dieNow = (): never => {
  process.kill(process.pid, 'SIGKILL')
  throw new Error('unreachable: SIGKILL did not stop the process')
}

const store = LocalStore.open({
  path: config.path,
  deviceId: config.deviceId,
  // Checkpoint right after writes, so kills also land in checkpoints.
  checkpointDelayMs: 1,
})
for (const schema of CHAOS_COLLECTIONS) {
  if (store.getCollection(schema.name) === undefined)
    store.createCollection(schema)
}

// Injection around the store: the methods the sync engine and the writes go through.
const putMany = store.putMany.bind(store)
store.putMany = (collection, docs) =>
  killer.during(
    'put',
    () => putMany(collection, docs),
    fire('mid-write') ? [0, 1] : undefined,
    Math.random,
  )
const outbox = store.outbox
const compact = outbox.compact.bind(outbox)
outbox.compact = () =>
  killer.during(
    'compact',
    compact,
    fire('mid-compaction') ? [0, 1] : undefined,
    Math.random,
  )
const applyServerUpdate = store.applyServerUpdate.bind(store)
store.applyServerUpdate = (update) => {
  const aim = fire('mid-pull-apply')
    ? ([0, 1] as const)
    : fire('apply-before-cursor')
      ? ([0.8, 1] as const)
      : undefined
  return killer.during(
    'apply',
    () => applyServerUpdate(update),
    aim,
    Math.random,
  )
}

// Injection around the transport.
const http = new HttpTransport({
  url: config.url,
  deviceId: config.deviceId,
  timeoutMs: 5000,
})
const transport: SyncTransport = {
  sync(request: SyncRequest, options): Promise<SyncResponse> {
    if (config.fault === 'confirm-before-answer') {
      // Broken on purpose: the outbox forgets the batch before the server has it.
      const batch = outbox.inFlight
      if (batch !== undefined) outbox.confirm(batch)
    }
    if (fire('before-send')) dieNow()
    return http.sync(request, options)
  },
  ack: (request, options) => http.ack(request, options),
}
// Small batches make rounds of several pushes, so that kills also land between a batch
// sent ahead and the confirm of the one answered before it.
const client = new SyncClient(store, { transport, maxOpsPerPush: 4 })

const versionOf = (
  collection: string,
  id: string,
  receipt: Pick<WriteReceipt, 'versionVector' | 'hlc'>,
  deleted: boolean,
): DocumentVersion => {
  const live = deleted ? undefined : store.get(collection, id)
  return {
    id,
    deleted: live === undefined,
    vector: live?.vector ?? null,
    metadataJson:
      live === undefined ? null : canonicalMetadataJson(live.metadata),
    versionVector: receipt.versionVector,
    hlc: receipt.hlc,
    origin: store.replicaId,
  }
}
const writeOf = (
  collection: string,
  lsn: number,
  version: DocumentVersion,
): ChaosWrite => ({
  device: config.deviceId,
  replica: store.replicaId,
  lsn,
  collection,
  version,
})

const state = (): DeviceState => ({
  pending: outbox.size,
  digests: Object.fromEntries(
    CHAOS_COLLECTIONS.map(({ name }) => [name, store.digest(name)]),
  ),
})

const handle = async (
  request: DeviceRequest,
): Promise<Omit<DeviceReply, 'id'>> => {
  switch (request.op) {
    case 'put':
      return {
        writes: store
          .putMany(request.collection, request.docs)
          .map((receipt) =>
            writeOf(
              request.collection,
              receipt.lsn,
              versionOf(request.collection, receipt.id, receipt, false),
            ),
          ),
      }
    case 'delete': {
      const receipt = store.delete(request.collection, request.id)
      return {
        writes:
          receipt === undefined
            ? []
            : [
                writeOf(
                  request.collection,
                  receipt.lsn,
                  versionOf(request.collection, request.id, receipt, true),
                ),
              ],
      }
    }
    case 'sync':
      try {
        await client.sync()
        return {}
      } catch (error) {
        return { error: error instanceof Error ? error.message : String(error) }
      }
    case 'state':
      return { state: state() }
    case 'arm':
      armed = request.point
      return {}
    case 'close':
      await http.close()
      store.close()
      return {}
  }
}

// Orphaned (the parent died): stop rather than linger with a port or a file open.
process.on('disconnect', () => process.exit(1))
process.on('message', (message: DeviceRequest & { id: number }) => {
  void handle(message)
    .catch((error: unknown) => ({
      error: error instanceof Error ? error.message : String(error),
    }))
    .then((reply) => {
      process.send?.({ id: message.id, ...reply } satisfies DeviceReply, () => {
        if (message.op === 'close') process.exit(0)
      })
    })
})

const recovered = outbox
  .entries()
  .filter((entry) => entry.lsn > config.knownLsn)
  .map((entry) =>
    writeOf(
      entry.collection,
      entry.lsn,
      versionOf(entry.collection, entry.docId, entry, entry.op === 'delete'),
    ),
  )
process.send?.({
  id: 0,
  ready: { replica: store.replicaId, epoch: store.epoch, recovered },
} satisfies DeviceReply)
