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
 * `Timers`. Runs never overlap: a call during a run gets the next run, which starts once that one is over and serves
 * every call made meanwhile (`coalesce`).
 *
 * p-debounce serves neither part: its time-based debounce uses the global setTimeout, which injected `Timers` cannot
 * drive, and its promise mode with `after: true` loses a call made between the end of a run and its cleanup (the
 * caller waits until some later call happens to run the queue: a `flush()` hung that way in the SQL capture tests).
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
    this.#runner = coalesce(async () => {
      const report = await run()
      if (report.failed.length > 0) this.#scheduleRetry()
      else this.#attempt = 0
      return report
    })
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

/**
 * Single flight with one follow-up: `fn` never runs twice at once; a call while it runs gets the next run, shared by
 * every call made during the current one, started as soon as the current one settles.
 */
export function coalesce<R>(fn: () => Promise<R>): () => Promise<R> {
  let running: Promise<R> | undefined
  let next: Promise<R> | undefined
  const start = (): Promise<R> => {
    const p = fn()
    running = p
    const clear = () => {
      if (running === p) running = undefined
    }
    p.then(clear, clear)
    return p
  }
  return () => {
    if (running === undefined) return start()
    if (next === undefined) {
      const current = running
      const ignore = () => {}
      next = current.then(ignore, ignore).then(() => {
        next = undefined
        // Someone may have started a run since this one ended: it began after the calls it must serve.
        return running ?? start()
      })
    }
    return next
  }
}
