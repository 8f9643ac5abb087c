import { resolve } from 'node:path'
import type { ServerStore } from '@velosync/core'
import { PostgresServerStore } from '@velosync/storage-postgres'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import { InvalidArgumentError, Option } from 'commander'

/** Environment variable read by `--postgres` (keeps a password out of `ps` output). */
export const POSTGRES_URL_ENV = 'VELOSYNC_POSTGRES_URL'

/** Where a server command keeps its data: one SQLite file or one PostgreSQL database. */
export type ServerStoreLocation =
  | { readonly kind: 'sqlite'; readonly path: string }
  | {
      readonly kind: 'postgres'
      readonly url: string
      readonly poolSize?: number
    }

/**
 * The `--postgres <url>` option: checked while parsing, so a bad URL is a usage error that
 * says what a good one looks like. Conflicts with `--db`.
 */
export function postgresOption(what: string): Option {
  return new Option(
    '--postgres <url>',
    `${what} in PostgreSQL instead of an SQLite file (postgres://user:password@host:5432/database)`,
  )
    .env(POSTGRES_URL_ENV)
    .argParser(postgresUrl)
    .conflicts('db')
}

/** Parses a `postgres://` or `postgresql://` URL. */
export function postgresUrl(value: string): string {
  let url: URL | undefined
  try {
    url = new URL(value)
  } catch {
    url = undefined
  }
  if (
    url === undefined ||
    (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') ||
    url.hostname === ''
  ) {
    throw new InvalidArgumentError(
      'expected a PostgreSQL URL such as postgres://user:password@host:5432/database (percent-encode special characters in the password).',
    )
  }
  return value
}

/** The location the parsed options name: `--postgres` if given, else the `--db` file. */
export function storeLocation(options: {
  readonly db: string
  readonly postgres?: string
  readonly pgPoolSize?: number
}): ServerStoreLocation {
  if (options.postgres === undefined) {
    return { kind: 'sqlite', path: resolve(options.db) }
  }
  return {
    kind: 'postgres',
    url: options.postgres,
    ...(options.pgPoolSize === undefined
      ? {}
      : { poolSize: options.pgPoolSize }),
  }
}

/** Opens the store at `location` (created or migrated if needed). */
export async function openServerStore(
  location: ServerStoreLocation,
): Promise<ServerStore> {
  return location.kind === 'sqlite'
    ? SqliteServerStore.open({ path: location.path })
    : PostgresServerStore.open({
        url: location.url,
        ...(location.poolSize === undefined
          ? {}
          : { poolSize: location.poolSize }),
      })
}

/** How to name the location to a person: the file, or the URL without its password. */
export function describeLocation(location: ServerStoreLocation): string {
  if (location.kind === 'sqlite') return location.path
  const url = new URL(location.url)
  if (url.password !== '') url.password = '***'
  return url.toString()
}

/** The options that point a command at the same store, for hints in its output. */
export function locationArgs(location: ServerStoreLocation): string {
  return location.kind === 'sqlite'
    ? `--db ${location.path}`
    : '--postgres <url>'
}
