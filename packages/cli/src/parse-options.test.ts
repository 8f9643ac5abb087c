import { InvalidArgumentError } from 'commander'
import { describe, expect, it } from 'vitest'
import { integerInRange } from './parse-options.js'

describe('integerInRange', () => {
  const parse = integerInRange(1, 1_000_000)

  it.each([
    ['1', 1],
    ['20000', 20_000],
    ['20_000', 20_000],
    ['20,000', 20_000],
    [' 384 ', 384],
    ['1000000', 1_000_000],
  ])('accepts %j', (text, value) => {
    expect(parse(text)).toBe(value)
  })

  it.each([
    '',
    'abc',
    '1.5',
    '-3',
    '0',
    '1000001',
    '1e3',
    '0x10',
    '2_0',
    '20,00',
    'NaN',
    '9'.repeat(20),
  ])('rejects %j, naming the range', (text) => {
    expect(() => parse(text)).toThrow(InvalidArgumentError)
    expect(() => parse(text)).toThrow('expected an integer from 1 to 1000000.')
  })
})
