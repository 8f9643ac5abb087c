import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { JSON_SCHEMAS } from './messages.js'
import { PROTOCOL_VERSION } from './protocol-version.js'

/**
 * SHA-256 of the JSON Schema of every message, per protocol version. Add a line here (never
 * edit an old one) together with a bump of PROTOCOL_VERSION and its history comment.
 */
const SCHEMA_HASHES: Record<number, string> = {
  1: '8f73d97bf5627d38d3a5d8939fd7903883fde9936a6ea04a5f9f3c40a40353f8',
  2: '240e8070460190788b6aa3568af69330059fa6517433d1f0b2786d321d1e5ba8',
}

/** JSON with object keys sorted at every level, so that the text depends only on content. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, inner]) => `${JSON.stringify(key)}:${canonical(inner)}`)
    return `{${entries.join(',')}}`
  }
  return JSON.stringify(value)
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

function describeSchemas(schemas: Record<string, z.ZodType>): string {
  const described: Record<string, unknown> = {}
  for (const [name, schema] of Object.entries(schemas)) {
    described[name] = {
      input: z.toJSONSchema(schema, { io: 'input' }),
      output: z.toJSONSchema(schema, { io: 'output' }),
    }
  }
  return canonical(described)
}

describe('protocol version pin', () => {
  it('the wire schemas match the hash recorded for PROTOCOL_VERSION', () => {
    const actual = sha256Hex(describeSchemas(JSON_SCHEMAS))
    const recorded = SCHEMA_HASHES[PROTOCOL_VERSION]
    const advice =
      recorded === undefined
        ? `add "${PROTOCOL_VERSION}: '${actual}'" to SCHEMA_HASHES in this file`
        : `bump PROTOCOL_VERSION in protocol-version.ts, extend its history comment and docs/PROTOCOL.md, and add "${PROTOCOL_VERSION + 1}: '${actual}'" to SCHEMA_HASHES; never edit the hash of an existing version`
    expect(
      actual,
      `The wire schemas changed (hash ${actual}). If the change is intended, ${advice}.`,
    ).toBe(recorded)
  })

  it('any change to a message schema changes the hash', () => {
    const changed = {
      ...JSON_SCHEMAS,
      AckRequest: JSON_SCHEMAS.AckRequest.extend({ extra: z.string() }),
    }
    expect(sha256Hex(describeSchemas(changed))).not.toBe(
      sha256Hex(describeSchemas(JSON_SCHEMAS)),
    )
  })
})
