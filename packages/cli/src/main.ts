#!/usr/bin/env node
/**
 * The `velosync` command. Each command lives in `commands/`; this file wires them into
 * one commander program and turns every failure into a message on stderr and a non-zero
 * exit code.
 *
 * Exit codes: 0 success (and `--help`, `--version`); 1 a usage error (commander's message)
 * or a failed command (`error: …`).
 */
import { createRequire } from 'node:module'
import { isVeloSyncError } from '@velosync/core'
import { Command, CommanderError } from 'commander'
import { addDemoCommand } from './commands/demo.js'
import { addServeCommand } from './commands/serve.js'
import { addStatusCommand } from './commands/status.js'
import { addTokenCommand } from './commands/token.js'

const { version } = createRequire(import.meta.url)('../package.json') as {
  version: string
}

/** The program with every command registered (commands inherit its settings). */
function createProgram(): Command {
  const program = new Command('velosync')
    .description('VeloSync: offline-first vector database sync engine')
    .version(version, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand(false)
    // Throw instead of calling process.exit, so main() chooses the exit code and pending
    // output is flushed; commander has already written its message to stderr.
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .showSuggestionAfterError()
  addServeCommand(program)
  addTokenCommand(program)
  addDemoCommand(program)
  addStatusCommand(program)
  return program
}

/** Runs the CLI on `argv` (as in `process.argv`) and returns the exit code. */
async function main(argv: readonly string[]): Promise<number> {
  try {
    await createProgram().parseAsync([...argv])
    return 0
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode
    const message = error instanceof Error ? error.message : String(error)
    const code = isVeloSyncError(error) ? ` [${error.code}]` : ''
    process.stderr.write(`error: ${message}${code}\n`)
    return 1
  }
}

process.exitCode = await main(process.argv)
