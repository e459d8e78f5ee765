import type { Timers } from '../../src/index.js'
import type { FakeClock } from './fixtures.js'

/** Timers driven by a FakeClock: `advance(ms)` moves time and runs what falls due, in order. */
export class FakeTimers implements Timers {
  #next = 1
  readonly #due = new Map<number, { at: number; fn: () => void }>()
  constructor(readonly clock: FakeClock) {}

  setTimeout = (fn: () => void, ms: number): unknown => {
    const id = this.#next++
    this.#due.set(id, { at: this.clock.ms + ms, fn })
    return id
  }

  clearTimeout = (handle: unknown): void => {
    this.#due.delete(handle as number)
  }

  get pending(): number {
    return this.#due.size
  }

  /** Move time forward, running timers as they fall due (and letting their promises settle). */
  async advance(ms: number): Promise<void> {
    const end = this.clock.ms + ms
    for (;;) {
      let nextId = -1
      let nextAt = Number.POSITIVE_INFINITY
      for (const [id, t] of this.#due) if (t.at <= end && t.at < nextAt) [nextId, nextAt] = [id, t.at]
      if (nextId < 0) break
      const t = this.#due.get(nextId)!
      this.#due.delete(nextId)
      this.clock.ms = Math.max(this.clock.ms, t.at)
      t.fn()
      await settle()
    }
    this.clock.ms = end
    await settle()
  }
}

/** Let pending promise callbacks run. */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r))
}
