/**
 * PostgresChangeSignal on a real PostgreSQL: heads pushed through one store (another
 * pool, as another server process would be) reach the subscribers of a signal listening
 * beside another; bad payloads are ignored and reported; a killed LISTEN connection comes
 * back and announces the head; close() lets the connection go.
 */
import {
  incrementVersionVector,
  isVeloSyncError,
  replicaIdOf,
  type HeadChange,
  type PushOp,
  type ReplicaRef,
} from '@velosync/core'
import { afterEach, describe, expect, it } from 'vitest'
import {
  PostgresChangeSignal,
  PostgresServerStore,
  headChannel,
} from '../src/index.js'
import {
  dropSchema,
  postgres,
  uniqueSchema,
  withClient,
} from './test-database.js'

const url = postgres.url ?? 'postgres://unused'
const DEVICE: ReplicaRef = { deviceId: 'dev-a', epoch: '00000000000000a1' }
const REPLICA = replicaIdOf(DEVICE.deviceId, DEVICE.epoch)

function put(lsn: number, id: string): PushOp {
  return {
    lsn,
    collection: 'notes',
    version: {
      id,
      deleted: false,
      vector: new Float32Array([lsn, 1]),
      metadataJson: '{}',
      versionVector: incrementVersionVector({}, REPLICA),
      hlc: { wallMs: 1_000 + lsn, counter: 0 },
      origin: REPLICA,
    },
  }
}

/** Every change a signal delivered, and a way to wait for the next ones. */
function recorder(signal: PostgresChangeSignal): {
  readonly changes: HeadChange[]
  next(): Promise<HeadChange>
} {
  const changes: HeadChange[] = []
  let taken = 0
  let wake: (() => void) | undefined
  signal.subscribe((change) => {
    changes.push(change)
    wake?.()
  })
  return {
    changes,
    async next() {
      while (changes.length <= taken) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error('no change within 10 s')),
            10_000,
          )
          wake = () => {
            clearTimeout(timer)
            resolve()
          }
        })
      }
      return changes[taken++] as HeadChange
    },
  }
}

/** The backend pid of the session listening for `applicationName`, if any. */
async function listenerPid(
  applicationName: string,
): Promise<number | undefined> {
  const { rows } = await withClient((client) =>
    client.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'",
      [applicationName],
    ),
  )
  return rows[0]?.pid
}

async function notify(channel: string, payload: string): Promise<void> {
  await withClient((client) =>
    client.query('SELECT pg_notify($1, $2)', [channel, payload]),
  )
}

let counter = 0

describe.skipIf(postgres.url === undefined)(
  `PostgresChangeSignal: LISTEN/NOTIFY between server processes${postgres.skipReason === undefined ? '' : ` (SKIPPED: ${postgres.skipReason})`}`,
  () => {
    const cleanups: (() => Promise<void>)[] = []
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
    })

    /** A schema with two stores on it (two "processes") and a signal beside the first. */
    async function setup(options: { onError?: (error: unknown) => void } = {}) {
      const schema = uniqueSchema('signal')
      const applicationName = `vs-signal-${process.pid}-${++counter}`
      cleanups.push(() => dropSchema(schema))
      const listening = await PostgresServerStore.open({
        url,
        schema,
        applicationName,
      })
      cleanups.push(() => listening.close())
      const pushing = await PostgresServerStore.open({ url, schema })
      cleanups.push(() => pushing.close())
      await pushing.ensureCollection({
        name: 'notes',
        dims: 2,
        metric: 'l2',
        dtype: 'float32',
      })
      const signal = await PostgresChangeSignal.open({
        store: listening,
        reconnectDelayMs: 20,
        ...options,
      })
      cleanups.push(() => signal.close())
      return {
        schema,
        channel: headChannel(schema),
        applicationName,
        listening,
        pushing,
        signal,
        heard: recorder(signal),
      }
    }

    it('a push through another store reaches the subscribers once it committed, with its device', async () => {
      const { pushing, heard } = await setup()
      const result = await pushing.push(DEVICE, [put(1, 'a'), put(2, 'b')])
      expect(result.head).toBe(2)
      expect(await heard.next()).toEqual({ head: 2, deviceId: 'dev-a' })
    })

    it('a push that stores nothing (a replay) announces nothing', async () => {
      const { pushing, channel, heard } = await setup()
      await pushing.push(DEVICE, [put(1, 'a')])
      expect(await heard.next()).toEqual({ head: 1, deviceId: 'dev-a' })
      const replay = await pushing.push(DEVICE, [put(1, 'a')])
      expect(replay.head).toBe(1)
      // Notifications arrive in commit order: had the replay notified, it would come first.
      await notify(channel, '1000')
      expect(await heard.next()).toEqual({ head: 1000 })
      expect(heard.changes).toHaveLength(2)
    })

    it('a notification from any connection reaches the subscribers; publish() fans out at once', async () => {
      const { channel, signal, heard } = await setup()
      await notify(channel, '42 laptop')
      expect(await heard.next()).toEqual({ head: 42, deviceId: 'laptop' })
      await notify(channel, '43')
      expect(await heard.next()).toEqual({ head: 43 })
      await signal.publish({ head: 44, deviceId: 'phone' })
      expect(heard.changes.at(-1)).toEqual({ head: 44, deviceId: 'phone' })
    })

    it('payloads that are not heads are ignored and reported', async () => {
      const errors: unknown[] = []
      const { channel, heard } = await setup({
        onError: (error) => errors.push(error),
      })
      const bad = [
        '',
        'x',
        '-1',
        '7 two words',
        '7  double-space',
        '7 bad.device',
        '12345678901234567',
        '9999999999999999',
      ]
      for (const payload of bad) await notify(channel, payload)
      await notify(channel, '5 ok')
      expect(await heard.next()).toEqual({ head: 5, deviceId: 'ok' })
      expect(heard.changes).toHaveLength(1)
      expect(errors).toHaveLength(bad.length)
      for (const error of errors) {
        expect(isVeloSyncError(error, 'invalid_argument')).toBe(true)
        expect((error as Error).message).toMatch(/not '<head> \[deviceId\]'/)
      }
    })

    it('another schema of the same database has a channel of its own', async () => {
      const first = await setup()
      const second = await setup()
      expect(first.channel).not.toBe(second.channel)
      await second.pushing.push(DEVICE, [put(1, 'a')])
      expect(await second.heard.next()).toEqual({ head: 1, deviceId: 'dev-a' })
      await first.pushing.push(DEVICE, [put(1, 'a'), put(2, 'b')])
      expect(await first.heard.next()).toEqual({ head: 2, deviceId: 'dev-a' })
      expect(first.heard.changes).toHaveLength(1)
      expect(second.heard.changes).toHaveLength(1)
    })

    it('a killed LISTEN connection reconnects and announces the head it may have missed', async () => {
      const errors: unknown[] = []
      const { pushing, applicationName, signal, heard } = await setup({
        onError: (error) => errors.push(error),
      })
      const pid = await listenerPid(applicationName)
      expect(pid).toBeTypeOf('number')
      await withClient((client) =>
        client.query('SELECT pg_terminate_backend($1)', [pid]),
      )
      // Pushed while nobody listens (or just before it is back): the head covers it.
      await pushing.push(DEVICE, [put(1, 'a'), put(2, 'b'), put(3, 'c')])
      let change = await heard.next()
      // The push's own notification may arrive too if the listener was already back.
      while (change.deviceId !== undefined) change = await heard.next()
      expect(change).toEqual({ head: 3 })
      expect(signal.listening).toBe(true)
      const newPid = await listenerPid(applicationName)
      expect(newPid).toBeTypeOf('number')
      expect(newPid).not.toBe(pid)
      expect(
        errors.some(
          (error) =>
            isVeloSyncError(error, 'storage_failure') &&
            /lost the LISTEN connection/.test((error as Error).message),
        ),
      ).toBe(true)
      // And it listens again.
      await pushing.push(DEVICE, [put(4, 'd')])
      expect(await heard.next()).toEqual({ head: 4, deviceId: 'dev-a' })
    })

    it('close() ends the LISTEN connection', async () => {
      const { applicationName, signal } = await setup()
      expect(signal.listening).toBe(true)
      expect(await listenerPid(applicationName)).toBeTypeOf('number')
      await signal.close()
      await signal.close() // idempotent
      expect(signal.listening).toBe(false)
      expect(await listenerPid(applicationName)).toBeUndefined()
    })

    it('bad options are invalid_argument', async () => {
      const { listening } = await setup()
      for (const options of [
        { store: {} as PostgresServerStore },
        { store: listening, reconnectDelayMs: 0 },
        { store: listening, maxReconnectDelayMs: 1.5 },
        { store: listening, onError: 'log' as unknown as () => void },
      ]) {
        await expect(PostgresChangeSignal.open(options)).rejects.toSatisfy(
          (error) => isVeloSyncError(error, 'invalid_argument'),
        )
      }
    })
  },
)
