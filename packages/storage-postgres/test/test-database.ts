/** PostgreSQL for this package's tests: one fresh schema per store, dropped afterwards. */
import pg from 'pg'
import { postgresForTests } from '@velosync/testkit/postgres-test-setup'

/** The run's PostgreSQL URL, or why the tests are skipped. */
export const postgres = postgresForTests()

let counter = 0

/** A schema name no other test (or test process) uses. */
export function uniqueSchema(label: string): string {
  return `vs_${label}_${process.pid}_${++counter}`
}

/** Drops a test schema and everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  await withClient((client) =>
    client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`),
  )
}

/** Runs `work` on a fresh connection of its own, closed afterwards. */
export async function withClient<T>(
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: postgres.url })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}
