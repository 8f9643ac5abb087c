/** Text formatting for the CLI's human-readable output. */

/** One column of {@link formatTable}. */
export interface Column<Row> {
  readonly header: string
  /** Default `'left'`; numbers read better right-aligned. */
  readonly align?: 'left' | 'right'
  readonly value: (row: Row) => string
}

/**
 * A plain-text table: a header row, then one line per row, columns separated by two
 * spaces, each line prefixed with `indent`. No trailing spaces.
 */
export function formatTable<Row>(
  columns: readonly Column<Row>[],
  rows: readonly Row[],
  indent = '  ',
): string {
  const cells = [
    columns.map((column) => column.header),
    ...rows.map((row) => columns.map((column) => column.value(row))),
  ]
  const widths = columns.map((_, c) =>
    Math.max(...cells.map((line) => (line[c] ?? '').length)),
  )
  return cells
    .map((line) =>
      (
        indent +
        line
          .map((cell, c) => {
            const width = widths[c] ?? 0
            return columns[c]?.align === 'right'
              ? cell.padStart(width)
              : cell.padEnd(width)
          })
          .join('  ')
      ).trimEnd(),
    )
    .join('\n')
}

const integerFormat = new Intl.NumberFormat('en-US', {
  maximumFractionDigits: 0,
})

/** `20000` → `20,000`. */
export function formatCount(value: number): string {
  return integerFormat.format(value)
}

/** Milliseconds with precision that suits the magnitude: `0.412 ms`, `8.21 ms`, `1,234 ms`. */
export function formatMs(ms: number): string {
  if (ms < 1) return `${ms.toFixed(3)} ms`
  if (ms < 100) return `${ms.toFixed(2)} ms`
  return `${formatCount(ms)} ms`
}

/** The first `length` characters of `text`, with an ellipsis if it was longer. */
export function truncate(text: string, length: number): string {
  return text.length <= length ? text : `${text.slice(0, length - 1)}…`
}
