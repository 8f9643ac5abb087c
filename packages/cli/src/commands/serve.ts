import { lstatSync, rmSync } from 'node:fs'
import { createSyncServer } from '@velosync/server'
import {
  PostgresChangeSignal,
  PostgresServerStore,
} from '@velosync/storage-postgres'
import { Option, type Command } from 'commander'
import { pino, type Level } from 'pino'
import { integerInRange } from '../parse-options.js'
import {
  describeLocation,
  locationArgs,
  openServerStore,
  postgresOption,
  storeLocation,
} from '../server-store-option.js'

/** Default `--db` of `serve` and `token`: a file in the working directory. */
export const DEFAULT_SERVER_DB = 'velosync-server.db'
/** Default `--port` of `serve`. */
export const DEFAULT_PORT = 8787

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace']

/** Options of `velosync serve` (after parsing and validation). */
export interface ServeOptions {
  /** The server's SQLite file. Default `./velosync-server.db`. */
  readonly db: string
  /**
   * A PostgreSQL URL: the store lives there instead (the process keeps no state of its
   * own, so several may serve one database). Default: none (SQLite). Also read from
   * `VELOSYNC_POSTGRES_URL`.
   */
  readonly postgres?: string
  /** Connections to PostgreSQL this process keeps at most. Default: the store's (10). */
  readonly pgPoolSize?: number
  /** TCP port; 0 picks a free one. Default 8787. */
  readonly port: number
  /** Interface to listen on. Default `127.0.0.1` (this machine only). */
  readonly host: string
  /** Open mode: no tokens, the device is named by `X-VeloSync-Device`. Default false. */
  readonly open: boolean
  /** Largest request body in MiB. Default: the server's (32). */
  readonly maxBodyMb?: number
  /** How long tombstones are kept for silent devices, in days. Default: the server's (30). */
  readonly tombstoneRetentionDays?: number
  /** pino level, or `silent`. Default `info`. */
  readonly logLevel: Level | 'silent'
}

/** Registers `velosync serve`. */
export function addServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'Run a sync server on an SQLite file or a PostgreSQL database; devices authenticate with tokens from `velosync token create`',
    )
    .option('--db <path>', 'SQLite file of the server', DEFAULT_SERVER_DB)
    .addOption(postgresOption('keep the store'))
    .addOption(
      new Option(
        '--pg-pool-size <n>',
        'connections to PostgreSQL per process (default: 10)',
      ).argParser(integerInRange(1, 1000)),
    )
    .addOption(
      new Option('--port <n>', 'TCP port (0: any free port)')
        .argParser(integerInRange(0, 65_535))
        .default(DEFAULT_PORT),
    )
    .option(
      '--host <host>',
      'interface to listen on (0.0.0.0 exposes it to the network)',
      '127.0.0.1',
    )
    .option(
      '--open',
      'open mode for local development: no tokens, any client may act as any device',
      false,
    )
    .addOption(
      new Option(
        '--max-body-mb <n>',
        'largest request body in MiB (default: 32)',
      ).argParser(integerInRange(1, 1024)),
    )
    .addOption(
      new Option(
        '--tombstone-retention-days <n>',
        'days a deletion is kept for devices that have not synced (default: 30)',
      ).argParser(integerInRange(0, 36_500)),
    )
    .addOption(
      new Option('--log-level <level>', 'pino log level (logs go to stderr)')
        .choices([...LOG_LEVELS, 'silent'])
        .default('info'),
    )
    .action((options: ServeOptions) => serve(options))
}

/**
 * Runs the server until SIGINT or SIGTERM, then stops listening (waiting for requests in
 * flight), closes the store and resolves.
 *
 * @throws `storage_failure` when the store cannot be opened; the listener's error (e.g.
 *   `EADDRINUSE`) when the port is taken.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const location = storeLocation(options)
  const where = describeLocation(location)
  // Logs go to stderr so that stdout stays the few human lines below (the URL, shutdown).
  const logger = pino(
    { name: 'velosync', level: options.logLevel },
    pino.destination({ dest: 2, sync: true }),
  )
  // A server that never started must not leave behind a store it created. lstat, not
  // exists: a dangling symlink is something the user made, not ours to remove.
  const created =
    location.kind === 'sqlite' &&
    location.path !== ':memory:' &&
    lstatSync(location.path, { throwIfNoEntry: false }) === undefined
  const store = await openServerStore(location)
  // Several processes share a PostgreSQL store: live announcements cross them by
  // LISTEN/NOTIFY. On SQLite the server's in-process default is all there is.
  let changeSignal: PostgresChangeSignal | undefined
  let listening: { port: number; close(): Promise<void> }
  try {
    if (store instanceof PostgresServerStore) {
      changeSignal = await PostgresChangeSignal.open({
        store,
        onError: (error) =>
          logger.warn({ err: error }, 'live change signal (LISTEN/NOTIFY)'),
      })
    }
    const server = createSyncServer({
      store,
      ...(changeSignal === undefined ? {} : { changeSignal }),
      auth: options.open ? { mode: 'open' } : { mode: 'token' },
      logger,
      ...(options.maxBodyMb === undefined
        ? {}
        : { maxBodyBytes: options.maxBodyMb * 1024 * 1024 }),
      ...(options.tombstoneRetentionDays === undefined
        ? {}
        : {
            tombstoneRetentionMs:
              options.tombstoneRetentionDays * 24 * 60 * 60 * 1000,
          }),
    })
    listening = await server.listen({ port: options.port, host: options.host })
  } catch (error) {
    await changeSignal?.close()
    await store.close()
    if (created) {
      for (const suffix of ['', '-wal', '-shm'])
        rmSync(`${location.path}${suffix}`, { force: true })
    }
    throw error
  }

  // An IPv6 literal needs brackets in a URL.
  const host = options.host.includes(':') ? `[${options.host}]` : options.host
  const url = `http://${host}:${listening.port}`
  if (options.open) {
    process.stderr.write(
      [
        '',
        '  !!! OPEN MODE: no authentication. Any client that can reach this port can read',
        '  !!! every document and write as any device (X-VeloSync-Device header).',
        '  !!! Use it for local development only; never expose it to a network.',
        '',
        '',
      ].join('\n'),
    )
  }
  // One write, so that a reader waiting for the URL also gets the lines after it.
  console.log(
    [
      `VeloSync server listening on ${url}`,
      `  store  ${where}`,
      options.open
        ? '  auth   open (devices name themselves)'
        : `  auth   device tokens; create one with: velosync token create --device <name> ${locationArgs(location)}`,
      '  stop   Ctrl-C (or SIGTERM)',
    ].join('\n'),
  )

  await new Promise<void>((done) => {
    const stop = (signal: NodeJS.Signals): void => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      // A second signal while shutting down falls through to Node's default: exit now.
      console.log(`\n${signal}: stopping (finishing requests in flight)`)
      listening
        .close()
        .catch((error: unknown) =>
          logger.error({ err: error }, 'closing the listener failed'),
        )
        .then(() => changeSignal?.close())
        .catch((error: unknown) =>
          logger.error({ err: error }, 'closing the change signal failed'),
        )
        .then(() => store.close())
        .catch((error: unknown) =>
          logger.error({ err: error }, 'closing the store failed'),
        )
        .finally(() => {
          console.log('stopped')
          done()
        })
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}
