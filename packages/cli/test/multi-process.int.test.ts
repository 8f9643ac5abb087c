/**
 * Scale-out (issue 4): three `velosync serve --postgres` processes on one PostgreSQL
 * database, six devices spread over them, random writes and deletes synced concurrently;
 * afterwards every device's digest equals the server's (DESIGN 3). And live announcements
 * cross the processes (LISTEN/NOTIFY). Real processes, real HTTP on 127.0.0.1, real
 * PostgreSQL. Needs `npm run build`.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { HttpTransport, LocalStore, SyncClient } from '@velosync/client'
import { PostgresServerStore } from '@velosync/storage-postgres'
import {
  createTemporaryDatabase,
  seededRandom,
  type TemporaryDatabase,
} from '@velosync/testkit'
import { postgresForTests } from '@velosync/testkit/postgres-test-setup'
import { afterEach, beforeAll, describe, expect } from 'vitest'
import {
  MAIN,
  killServes,
  serveMany,
  test,
  velosync,
  type Served,
} from './cli-harness.js'

const postgres = postgresForTests()
const SERVERS = 3
const DEVICES = 6
const ROUNDS = 4
const DIMS = 8
const HOUR_MS = 3_600_000

afterEach(killServes)

beforeAll(() => {
  if (!existsSync(MAIN)) {
    throw new Error(`${MAIN} is missing: run \`npm run build\` first`)
  }
})

/** A fresh database on the test server (several `serve` processes share it). */
function freshDatabase(): Promise<TemporaryDatabase> {
  return createTemporaryDatabase(postgres.url as string, 'vs_multi')
}

function vec(seed: number): number[] {
  return Array.from({ length: DIMS }, (_, i) => Math.sin(seed * 1.3 + i) + 0.1)
}

async function stop(served: Served): Promise<void> {
  served.child.kill('SIGTERM')
  expect(await served.exited).toBe(0)
}

describe.skipIf(postgres.url === undefined)(
  `velosync serve --postgres${postgres.skipReason === undefined ? '' : ` (SKIPPED: ${postgres.skipReason})`}`,
  () => {
    test(`${SERVERS} server processes on one PostgreSQL, ${DEVICES} devices spread over them: every device digest = server digest`, async ({
      tmpDir,
    }) => {
      const database = await freshDatabase()
      const devices: {
        store: LocalStore
        transport: HttpTransport
        sync: SyncClient
      }[] = []
      try {
        // Started together: they race to migrate the empty database (one wins the lock).
        const servers = await serveMany(
          SERVERS,
          database.url,
          '--log-level',
          'warn',
        )
        for (const served of servers) {
          expect(served.output.stdout).toContain('store  postgres://')
        }
        const tokens = await Promise.all(
          Array.from({ length: DEVICES }, async (_, i) => {
            const created = await velosync(
              'token',
              'create',
              '--device',
              `dev${i}`,
              '--postgres',
              database.url,
              '--json',
            )
            expect(created.stderr).toBe('')
            return (JSON.parse(created.stdout) as { token: string }).token
          }),
        )
        for (const [i, token] of tokens.entries()) {
          const store = LocalStore.open({
            path: join(tmpDir, `dev${i}.db`),
            deviceId: `dev${i}`,
          })
          store.createCollection({ name: 'notes', dims: DIMS })
          const served = servers[i % SERVERS] as Served
          const transport = new HttpTransport({ url: served.url, token })
          devices.push({
            store,
            transport,
            sync: new SyncClient(store, { transport, maxOpsPerPush: 5 }),
          })
        }

        const random = seededRandom(4)
        for (let round = 0; round < ROUNDS; round++) {
          for (const [i, device] of devices.entries()) {
            for (let op = 0; op < 10; op++) {
              const id = `doc${Math.floor(random() * 25)}`
              if (random() < 0.3) device.store.delete('notes', id)
              else
                device.store.put('notes', {
                  id,
                  vector: vec(Math.floor(random() * 1000)),
                  metadata: { by: i, round },
                })
            }
          }
          // All devices at once: pushes from three processes contend for the feed.
          await Promise.all(devices.map((device) => device.sync.sync()))
        }
        // Two quiet passes: everyone pushed, then everyone pulled everything.
        for (let pass = 0; pass < 2; pass++) {
          for (const device of devices) await device.sync.sync()
        }

        const store = await PostgresServerStore.open({ url: database.url })
        try {
          const digest = await store.digest('notes')
          expect(devices[0]?.store.count('notes')).toBeGreaterThan(0)
          for (const [i, device] of devices.entries()) {
            expect(device.store.outbox.size, `dev${i} outbox`).toBe(0)
            expect(device.store.digest('notes'), `dev${i}`).toBe(digest)
          }
          // Every process answers with the same digest: none keeps state of its own.
          for (const served of servers) {
            const response = await fetch(
              `${served.url}/v1/collections/notes/digest`,
              { headers: { authorization: `Bearer ${tokens[0] as string}` } },
            )
            expect(await response.json()).toMatchObject({ digest })
          }
        } finally {
          await store.close()
        }
        // A revoked token is refused by every process, not only the one that revoked it.
        const revoked = await velosync(
          'token',
          'revoke',
          '--device',
          'dev0',
          '--postgres',
          database.url,
        )
        expect(revoked.code).toBe(0)
        for (const served of servers) {
          const response = await fetch(
            `${served.url}/v1/collections/notes/digest`,
            {
              headers: { authorization: `Bearer ${tokens[0] as string}` },
            },
          )
          expect(response.status).toBe(401)
        }
        await Promise.all(servers.map(stop))
      } finally {
        for (const device of devices) {
          await device.transport.close()
          device.store.close()
        }
        killServes()
        await database.drop()
      }
    })

    test('a device live on process 1 hears a write pushed through process 3 (LISTEN/NOTIFY)', async ({
      tmpDir,
    }) => {
      const database = await freshDatabase()
      const device = (name: string, served: Served) => {
        const store = LocalStore.open({
          path: join(tmpDir, `${name}.db`),
          deviceId: name,
        })
        store.createCollection({ name: 'notes', dims: DIMS })
        const transport = new HttpTransport({ url: served.url, deviceId: name })
        return { store, transport, sync: new SyncClient(store, { transport }) }
      }
      const devices: ReturnType<typeof device>[] = []
      try {
        const servers = await serveMany(
          SERVERS,
          database.url,
          '--open',
          '--log-level',
          'warn',
        )
        const reader = device('reader', servers[0] as Served)
        const writer = device('writer', servers[2] as Served)
        devices.push(reader, writer)
        const ready = Promise.all([
          new Promise((resolve) => reader.sync.on('liveConnected', resolve)),
          new Promise((resolve) => reader.sync.on('synced', resolve)),
        ])
        // Its timers an hour: only the live channel can bring the write within the test.
        reader.sync.startSync({
          live: true,
          intervalMs: HOUR_MS,
          liveIntervalMs: HOUR_MS,
        })
        await ready
        const arrived = new Promise<void>((resolve) => {
          const off = reader.sync.on('synced', () => {
            if (reader.store.get('notes', 'hello') === undefined) return
            off()
            resolve()
          })
        })
        writer.store.put('notes', { id: 'hello', vector: vec(1) })
        await writer.sync.sync()
        await arrived
        expect(reader.store.digest('notes')).toBe(writer.store.digest('notes'))
        await reader.sync.stopSync()
        await Promise.all(servers.map(stop))
      } finally {
        for (const { sync, store, transport } of devices) {
          await sync.stopSync()
          await transport.close()
          store.close()
        }
        killServes()
        await database.drop()
      }
    })

    test('a URL that is not PostgreSQL is a usage error that shows the expected form', async () => {
      const result = await velosync('serve', '--postgres', 'mysql://db/x')
      expect(result.code).toBe(1)
      expect(result.stderr).toMatch(
        /--postgres <url>.*expected a PostgreSQL URL such as postgres:\/\/user:password@host:5432\/database/s,
      )
    })

    test('--postgres and --db together are refused', async () => {
      const result = await velosync(
        'serve',
        '--db',
        'x.db',
        '--postgres',
        postgres.url as string,
      )
      expect(result.code).toBe(1)
      expect(result.stderr).toMatch(/cannot be used with/)
    })

    test('an unreachable database fails with storage_failure and no password shown', async () => {
      const result = await velosync(
        'serve',
        '--port',
        '0',
        '--postgres',
        'postgres://velosync:hunter2@127.0.0.1:1/none',
      )
      expect(result.code).toBe(1)
      expect(result.stderr).toMatch(/storage_failure/)
      expect(result.stderr).not.toContain('hunter2')
    })
  },
)
