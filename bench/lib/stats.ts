/** Latency summary of one benchmark row. */
export interface LatencySummary {
  /** Median, in milliseconds. */
  readonly p50Ms: number
  /** 95th percentile (nearest rank), in milliseconds. */
  readonly p95Ms: number
  /** Queries per second on one thread: 1000 / mean latency. */
  readonly qps: number
}

/** Summarizes per-query latencies in milliseconds (at least one). */
export function summarize(timesMs: readonly number[]): LatencySummary {
  if (timesMs.length === 0) throw new RangeError('summarize: no samples')
  const sorted = [...timesMs].sort((a, b) => a - b)
  const at = (index: number): number => sorted[index] as number
  const middle = sorted.length >> 1
  const p50Ms =
    sorted.length % 2 === 1 ? at(middle) : (at(middle - 1) + at(middle)) / 2
  const p95Ms = at(Math.ceil(0.95 * sorted.length) - 1)
  const meanMs = sorted.reduce((sum, t) => sum + t, 0) / sorted.length
  return { p50Ms, p95Ms, qps: 1000 / meanMs }
}

/** The median of at least one value (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median: no values')
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

/** `value` rounded to `digits` decimal places, for printing and JSON rows. */
export function round(value: number, digits: number): number {
  const scale = 10 ** digits
  return Math.round(value * scale) / scale
}
