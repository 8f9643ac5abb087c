/** What a replication-log entry did to its document. */
export type LogOp = 'put' | 'delete'

/** The fields of a log entry that compaction reads. */
export interface CompactableEntry {
  /** Log sequence number: strictly increasing per replica. */
  readonly lsn: number
  readonly collection: string
  readonly docId: string
  readonly op: LogOp
  /**
   * Whether the server may know the document: it existed on this replica (live or as a
   * tombstone) before this write, or this entry was handed to a push, whose outcome may
   * be unknown. `false` on the oldest pending entry means the server has certainly never
   * been sent the document by this replica.
   */
  readonly priorExists: boolean
}

/** What compaction decided; the caller applies it in one transaction. */
export interface CompactionPlan {
  /** Entries to delete from the log. */
  readonly removeLsns: readonly number[]
  /** Surviving entries whose `priorExists` must become `false` (they inherit it). */
  readonly clearPriorExists: readonly number[]
  /** Documents created and deleted locally and never sent: drop their tombstones too. */
  readonly purgeDocuments: ReadonlyArray<{
    readonly collection: string
    readonly docId: string
  }>
}

/**
 * Plans the compaction of the pending part of a replication log.
 *
 * @remarks
 * Pass only entries that no push has taken: entries handed to an in-flight push must
 * never be rewritten. The rule, per document:
 * - Only the newest entry survives: it carries the document's newest state, which is all
 *   a replica that applies the log ends up with.
 * - The survivor inherits `priorExists` from the oldest entry, so a document created
 *   offline stays "never sent" however often it is edited.
 * - If the document was never sent (`priorExists` false on its oldest entry) and its newest
 *   entry is a delete, nothing survives and its local tombstone can go: create-then-delete
 *   sends nothing.
 *
 * The plan is idempotent (planning again after applying it changes nothing) and
 * reduce-equivalent (applying the compacted log gives the same live documents as the
 * original one).
 */
export function planCompaction(
  pending: readonly CompactableEntry[],
): CompactionPlan {
  const byDocument = new Map<string, CompactableEntry[]>()
  for (const entry of pending) {
    const key = `${entry.collection}\u0000${entry.docId}`
    const group = byDocument.get(key)
    if (group) group.push(entry)
    else byDocument.set(key, [entry])
  }
  const removeLsns: number[] = []
  const clearPriorExists: number[] = []
  const purgeDocuments: Array<{ collection: string; docId: string }> = []
  for (const group of byDocument.values()) {
    let oldest = group[0] as CompactableEntry
    let newest = oldest
    for (const entry of group) {
      if (entry.lsn < oldest.lsn) oldest = entry
      if (entry.lsn > newest.lsn) newest = entry
    }
    if (!oldest.priorExists && newest.op === 'delete') {
      for (const entry of group) removeLsns.push(entry.lsn)
      purgeDocuments.push({
        collection: newest.collection,
        docId: newest.docId,
      })
      continue
    }
    for (const entry of group) if (entry !== newest) removeLsns.push(entry.lsn)
    if (!oldest.priorExists && newest.priorExists)
      clearPriorExists.push(newest.lsn)
  }
  removeLsns.sort((a, b) => a - b)
  return { removeLsns, clearPriorExists, purgeDocuments }
}
