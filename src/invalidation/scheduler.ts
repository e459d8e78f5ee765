import pDebounce from 'p-debounce'
import { backoffDelay } from '../util/backoff.js'
import type { Timers } from '../util/timers.js'

export interface SchedulerOptions {
  /** Quiet ms after the last mark before a run (0: on the next timer tick). */
  debounceMs: number
  /** Longest ms a mark waits under a constant stream of marks. */
  maxWaitMs: number
  /** First retry delay after a run with failures (doubles, see `backoffDelay`). */
  retryMs: number
}

/**
 * When the engine flushes its pending marks: after `debounceMs` of quiet, at the latest `maxWaitMs` after the first
 * mark of a burst, and again after a run with failures (growing delay). Every timer goes through the injected
 * `Timers`. Runs never overlap: `p-debounce`'s promise mode makes a call during a run wait for that run and start
 * exactly one more. (p-debounce's own time-based debounce cannot serve the quiet window: it uses the global
 * setTimeout, which fake `Timers` cannot drive.)
 */
export class FlushScheduler<R extends { failed: readonly unknown[] }> {
  readonly #timers: Timers
  readonly #o: SchedulerOptions
  readonly #runner: () => Promise<R>
  #quiet: unknown = undefined
  #maxWait: unknown = undefined
  #retry: unknown = undefined
  #attempt = 0
  #paused = false
  #closed = false

  constructor(timers: Timers, options: SchedulerOptions, run: () => Promise<R>) {
    this.#timers = timers
    this.#o = options
    this.#runner = pDebounce.promise(
      async () => {
        const report = await run()
        if (report.failed.length > 0) this.#scheduleRetry()
        else this.#attempt = 0
        return report
      },
      { after: true },
    )
  }

  /** Timers armed (quiet window, max wait, retry). */
  get armed(): number {
    return (
      (this.#quiet !== undefined ? 1 : 0) + (this.#maxWait !== undefined ? 1 : 0) + (this.#retry !== undefined ? 1 : 0)
    )
  }

  /** A mark arrived: (re)start the quiet window; start the max-wait window if none runs. */
  schedule(): void {
    if (this.#closed || this.#paused) return
    if (this.#o.debounceMs === 0) {
      if (this.#quiet === undefined) this.#quiet = this.#timers.setTimeout(() => this.#fire(), 0)
      return
    }
    if (this.#quiet !== undefined) this.#timers.clearTimeout(this.#quiet)
    this.#quiet = this.#timers.setTimeout(() => this.#fire(), this.#o.debounceMs)
    if (this.#maxWait === undefined) this.#maxWait = this.#timers.setTimeout(() => this.#fire(), this.#o.maxWaitMs)
  }

  /** Run now (cancels the armed windows); joins a run in progress and queues one more. */
  run(): Promise<R> {
    this.cancel()
    return this.#runner()
  }

  /** Stop scheduling while a bulk block runs; `resume()` re-enables it. */
  pause(): void {
    this.#paused = true
    this.cancel()
  }

  resume(): void {
    this.#paused = false
  }

  /** Forget the retry delay (a caller flushed successfully). */
  resetRetry(): void {
    this.#attempt = 0
  }

  cancel(): void {
    for (const t of [this.#quiet, this.#maxWait, this.#retry]) if (t !== undefined) this.#timers.clearTimeout(t)
    this.#quiet = undefined
    this.#maxWait = undefined
    this.#retry = undefined
  }

  close(): void {
    this.#closed = true
    this.cancel()
  }

  #fire(): void {
    this.cancel()
    void this.#runner().catch(() => {})
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#retry !== undefined) return
    const delay = backoffDelay(this.#attempt++, this.#o.retryMs)
    this.#retry = this.#timers.setTimeout(() => {
      this.#retry = undefined
      void this.#runner().catch(() => {})
    }, delay)
  }
}
