import type { HeadChange } from '../ports/change-signal.js'
import { describe, expect, it } from 'vitest'
import { InProcessChangeSignal } from './in-process-change-signal.js'

describe('InProcessChangeSignal', () => {
  it('tells every subscriber, until it unsubscribes', async () => {
    const signal = new InProcessChangeSignal()
    const a: HeadChange[] = []
    const b: HeadChange[] = []
    const offA = signal.subscribe((change) => a.push(change))
    signal.subscribe((change) => b.push(change))
    await signal.publish({ head: 1, deviceId: 'laptop' })
    offA()
    offA() // twice is harmless
    await signal.publish({ head: 2 })
    expect(a).toEqual([{ head: 1, deviceId: 'laptop' }])
    expect(b).toEqual([{ head: 1, deviceId: 'laptop' }, { head: 2 }])
    expect(signal.listenerCount).toBe(1)
  })

  it('keeps two subscriptions of one function apart', async () => {
    const signal = new InProcessChangeSignal()
    const heads: number[] = []
    const listener = ({ head }: HeadChange): void => {
      heads.push(head)
    }
    const off = signal.subscribe(listener)
    signal.subscribe(listener)
    await signal.publish({ head: 3 })
    off()
    await signal.publish({ head: 4 })
    expect(heads).toEqual([3, 3, 4])
  })

  it('a listener that throws is reported and the others still run', async () => {
    const failures: unknown[] = []
    const signal = new InProcessChangeSignal({
      onListenerError: (error) => failures.push(error),
    })
    const heads: number[] = []
    signal.subscribe(() => {
      throw new Error('broken stream')
    })
    signal.subscribe(({ head }) => heads.push(head))
    await signal.publish({ head: 5 })
    expect(heads).toEqual([5])
    expect(failures).toEqual([new Error('broken stream')])
  })

  it('a listener may unsubscribe another one while being told', async () => {
    const signal = new InProcessChangeSignal()
    const heads: number[] = []
    let offSecond = (): void => undefined
    signal.subscribe(() => offSecond())
    offSecond = signal.subscribe(({ head }) => heads.push(head))
    // The publish in progress still reaches it (a snapshot); the next one does not.
    await signal.publish({ head: 6 })
    await signal.publish({ head: 7 })
    expect(heads).toEqual([6])
  })
})
