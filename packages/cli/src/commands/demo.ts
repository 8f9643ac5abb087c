import type { KernelBackend } from '@velosync/core'
import { Option, type Command } from 'commander'
import { integerInRange } from '../parse-options.js'
import { runLocalDemo } from './local-demo.js'
import { runSyncDemo } from './sync-demo.js'

/** `--docs` when not given: the sync story stays short; the local demo shows search speed. */
const DEFAULT_SYNC_DOCS = 2_000
const DEFAULT_LOCAL_DOCS = 20_000

/** `velosync demo` options as commander hands them over. */
interface DemoFlags {
  readonly docs?: number
  readonly dims: number
  readonly top: number
  readonly seed: number
  readonly keep: boolean
  readonly local: boolean
  readonly synchronous: 'full' | 'normal'
  readonly backend: 'auto' | KernelBackend
}

/** Registers `velosync demo`: the sync story, or with `--local` the one-device demo. */
export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'Show the whole sync story in temporary directories: a server, two devices writing ' +
        'offline, a conflict and its resolution, echo suppression, equal digests, search. ' +
        'With --local: one device, no server (write, search, compact)',
    )
    .addOption(
      new Option(
        '--docs <count>',
        `documents (default: ${DEFAULT_SYNC_DOCS}; ${DEFAULT_LOCAL_DOCS} with --local)`,
      ).argParser(integerInRange(1, 1_000_000)),
    )
    .addOption(
      new Option('--dims <n>', 'vector dimensions')
        .argParser(integerInRange(1, 4096))
        .default(384),
    )
    .addOption(
      new Option('-k, --top <k>', 'hits per search')
        .argParser(integerInRange(1, 100))
        .default(5),
    )
    .addOption(
      new Option('--seed <n>', 'seed of the generated data')
        .argParser(integerInRange(0, 2 ** 31 - 1))
        .default(1),
    )
    .addOption(
      new Option('--synchronous <mode>', 'SQLite synchronous setting')
        .choices(['full', 'normal'])
        .default('full'),
    )
    .addOption(
      new Option('--backend <kernel>', 'search kernel')
        .choices(['auto', 'wasm-simd', 'js'])
        .default('auto'),
    )
    .option('--keep', 'keep the stores and print their paths', false)
    .option('--local', 'the local-only demo: one device, no server', false)
    .action(async (flags: DemoFlags) => {
      const { local, docs, ...rest } = flags
      if (local) {
        runLocalDemo({ ...rest, docs: docs ?? DEFAULT_LOCAL_DOCS })
      } else {
        await runSyncDemo({ ...rest, docs: docs ?? DEFAULT_SYNC_DOCS })
      }
    })
}
