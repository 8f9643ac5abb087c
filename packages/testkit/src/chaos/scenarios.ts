import fc from 'fast-check'
import {
  safetyViolations,
  summarizeRuns,
  type ChaosRow,
  type RunFigures,
} from './checker.js'
import {
  NO_FAULTS,
  type FaultCounts,
  type FaultRates,
} from './fault-network.js'
import {
  SIM_START_MS,
  chaosRunArb,
  runChaos,
  type ChaosInjection,
  type ChaosRun,
  type ScenarioConfig,
} from './simulation.js'

const DAY_MS = 24 * 60 * 60 * 1000
const HOUR_MS = 60 * 60 * 1000

/** Every network fault at once, at rates that still let most rounds through. */
export const NETWORK_FAULTS: FaultRates = {
  dropRequest: 0.05,
  dropResponse: 0.08,
  duplicate: 0.06,
  delay: 0.05,
  corruptRequest: 0.02,
  corruptResponse: 0.02,
}

const base = {
  minDevices: 3,
  maxDevices: 10,
  maxSteps: 60,
  clockOffsetsMs: [0],
  clockJumps: false,
  tombstoneRetentionMs: HOUR_MS,
} as const

/** The scenarios `npm run chaos` runs, in report order. */
export const SCENARIOS: readonly ScenarioConfig[] = [
  {
    ...base,
    name: 'baseline',
    description: 'no faults: concurrent writes and sync rounds only',
    faults: NO_FAULTS,
    partitions: false,
    restarts: false,
  },
  {
    ...base,
    name: 'network-faults',
    description:
      'drop, duplicate, delay/reorder and corrupt requests and responses; partitions; restarts',
    faults: NETWORK_FAULTS,
    partitions: true,
    restarts: true,
  },
  {
    ...base,
    name: 'clock-skew-day',
    description: 'device clocks off by ±1 day, with network faults',
    faults: NETWORK_FAULTS,
    partitions: true,
    restarts: false,
    clockOffsetsMs: [0, DAY_MS, -DAY_MS],
  },
  {
    ...base,
    name: 'clock-2099',
    description: 'some device clocks set to the year 2099, with network faults',
    faults: NETWORK_FAULTS,
    partitions: true,
    restarts: false,
    clockOffsetsMs: [0, 0, Date.UTC(2099, 0, 1) - SIM_START_MS],
  },
  {
    ...base,
    name: 'clock-jumps',
    description:
      'device clocks jumping backwards (and forwards) mid-run, with restarts',
    faults: NETWORK_FAULTS,
    partitions: false,
    restarts: true,
    clockJumps: true,
  },
]

/** A failing run, shrunk, with the checker's explanation. */
export interface Counterexample {
  readonly run: ChaosRun
  readonly problems: readonly string[]
  /** fast-check's seed and path: `fc.assert(..., { seed, path })` replays it. */
  readonly seed: number
  readonly path: string | undefined
}

/** The figures of one scenario, plus what the network did and the clock-skew measure. */
export interface ScenarioReport {
  readonly row: ChaosRow
  readonly faults: FaultCounts
  readonly failedRounds: number
  /** Of the row's `diverged`: server digests that differ from the serial oracle. */
  readonly oracleDiverged: number
  readonly skew: {
    readonly laterConflicts: number
    readonly wonBySkewed: number
  }
  readonly counterexample?: Counterexample
}

/** Options of {@link runScenario}. */
export interface RunScenarioOptions {
  readonly runs: number
  /** fast-check seed. Default: random (printed in a counterexample). */
  readonly seed?: number
  /** Runs spent shrinking a failure (0: report it as found). Default 150. */
  readonly shrinkRuns?: number
  /** Breaks a guarantee on purpose (self-tests). */
  readonly injection?: ChaosInjection
}

/**
 * Runs `runs` simulations of a scenario under fast-check. The row sums the runs made
 * before the first failure (if any); a failure is shrunk and returned as a counterexample.
 */
export async function runScenario(
  config: ScenarioConfig,
  options: RunScenarioOptions,
): Promise<ScenarioReport> {
  const explored: RunFigures[] = []
  const faults: FaultCounts = {
    requests: 0,
    partitioned: 0,
    dropRequest: 0,
    dropResponse: 0,
    duplicate: 0,
    delay: 0,
    corruptRequest: 0,
    corruptResponse: 0,
  }
  const skew = { laterConflicts: 0, wonBySkewed: 0 }
  let failedRounds = 0
  let failing = false
  let shrinkRuns = options.shrinkRuns ?? 150
  /** The problems of the last failing run: the shrunk counterexample's, as it ran. */
  let lastFailure: readonly string[] = []
  const details = await fc.check(
    fc.asyncProperty(chaosRunArb(config), async (run) => {
      // Out of shrinking budget: call every further candidate a pass, so fast-check stops
      // with the smallest failure found so far.
      if (failing && shrinkRuns-- <= 0) return true
      let result: Awaited<ReturnType<typeof runChaos>>
      try {
        result = await runChaos(config, run, options.injection)
      } catch (error) {
        // The harness itself failed (or the system threw where it must not): a failure
        // to shrink and print like any other, not a run to count.
        const cause = (error as { cause?: { code?: string; message?: string } })
          .cause
        lastFailure = [
          `threw: ${(error as Error).stack ?? String(error)}` +
            (cause === undefined
              ? ''
              : `\ncause: ${cause.code ?? cause.message ?? ''}`),
        ]
        failing = true
        return false
      }
      const ok = safetyViolations(result.figures) === 0
      if (!failing) {
        // Runs made while shrinking are variations of the failure, not new samples.
        explored.push(result.figures)
        for (const key of Object.keys(faults) as Array<keyof FaultCounts>)
          faults[key] += result.faults[key]
        skew.laterConflicts += result.skew.laterConflicts
        skew.wonBySkewed += result.skew.wonBySkewed
        failedRounds += result.failedRounds
      }
      if (!ok) lastFailure = result.figures.problems
      failing ||= !ok
      return ok
    }),
    {
      numRuns: options.runs,
      ...(options.seed === undefined ? {} : { seed: options.seed }),
      endOnFailure: options.shrinkRuns === 0,
    },
  )
  const row = summarizeRuns(config.name, explored)
  const summary = {
    row,
    faults,
    failedRounds,
    oracleDiverged: explored.reduce((n, run) => n + run.oracleDiverged, 0),
    skew,
  }
  if (!details.failed || details.counterexample === null) return summary
  const [run] = details.counterexample
  return {
    ...summary,
    counterexample: {
      run,
      problems: lastFailure,
      seed: details.seed,
      path: details.counterexamplePath ?? undefined,
    },
  }
}
