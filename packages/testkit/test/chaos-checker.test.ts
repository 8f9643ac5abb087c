import { nodeSha256 } from '@velosync/client'
import {
  EMPTY_COLLECTION_DIGEST,
  type DocumentVersion,
  type VersionVector,
} from '@velosync/core'
import { describe, expect, it } from 'vitest'
import {
  checkRun,
  oracleDigests,
  summarizeRuns,
  type ChaosFinalState,
  type ChaosServerOp,
  type ChaosWrite,
} from '../src/chaos/checker.js'

const COLLECTIONS = [{ name: 'notes', dtype: 'float32' as const }]

function write(
  replica: string,
  lsn: number,
  versionVector: VersionVector,
  wallMs: number,
  value = wallMs,
): ChaosWrite {
  return {
    device: replica.split('.')[0] as string,
    replica,
    lsn,
    collection: 'notes',
    version: {
      id: 'doc',
      deleted: false,
      vector: new Float32Array([1, value]),
      metadataJson: `{"v":${value}}`,
      versionVector,
      hlc: { wallMs, counter: 0 },
      origin: replica,
    },
  }
}

function op(
  w: ChaosWrite,
  outcome: ChaosServerOp['outcome'],
  stored?: DocumentVersion,
): ChaosServerOp {
  return {
    replica: w.replica,
    lsn: w.lsn,
    collection: 'notes',
    pushed: w.version,
    outcome,
    ...(stored === undefined ? {} : { stored }),
  }
}

/** The final state a correct server would reach for `stored`, every device agreeing. */
function finalOf(
  writes: readonly ChaosWrite[],
  stored: DocumentVersion | undefined,
): ChaosFinalState {
  const digest =
    oracleDigests({ writes, serverOps: [] }, COLLECTIONS, nodeSha256).get(
      'notes',
    ) ?? EMPTY_COLLECTION_DIGEST
  return {
    collections: COLLECTIONS,
    server: {
      versions:
        stored === undefined ? [] : [{ collection: 'notes', version: stored }],
      digests: { notes: digest },
    },
    devices: [
      { device: 'a', digests: { notes: digest } },
      { device: 'b', digests: { notes: digest } },
    ],
    quiesced: true,
    convergeMs: 3,
  }
}

// a writes, b overwrites after seeing it, then a writes concurrently with b.
const a1 = write('a.01', 1, { 'a.01': 1 }, 10)
const b1 = write('b.01', 1, { 'a.01': 1, 'b.01': 1 }, 20)
const a2 = write('a.01', 2, { 'a.01': 2 }, 30)
const merged: DocumentVersion = {
  ...a2.version,
  versionVector: { 'a.01': 2, 'b.01': 1 },
}

describe('chaos checker', () => {
  it('a correct history has every figure at 0', () => {
    const history = {
      writes: [a1, b1, a2],
      serverOps: [
        op(a1, 'applied'),
        op(b1, 'applied'),
        op(a2, 'conflict_won', merged),
        op(a2, 'duplicate'),
      ],
    }
    const figures = checkRun(
      history,
      finalOf(history.writes, merged),
      nodeSha256,
    )
    expect(figures.problems).toEqual([])
    expect(figures).toMatchObject({
      operations: 3,
      lost: 0,
      duplicated: 0,
      diverged: 0,
      stuck: 0,
      falseConflicts: 0,
      missedConflicts: 0,
    })
  })

  it('counts a write the final version has not seen as lost, and the oracle disagrees', () => {
    const history = {
      writes: [a1, b1, a2],
      serverOps: [op(a1, 'applied'), op(b1, 'applied')],
    }
    const final = finalOf([a1, b1], b1.version)
    const figures = checkRun(history, final, nodeSha256)
    expect(figures.lost).toBe(1)
    expect(figures.diverged).toBe(1)
    expect(figures.problems.join('\n')).toMatch(
      /lost: notes\/doc written by a\.01 \(lsn 2/,
    )
  })

  it('under a clock bound, ranks a write superseded before it was sent as of its successor', () => {
    // f (clock in 2099) writes f1, then f2 over it before pushing: only f2 is sent,
    // accepted at 1_000 (competing at 1_060); b1 is accepted at 1_030 and loses to it.
    const year2099 = Date.UTC(2099, 0, 1)
    const f1 = write('f.01', 1, { 'f.01': 1 }, year2099, 1)
    const f2 = write('f.01', 2, { 'f.01': 2 }, year2099 + 1, 2)
    const b = write('b.01', 1, { 'b.01': 1 }, 1_030, 3)
    const bounded = oracleDigests(
      {
        writes: [f1, b, f2],
        serverOps: [
          { ...op(f2, 'applied'), acceptedAtMs: 1_000 },
          { ...op(b, 'conflict_lost'), acceptedAtMs: 1_030 },
        ],
        maxClockLeadMs: 60,
      },
      COLLECTIONS,
      nodeSha256,
    )
    // What the server stores in either arrival order: f2's content, both vectors merged.
    const serverAnswer = oracleDigests(
      { writes: [b, f2], serverOps: [] },
      COLLECTIONS,
      nodeSha256,
    )
    expect(bounded).toEqual(serverAnswer)
  })

  it('counts an op processed twice as duplicated', () => {
    const history = {
      writes: [a1, b1],
      serverOps: [op(a1, 'applied'), op(b1, 'applied'), op(a1, 'stale')],
    }
    const figures = checkRun(
      history,
      finalOf(history.writes, b1.version),
      nodeSha256,
    )
    expect(figures.duplicated).toBe(1)
  })

  it('counts conflicts flagged for ordered versions and concurrent versions not flagged', () => {
    const falseOne = checkRun(
      {
        writes: [a1, b1],
        serverOps: [op(a1, 'applied'), op(b1, 'conflict_won', b1.version)],
      },
      finalOf([a1, b1], b1.version),
      nodeSha256,
    )
    expect(falseOne.falseConflicts).toBe(1)
    const missed = checkRun(
      {
        writes: [a1, b1, a2],
        serverOps: [op(a1, 'applied'), op(b1, 'applied'), op(a2, 'applied')],
      },
      finalOf([a1, b1, a2], merged),
      nodeSha256,
    )
    expect(missed.missedConflicts).toBe(1)
  })

  it('counts a device digest that differs from the server, and a run that did not quiesce', () => {
    const history = { writes: [a1], serverOps: [op(a1, 'applied')] }
    const final = finalOf(history.writes, a1.version)
    const figures = checkRun(
      history,
      {
        ...final,
        devices: [{ device: 'b', digests: {} }],
        quiesced: false,
        convergeMs: undefined,
      },
      nodeSha256,
    )
    expect(figures.diverged).toBe(1)
    expect(figures.stuck).toBe(1)
  })

  it('summarizes runs into one row with converge percentiles', () => {
    const history = { writes: [a1], serverOps: [op(a1, 'applied')] }
    const runs = [1, 2, 3, 4].map((ms) =>
      checkRun(
        history,
        { ...finalOf([a1], a1.version), convergeMs: ms },
        nodeSha256,
      ),
    )
    expect(summarizeRuns('unit', runs)).toEqual({
      scenario: 'unit',
      runs: 4,
      operations: 4,
      lost: 0,
      duplicated: 0,
      diverged: 0,
      stuck: 0,
      falseConflicts: 0,
      missedConflicts: 0,
      convergeMsP50: 2,
      convergeMsP99: 4,
    })
  })
})
