import { describe, expect, it } from 'vitest'
import {
  HLC_MAX_COUNTER,
  HybridLogicalClock,
  compareHlc,
  laterThan,
  type HlcTimestamp,
} from './hlc.js'

function manualClock(start: number) {
  let now = start
  return { wall: () => now, set: (ms: number) => (now = ms) }
}

describe('HybridLogicalClock', () => {
  it('follows the wall clock when it moves forward', () => {
    const wall = manualClock(1000)
    const clock = new HybridLogicalClock({ wallClock: wall.wall })
    expect(clock.now()).toEqual({ wallMs: 1000, counter: 0 })
    wall.set(1005)
    expect(clock.now()).toEqual({ wallMs: 1005, counter: 0 })
  })

  it('stays strictly monotonic when the wall clock stalls or jumps backwards', () => {
    const wall = manualClock(5000)
    const clock = new HybridLogicalClock({ wallClock: wall.wall })
    const seen: HlcTimestamp[] = [clock.now(), clock.now()]
    wall.set(10)
    seen.push(clock.now(), clock.now())
    for (let i = 1; i < seen.length; i++)
      expect(compareHlc(seen[i]!, seen[i - 1]!)).toBeGreaterThan(0)
    expect(seen[3]).toEqual({ wallMs: 5000, counter: 3 })
  })

  it('borrows the next millisecond when the counter is exhausted', () => {
    const clock = new HybridLogicalClock({
      wallClock: () => 7,
      last: { wallMs: 7, counter: HLC_MAX_COUNTER },
    })
    expect(clock.now()).toEqual({ wallMs: 8, counter: 0 })
  })

  it('resumes after a restart without going backwards', () => {
    const clock = new HybridLogicalClock({
      wallClock: () => 100,
      last: { wallMs: 900, counter: 4 },
    })
    expect(clock.now()).toEqual({ wallMs: 900, counter: 5 })
  })

  it('absorbs a peer timestamp within the drift bound', () => {
    const clock = new HybridLogicalClock({
      wallClock: () => 1000,
      maxForwardDriftMs: 500,
    })
    clock.observe({ wallMs: 1400, counter: 9 })
    expect(clock.now()).toEqual({ wallMs: 1400, counter: 10 })
  })

  it('clamps a far-future peer timestamp to wall + maxForwardDriftMs', () => {
    const wall = manualClock(1_000_000)
    const clock = new HybridLogicalClock({
      wallClock: wall.wall,
      maxForwardDriftMs: 60_000,
    })
    const year2099 = Date.UTC(2099, 0, 1)
    clock.observe({ wallMs: year2099, counter: 0 })
    const next = clock.now()
    expect(next.wallMs).toBe(1_060_000)
    // Once the wall clock passes the bound, local time leads again.
    wall.set(2_000_000)
    expect(clock.now()).toEqual({ wallMs: 2_000_000, counter: 0 })
  })

  it('rejects malformed timestamps', () => {
    const clock = new HybridLogicalClock()
    expect(() => clock.observe({ wallMs: -1, counter: 0 })).toThrow(
      /HLC timestamp/,
    )
    expect(() => clock.observe({ wallMs: 1.5, counter: 0 })).toThrow(
      /HLC timestamp/,
    )
    expect(() => new HybridLogicalClock({ maxForwardDriftMs: -1 })).toThrow(
      /maxForwardDriftMs/,
    )
  })
})

describe('laterThan', () => {
  it('keeps a later timestamp and otherwise steps just past the floor', () => {
    expect(
      laterThan({ wallMs: 5, counter: 0 }, { wallMs: 4, counter: 9 }),
    ).toEqual({
      wallMs: 5,
      counter: 0,
    })
    expect(
      laterThan({ wallMs: 4, counter: 9 }, { wallMs: 4, counter: 9 }),
    ).toEqual({
      wallMs: 4,
      counter: 10,
    })
    expect(
      laterThan(
        { wallMs: 1, counter: 0 },
        { wallMs: 9, counter: HLC_MAX_COUNTER },
      ),
    ).toEqual({ wallMs: 10, counter: 0 })
  })
})
