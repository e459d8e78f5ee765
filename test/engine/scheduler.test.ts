import { describe, expect, it } from 'vitest'
import { FlushScheduler } from '../../src/invalidation/scheduler.js'
import { VersionClock } from '../../src/invalidation/versions.js'
import { backoffDelay } from '../../src/util/backoff.js'
import { every } from '../../src/util/timers.js'
import { FakeTimers } from '../helpers/fake-timers.js'
import { FakeClock } from '../helpers/fixtures.js'

function setup(debounceMs = 100, maxWaitMs = 1000, retryMs = 50) {
  const clock = new FakeClock()
  const timers = new FakeTimers(clock)
  const runs: number[] = []
  let failNext = 0
  const s = new FlushScheduler(timers, { debounceMs, maxWaitMs, retryMs }, async () => {
    runs.push(clock.ms)
    if (failNext > 0) {
      failNext--
      return { failed: ['x'] }
    }
    return { failed: [] }
  })
  return { clock, timers, runs, s, fail: (n: number) => (failNext = n) }
}

describe('FlushScheduler', () => {
  it('runs after the quiet window, once for a burst', async () => {
    const { timers, runs, s, clock } = setup()
    const t0 = clock.ms
    s.schedule()
    await timers.advance(50)
    s.schedule()
    await timers.advance(99)
    expect(runs).toEqual([])
    await timers.advance(1)
    expect(runs).toEqual([t0 + 150])
  })

  it('runs at maxWait under a constant stream of marks', async () => {
    const { timers, runs, s, clock } = setup(100, 300)
    const t0 = clock.ms
    for (let i = 0; i < 10; i++) {
      s.schedule()
      await timers.advance(50)
    }
    expect(runs[0]).toBe(t0 + 300)
  })

  it('retries a run with failures after a growing delay, and stops once it succeeds', async () => {
    const { timers, runs, s, fail, clock } = setup(100, 1000, 50)
    const t0 = clock.ms
    fail(2)
    s.schedule()
    await timers.advance(100) // run 1 fails
    await timers.advance(50) // retry after 50: fails
    await timers.advance(100) // retry after 100: succeeds
    await timers.advance(10_000)
    expect(runs).toEqual([t0 + 100, t0 + 150, t0 + 250])
    expect(s.armed).toBe(0)
  })

  it('paused: marks arm nothing; run() joins a run in progress and queues one more', async () => {
    const { timers, runs, s } = setup()
    s.pause()
    s.schedule()
    expect(s.armed).toBe(0)
    s.resume()
    await Promise.all([s.run(), s.run(), s.run()])
    expect(runs.length).toBe(2)
    await timers.advance(1000)
    s.close()
    s.schedule()
    expect(s.armed).toBe(0)
  })
})

describe('backoffDelay and every()', () => {
  it('doubles from the base and caps', () => {
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, 200, 1000))).toEqual([200, 400, 800, 1000])
    expect(backoffDelay(500, 1, 30_000)).toBe(30_000)
  })

  it('every() repeats on injected timers until stopped', async () => {
    const clock = new FakeClock()
    const timers = new FakeTimers(clock)
    let n = 0
    const stop = every(timers, 100, () => n++)
    await timers.advance(350)
    expect(n).toBe(3)
    stop()
    await timers.advance(1000)
    expect(n).toBe(3)
    expect(timers.pending).toBe(0)
  })
})

describe('VersionClock', () => {
  it('stamps follow the clock; given versions move it up; wait resolves (a mark, or the clock reaching it) or times out', async () => {
    const clock = new FakeClock()
    const timers = new FakeTimers(clock)
    const v = new VersionClock(clock, timers)
    const a = v.next(undefined, 't')
    expect(a).toBe(clock.ms * 1000 + 1)
    expect(v.next(a + 10, 't')).toBe(a + 10)
    expect(() => v.next(-1, 't')).toThrow(/positive integer/)
    const waited = v.wait(a + 20, 500, 't')
    v.next(a + 20, 't')
    v.notify()
    await expect(waited).resolves.toBeUndefined()
    // A token a little ahead of this clock (another instance's): it arrives when the clock reaches it.
    let arrived = false
    const soon = v.wait(a + 100, 500, 't').then(() => {
      arrived = true
    })
    await timers.advance(0)
    expect(arrived).toBe(false)
    await timers.advance(1)
    await soon
    expect(arrived).toBe(true)
    // One further ahead than the timeout, and never handed out: it times out.
    const late = v.wait((clock.ms + 1000) * 1000, 500, 't')
    const rejected = expect(late).rejects.toMatchObject({ code: 'E_WAIT_TIMEOUT' })
    await timers.advance(500)
    await rejected
    expect(timers.pending).toBe(0)
  })
})

describe('coalesce', () => {
  it('never overlaps; calls during a run share one next run; a call right after a run ends is never lost', async () => {
    const { coalesce } = await import('../../src/invalidation/scheduler.js')
    let active = 0
    let maxActive = 0
    let runs = 0
    const gates: Array<() => void> = []
    const run = coalesce(async () => {
      active++
      maxActive = Math.max(maxActive, active)
      runs++
      const n = runs
      await new Promise<void>((r) => gates.push(r))
      active--
      return n
    })
    const first = run()
    const during = [run(), run(), run()]
    gates.shift()!()
    expect(await first).toBe(1)
    // The call made in the gap between the end of run 1 and the start of run 2 joins run 2.
    const gap = run()
    await Promise.resolve()
    gates.shift()!()
    expect(await Promise.all([...during, gap])).toEqual([2, 2, 2, 2])
    // After everything settled, a call starts a run of its own at once and resolves.
    const later = run()
    gates.shift()!()
    expect(await later).toBe(3)
    expect(maxActive).toBe(1)
  })
})

describe('coalesce: no lost call at any microtask distance from the end of a run', () => {
  it('a call made k microtasks after a run ends always resolves (p-debounce after:true lost some)', async () => {
    const { coalesce } = await import('../../src/invalidation/scheduler.js')
    for (let k = 0; k < 12; k++) {
      let done!: () => void
      const ended = new Promise<void>((r) => (done = r))
      const run = coalesce(async () => {
        await Promise.resolve()
        done()
        return k
      })
      const first = run()
      let late: Promise<number> | undefined
      void ended.then(async () => {
        for (let i = 0; i < k; i++) await Promise.resolve()
        late = run()
      })
      await first
      for (let i = 0; i < 20; i++) await Promise.resolve()
      const timeout = new Promise((r) => setTimeout(() => r('lost'), 200))
      expect(await Promise.race([late!, timeout])).toBe(k)
    }
  })
})
