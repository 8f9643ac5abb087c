import { existsSync } from 'node:fs'
import { VeloSyncError, assertDeviceId } from '@velosync/core'
import { createToken, hashToken } from '@velosync/server'
import { InvalidArgumentError, type Command } from 'commander'
import {
  describeLocation,
  locationArgs,
  openServerStore,
  postgresOption,
  storeLocation,
  type ServerStoreLocation,
} from '../server-store-option.js'
import { DEFAULT_SERVER_DB } from './serve.js'

/** The store options of `token create` and `token revoke`. */
interface StoreOptions {
  readonly db: string
  readonly postgres?: string
}

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
    .addOption(postgresOption('the server store'))
    .option('--json', 'print one JSON object instead of text')
    .action(async (options: StoreOptions & { device: string; json?: true }) => {
      const location = storeLocation(options)
      const created = await createDeviceToken(options.device, location)
      console.log(
        options.json === true
          ? JSON.stringify(created, null, 2)
          : formatCreatedToken(created, locationArgs(location)),
      )
    })
  token
    .command('revoke')
    .description('Revoke every token of a device')
    .requiredOption('--device <name>', 'the device id', deviceName)
    .option('--db <path>', 'the server store (SQLite file)', DEFAULT_SERVER_DB)
    .addOption(postgresOption('the server store'))
    .action(async (options: StoreOptions & { device: string }) => {
      const revoked = await revokeDeviceTokens(
        options.device,
        storeLocation(options),
      )
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
 * Creates a token for `device` in the server store at `location` (created if missing).
 *
 * @remarks The store keeps only `hashToken(token)`: the returned token cannot be shown again.
 */
export async function createDeviceToken(
  device: string,
  location: ServerStoreLocation,
): Promise<CreatedToken> {
  const store = await openServerStore(location)
  try {
    const token = createToken()
    await store.createDeviceToken(device, hashToken(token))
    return { device, token, store: describeLocation(location) }
  } finally {
    await store.close()
  }
}

/**
 * Revokes every live token of `device`.
 *
 * @throws `not_found` when there is no SQLite store at the path (revoking never creates
 *   one) or the device has no live token (most likely a misspelt name).
 */
export async function revokeDeviceTokens(
  device: string,
  location: ServerStoreLocation,
): Promise<number> {
  if (location.kind === 'sqlite' && !existsSync(location.path)) {
    throw new VeloSyncError(
      'not_found',
      `no server store at ${location.path}; pass the file \`velosync serve\` uses with --db`,
    )
  }
  const store = await openServerStore(location)
  try {
    const revoked = await store.revokeDeviceTokens(device)
    if (revoked === 0) {
      throw new VeloSyncError(
        'not_found',
        `device ${device} has no live token in ${describeLocation(location)}`,
      )
    }
    return revoked
  } finally {
    await store.close()
  }
}

function formatCreatedToken(created: CreatedToken, storeArgs: string): string {
  return [
    `Created a token for device ${created.device} (only its SHA-256 is stored, in ${created.store}).`,
    'It is shown this once; keep it secret:',
    '',
    `  ${created.token}`,
    '',
    'On the device:',
    "  new HttpTransport({ url: 'http://127.0.0.1:8787', token: process.env.VELOSYNC_TOKEN })",
    '  (or any HTTP client: Authorization: Bearer <token>)',
    `Revoke it with: velosync token revoke --device ${created.device} ${storeArgs}`,
  ].join('\n')
}
