/*
 * `npm run chaos`: runs every chaos scenario (packages/testkit/src/chaos) and prints one
 * table; `--json` prints the same rows as a JSON array. Exits 1 when any safety figure
 * (lost, duplicated, diverged, stuck, false or missed conflicts) is not 0, or a run threw.
 *
 *   CHAOS_RUNS=N        simulation runs per scenario (default 25)
 *   CHAOS_SEED=N        fast-check seed (default: random, printed)
 *   CHAOS_SCENARIOS=a,b only these scenarios
 *   CHAOS_SHRINK_RUNS=N runs spent shrinking a failure (default 150)
 *
 * Imports the built packages: `npm run chaos` builds first.
 */
import {
  SCENARIOS,
  formatChaosDetails,
  formatChaosTable,
  runScenario,
  safetyViolations,
  type ScenarioReport,
} from '@velosync/testkit/chaos'

const json = process.argv.includes('--json')
const runs = integerEnv('CHAOS_RUNS', 25, 1)
const seed = integerEnv('CHAOS_SEED', Math.floor(Math.random() * 2 ** 31), 0)
const shrinkRuns = integerEnv('CHAOS_SHRINK_RUNS', 150, 0)
const only = process.env.CHAOS_SCENARIOS?.split(',').filter(Boolean)
const scenarios =
  only === undefined
    ? SCENARIOS
    : SCENARIOS.filter((s) => only.includes(s.name))
if (only !== undefined && scenarios.length !== only.length) {
  const known = SCENARIOS.map((s) => s.name).join(', ')
  process.stderr.write(
    `CHAOS_SCENARIOS names an unknown scenario; known: ${known}\n`,
  )
  process.exit(2)
}

const reports: ScenarioReport[] = []
const started = performance.now()
for (const scenario of scenarios) {
  const report = await runScenario(scenario, { runs, seed, shrinkRuns })
  reports.push(report)
  if (report.counterexample !== undefined) {
    const { run, problems, path } = report.counterexample
    process.stderr.write(
      `\n${scenario.name}: counterexample (seed ${seed}, path ${path ?? '-'}):\n` +
        `${problems.map((p) => `  ${p}`).join('\n')}\n  run: ${JSON.stringify(run)}\n`,
    )
  }
}
const seconds = (performance.now() - started) / 1000

if (json) {
  process.stdout.write(
    `${JSON.stringify(
      reports.map((r) => r.row),
      null,
      2,
    )}\n`,
  )
} else {
  process.stdout.write(
    `VeloSync chaos: ${runs} runs per scenario, seed ${seed}, ${seconds.toFixed(0)} s\n\n` +
      `${formatChaosTable(reports.map((r) => r.row))}\n\n` +
      `${formatChaosDetails(reports)}\n`,
  )
}
// A counterexample without a safety figure is a run that threw: a failure too.
process.exitCode = reports.some(
  (r) => safetyViolations(r.row) > 0 || r.counterexample !== undefined,
)
  ? 1
  : 0

function integerEnv(name: string, fallback: number, min: number): number {
  const text = process.env[name]
  if (text === undefined || text === '') return fallback
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < min) {
    process.stderr.write(`${name} must be an integer >= ${min}, got ${text}\n`)
    process.exit(2)
  }
  return value
}
