/** A document as the original prototype sent it: the vector as float64 JSON numbers. */
export interface NaiveDocument {
  readonly id: string
  readonly vector: readonly number[]
  readonly metadata: unknown
}

/** The prototype's storage form of a vector: float64 bytes. */
export function float64Blob(vector: readonly number[]): Buffer {
  const values = Float64Array.from(vector)
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength)
}
