/** Runs the built `velosync` command as a user runs it. Needs `npm run build`. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test as base } from 'vitest'

export const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url))

/** How long one CLI run may take before it is killed (and the test fails). */
const RUN_TIMEOUT_MS = 60_000

/** Vitest `test` with a `tmpDir` fixture, removed after the test. */
export const test = base.extend<{ tmpDir: string }>({
  // eslint-disable-next-line no-empty-pattern
  tmpDir: async ({}, use) => {
    const dir = mkdtempSync(join(tmpdir(), 'velosync-cli-test-'))
    await use(dir)
    rmSync(dir, { recursive: true, force: true })
  },
})

export interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs the CLI to completion. A run that outlives {@link RUN_TIMEOUT_MS} is killed, so a
 * hung command cannot outlive its test (one once kept allocating after the test gave up).
 */
export function velosync(...args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS)
    let stdout = ''
    let stderr = ''
    child.stdout
      .setEncoding('utf8')
      .on('data', (chunk: string) => (stdout += chunk))
    child.stderr
      .setEncoding('utf8')
      .on('data', (chunk: string) => (stderr += chunk))
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

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
