import { pack } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { isVeloSyncError } from '../errors.js'
import type { CollectionSchema } from '../model/collection.js'
import type { DocumentVersion } from '../model/document-version.js'
import {
  MEDIA_TYPES,
  decodeAckRequest,
  decodeConflictsResponse,
  decodeErrorBody,
  decodeHealthResponse,
  decodeSyncRequest,
  decodeSyncResponse,
  encodeMessage,
  encodePushAhead,
  encodedPushPrefix,
  negotiate,
  type WireFormat,
} from './codec.js'
import { errorCodeFromWire, errorStatus } from './error-status.js'
import type { AckRequest, SyncRequest, SyncResponse } from './messages.js'
import { PROTOCOL_VERSION } from './protocol-version.js'

const FORMATS: WireFormat[] = ['json', 'msgpack']
const notes: CollectionSchema = {
  name: 'notes',
  dims: 4,
  metric: 'cosine',
  dtype: 'float32',
}
const wide: CollectionSchema = {
  name: 'wide',
  dims: 3,
  metric: 'l2',
  dtype: 'float64',
}
const EPOCH = '0123abcd'
const ORIGIN = `dev1.${EPOCH}`

function version(
  id: string,
  overrides: Partial<DocumentVersion> = {},
): DocumentVersion {
  return {
    id,
    deleted: false,
    vector: new Float32Array([1, 0.5, -2, 3.25]),
    metadataJson: '{"a":1,"tags":["x"]}',
    versionVector: { [ORIGIN]: 3 },
    hlc: { wallMs: 1_700_000_000_000, counter: 2 },
    origin: ORIGIN,
    ...overrides,
  }
}

function request(overrides: Partial<SyncRequest> = {}): SyncRequest {
  return {
    protocol: PROTOCOL_VERSION,
    epoch: EPOCH,
    collections: [notes, wide],
    push: [
      { lsn: 1, collection: 'notes', version: version('n1') },
      {
        lsn: 2,
        collection: 'notes',
        version: version('n2', {
          deleted: true,
          vector: null,
          metadataJson: null,
        }),
      },
      {
        lsn: 5,
        collection: 'wide',
        version: version('w1', {
          vector: new Float64Array([0.1, 1e300, -7]),
          metadataJson: '{}',
        }),
      },
    ],
    cursor: 12,
    pullLimit: 500,
    ...overrides,
  }
}

function codeOf(run: () => unknown): string | undefined {
  try {
    run()
    return undefined
  } catch (error) {
    return isVeloSyncError(error)
      ? error.code
      : `not a VeloSyncError: ${String(error)}`
  }
}

/** Encodes a hand-built wire object, to send what the typed encoder never would. */
function raw(data: unknown, format: WireFormat): Uint8Array {
  return format === 'json'
    ? new TextEncoder().encode(JSON.stringify(data))
    : pack(data)
}

/** A valid JSON-shaped wire request whose first op can be altered. */
function wireRequest(
  op: Record<string, unknown> = {},
  top: Record<string, unknown> = {},
) {
  return {
    protocol: PROTOCOL_VERSION,
    epoch: EPOCH,
    collections: [{ name: 'notes', dims: 2, metric: 'dot', dtype: 'float32' }],
    push: [
      {
        lsn: 1,
        collection: 'notes',
        id: 'a',
        deleted: false,
        vector: Buffer.from(new Float32Array([1, 2]).buffer).toString('base64'),
        metadata: '{}',
        versionVector: { [ORIGIN]: 1 },
        hlc: { wallMs: 1, counter: 0 },
        ...op,
      },
    ],
    cursor: 0,
    ...top,
  }
}

describe.each(FORMATS)('codec (%s)', (format) => {
  it('round-trips a sync request and sets origin from the device id', () => {
    const decoded = decodeSyncRequest(
      encodeMessage(request(), format),
      format,
      {
        deviceId: 'dev1',
      },
    )
    expect(decoded).toEqual({ ...request(), fullResync: false })
    const resync = request({ fullResync: true })
    expect(
      decodeSyncRequest(encodeMessage(resync, format), format, {
        deviceId: 'dev1',
      }).fullResync,
    ).toBe(true)
    expect(decoded.push[2]?.version.vector).toBeInstanceOf(Float64Array)
    expect(decoded.push[0]?.version.origin).toBe(`dev1.${EPOCH}`)
    // Another device's token cannot push dev1's versions: they do not count its writes.
    expect(() =>
      decodeSyncRequest(encodeMessage(request(), format), format, {
        deviceId: 'dev2',
      }),
    ).toThrow(/no entry for the pushing replica dev2\./)
  })

  it('reads a request whose push was encoded ahead exactly as one encoded at once', () => {
    const message = request({ cursor: 17, lastLsn: 9, fullResync: true })
    const ahead = encodePushAhead(message.push)
    const whole = decodeSyncRequest(encodeMessage(message, format), format, {
      deviceId: 'dev1',
    })
    const spliced = encodeMessage(message, format, ahead)
    expect(decodeSyncRequest(spliced, format, { deviceId: 'dev1' })).toEqual(
      whole,
    )
    if (format === 'msgpack') {
      // Same entries, so the same size; the bytes differ only in order.
      expect(spliced.length).toBe(encodeMessage(message, format).length)
      // It starts with the prefix a transport hashes ahead: 8 entries, push first.
      const prefix = Buffer.concat(encodedPushPrefix(ahead, 8))
      expect(Buffer.from(spliced.subarray(0, prefix.length))).toEqual(prefix)
      expect(
        Buffer.from(encodedPushPrefix(ahead, 7)[0]!).equals(
          prefix.subarray(0, 3),
        ),
      ).toBe(false)
    }
    // Bytes encoded for other ops (even equal ones) are not used.
    const other = encodePushAhead([])
    expect(
      decodeSyncRequest(encodeMessage(message, format, other), format, {
        deviceId: 'dev1',
      }).push,
    ).toHaveLength(3)
    const empty = request({ push: [] })
    expect(
      decodeSyncRequest(
        encodeMessage(empty, format, encodePushAhead(empty.push)),
        format,
        { deviceId: 'dev1' },
      ),
    ).toEqual({ ...empty, fullResync: false })
  })

  it('fills in the default pullLimit', () => {
    const data = wireRequest()
    const bytes =
      format === 'json'
        ? raw(data, format)
        : raw(
            {
              ...data,
              push: data.push.map((op) => ({
                ...op,
                vector: new Uint8Array(new Float32Array([1, 2]).buffer),
              })),
            },
            format,
          )
    expect(
      decodeSyncRequest(bytes, format, { deviceId: 'dev1' }).pullLimit,
    ).toBe(1000)
  })

  it('round-trips a sync response with results, changes and collections', () => {
    const response: SyncResponse = {
      protocol: PROTOCOL_VERSION,
      collections: [notes],
      results: [
        { lsn: 1, collection: 'notes', id: 'n1', outcome: 'applied', seq: 7 },
        { lsn: 2, collection: 'notes', id: 'n2', outcome: 'duplicate' },
        {
          lsn: 3,
          collection: 'notes',
          id: 'n3',
          outcome: 'conflict_lost',
          seq: 8,
          version: version('n3', { origin: 'dev9.ffffffff' }),
        },
      ],
      appliedThroughLsn: 3,
      changes: [
        { seq: 9, collection: 'notes', version: version('n4') },
        {
          seq: 10,
          collection: 'notes',
          version: version('n5', {
            deleted: true,
            vector: null,
            metadataJson: null,
          }),
        },
      ],
      cursor: 10,
      hasMore: false,
      skippedEchoes: 1,
      head: 10,
    }
    expect(decodeSyncResponse(encodeMessage(response, format), format)).toEqual(
      response,
    )
  })

  it('round-trips a conflicts listing', () => {
    const conflicts = {
      collections: [notes],
      conflicts: [
        {
          seq: 4,
          collection: 'notes',
          id: 'n1',
          winner: version('n1', {
            versionVector: { [ORIGIN]: 3, 'dev9.ffffffff': 1 },
          }),
          loser: version('n1', {
            origin: 'dev9.ffffffff',
            versionVector: { 'dev9.ffffffff': 1 },
          }),
          resolvedAtMs: 5,
        },
      ],
    }
    expect(
      decodeConflictsResponse(encodeMessage(conflicts, format), format),
    ).toEqual(conflicts)
  })

  it('gives listed conflicts vectors of their own, not views into the body', () => {
    // Ids of 1 to 4 characters shift the vectors through every alignment, so some
    // would be views into the body if the codec made them.
    const records = ['a', 'ab', 'abc', 'abcd'].map((id, i) => ({
      seq: i + 1,
      collection: 'notes',
      id,
      winner: version(id, { versionVector: { [ORIGIN]: 2 } }),
      loser: version(id, {
        origin: 'dev9.ffffffff',
        versionVector: { 'dev9.ffffffff': 1 },
      }),
      resolvedAtMs: 5,
    }))
    const body = encodeMessage(
      { collections: [notes], conflicts: records },
      format,
    )
    const listed = decodeConflictsResponse(body, format)
    expect(listed.conflicts).toEqual(records)
    for (const { winner, loser } of listed.conflicts) {
      for (const { vector } of [winner, loser]) {
        expect(vector?.buffer.byteLength).toBe(vector?.byteLength)
      }
    }
  })

  it('round-trips ack, health and error bodies', () => {
    const ack: AckRequest = {
      protocol: PROTOCOL_VERSION,
      epoch: EPOCH,
      cursor: 3,
    }
    expect(decodeAckRequest(encodeMessage(ack, format), format)).toEqual(ack)
    const health = {
      status: 'ok' as const,
      protocol: PROTOCOL_VERSION,
      head: 3,
    }
    expect(decodeHealthResponse(encodeMessage(health, format), format)).toEqual(
      health,
    )
    const error = {
      error: { code: 'storage_failure', message: 'busy', retryAfterMs: 100 },
    }
    expect(decodeErrorBody(encodeMessage(error, format), format)).toEqual(error)
  })

  it.each([
    ['garbage', new Uint8Array([0xc1, 0xff, 0x00, 0x7b])],
    [
      'a truncated body',
      () => encodeMessage(request(), format).subarray(0, 40),
    ],
    ['an empty body', new Uint8Array(0)],
  ])('rejects %s with malformed_body', (_, body) => {
    const bytes = typeof body === 'function' ? body() : body
    expect(
      codeOf(() => decodeSyncRequest(bytes, format, { deviceId: 'dev1' })),
    ).toBe('malformed_body')
  })

  it('rejects another protocol version with protocol_mismatch', () => {
    const bytes = raw(
      { ...wireRequest(), protocol: PROTOCOL_VERSION + 1 },
      format,
    )
    expect(
      codeOf(() => decodeSyncRequest(bytes, format, { deviceId: 'dev1' })),
    ).toBe('protocol_mismatch')
  })
})

describe('codec validation (JSON)', () => {
  const decode = (data: unknown) =>
    codeOf(() =>
      decodeSyncRequest(raw(data, 'json'), 'json', { deviceId: 'dev1' }),
    )
  const floats = (...values: number[]) =>
    Buffer.from(new Float32Array(values).buffer).toString('base64')

  it('accepts the valid baseline', () => {
    expect(decode(wireRequest())).toBeUndefined()
  })

  it.each([
    ['a vector of the wrong length', { vector: floats(1, 2, 3) }],
    ['NaN in a vector', { vector: floats(1, Number.NaN) }],
    ['Infinity in a vector', { vector: floats(Number.POSITIVE_INFINITY, 1) }],
    ['-Infinity in a vector', { vector: floats(1, Number.NEGATIVE_INFINITY) }],
    ['a vector as a number array', { vector: [1, 2] }],
    ['non-canonical base64', { vector: `${floats(1, 2)}\n` }],
    ['non-canonical metadata', { metadata: '{"b":1,"a":2}' }],
    ['metadata with whitespace', { metadata: '{ }' }],
    ['metadata that is not JSON', { metadata: '{' }],
    ['metadata that is not an object', { metadata: '[1]' }],
    ['a live version without a vector', { vector: null }],
    ['a tombstone with metadata', { deleted: true, vector: null }],
    ['a zero lsn', { lsn: 0 }],
    ['a fractional hlc', { hlc: { wallMs: 1.5, counter: 0 } }],
    ['an hlc counter above 2^32-1', { hlc: { wallMs: 1, counter: 2 ** 32 } }],
    [
      'a version vector with only a __proto__ key',
      { versionVector: JSON.parse('{"__proto__":1}') as unknown },
    ],
    [
      'a version vector with a __proto__ key beside a valid one',
      {
        versionVector: JSON.parse(
          `{"__proto__":{"evil":1},"${ORIGIN}":2}`,
        ) as unknown,
      },
    ],
    ['an empty version vector', { versionVector: {} }],
    ['a version vector counter of 0', { versionVector: { [ORIGIN]: 0 } }],
    ['an empty id', { id: '' }],
    ['an undeclared collection', { collection: 'other' }],
  ])('rejects %s with invalid_argument', (_, op) => {
    expect(decode(wireRequest(op))).toBe('invalid_argument')
  })

  it.each([
    ['a bad epoch', { epoch: 'XYZ' }],
    ['a negative cursor', { cursor: -1 }],
    ['a pullLimit above 10000', { pullLimit: 10_001 }],
    ['a missing push', { push: undefined }],
    [
      'dims 0',
      {
        collections: [
          { name: 'notes', dims: 0, metric: 'dot', dtype: 'float32' },
        ],
      },
    ],
    [
      'an unknown metric',
      {
        collections: [
          { name: 'notes', dims: 2, metric: 'x', dtype: 'float32' },
        ],
      },
    ],
    [
      'a collection declared twice differently',
      {
        collections: [
          { name: 'notes', dims: 2, metric: 'dot', dtype: 'float32' },
          { name: 'notes', dims: 2, metric: 'l2', dtype: 'float32' },
        ],
      },
    ],
  ])('rejects %s with invalid_argument', (_, top) => {
    expect(decode(wireRequest({}, top))).toBe('invalid_argument')
  })

  it('rejects a __proto__ key spelt with escapes', () => {
    const text = JSON.stringify(
      wireRequest({ versionVector: { [ORIGIN]: 2, placeholder: 1 } }),
    ).replace('"placeholder"', '"\\u005f_proto__"')
    expect(text).toContain('\\u005f_proto__')
    expect(
      codeOf(() =>
        decodeSyncRequest(new TextEncoder().encode(text), 'json', {
          deviceId: 'dev1',
        }),
      ),
    ).toBe('invalid_argument')
  })

  it('rejects LSNs that do not strictly increase', () => {
    const data = wireRequest()
    const op = data.push[0]!
    expect(decode({ ...data, push: [op, { ...op, id: 'b' }] })).toBe(
      'invalid_argument',
    )
  })

  it('rejects invalid UTF-8 as malformed_body', () => {
    const bytes = new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x7d])
    expect(
      codeOf(() => decodeSyncRequest(bytes, 'json', { deviceId: 'dev1' })),
    ).toBe('malformed_body')
  })

  it('keeps no field the schema does not name, in the HLC or elsewhere', () => {
    const data = wireRequest({
      hlc: { wallMs: 1, counter: 0, extra: 1 },
      extra: 'ignored',
    })
    const request = decodeSyncRequest(raw(data, 'json'), 'json', {
      deviceId: 'dev1',
    })
    expect(request.push[0]?.version.hlc).toEqual({ wallMs: 1, counter: 0 })
    expect(Object.keys(request.push[0]!.version).sort()).toEqual(
      [
        'deleted',
        'hlc',
        'id',
        'metadataJson',
        'origin',
        'vector',
        'versionVector',
      ].sort(),
    )
  })

  it('names the bad field of one bad op among valid ones', () => {
    const data = wireRequest()
    const valid = data.push[0]!
    data.push = [valid, { ...valid, lsn: 2, hlc: { wallMs: -1, counter: 0 } }]
    expect(() =>
      decodeSyncRequest(raw(data, 'json'), 'json', { deviceId: 'dev1' }),
    ).toThrow(/push\.1\.hlc\.wallMs/)
  })

  it('rejects a vector whose bytes decode to NaN in MessagePack too', () => {
    const data = wireRequest({
      vector: new Uint8Array(new Float32Array([1, Number.NaN]).buffer),
    })
    expect(
      codeOf(() =>
        decodeSyncRequest(pack(data), 'msgpack', { deviceId: 'dev1' }),
      ),
    ).toBe('invalid_argument')
  })
})

describe('wire size', () => {
  const dims = 384
  const schema: CollectionSchema = {
    name: 'emb',
    dims,
    metric: 'cosine',
    dtype: 'float32',
  }
  const embedding = new Float32Array(dims).map((_, i) => Math.sin(i + 1))

  function sizeWith(vector: Float32Array | null, format: WireFormat): number {
    return encodeMessage(
      request({
        collections: [schema],
        push: [
          {
            lsn: 1,
            collection: 'emb',
            version: version('d', {
              vector,
              metadataJson: vector ? '{}' : null,
              deleted: vector === null,
            }),
          },
        ],
      }),
      format,
    ).length
  }

  it('a 384-d float32 vector costs at most 5% over its 1536 bytes in MessagePack', () => {
    const cost = sizeWith(embedding, 'msgpack') - sizeWith(null, 'msgpack')
    expect(cost).toBeGreaterThanOrEqual(1536)
    expect(cost).toBeLessThanOrEqual(1536 * 1.05)
  })

  it('JSON carries it as base64 (4/3), never as decimal numbers', () => {
    const cost = sizeWith(embedding, 'json') - sizeWith(null, 'json')
    expect(cost).toBeLessThanOrEqual(Math.ceil(1536 / 3) * 4 + 10)
  })

  // Speed is measured by bench:sync, not asserted here; this checks a large body intact.
  it('decodes 10,000 ops of 384 dims, every one intact', () => {
    const ops = Array.from({ length: 10_000 }, (_, i) => ({
      lsn: i + 1,
      collection: 'emb',
      version: version(`doc-${i}`, {
        vector: embedding.map((value) => value + i),
        metadataJson: `{"i":${i},"lang":"en"}`,
      }),
    }))
    for (const format of FORMATS) {
      const bytes = encodeMessage(
        request({ collections: [schema], push: ops }),
        format,
      )
      const decoded = decodeSyncRequest(bytes, format, { deviceId: 'dev1' })
      expect(decoded.push).toHaveLength(10_000)
      for (const i of [0, 1, 4_999, 9_999]) {
        const op = decoded.push[i]
        expect(op?.lsn).toBe(i + 1)
        expect(op?.version.id).toBe(`doc-${i}`)
        expect(op?.version.metadataJson).toBe(`{"i":${i},"lang":"en"}`)
        expect(Array.from(op?.version.vector ?? [])).toEqual(
          Array.from(ops[i]?.version.vector ?? []),
        )
      }
    }
  })
})

describe('negotiate', () => {
  it.each([
    ['application/json', undefined, 'json', 'json'],
    ['application/json; charset=utf-8', '*/*', 'json', 'json'],
    [MEDIA_TYPES.msgpack, undefined, 'msgpack', 'msgpack'],
    ['application/json', MEDIA_TYPES.msgpack, 'json', 'msgpack'],
    [MEDIA_TYPES.msgpack, 'application/json', 'msgpack', 'json'],
    [
      'application/json',
      `${MEDIA_TYPES.msgpack};q=0.5, application/json`,
      'json',
      'json',
    ],
    ['application/json', `${MEDIA_TYPES.msgpack};q=0`, 'json', 'json'],
    [undefined, undefined, undefined, 'json'],
    [undefined, MEDIA_TYPES.msgpack, undefined, 'msgpack'],
  ])(
    'Content-Type %s, Accept %s → %s / %s',
    (contentType, accept, req, res) => {
      expect(negotiate(contentType, accept)).toEqual({
        request: req,
        response: res,
      })
    },
  )

  it('rejects other media types with unsupported_media_type', () => {
    expect(codeOf(() => negotiate('text/plain', undefined))).toBe(
      'unsupported_media_type',
    )
  })
})

describe('error status', () => {
  it('maps codes per PROTOCOL.md', () => {
    expect(errorStatus('digest_mismatch')).toBe(400)
    expect(errorStatus('unauthorized')).toBe(401)
    expect(errorStatus('already_exists')).toBe(409)
    expect(errorStatus('busy')).toBe(503)
    expect(errorStatus('resync_required')).toBe(410)
    expect(errorStatus('payload_too_large')).toBe(413)
    expect(errorStatus('unsupported_media_type')).toBe(415)
    expect(errorCodeFromWire('lsn_reused')).toBe('lsn_reused')
    expect(errorCodeFromWire('from_the_future')).toBe('internal')
  })
})
