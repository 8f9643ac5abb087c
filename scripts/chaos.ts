/*
 * `npm run chaos`: runs every chaos scenario (packages/testkit/src/chaos) and prints one
 * table; `--json` prints the same rows as a JSON array. Exits 1 when any safety figure
 * (lost, duplicated, diverged, stuck, false or missed conflicts) is not 0, or a run threw.
 *
 *   CHAOS_RUNS=N        simulation runs per scenario (default 25; 0: process-level only)
 *   CHAOS_SEED=N        fast-check seed (default: random, printed)
 *   CHAOS_SCENARIOS=a,b only these scenarios
 *   CHAOS_SHRINK_RUNS=N runs spent shrinking a failure (default 150)
 *   CHAOS_PROCESS_RUNS=N runs of each process-level scenario (process-kill, fault-proxy:
 *                       child processes, SIGKILLs, a fault proxy; default 2, 0 to skip)
 *
 * Imports the built packages: `npm run chaos` builds first.
 */
import {
  SCENARIOS,
  formatChaosDetails,
  formatChaosTable,
  runScenario,
  safetyViolations,
  type ChaosRow,
  type ScenarioReport,
} from '@velosync/testkit/chaos'
import {
  runProcessChaos,
  type ProcessRunReport,
} from '@velosync/testkit/process-chaos'

const json = process.argv.includes('--json')
const runs = integerEnv('CHAOS_RUNS', 25, 0)
const seed = integerEnv('CHAOS_SEED', Math.floor(Math.random() * 2 ** 31), 0)
const shrinkRuns = integerEnv('CHAOS_SHRINK_RUNS', 150, 0)
const processRuns = integerEnv('CHAOS_PROCESS_RUNS', 2, 0)
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

if (runs === 0 && (processRuns === 0 || only !== undefined)) {
  process.stderr.write(
    'nothing to run: CHAOS_RUNS=0 runs only the process-level scenarios, which need CHAOS_PROCESS_RUNS > 0 and no CHAOS_SCENARIOS\n',
  )
  process.exit(2)
}

const reports: ScenarioReport[] = []
const started = performance.now()
for (const scenario of runs === 0 ? [] : scenarios) {
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
const processRows: ChaosRow[] = []
const processDetails: string[] = []
if (processRuns > 0 && only === undefined) {
  for (const scenario of ['process-kill', 'fault-proxy'] as const) {
    process.stderr.write(`${scenario}: ${processRuns} runs\n`)
    const injected: ProcessRunReport[] = []
    processRows.push(
      await runProcessChaos({
        scenario,
        seed,
        runs: processRuns,
        onRun: (report) => {
          injected.push(report)
          // Kill timing is not reproducible from the seed: say what went wrong now.
          if (report.figures.problems.length > 0)
            process.stderr.write(
              `\n${scenario}: run ${report.seed} failed (kills ${JSON.stringify(report.kills)}, ` +
                `proxy faults ${JSON.stringify(report.proxyFaults)}):\n` +
                `${report.figures.problems.map((p) => `  ${p}`).join('\n')}\n`,
            )
        },
      }),
    )
    processDetails.push(
      `${scenario}: SIGKILLs ${tally(injected.map((r) => r.kills))}; ` +
        `proxy faults ${tally(injected.map((r) => r.proxyFaults))}`,
    )
  }
}
const rows = [...reports.map((r) => r.row), ...processRows]
const seconds = (performance.now() - started) / 1000

if (json) {
  process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`)
} else {
  process.stdout.write(
    `VeloSync chaos: ${runs} runs per scenario, seed ${seed}, ${seconds.toFixed(0)} s\n\n` +
      `${formatChaosTable(rows)}\n\n` +
      `${[formatChaosDetails(reports), ...processDetails].filter(Boolean).join('\n')}\n`,
  )
}
// A counterexample without a safety figure is a run that threw: a failure too.
process.exitCode =
  reports.some((r) => r.counterexample !== undefined) ||
  rows.some((row) => safetyViolations(row) > 0)
    ? 1
    : 0

/** "12 (random 5, mid-write 7)": the total of some counts by kind, then each kind. */
function tally(
  counts: ReadonlyArray<Readonly<Record<string, number>>>,
): string {
  const byKind = new Map<string, number>()
  for (const count of counts)
    for (const [kind, n] of Object.entries(count))
      byKind.set(kind, (byKind.get(kind) ?? 0) + n)
  const total = [...byKind.values()].reduce((sum, n) => sum + n, 0)
  if (total === 0) return '0'
  const kinds = [...byKind]
    .sort((a, b) => b[1] - a[1])
    .map(([kind, n]) => `${kind} ${n}`)
  return `${total} (${kinds.join(', ')})`
}

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
