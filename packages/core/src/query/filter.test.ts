import { describe, expect, it } from 'vitest'
import { isVeloSyncError } from '../errors.js'
import type { JsonObject } from '../model/metadata.js'
import { compileFilter } from './filter.js'

const docs: Record<string, JsonObject> = {
  a: {
    lang: 'en',
    year: 2021,
    tags: ['x', 'y'],
    author: { name: 'Ada' },
    draft: false,
  },
  b: { lang: 'de', year: 2019, tags: ['y'], author: { name: 'Bo' } },
  c: { lang: 'en', year: 2024, tags: [], score: null },
  d: { lang: 'fr', year: '2022', title: 'B' },
}
const matching = (filter: unknown) =>
  Object.entries(docs)
    .filter(([, m]) => compileFilter(filter)(m))
    .map(([id]) => id)

describe('metadata filters', () => {
  it.each<[string, unknown, string[]]>([
    ['empty filter matches all', {}, ['a', 'b', 'c', 'd']],
    ['equality', { lang: 'en' }, ['a', 'c']],
    ['$eq null matches explicit null only', { score: null }, ['c']],
    ['several fields are AND', { lang: 'en', year: 2024 }, ['c']],
    ['$ne matches missing fields', { lang: { $ne: 'en' } }, ['b', 'd']],
    [
      'ranges compare numbers with numbers only',
      { year: { $gte: 2020, $lt: 2024 } },
      ['a'],
    ],
    ['string ranges', { title: { $gt: 'A' } }, ['d']],
    ['$in', { lang: { $in: ['de', 'fr'] } }, ['b', 'd']],
    ['$nin', { lang: { $nin: ['de', 'fr'] } }, ['a', 'c']],
    ['array fields match any element', { tags: 'y' }, ['a', 'b']],
    ['$exists', { author: { $exists: true } }, ['a', 'b']],
    ['$exists false', { author: { $exists: false } }, ['c', 'd']],
    ['dotted paths', { 'author.name': 'Bo' }, ['b']],
    ['$or', { $or: [{ lang: 'de' }, { year: { $gt: 2023 } }] }, ['b', 'c']],
    ['$and', { $and: [{ lang: 'en' }, { tags: 'x' }] }, ['a']],
    ['$not', { $not: { lang: 'en' } }, ['b', 'd']],
    ['boolean equality', { draft: false }, ['a']],
  ])('%s', (_, filter, expected) => {
    expect(matching(filter)).toEqual(expected)
  })

  it.each<[string, unknown, RegExp]>([
    ['a non-object', 'lang = en', /must be an object/],
    [
      'an unknown field operator',
      { year: { $between: [1, 2] } },
      /unknown operator/,
    ],
    ['an unknown logical operator', { $nor: [] }, /unknown logical operator/],
    ['equality with an object', { author: { name: 'Bo' } }, /unknown operator/],
    [
      'equality with an array',
      { tags: ['x'] },
      /must be a string, finite number/,
    ],
    ['a range on a boolean', { year: { $gt: true } }, /number or a string/],
    ['a NaN operand', { year: { $lt: Number.NaN } }, /finite/],
    ['$in without an array', { lang: { $in: 'en' } }, /needs an array/],
    ['an empty $or', { $or: [] }, /non-empty array/],
    ['an empty path segment', { 'a..b': 1 }, /dot-separated/],
    ['an empty operator object', { year: {} }, /at least one operator/],
  ])('rejects %s with invalid_argument', (_, filter, message) => {
    try {
      compileFilter(filter)
      expect.unreachable()
    } catch (error) {
      expect(isVeloSyncError(error, 'invalid_argument')).toBe(true)
      expect((error as Error).message).toMatch(message)
    }
  })
})
