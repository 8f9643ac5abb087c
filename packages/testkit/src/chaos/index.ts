/**
 * The chaos harness: a checker for lost, duplicated and diverged writes, stuck queues and
 * wrong conflict decisions, and an in-process simulation of devices and a server over a
 * faulty network that feeds it. `npm run chaos` prints the report (docs/RELIABILITY.md).
 *
 * @example
 * ```ts
 * import { SCENARIOS, runScenario } from '@velosync/testkit/chaos'
 *
 * const report = await runScenario(SCENARIOS[1], { runs: 20 })
 * console.log(report.row, report.counterexample?.problems)
 * ```
 *
 * @packageDocumentation
 */
export {
  SAFETY_FIGURES,
  checkRun,
  oracleDigests,
  safetyViolations,
  summarizeRuns,
  type ChaosFinalState,
  type ChaosHistory,
  type ChaosRow,
  type ChaosServerOp,
  type ChaosWrite,
  type RunFigures,
} from './checker.js'
export {
  FaultNetwork,
  NO_FAULTS,
  type FaultCounts,
  type FaultRates,
} from './fault-network.js'
export { RecordingServerStore } from './recording-server-store.js'
export {
  CHAOS_COLLECTIONS,
  QUIESCE_PASSES,
  SIM_START_MS,
  chaosRunArb,
  runChaos,
  type ChaosInjection,
  type ChaosRun,
  type ChaosRunResult,
  type ChaosStep,
  type ChaosWriteStep,
  type ScenarioConfig,
} from './simulation.js'
export {
  NETWORK_FAULTS,
  SCENARIOS,
  runScenario,
  type Counterexample,
  type RunScenarioOptions,
  type ScenarioReport,
} from './scenarios.js'
export { formatChaosDetails, formatChaosTable } from './report.js'
