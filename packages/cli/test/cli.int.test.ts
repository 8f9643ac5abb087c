/**
 * The built `velosync` command (packages/cli/dist/main.js), run as a user runs it: a
 * separate Node process, checked by exit code, stdout and stderr. Needs `npm run build`.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { LocalStore } from '@velosync/client'
import { beforeAll, describe, expect } from 'vitest'
import { MAIN, test, velosync } from './cli-harness.js'

/** The last 64-hex digest printed on a line starting with `digest`. */
function lastDigest(output: string): string | undefined {
  return [...output.matchAll(/^\s*digest\s+([0-9a-f]{64})/gm)].at(-1)?.[1]
}

beforeAll(() => {
  if (!existsSync(MAIN)) {
    throw new Error(`${MAIN} is missing: run \`npm run build\` first`)
  }
})

describe('velosync --help', () => {
  test('lists the commands and exits 0', async () => {
    const result = await velosync('--help')
    expect(result.code).toBe(0)
    expect(result.stderr).toBe('')
    expect(result.stdout).toMatch(/^Usage: velosync/)
    expect(result.stdout).toMatch(/^\s+demo \[options\]/m)
    expect(result.stdout).toMatch(/^\s+status \[options\]/m)
    expect(result.stdout).toMatch(/^\s+serve \[options\]/m)
    expect(result.stdout).toMatch(/^\s+token/m)
  })

  test.concurrent.for([
    [
      'demo',
      [
        '--docs <count>',
        '(default: 2000; 20000 with --local)',
        '--local',
        '--dims <n>',
        '(default: 384)',
        '--keep',
      ],
    ],
    ['status', ['--store <path>', '--json']],
    [
      'serve',
      [
        '--db <path>',
        '"velosync-server.db"',
        '--port <n>',
        '(default: 8787)',
        '--open',
        '--log-level <level>',
      ],
    ],
  ] as const)(
    '%s --help describes its options',
    async ([command, expected]) => {
      const result = await velosync(command, '--help')
      expect(result.code).toBe(0)
      expect(result.stdout).toContain(`Usage: velosync ${command} [options]`)
      for (const text of expected) expect(result.stdout).toContain(text)
    },
  )

  test('--version prints the package version', async () => {
    const result = await velosync('--version')
    expect(result.code).toBe(0)
    expect(result.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/)
  })
})

describe('velosync demo', () => {
  test(
    '--local --docs 2000 --dims 32 writes, searches, compacts, verifies and cleans up',
    { timeout: 60_000 },
    async () => {
      const result = await velosync(
        'demo',
        '--local',
        '--docs',
        '2000',
        '--dims',
        '32',
      )
      expect(result.stderr).toBe('')
      expect(result.code).toBe(0)
      const out = result.stdout

      expect(out).toMatch(
        /putMany\s+2,000 documents \+ their outbox entries\s+[\d.,]+ ms\s+[\d,]+ docs\/s/,
      )
      expect(out).toContain('outbox  2,000 entries, LSN 1 … 2,000')
      expect(out).toMatch(/kernel (wasm-simd|js), 2,000 documents/)
      expect(out).toMatch(/^\s+search kernel\s+(wasm-simd|js)$/m)
      expect(lastDigest(out)).toMatch(/^[0-9a-f]{64}$/)

      // Query A is a stored vector: its own document comes first with cosine 1.
      expect(out).toMatch(
        /query A: the vector of doc-000042[^\n]*\n\s+no filter[^\n]*\n[^\n]*\n\s+1\s+doc-000042\s+1\.0000\s/,
      )
      // Every hit under the filter satisfies { lang: 'en', year: { $gte: 2020 } }.
      let filtered: boolean | undefined
      let filteredHits = 0
      for (const line of out.split('\n')) {
        if (/^\s+no filter\s/.test(line)) filtered = false
        else if (/^\s+filter F\s/.test(line)) filtered = true
        const hit = /^\s+\d+\s+(doc-\d{6})\s+-?[\d.]+\s+(\w+)\s+(\d{4})\s/.exec(
          line,
        )
        if (hit !== null && filtered === true) {
          filteredHits++
          expect(hit[2], line).toBe('en')
          expect(Number(hit[3]), line).toBeGreaterThanOrEqual(2020)
        }
      }
      expect(filteredHits).toBe(3 * 5) // three queries, k = 5

      // Compaction: 5 documents × 3 edits and a create+delete collapse back to one entry per document.
      expect(out).toMatch(/before\s+2,017\s/)
      expect(out).toMatch(/after compact\(\)\s+2,000\s/)
      expect(out).toContain(
        'compact() removed 17 entries and purged 1 never-sent document',
      )
      expect(out).toContain('documents and digest unchanged: yes')
      expect(out).toMatch(/^Verify {2}ok/m)

      const removed = /^Removed (\S+)$/m.exec(out)?.[1]
      expect(removed).toBeDefined()
      expect(existsSync(removed!)).toBe(false)
    },
  )

  test(
    '--local --keep leaves a store that status reads back',
    { timeout: 60_000 },
    async () => {
      const demo = await velosync(
        'demo',
        '--local',
        '--docs',
        '300',
        '--dims',
        '8',
        '--keep',
      )
      expect(demo.stderr).toBe('')
      expect(demo.code).toBe(0)
      const path = /^Kept the store: velosync status --store (\S+)$/m.exec(
        demo.stdout,
      )?.[1]
      expect(path).toBeDefined()
      try {
        const deviceId = /^\s+device\s+(d-[0-9a-f]+),/m.exec(demo.stdout)?.[1]
        const status = await velosync('status', '--store', path!, '--json')
        expect(status.stderr).toBe('')
        expect(status.code).toBe(0)
        expect(JSON.parse(status.stdout)).toMatchObject({
          store: path,
          deviceId,
          lastLsn: 317, // 300 documents, 5 × 3 edits, doc-temp put + delete
          outboxEntries: 300, // compacted
          pendingOps: 300,
          syncCursor: 0, // never synced
          collections: [
            {
              name: 'notes',
              dims: 8,
              metric: 'cosine',
              dtype: 'float32',
              documents: 300,
              digest: lastDigest(demo.stdout),
            },
          ],
        })
      } finally {
        rmSync(dirname(path!), { recursive: true, force: true })
      }
    },
  )
})

describe('velosync status', () => {
  test('prints device, epoch, last LSN, outbox size and each collection', async ({
    tmpDir,
  }) => {
    const path = join(tmpDir, 'device.db')
    const store = LocalStore.open({ path })
    store.createCollection({ name: 'notes', dims: 4 })
    store.createCollection({
      name: 'photos',
      dims: 3,
      metric: 'l2',
      dtype: 'float64',
    })
    store.putMany('notes', [
      { id: 'a', vector: [1, 0, 0, 0], metadata: { lang: 'en' } },
      { id: 'b', vector: [0, 1, 0, 0] },
      { id: 'c', vector: [0, 0, 1, 0] },
    ])
    store.delete('notes', 'b')
    store.put('photos', { id: 'p', vector: [1, 2, 3] })
    const expected = {
      deviceId: store.deviceId,
      epoch: store.epoch,
      lastLsn: store.lastLsn,
      outbox: store.outbox.size,
      notes: store.digest('notes'),
      photos: store.digest('photos'),
    }
    store.close()

    const text = await velosync('status', '--store', path)
    expect(text.stderr).toBe('')
    expect(text.code).toBe(0)
    expect(text.stdout).toContain(`device       ${expected.deviceId}`)
    expect(text.stdout).toContain(`epoch        ${expected.epoch}`)
    expect(text.stdout).toMatch(/^last LSN\s+5$/m)
    expect(text.stdout).toMatch(/^outbox\s+5 entries/m)
    expect(text.stdout).toMatch(
      /^pending ops\s+4 \(documents the next push sends\)$/m,
    )
    expect(text.stdout).toMatch(/^sync cursor\s+0 \(never synced\)$/m)
    expect(text.stdout).toMatch(
      new RegExp(
        `^\\s+notes\\s+4\\s+cosine\\s+float32\\s+2\\s+${expected.notes}$`,
        'm',
      ),
    )
    expect(text.stdout).toMatch(
      new RegExp(
        `^\\s+photos\\s+3\\s+l2\\s+float64\\s+1\\s+${expected.photos}$`,
        'm',
      ),
    )

    const json = await velosync('status', '--store', path, '--json')
    expect(JSON.parse(json.stdout)).toEqual({
      store: path,
      deviceId: expected.deviceId,
      epoch: expected.epoch,
      replicaId: `${expected.deviceId}.${expected.epoch}`,
      lastLsn: 5,
      outboxEntries: expected.outbox,
      pendingOps: 4, // a, b (its delete), c, p
      syncCursor: 0,
      collections: [
        {
          name: 'notes',
          dims: 4,
          metric: 'cosine',
          dtype: 'float32',
          documents: 2,
          digest: expected.notes,
        },
        {
          name: 'photos',
          dims: 3,
          metric: 'l2',
          dtype: 'float64',
          documents: 1,
          digest: expected.photos,
        },
      ],
    })
  })

  test('does not create a store where there is none', async ({ tmpDir }) => {
    const path = join(tmpDir, 'missing.db')
    const result = await velosync('status', '--store', path)
    expect(result.code).toBe(1)
    expect(result.stdout).toBe('')
    expect(result.stderr).toContain(`error: no store at ${path}`)
    expect(existsSync(path)).toBe(false)
  })

  test('refuses a file that is not a store', async ({ tmpDir }) => {
    const path = join(tmpDir, 'notes.txt')
    writeFileSync(path, 'not a database\n')
    const result = await velosync('status', '--store', path)
    expect(result.code).toBe(1)
    expect(result.stderr).toContain('is not an SQLite database')
  })
})

describe('bad usage exits non-zero with a message on stderr', () => {
  test.concurrent.for([
    [
      ['demo', '--docs', 'abc'],
      "option '--docs <count>' argument 'abc' is invalid. expected an integer from 1 to 1000000",
    ],
    [['demo', '--docs', '0'], "argument '0' is invalid"],
    [
      ['demo', '--dims', '1.5'],
      "option '--dims <n>' argument '1.5' is invalid",
    ],
    [['demo', '--docs=-3'], "argument '-3' is invalid"],
    [['demo', '--dims', '100000'], 'expected an integer from 1 to 4096'],
    [['demo', '--synchronous', 'off'], 'Allowed choices are full, normal'],
    [['demo', '--bogus'], "unknown option '--bogus'"],
    [['demo', 'extra'], 'too many arguments'],
    [['demo', '--docs', '1000000', '--dims', '4096'], 'the demo holds at most'],
    [
      ['demo', '--local', '--docs', '1000000', '--dims', '4096'],
      'the demo holds at most',
    ],
    [['status'], "required option '--store <path>' not specified"],
    [['frobnicate'], "unknown command 'frobnicate'"],
    [[], 'Usage: velosync'],
  ] as const)('velosync %j', async ([args, message]) => {
    const result = await velosync(...args)
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(message)
    expect(result.stdout).toBe('')
  })
})
