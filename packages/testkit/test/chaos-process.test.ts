/**
 * Process-level chaos (issue 5, part 2): a server and three devices as child processes on
 * real SQLite files, HTTP through a fault proxy on 127.0.0.1, SIGKILLs at named points and
 * at random times, then faults stop and every queue must drain. The children run from
 * sources under tsx and import the other packages' builds (`npm run build` first).
 *
 * Knobs: VELOSYNC_CHAOS_SEED (default: random, in every failure message).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { safetyViolations, type ChaosRow } from '../src/chaos/checker.js'
import {
  runProcessChaos,
  type ProcessChaosOptions,
  type ProcessRunReport,
} from '../src/chaos/process/process-chaos.js'

const SEED = Number(
  process.env.VELOSYNC_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31),
)

// Runs that find problems keep their files (the harness says where); the test removes them.
const TMP = mkdtempSync(join(tmpdir(), 'velosync-chaos-test-'))
afterAll(() => rmSync(TMP, { recursive: true, force: true }))

async function run(
  options: Omit<ProcessChaosOptions, 'seed' | 'onRun'>,
): Promise<{ row: ChaosRow; reports: ProcessRunReport[]; explain: string }> {
  const reports: ProcessRunReport[] = []
  const row = await runProcessChaos({
    ...options,
    seed: SEED,
    tmpDir: TMP,
    onRun: (report) => reports.push(report),
  })
  const explain = [
    `seed ${SEED} (VELOSYNC_CHAOS_SEED to replay)`,
    JSON.stringify(row),
    ...reports.flatMap((r) =>
      r.figures.problems.map((p) => `seed ${r.seed}: ${p}`),
    ),
  ].join('\n')
  return { row, reports, explain }
}

const total = (
  reports: readonly ProcessRunReport[],
  pick: (report: ProcessRunReport) => Readonly<Record<string, number>>,
): number =>
  reports.reduce(
    (sum, report) =>
      sum + Object.values(pick(report)).reduce((a, b) => a + b, 0),
    0,
  )

describe('process chaos', () => {
  it('SIGKILLs of devices and server at named points and random times lose, duplicate and diverge nothing', async () => {
    const { row, reports, explain } = await run({
      scenario: 'process-kill',
      runs: 3,
    })
    // The run must have done something to be evidence of anything.
    expect(
      total(reports, (r) => r.kills),
      explain,
    ).toBeGreaterThan(0)
    expect(row.operations, explain).toBeGreaterThan(100)
    expect(safetyViolations(row), explain).toBe(0)
  }, 120_000)

  it('resets, truncated and corrupted bodies, delays and replays through the fault proxy lose, duplicate and diverge nothing', async () => {
    const { row, reports, explain } = await run({
      scenario: 'fault-proxy',
      runs: 2,
      faultRate: 0.4,
    })
    expect(
      total(reports, (r) => r.proxyFaults),
      explain,
    ).toBeGreaterThan(0)
    expect(safetyViolations(row), explain).toBe(0)
  }, 120_000)

  it('reports lost writes when a device drops its outbox entries before the server answers', async () => {
    // Most requests never reach the server, so batches confirmed but never committed
    // abound; many ids, so few of those writes are covered again by a later write.
    const { row, reports, explain } = await run({
      scenario: 'fault-proxy',
      runs: 1,
      ids: 40,
      faultRate: 0.7,
      proxyFaults: ['reset-request'],
      kills: 0,
      brokenDevice: 'confirm-before-answer',
      // It cannot converge (the server never got those writes): do not wait long for it.
      quiesceMs: 3000,
    })
    expect(row.lost, explain).toBeGreaterThan(0)
    // Whether the broken device ends apart from the server depends on process timing (with
    // seed 671131009 it did not); no other device may be stuck.
    expect(row.stuck, explain).toBeLessThanOrEqual(1)
    // Every lost write is the broken device's: the loss is its early confirm's.
    const lost = reports.flatMap((r) =>
      r.figures.problems.filter((p) => p.startsWith('lost:')),
    )
    expect(
      lost.every((p) => p.includes('written by device-0.')),
      explain,
    ).toBe(true)
  }, 120_000)
})
