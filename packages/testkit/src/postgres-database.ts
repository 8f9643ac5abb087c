/*
 * A database of its own on a PostgreSQL server, for a test or a benchmark run that starts
 * `velosync serve --postgres` processes (they take a URL, not a schema), dropped afterwards.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'

/** A database made by {@link createTemporaryDatabase}. */
export interface TemporaryDatabase {
  /** The server URL with this database as its path. */
  readonly url: string
  /** Drops the database, ending any session still connected to it. Idempotent. */
  drop(): Promise<void>
}

/**
 * Creates an empty database named `<prefix>_<random hex>` on the server of `serverUrl`
 * (whose role needs `CREATEDB`).
 */
export async function createTemporaryDatabase(
  serverUrl: string,
  prefix = 'vs_tmp',
): Promise<TemporaryDatabase> {
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(prefix)) {
    throw new Error(
      `prefix must be a short lowercase identifier, got ${prefix}`,
    )
  }
  const name = `${prefix}_${randomBytes(6).toString('hex')}`
  await onServer(serverUrl, `CREATE DATABASE ${name}`)
  const url = new URL(serverUrl)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: () =>
      onServer(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  }
}

async function onServer(serverUrl: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl })
  await client.connect()
  try {
    await client.query(statement)
  } finally {
    await client.end()
  }
}
