/*
 * The short chaos configuration that runs with `npm test`: every scenario of
 * `npm run chaos`, a fixed seed, CHAOS_CI_RUNS runs each (default 30). A failure prints
 * the shrunk counterexample.
 */
import { describe, expect, it } from 'vitest'
import { SCENARIOS, runScenario } from '../src/chaos/index.js'

const RUNS = Number(process.env.CHAOS_CI_RUNS ?? 30)
const SEED = 20_261_122

describe('chaos harness, short configuration', () => {
  for (const scenario of SCENARIOS) {
    it(`${scenario.name}: nothing lost, duplicated, diverged or stuck; conflicts exactly when concurrent`, async () => {
      const report = await runScenario(scenario, { runs: RUNS, seed: SEED })
      const explanation = report.counterexample?.problems.join('\n') ?? ''
      expect(report.row.runs, explanation).toBe(RUNS)
      expect(report.row.operations).toBeGreaterThan(RUNS)
      const { row } = report
      expect(
        {
          lost: row.lost,
          duplicated: row.duplicated,
          stuck: row.stuck,
          falseConflicts: row.falseConflicts,
          missedConflicts: row.missedConflicts,
          // Every device agrees with the server, and the server with the serial oracle.
          diverged: row.diverged,
        },
        explanation,
      ).toEqual({
        lost: 0,
        duplicated: 0,
        stuck: 0,
        falseConflicts: 0,
        missedConflicts: 0,
        diverged: 0,
      })
      // ServerStore S13: a far-future clock never beats a write made after its bound.
      expect(report.skew.wonBySkewed).toBe(0)
      if (scenario.faults.dropResponse > 0) {
        // A scenario whose faults never fired proves nothing.
        expect(report.failedRounds).toBeGreaterThan(0)
      }
    }, 300_000)
  }
})
