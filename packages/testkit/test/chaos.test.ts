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
          // Devices always agree with the server.
          devicesDiverged: row.diverged - report.oracleDiverged,
        },
        explanation,
      ).toEqual({
        lost: 0,
        duplicated: 0,
        stuck: 0,
        falseConflicts: 0,
        missedConflicts: 0,
        devicesDiverged: 0,
      })
      if (
        scenario.clockOffsetsMs.every((ms) => ms === 0) &&
        !scenario.clockJumps
      ) {
        // Without clock skew the server's answer is the serial oracle's. With skew beyond
        // the HLC's 60 s bound it may depend on arrival order (docs/RELIABILITY.md).
        expect(report.oracleDiverged, explanation).toBe(0)
      }
      // ServerStore S13: a far-future clock never beats a write made after its bound.
      expect(report.skew.wonBySkewed).toBe(0)
      if (scenario.faults.dropResponse > 0) {
        // A scenario whose faults never fired proves nothing.
        expect(report.failedRounds).toBeGreaterThan(0)
      }
    }, 300_000)
  }
})
