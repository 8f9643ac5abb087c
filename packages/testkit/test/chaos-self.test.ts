/*
 * The harness can fail: each test breaks one guarantee on purpose, by injection (a store
 * or transport wrapper; no production code path changes), and asserts that the chaos
 * report shows it. A harness that stayed at 0 here would prove nothing elsewhere.
 */
import type { SyncTransport } from '@velosync/client'
import type { ServerStore } from '@velosync/core'
import Database from 'better-sqlite3'
import { describe, expect, it } from 'vitest'
import {
  NETWORK_FAULTS,
  SCENARIOS,
  runScenario,
  type ChaosInjection,
  type ScenarioConfig,
} from '../src/chaos/index.js'

const RUNS = 30
const SEED = 7

const faulty = SCENARIOS.find(
  (s) => s.name === 'network-faults',
) as ScenarioConfig
/** More replays than the regular scenario, so a broken exactly-once shows quickly. */
const replaying: ScenarioConfig = {
  ...faulty,
  name: 'self-test-replays',
  faults: { ...NETWORK_FAULTS, duplicate: 0.15, delay: 0.15 },
  restarts: false,
}

function report(config: ScenarioConfig, injection: ChaosInjection) {
  return runScenario(config, {
    runs: RUNS,
    seed: SEED,
    shrinkRuns: 0,
    injection,
  })
}

/** Calls `before` ahead of every push of `store`; everything else passes through. */
function beforePush(store: ServerStore, before: () => void): ServerStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver)
      if (typeof value !== 'function') return value
      const method = value as (...args: unknown[]) => unknown
      return property === 'push'
        ? (...args: unknown[]) => {
            before()
            return method.apply(target, args)
          }
        : method.bind(target)
    },
  })
}

/** A transport whose `sync` is replaced; `ack` passes through. */
function withSync(
  transport: SyncTransport,
  sync: SyncTransport['sync'],
): SyncTransport {
  return { sync, ack: (request, options) => transport.ack(request, options) }
}

/** Pretends a failed push was committed, so the client confirms (drops) its entries. */
function confirmFailedPushes(transport: SyncTransport): SyncTransport {
  return withSync(transport, async (request, options) => {
    try {
      return await transport.sync(request, options)
    } catch (error) {
      if (request.push.length === 0) throw error
      return {
        protocol: request.protocol,
        collections: [],
        results: [],
        appliedThroughLsn: Math.max(...request.push.map((op) => op.lsn)),
        changes: [],
        cursor: request.cursor,
        hasMore: false,
        skippedEchoes: 0,
        head: request.cursor,
      }
    }
  })
}

describe('chaos harness self-tests: a broken guarantee shows in the report', () => {
  it('a server that forgets what it applied (no idempotency check) re-applies replays: duplicated > 0', async () => {
    const connections: Database.Database[] = []
    const result = await report(replaying, {
      wrapStore: (store, path) => {
        // A second connection to the server's file wipes the exactly-once state before
        // every push, as a store without the check would behave.
        const db = new Database(path)
        connections.push(db)
        return beforePush(store, () => {
          db.exec(
            'UPDATE vs_replicas SET applied_lsn = 0; DELETE FROM vs_replica_ops',
          )
        })
      },
    })
    for (const db of connections) db.close()
    expect(result.row.duplicated).toBeGreaterThan(0)
    expect(result.counterexample?.problems.join('\n')).toMatch(/duplicated:/)
  })

  it('a device that advances its cursor past changes it did not apply: diverged > 0', async () => {
    const result = await report(faulty, {
      wrapTransport: (transport) =>
        withSync(transport, async (request, options) => {
          const response = await transport.sync(request, options)
          // Keep the cursor, lose the last change: as if the cursor were committed first
          // and the apply never happened.
          return { ...response, changes: response.changes.slice(0, -1) }
        }),
    })
    expect(result.row.diverged).toBeGreaterThan(0)
  })

  it('a device that drops outbox entries before the server confirms them: lost > 0', async () => {
    const result = await report(faulty, {
      wrapTransport: confirmFailedPushes,
    })
    expect(result.row.lost).toBeGreaterThan(0)
  })

  it('a server without a clock bound lets a 2099 clock win later conflicts: the skew measure shows it', async () => {
    const year2099 = SCENARIOS.find(
      (s) => s.name === 'clock-2099',
    ) as ScenarioConfig
    const result = await report(
      { ...year2099, maxClockLeadMs: Number.MAX_SAFE_INTEGER },
      {},
    )
    expect(result.skew.wonBySkewed).toBeGreaterThan(0)
  })

  it('a failure shrinks to a smaller counterexample with the problems spelled out', async () => {
    const options = {
      runs: RUNS,
      seed: SEED,
      injection: { wrapTransport: confirmFailedPushes },
    }
    const found = await runScenario(faulty, { ...options, shrinkRuns: 0 })
    const shrunk = await runScenario(faulty, { ...options, shrinkRuns: 100 })
    const steps = (r: typeof found) => r.counterexample?.run.steps.length ?? 0
    expect(steps(found)).toBeGreaterThan(0)
    expect(steps(shrunk)).toBeLessThan(steps(found))
    expect(shrunk.counterexample?.problems.join('\n')).toMatch(/lost:/)
  })
})
