/**
 * Runs `velosync serve` processes from the build, for tests and benchmarks (no vitest
 * import, so a bench script can use it too). Needs `npm run build`.
 *
 * @example
 * ```ts
 * const servers = await serveMany(3, 'postgres://postgres@127.0.0.1:5432/bench', '--open')
 * // … devices talk to servers[i % 3].url …
 * killServes()
 * ```
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** The built CLI entry point. */
export const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url))

/** A running `velosync serve` and what it printed so far. */
export interface Served {
  readonly child: ChildProcessWithoutNullStreams
  readonly url: string
  readonly output: { stdout: string; stderr: string }
  /** Resolves with the exit code once the process has exited. */
  readonly exited: Promise<number | null>
}

const running = new Set<ChildProcessWithoutNullStreams>()

/**
 * Kills every server {@link serve} started that is still running: call it in `afterEach`,
 * so a failed assertion cannot leave a server behind.
 */
export function killServes(): void {
  for (const child of running) child.kill('SIGKILL')
  running.clear()
}

/**
 * Starts `velosync serve --port 0 …args` and resolves once it printed its URL. Several
 * with the same `--postgres` URL are several stateless processes on one database (see
 * {@link serveMany}).
 */
export function serve(...args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [MAIN, 'serve', '--port', '0', ...args])
  running.add(child)
  const output = { stdout: '', stderr: '' }
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      running.delete(child)
      resolve(code)
    }),
  )
  return new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output.stdout += chunk
      const url = /listening on (http:\/\/\S+)/.exec(output.stdout)?.[1]
      // The banner's last line: everything before it has arrived too.
      if (url !== undefined && /^ {2}stop {3}/m.test(output.stdout)) {
        resolve({ child, url, output, exited })
      }
    })
    child.stderr
      .setEncoding('utf8')
      .on('data', (chunk: string) => (output.stderr += chunk))
    void exited.then((code) =>
      reject(
        new Error(
          `serve exited with ${code} before listening:\n${output.stderr}`,
        ),
      ),
    )
  })
}

/** Starts `count` server processes on one PostgreSQL database, concurrently. */
export function serveMany(
  count: number,
  postgresUrl: string,
  ...args: string[]
): Promise<Served[]> {
  return Promise.all(
    Array.from({ length: count }, () =>
      serve('--postgres', postgresUrl, ...args),
    ),
  )
}
