import type { ChaosRow } from './checker.js'
import type { ScenarioReport } from './scenarios.js'

const COLUMNS: ReadonlyArray<[string, (row: ChaosRow) => string]> = [
  ['scenario', (r) => r.scenario],
  ['runs', (r) => String(r.runs)],
  ['operations', (r) => String(r.operations)],
  ['lost', (r) => String(r.lost)],
  ['duplicated', (r) => String(r.duplicated)],
  ['diverged', (r) => String(r.diverged)],
  ['stuck', (r) => String(r.stuck)],
  ['false conflicts', (r) => String(r.falseConflicts)],
  ['missed conflicts', (r) => String(r.missedConflicts)],
  ['converge p50 ms', (r) => r.convergeMsP50.toFixed(1)],
  ['converge p99 ms', (r) => r.convergeMsP99.toFixed(1)],
]

/** The report table of `npm run chaos`: one line per scenario, columns aligned. */
export function formatChaosTable(rows: readonly ChaosRow[]): string {
  const cells = [
    COLUMNS.map(([title]) => title),
    ...rows.map((row) => COLUMNS.map(([, cell]) => cell(row))),
  ]
  const widths = COLUMNS.map((_, i) =>
    Math.max(...cells.map((line) => (line[i] as string).length)),
  )
  return cells
    .map((line) =>
      line
        .map((cell, i) =>
          i === 0
            ? cell.padEnd(widths[i] as number)
            : cell.padStart(widths[i] as number),
        )
        .join('  '),
    )
    .join('\n')
}

/**
 * What the network did and the clock-skew measure, one line per scenario: the context a
 * reader needs to judge the table (a scenario whose faults never fired proves little).
 */
export function formatChaosDetails(reports: readonly ScenarioReport[]): string {
  return reports
    .map((r) => {
      const f = r.faults
      return (
        `${r.row.scenario}: ${f.requests} requests (${f.dropRequest} dropped, ` +
        `${f.dropResponse} answers lost, ${f.duplicate} duplicated, ${f.delay} delayed, ` +
        `${f.corruptRequest + f.corruptResponse} corrupted, ${f.partitioned} partitioned), ` +
        `${r.failedRounds} failed rounds; server vs oracle diverged ${r.oracleDiverged}; ` +
        `skewed clock won against a write > 60 s after its acceptance: ${r.skew.wonBySkewed}/${r.skew.laterConflicts}`
      )
    })
    .join('\n')
}
