/**
 * `velosync serve`, `token` and the sync `demo`, run as a user runs them: the built CLI in
 * separate Node processes, over real HTTP on 127.0.0.1 with real SQLite files. Needs
 * `npm run build`.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { HttpTransport, LocalStore, SyncClient } from '@velosync/client'
import { isVeloSyncError } from '@velosync/core'
import { afterEach, beforeAll, describe, expect } from 'vitest'
import { MAIN, killServes, serve, test, velosync } from './cli-harness.js'

afterEach(killServes)

beforeAll(() => {
  if (!existsSync(MAIN)) {
    throw new Error(`${MAIN} is missing: run \`npm run build\` first`)
  }
})

describe('velosync serve', () => {
  test('answers /v1/health, logs with pino and exits 0 on SIGTERM', async ({
    tmpDir,
  }) => {
    const db = join(tmpDir, 'server.db')
    const served = await serve('--db', db)
    expect(served.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(served.output.stdout).toContain(`store  ${db}`)

    const response = await fetch(`${served.url}/v1/health`)
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ status: 'ok', head: 0 })

    served.child.kill('SIGTERM')
    expect(await served.exited).toBe(0)
    expect(served.output.stdout).toContain('SIGTERM: stopping')
    expect(served.output.stdout).toMatch(/^stopped$/m)
    // pino's JSON lines on stderr.
    const logged = served.output.stderr
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { msg?: string; port?: number })
    expect(logged.some((line) => line.msg === 'sync server listening')).toBe(
      true,
    )
    expect(existsSync(db)).toBe(true)
  })

  test('--open prints a warning and accepts X-VeloSync-Device', async ({
    tmpDir,
  }) => {
    const served = await serve(
      '--db',
      join(tmpDir, 'server.db'),
      '--open',
      '--log-level',
      'silent',
    )
    expect(served.output.stderr).toContain('OPEN MODE: no authentication')
    const store = LocalStore.open({ path: join(tmpDir, 'device.db') })
    const transport = new HttpTransport({
      url: served.url,
      deviceId: store.deviceId,
    })
    try {
      store.createCollection({ name: 'notes', dims: 3 })
      store.put('notes', { id: 'a', vector: [1, 2, 3] })
      const result = await new SyncClient(store, { transport }).sync()
      expect(result.pushed).toBe(1)
    } finally {
      await transport.close()
      store.close()
    }
    served.child.kill('SIGINT')
    expect(await served.exited).toBe(0)
  })
})

describe('velosync token', () => {
  test('create prints a token a device syncs with; revoke locks it out', async ({
    tmpDir,
  }) => {
    const db = join(tmpDir, 'server.db')
    const created = await velosync(
      'token',
      'create',
      '--device',
      'laptop',
      '--db',
      db,
    )
    expect(created.stderr).toBe('')
    expect(created.code).toBe(0)
    expect(created.stdout).toContain('It is shown this once')
    const token = /^ {2}([A-Za-z0-9_-]{43})$/m.exec(created.stdout)?.[1]
    expect(token).toBeDefined()

    const served = await serve('--db', db, '--log-level', 'warn')
    const store = LocalStore.open({
      path: join(tmpDir, 'laptop.db'),
      deviceId: 'laptop',
    })
    const transport = new HttpTransport({ url: served.url, token: token! })
    try {
      store.createCollection({ name: 'notes', dims: 4 })
      store.putMany('notes', [
        { id: 'a', vector: [1, 0, 0, 0], metadata: { text: 'one' } },
        { id: 'b', vector: [0, 1, 0, 0], metadata: { text: 'two' } },
      ])
      const client = new SyncClient(store, { transport })
      expect(await client.sync()).toMatchObject({ pushed: 2, pulled: 0 })
      expect(store.outbox.size).toBe(0)
      const status = await velosync(
        'status',
        '--store',
        join(tmpDir, 'laptop.db'),
        '--json',
      )
      expect(JSON.parse(status.stdout)).toMatchObject({
        deviceId: 'laptop',
        outboxEntries: 0,
        pendingOps: 0,
        syncCursor: 2,
      })

      // The server holds what the device holds.
      const digest = await fetch(`${served.url}/v1/collections/notes/digest`, {
        headers: { authorization: `Bearer ${token!}` },
      })
      expect(digest.status).toBe(200)
      expect(await digest.json()).toMatchObject({
        digest: store.digest('notes'),
      })

      // A second token for the same device; revoking removes both.
      const json = await velosync(
        'token',
        'create',
        '--device',
        'laptop',
        '--db',
        db,
        '--json',
      )
      expect(JSON.parse(json.stdout)).toMatchObject({
        device: 'laptop',
        store: db,
      })
      const revoked = await velosync(
        'token',
        'revoke',
        '--device',
        'laptop',
        '--db',
        db,
      )
      expect(revoked.code).toBe(0)
      expect(revoked.stdout).toContain('Revoked 2 tokens of device laptop')

      store.put('notes', { id: 'c', vector: [0, 0, 1, 0] })
      const failure = await client.sync().catch((error: unknown) => error)
      expect(isVeloSyncError(failure, 'unauthorized')).toBe(true)
    } finally {
      await transport.close()
      store.close()
    }
    served.child.kill('SIGTERM')
    expect(await served.exited).toBe(0)
  })

  test('revoke of an unknown device or store fails without creating a store', async ({
    tmpDir,
  }) => {
    const db = join(tmpDir, 'server.db')
    const missing = await velosync(
      'token',
      'revoke',
      '--device',
      'laptop',
      '--db',
      db,
    )
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain(`no server store at ${db}`)
    expect(existsSync(db)).toBe(false)

    await velosync('token', 'create', '--device', 'phone', '--db', db)
    const unknown = await velosync(
      'token',
      'revoke',
      '--device',
      'laptop',
      '--db',
      db,
    )
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('device laptop has no live token')
  })
})

describe('velosync demo (sync)', () => {
  test(
    '--docs 500 --dims 16 converges: a conflict, no echoes, equal digests',
    { timeout: 60_000 },
    async () => {
      const result = await velosync('demo', '--docs', '500', '--dims', '16')
      expect(result.stderr).toBe('')
      expect(result.code).toBe(0)
      const out = result.stdout

      // Three syncs after the offline writes, each timed.
      expect(out).toMatch(
        /3\. Back online[^\n]*\n[^\n]*\n\s+laptop\s+7\s+0\s+7\s+0\s+\d+\s+\d+\s+[\d.,]+ ms\n\s+phone\s+7\s+7\s+6\s+1\s/,
      )
      // The concurrent edit: the later HLC (the phone's) wins everywhere, the loser is listed.
      expect(out).toContain('phone was told: its edit won (conflict_won)')
      expect(out).toMatch(/^\s+winner\s+phone\.[0-9a-f]+\s/m)
      expect(out).toMatch(/^\s+loser\s+laptop\.[0-9a-f]+\s/m)
      expect(out).toContain(
        'laptop now reads: "Edited on the phone while offline."',
      )
      // Echo suppression: neither device pulled a version it pushed.
      expect(out).toMatch(/^\s+laptop\s+507\s+7\s+507\s+0$/m)
      expect(out).toMatch(/^\s+phone\s+7\s+507\s+6\s+0$/m)

      const digests = [
        ...out.matchAll(
          /^\s+(laptop|phone|server)\s+[\d,]*\s+([0-9a-f]{64})$/gm,
        ),
      ].map((match) => [match[1], match[2]])
      expect(digests.map(([name]) => name)).toEqual([
        'laptop',
        'phone',
        'server',
      ])
      expect(new Set(digests.map(([, digest]) => digest)).size).toBe(1)
      expect(out).toContain('all equal')

      // The search on each device finds the contested document first.
      expect([...out.matchAll(/^\s+1\s+doc-000001\s+1\.0000\s/gm)].length).toBe(
        2,
      )
      const removed = /^Removed (\S+)$/m.exec(out)?.[1]
      expect(removed).toBeDefined()
      expect(existsSync(removed!)).toBe(false)
    },
  )
})

describe('velosync demo (interrupted)', () => {
  test('SIGTERM mid-demo removes its files and exits 143', async ({
    tmpDir,
  }) => {
    const temp = join(tmpDir, 'tmp')
    mkdirSync(temp)
    const child = spawn(
      process.execPath,
      [MAIN, 'demo', '--docs', '100000', '--dims', '16'],
      {
        env: { ...process.env, TMPDIR: temp },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    const exited = new Promise<number | null>((resolve) =>
      child.on('close', resolve),
    )
    // Started: its directory exists and it has begun to write.
    await new Promise<void>((resolve) =>
      child.stdout.once('data', () => resolve()),
    )
    expect(readdirSync(temp)).toHaveLength(1)
    child.kill('SIGTERM')
    expect(await exited).toBe(143)
    expect(readdirSync(temp)).toEqual([])
  })
})

describe('bad usage of the sync commands exits non-zero with a message', () => {
  test.concurrent.for([
    [['serve', '--port', '70000'], 'expected an integer from 0 to 65535'],
    [['serve', '--log-level', 'loud'], 'Allowed choices are fatal, error'],
    [['serve', '--max-body-mb', '0'], "argument '0' is invalid"],
    [['token'], 'Usage: velosync token'],
    [['token', 'create'], "required option '--device <name>' not specified"],
    [['token', 'create', '--device', 'bad name!'], 'device id must match'],
    [['token', 'mint', '--device', 'a'], "unknown command 'mint'"],
    [['demo', '--docs', '5'], 'the sync demo needs at least 10 documents'],
  ] as const)('velosync %j', async ([args, message]) => {
    const result = await velosync(...args)
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(message)
    expect(result.stdout).toBe('')
  })

  test('a device store given as the server store, or the reverse, is refused and left unchanged', async ({
    tmpDir,
  }) => {
    const device = join(tmpDir, 'device.db')
    LocalStore.open({ path: device }).close()
    const before = readFileSync(device)
    const token = await velosync(
      'token',
      'create',
      '--device',
      'x',
      '--db',
      device,
    )
    expect(token.code).toBe(1)
    expect(token.stderr).toContain(
      'is a VeloSync device store, not a server store',
    )
    expect(readFileSync(device).equals(before)).toBe(true)

    const server = join(tmpDir, 'server.db')
    await velosync('token', 'create', '--device', 'x', '--db', server)
    const status = await velosync('status', '--store', server)
    expect(status.code).toBe(1)
    expect(status.stderr).toContain(
      'is a VeloSync server store, not a device store',
    )
  })

  test('serve on a port in use fails with the reason', async ({ tmpDir }) => {
    const first = await serve('--db', join(tmpDir, 'a.db'))
    const port = new URL(first.url).port
    const second = await velosync(
      'serve',
      '--db',
      join(tmpDir, 'b.db'),
      '--port',
      port,
    )
    expect(second.code).toBe(1)
    expect(second.stderr).toContain('EADDRINUSE')
    expect(existsSync(join(tmpDir, 'b.db'))).toBe(false) // the store it had created
    first.child.kill('SIGTERM')
    expect(await first.exited).toBe(0)
  })
})
