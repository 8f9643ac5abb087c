/*
 * A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` into a temporary
 * directory, `pg_ctl start` on a free port of 127.0.0.1, and on `stop()` an immediate
 * shutdown and the directory removed. No Docker: Debian's PostgreSQL binaries.
 */
import { execFile } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { delimiter, join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Where Debian puts the server binaries (`/usr/lib/postgresql/<major>/bin`). */
const DEBIAN_PG_ROOT = '/usr/lib/postgresql'

/** Options of {@link startPostgresCluster}. */
export interface PostgresClusterOptions {
  /** The directory holding `initdb` and `pg_ctl`. Default: {@link findPostgresBinDir}. */
  readonly binDir?: string
  /**
   * Turn durability off (`fsync`, `synchronous_commit`, `full_page_writes`): several times
   * faster commits, and a crash of the machine loses the cluster, which for a throwaway
   * test cluster is fine. Default `true`.
   */
  readonly fast?: boolean
  /** `max_connections`. Default 200 (several server processes, each with a pool). */
  readonly maxConnections?: number
}

/** A running throwaway cluster. */
export interface PostgresCluster {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication on loopback). */
  readonly url: string
  readonly port: number
  readonly dataDir: string
  /** Stops the server (immediate mode) and removes the data directory. Idempotent. */
  stop(): Promise<void>
}

/**
 * Starts a PostgreSQL cluster in a new temporary directory on a free port of 127.0.0.1.
 *
 * @remarks
 * `initdb` and `pg_ctl` refuse to run as root, so under root they run as the `postgres`
 * user (`runuser -u postgres`), in a directory owned by it. The Unix socket goes into the
 * data directory, so nothing outside it is touched.
 *
 * @throws an `Error` naming the missing binary, user or the failing command and its output.
 */
export async function startPostgresCluster(
  options: PostgresClusterOptions = {},
): Promise<PostgresCluster> {
  const binDir = options.binDir ?? findPostgresBinDir()
  if (binDir === undefined) {
    throw new Error(
      process.env[PG_BIN_DIR_ENV]
        ? `${PG_BIN_DIR_ENV}=${process.env[PG_BIN_DIR_ENV]} has no initdb and pg_ctl`
        : `PostgreSQL server binaries (initdb, pg_ctl) are neither on PATH nor under ${DEBIAN_PG_ROOT}/*/bin; install Debian's postgresql package or set ${PG_BIN_DIR_ENV}`,
    )
  }
  const asRoot = process.getuid?.() === 0
  const owner = asRoot ? await postgresUser() : undefined
  // Under root the postgres user must reach the directory: TMPDIR may point somewhere
  // private to root, /tmp never does.
  const dataDir = await mkdtemp(
    join(owner === undefined ? tmpdir() : '/tmp', 'velosync-pg-'),
  )
  const command = async (binary: string, args: string[]): Promise<void> => {
    const file = join(binDir, binary)
    try {
      if (owner === undefined) await run(file, args)
      else await run('runuser', ['-u', 'postgres', '--', file, ...args])
    } catch (error) {
      const { stderr, stdout } = error as { stderr?: string; stdout?: string }
      throw new Error(
        `${binary} ${args.join(' ')} failed: ${(stderr || stdout || (error as Error).message).trim()}`,
        { cause: error },
      )
    }
  }
  let started = false
  const stop = async (): Promise<void> => {
    if (started) {
      started = false
      await command('pg_ctl', ['-D', dataDir, '-m', 'immediate', 'stop'])
    }
    await rm(dataDir, { recursive: true, force: true })
  }
  try {
    if (owner !== undefined) await chown(dataDir, owner.uid, owner.gid)
    await command('initdb', [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '--auth=trust',
      '--encoding=UTF8',
      '--locale=C',
      '--no-sync',
    ])
    const port = await freePort()
    const settings = [
      `-p ${port}`,
      "-c listen_addresses='127.0.0.1'",
      `-c unix_socket_directories='${dataDir}'`,
      `-c max_connections=${options.maxConnections ?? 200}`,
      ...((options.fast ?? true)
        ? [
            '-c fsync=off',
            '-c synchronous_commit=off',
            '-c full_page_writes=off',
          ]
        : []),
    ]
    await command('pg_ctl', [
      '-D',
      dataDir,
      '-l',
      join(dataDir, 'server.log'),
      '-o',
      settings.join(' '),
      '-w',
      '-t',
      '60',
      'start',
    ])
    started = true
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      port,
      dataDir,
      stop,
    }
  } catch (error) {
    await stop().catch(() => undefined)
    throw error
  }
}

/** Names the directory of `initdb` and `pg_ctl` when they are elsewhere (Homebrew, …). */
export const PG_BIN_DIR_ENV = 'VELOSYNC_PG_BIN_DIR'

/**
 * The directory with `initdb` and `pg_ctl`: `VELOSYNC_PG_BIN_DIR` if set (`undefined`
 * when it lacks them), else the first `PATH` entry that has both, else the newest
 * `/usr/lib/postgresql/<major>/bin`; `undefined` when there is none.
 */
export function findPostgresBinDir(): string | undefined {
  const has = (dir: string): boolean =>
    existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))
  const given = process.env[PG_BIN_DIR_ENV]
  if (given !== undefined && given !== '') {
    return has(given) ? given : undefined
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && has(dir)) return dir
  }
  if (!existsSync(DEBIAN_PG_ROOT)) return undefined
  const majors = readdirSync(DEBIAN_PG_ROOT)
    .filter((name) => /^\d+$/.test(name))
    .sort((a, b) => Number(b) - Number(a))
  return majors
    .map((major) => join(DEBIAN_PG_ROOT, major, 'bin'))
    .find((dir) => has(dir))
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  try {
    const [uid, gid] = await Promise.all(
      ['-u', '-g'].map(async (flag) =>
        Number((await run('id', [flag, 'postgres'])).stdout.trim()),
      ),
    )
    return { uid: uid as number, gid: gid as number }
  } catch (error) {
    throw new Error(
      `running as ${userInfo().username}, and initdb refuses root, but there is no postgres user to run it as (Debian's postgresql package creates one)`,
      { cause: error },
    )
  }
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port =
        typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}
