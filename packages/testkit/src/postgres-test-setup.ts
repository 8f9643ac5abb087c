/*
 * PostgreSQL for the test run. Vitest runs the default export once before all tests
 * (`globalSetup` in vitest.config.ts): it uses `VELOSYNC_TEST_PG_URL` when set, else starts
 * a throwaway cluster (see postgres-cluster.ts) and stops it after the run. When neither
 * works, the PostgreSQL tests are skipped loudly, naming why; with `CI=true` that is an
 * error instead, so CI can never pass without running them.
 */
import { inject } from 'vitest'
import type { TestProject } from 'vitest/node'
import { startPostgresCluster } from './postgres-cluster.js'

/** What the test run knows about PostgreSQL: a server URL, or why there is none. */
export type PostgresForTests =
  | { readonly url: string; readonly skipReason?: undefined }
  | { readonly url?: undefined; readonly skipReason: string }

declare module 'vitest' {
  export interface ProvidedContext {
    velosyncPostgres: PostgresForTests
  }
}

/** The environment variable naming an existing server for the tests. */
export const TEST_PG_URL_ENV = 'VELOSYNC_TEST_PG_URL'

/** Vitest global setup: provides {@link PostgresForTests}; returns the teardown. */
export default async function setup(
  project: TestProject,
): Promise<(() => Promise<void>) | undefined> {
  const given = process.env[TEST_PG_URL_ENV]
  if (given !== undefined && given !== '') {
    project.provide('velosyncPostgres', { url: given })
    return undefined
  }
  try {
    const cluster = await startPostgresCluster()
    project.provide('velosyncPostgres', { url: cluster.url })
    return () => cluster.stop()
  } catch (error) {
    const skipReason = `no ${TEST_PG_URL_ENV} and no throwaway cluster: ${(error as Error).message}`
    if (process.env.CI === 'true') {
      throw new Error(`CI must run the PostgreSQL suites, but ${skipReason}`, {
        cause: error,
      })
    }
    process.stderr.write(
      `\n!!! PostgreSQL tests will be SKIPPED: ${skipReason}\n!!! Set ${TEST_PG_URL_ENV}=postgres://... to run them.\n\n`,
    )
    project.provide('velosyncPostgres', { skipReason })
    return undefined
  }
}

/**
 * In a test file: the PostgreSQL server of this run, or why there is none (the skip is
 * also announced on stderr, once per file that asks).
 */
export function postgresForTests(): PostgresForTests {
  const provided = inject('velosyncPostgres')
  if (provided.url === undefined) {
    process.stderr.write(
      `!!! skipping PostgreSQL tests: ${provided.skipReason}\n`,
    )
  }
  return provided
}
