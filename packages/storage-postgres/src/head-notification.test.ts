import { describe, expect, it } from 'vitest'
import {
  HEAD_CHANNEL,
  headChannel,
  headPayload,
  parseHeadPayload,
} from './head-notification.js'

describe('head notifications', () => {
  it('a payload reads back as the change it announces', () => {
    expect(parseHeadPayload(headPayload(42, 'laptop-1'))).toEqual({
      head: 42,
      deviceId: 'laptop-1',
    })
    expect(parseHeadPayload('7')).toEqual({ head: 7 })
    expect(parseHeadPayload(String(Number.MAX_SAFE_INTEGER))).toEqual({
      head: Number.MAX_SAFE_INTEGER,
    })
  })

  it('anything else is not a head', () => {
    for (const payload of [
      '',
      ' 7',
      '7 ',
      '0x10',
      '7 a b',
      '7 -dash-first',
      `7 ${'d'.repeat(65)}`,
      '9007199254740992',
    ]) {
      expect(parseHeadPayload(payload), payload).toBeUndefined()
    }
  })

  it('each schema has a channel of its own, within PostgreSQL’s 63 bytes', () => {
    expect(headChannel('public')).toBe(HEAD_CHANNEL)
    expect(headChannel('tenant_a')).toBe('velosync_head_tenant_a')
    const long = `s${'x'.repeat(62)}`
    const longer = `s${'x'.repeat(61)}y`
    expect(headChannel(long)).toHaveLength(63)
    expect(headChannel(long)).not.toBe(headChannel(longer))
    expect(headChannel(long)).toBe(headChannel(long))
  })
})
