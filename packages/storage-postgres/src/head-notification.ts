/*
 * The NOTIFY message a push sends and every PostgresChangeSignal listens for: the channel
 * and the payload `'<head> <deviceId>'` (docs/ARCHITECTURE.md, "Live changes").
 */
import { createHash } from 'node:crypto'
import type { HeadChange } from '@velosync/core'

/** The channel of a store in the default schema `public`. */
export const HEAD_CHANNEL = 'velosync_head'

/** PostgreSQL cuts identifiers at 63 bytes, and `pg_notify` refuses longer channels. */
const MAX_CHANNEL_LENGTH = 63

/**
 * A head announced by NOTIFY: the head in decimal, then optionally a space and the device
 * that pushed (device ids have no spaces). Anything else is not ours.
 */
const PAYLOAD = /^(\d{1,16})(?: ([A-Za-z0-9][A-Za-z0-9_-]{0,63}))?$/

/**
 * The NOTIFY channel of the store in `schema`.
 *
 * @remarks
 * Channels are per database, not per schema: two stores in two schemas of one database
 * need two channels, or each would announce its head to the other's devices (a head the
 * other store may never reach, after which its streams would stay silent). `public` keeps
 * the plain name; a schema too long to append is replaced by a digest of its name.
 */
export function headChannel(schema: string): string {
  if (schema === 'public') return HEAD_CHANNEL
  const named = `${HEAD_CHANNEL}_${schema}`
  if (named.length <= MAX_CHANNEL_LENGTH) return named
  const digest = createHash('sha256').update(schema).digest('hex')
  return `${HEAD_CHANNEL}_${digest.slice(0, MAX_CHANNEL_LENGTH - HEAD_CHANNEL.length - 1)}`
}

/** The payload announcing `head`, pushed by `deviceId`. */
export function headPayload(head: number, deviceId: string): string {
  return `${head} ${deviceId}`
}

/** The change a payload announces, or `undefined` when it is not one of ours. */
export function parseHeadPayload(payload: string): HeadChange | undefined {
  const match = PAYLOAD.exec(payload)
  if (match === null) return undefined
  const head = Number(match[1])
  // 16 digits can exceed 2^53; a head that large cannot be a seq of ours.
  if (!Number.isSafeInteger(head)) return undefined
  const deviceId = match[2]
  return deviceId === undefined ? { head } : { head, deviceId }
}
