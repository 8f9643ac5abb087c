import { describe, expect, it } from 'vitest'
import { isVeloSyncError } from '../errors.js'
import {
  canonicalMetadata,
  canonicalMetadataJson,
  MAX_METADATA_DEPTH,
  MAX_METADATA_LENGTH,
} from './metadata.js'

describe('canonicalMetadataJson', () => {
  it('sorts keys at every level, whatever the insertion order', () => {
    expect(
      canonicalMetadataJson({ b: 1, a: { d: [3, { y: 1, x: 2 }], c: null } }),
    ).toBe('{"a":{"c":null,"d":[3,{"x":2,"y":1}]},"b":1}')
    expect(canonicalMetadataJson({ 10: 'a', 9: 'b', z: 1, a: 2 })).toBe(
      canonicalMetadataJson({ a: 2, z: 1, 9: 'b', 10: 'a' }),
    )
  })

  it('keeps a "__proto__" key as data', () => {
    const parsed: unknown = JSON.parse('{"z":1,"__proto__":{"polluted":true}}')
    expect(canonicalMetadataJson(parsed)).toBe(
      '{"__proto__":{"polluted":true},"z":1}',
    )
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('hands back a private sorted copy only when the input was out of order', () => {
    const input = { b: { y: [1, { q: 1, p: 2 }] }, a: 1 }
    const { json, copy } = canonicalMetadata(input)
    expect(copy).toEqual(JSON.parse(json))
    expect(JSON.stringify(copy)).toBe(json)
    input.b.y.push(2)
    expect(JSON.stringify(copy)).toBe(json)
    expect(canonicalMetadata({ a: 1, b: { c: 2 } }).copy).toBeUndefined()
    const proto = canonicalMetadata(
      JSON.parse('{"z":1,"__proto__":{"polluted":true}}'),
    ).copy as Record<string, unknown>
    expect(Object.getPrototypeOf(proto)).toBe(Object.prototype)
    expect(Object.keys(proto)).toEqual(['__proto__', 'z'])
  })

  const bad: Array<[string, unknown, RegExp]> = [
    ['an array', [1], /plain JSON object/],
    ['null', null, /plain JSON object/],
    ['a Date', { when: new Date() }, /Date/],
    ['undefined', { a: undefined }, /undefined/],
    ['a function', { f: () => 1 }, /function/],
    ['NaN', { n: Number.NaN }, /non-finite/],
    ['Infinity', { n: [Infinity] }, /non-finite/],
    ['a bigint', { n: 1n }, /bigint/],
    // eslint-disable-next-line no-sparse-arrays -- the hole is the point of the case
    ['a sparse array', { a: [1, , 3] }, /sparse/],
    ['a class instance', { m: new Map() }, /Map/],
  ]
  it.each(bad)('rejects %s with invalid_argument', (_, value, message) => {
    try {
      canonicalMetadataJson(value)
      expect.unreachable()
    } catch (error) {
      expect(isVeloSyncError(error, 'invalid_argument')).toBe(true)
      expect((error as Error).message).toMatch(message)
    }
  })

  it('rejects objects and arrays that carry a toJSON method, enumerable or not', () => {
    const hidden = { a: 1 }
    Object.defineProperty(hidden, 'toJSON', { value: () => 1 })
    const list = Object.assign([1, 2], { toJSON: () => ({ b: 1, a: 2 }) })
    for (const input of [hidden, { x: list }, { '9': 1, x: hidden }]) {
      expect(() => canonicalMetadataJson(input)).toThrow(/toJSON/)
    }
    // Data named toJSON is just data.
    expect(canonicalMetadataJson({ toJSON: 1 })).toBe('{"toJSON":1}')
  })

  it('rejects cycles, deep nesting and oversize text', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(() => canonicalMetadataJson(cyclic)).toThrow(/refers to itself/)
    let deep: Record<string, unknown> = {}
    for (let i = 0; i < MAX_METADATA_DEPTH + 1; i++) deep = { d: deep }
    expect(() => canonicalMetadataJson(deep)).toThrow(/deeper/)
    expect(() =>
      canonicalMetadataJson({ t: 'x'.repeat(MAX_METADATA_LENGTH) }),
    ).toThrow(/limit/)
  })
})
