/**
 * A command-line integer of at least `min`; anything else prints why on stderr and exits
 * with status 2 (a usage error), so that a benchmark never runs on a misread option.
 */
export function integerArg(text: string, name: string, min: number): number {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < min) {
    process.stderr.write(
      `${name} must be an integer >= ${min}, got ${JSON.stringify(text)}\n`,
    )
    process.exit(2)
  }
  return value
}
