import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { VeloSyncError, assertDeviceId } from '@velosync/core'
import { createToken, hashToken } from '@velosync/server'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import { InvalidArgumentError, type Command } from 'commander'
import { DEFAULT_SERVER_DB } from './serve.js'

/** What `velosync token create --json` prints. */
export interface CreatedToken {
  readonly device: string
  readonly token: string
  readonly store: string
}

/** Registers `velosync token create` and `velosync token revoke`. */
export function addTokenCommand(program: Command): void {
  const token = program
    .command('token')
    .description('Manage device tokens in a server store')
    .helpCommand(false)
  token
    .command('create')
    .description(
      'Create a token for a device (only its hash is stored) and print it once',
    )
    .requiredOption(
      '--device <name>',
      'the device id (letters, digits, _ and -; at most 64)',
      deviceName,
    )
    .option(
      '--db <path>',
      'the server store (SQLite file; created if missing)',
      DEFAULT_SERVER_DB,
    )
    .option('--json', 'print one JSON object instead of text')
    .action(async (options: { device: string; db: string; json?: true }) => {
      const created = await createDeviceToken(options.device, options.db)
      console.log(
        options.json === true
          ? JSON.stringify(created, null, 2)
          : formatCreatedToken(created),
      )
    })
  token
    .command('revoke')
    .description('Revoke every token of a device')
    .requiredOption('--device <name>', 'the device id', deviceName)
    .option('--db <path>', 'the server store (SQLite file)', DEFAULT_SERVER_DB)
    .action(async (options: { device: string; db: string }) => {
      const revoked = await revokeDeviceTokens(options.device, options.db)
      console.log(
        `Revoked ${revoked} token${revoked === 1 ? '' : 's'} of device ${options.device}; ` +
          'its requests now fail with 401 unauthorized.',
      )
    })
}

/** Validates `--device` while parsing, so a bad name is a usage error like any other. */
function deviceName(value: string): string {
  try {
    assertDeviceId(value)
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message)
  }
  return value
}

/**
 * Creates a token for `device` in the server store at `db` (created if missing).
 *
 * @remarks The store keeps only `hashToken(token)`: the returned token cannot be shown again.
 */
export async function createDeviceToken(
  device: string,
  db: string,
): Promise<CreatedToken> {
  const path = resolve(db)
  const store = SqliteServerStore.open({ path })
  try {
    const token = createToken()
    await store.createDeviceToken(device, hashToken(token))
    return { device, token, store: path }
  } finally {
    await store.close()
  }
}

/**
 * Revokes every live token of `device`.
 *
 * @throws `not_found` when there is no store at `db` (revoking never creates one) or the
 *   device has no live token (most likely a misspelt name).
 */
export async function revokeDeviceTokens(
  device: string,
  db: string,
): Promise<number> {
  const path = resolve(db)
  if (!existsSync(path)) {
    throw new VeloSyncError(
      'not_found',
      `no server store at ${path}; pass the file \`velosync serve\` uses with --db`,
    )
  }
  const store = SqliteServerStore.open({ path })
  try {
    const revoked = await store.revokeDeviceTokens(device)
    if (revoked === 0) {
      throw new VeloSyncError(
        'not_found',
        `device ${device} has no live token in ${path}`,
      )
    }
    return revoked
  } finally {
    await store.close()
  }
}

function formatCreatedToken(created: CreatedToken): string {
  return [
    `Created a token for device ${created.device} (only its SHA-256 is stored, in ${created.store}).`,
    'It is shown this once; keep it secret:',
    '',
    `  ${created.token}`,
    '',
    'On the device:',
    "  new HttpTransport({ url: 'http://127.0.0.1:8787', token: process.env.VELOSYNC_TOKEN })",
    '  (or any HTTP client: Authorization: Bearer <token>)',
    `Revoke it with: velosync token revoke --device ${created.device} --db ${created.store}`,
  ].join('\n')
}
