import type { Freshness } from '../cache/freshness.js'
import type { StockProjection } from '../cache/types.js'
import { todayIn } from '../projection/dates.js'
import type { Clock, Timers } from '../util/timers.js'

export interface Today {
  date: string
  endsAtMs: number
}

/**
 * The stock cache's freshness: a projection is fresh on the day it was computed for. The epoch is bumped when D0
 * changes in the configured time zone; the facade's L1 hits compare `epoch` instead of reading the clock (a clock
 * read costs ~50 ns): a timer fires at the zone's midnight, and the facade calls `day()` every 1024 hits. With an
 * injected clock and no injected timers there is no timer and every hit calls `day()` (tests move time by hand).
 */
export class DayClock implements Freshness<StockProjection> {
  readonly #timeZone: string
  readonly #clock: Clock
  readonly #timers: Timers
  readonly #exact: boolean
  #today: Today = { date: '', endsAtMs: 0 }
  /** The current epoch (a plain field: the facade's hot paths read it without a call). */
  epoch = 0
  #timer: unknown = undefined
  #closed = false
  /**
   * Called synchronously when D0 moves (not on the first reading), after the epoch moved: the day rollover swaps in
   * the values it prepared before any read of the new day is answered.
   */
  onNewDay: ((date: string) => void) | undefined = undefined

  constructor(timeZone: string, clock: Clock, timers: Timers, exact: boolean) {
    this.#timeZone = timeZone
    this.#clock = clock
    this.#timers = timers
    this.#exact = exact
  }

  current(): number {
    this.day()
    return this.epoch
  }

  accepts(value: StockProjection): boolean {
    return value.today === this.day().date
  }

  /** D0 now, moving the epoch when the day changed. */
  day(): Today {
    const now = this.#clock.now()
    if (now < this.#today.endsAtMs) return this.#today
    const t = todayIn(this.#timeZone, now)
    const before = this.#today.date
    if (t.date !== before) this.epoch++
    this.#today = { date: t.date, endsAtMs: t.endsAtMs }
    if (!this.#exact && !this.#closed) {
      if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer)
      this.#timer = this.#timers.setTimeout(
        () => {
          this.#timer = undefined
          this.day()
        },
        Math.min(t.endsAtMs - now + 1, 2 ** 31 - 1),
      )
    }
    if (t.date !== before && before !== '') this.onNewDay?.(t.date)
    return this.#today
  }

  close(): void {
    this.#closed = true
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer)
    this.#timer = undefined
  }
}
