/** Runs the built `velosync` command as a user runs it. Needs `npm run build`. */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test as base } from 'vitest'
import { MAIN } from './serve-processes.js'

export {
  MAIN,
  killServes,
  serve,
  serveMany,
  type Served,
} from './serve-processes.js'

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
