import { InvalidArgumentError } from 'commander'

/**
 * A commander argument parser that accepts a decimal integer in `min…max` (digits only, an
 * optional `_` or `,` between groups: `20_000`, `20,000`), so that `--docs abc`, `--docs 1.5`
 * and `--docs -3` fail with a message naming the range instead of becoming `NaN`.
 */
export function integerInRange(
  min: number,
  max: number,
): (value: string) => number {
  return (value) => {
    const digits = value.trim().replace(/(?<=\d)[_,](?=\d{3})/g, '')
    const parsed = /^\d+$/.test(digits) ? Number(digits) : Number.NaN
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      throw new InvalidArgumentError(
        `expected an integer from ${min} to ${max}.`,
      )
    }
    return parsed
  }
}
