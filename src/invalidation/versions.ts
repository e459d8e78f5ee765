import { InvalidInputError, WaitTimeoutError } from '../errors.js'
import type { Clock, Timers } from '../util/timers.js'

/**
 * Two numberings, kept apart:
 * - **mark tokens** (`next`): what `markDirty` returns and `get(p, { atLeast })` waits for. They start from the clock
 *   (ms x 1000) and count up by one per mark, so a burst of marks runs ahead of the clock; a mark may bring its own
 *   version (a source position such as an outbox row id), which moves the counter up when larger. `wait(v)`
 *   resolves once a token >= v has been handed out (read-your-writes).
 * - **value stamps** (`stamp`): the version a recompute gives its values, taken before its source read starts. They
 *   follow the clock only (ms x 1000, plus one per batch of this process within a millisecond) and never the mark
 *   counter: a shared store keeps the highest version, and that must be the value read last in real time, whichever
 *   instance wrote it. Instances' clocks must agree to within the time between a commit and its capture's recompute.
 */
export class VersionClock {
  readonly #clock: Clock
  readonly #timers: Timers
  #version: number
  #stamp = 0
  #waiters: Array<{ version: number; resolve: () => void }> = []

  constructor(clock: Clock, timers: Timers) {
    this.#clock = clock
    this.#timers = timers
    this.#version = Math.floor(clock.now()) * 1000
  }

  /** The newest version handed out. */
  get current(): number {
    return this.#version
  }

  /** The mark counter moved up to the clock. */
  now(): number {
    const t = Math.floor(this.#clock.now()) * 1000
    if (t > this.#version) this.#version = t
    return this.#version
  }

  /** A value stamp: the clock (ms x 1000), strictly increasing in this process, never ahead of the clock by marks. */
  stamp(): number {
    const t = Math.floor(this.#clock.now()) * 1000
    this.#stamp = t > this.#stamp ? t : this.#stamp + 1
    return this.#stamp
  }

  /** The version of a new mark: the given one (validated) or the next stamp. */
  next(given: number | undefined, where: string): number {
    if (given === undefined) {
      this.now()
      return ++this.#version
    }
    if (typeof given !== 'number' || !Number.isSafeInteger(given) || given < 1) {
      throw new InvalidInputError(`${where}: version must be a positive integer, got ${String(given)}`)
    }
    if (given > this.#version) this.#version = given
    return given
  }

  /** Wake the waiters whose version has arrived. */
  notify(): void {
    if (this.#waiters.length === 0) return
    const ready = this.#waiters.filter((w) => w.version <= this.#version)
    if (ready.length === 0) return
    this.#waiters = this.#waiters.filter((w) => w.version > this.#version)
    for (const w of ready) w.resolve()
  }

  /**
   * Resolve once `version` has been handed out here or the clock has reached it (a token of another instance);
   * WaitTimeoutError after `timeoutMs`.
   */
  wait(version: number, timeoutMs: number, where: string): Promise<void> {
    if (typeof version !== 'number' || !Number.isFinite(version)) {
      return Promise.reject(new InvalidInputError(`${where}: atLeast must be a version number, got ${String(version)}`))
    }
    // Tokens follow the clock: one this instance has not handed out (another instance's) has arrived once the clock
    // reaches it.
    if (version <= this.now()) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        version,
        resolve: () => {
          this.#timers.clearTimeout(timer)
          if (reached !== undefined) this.#timers.clearTimeout(reached)
          resolve()
        },
      }
      // A token a little ahead of this clock (another instance's clock runs ahead): look again when it is reached.
      const aheadMs = Math.ceil(version / 1000) - this.#clock.now()
      const reached =
        aheadMs < timeoutMs
          ? this.#timers.setTimeout(
              () => {
                this.now()
                this.notify()
              },
              Math.max(0, aheadMs),
            )
          : undefined
      const timer = this.#timers.setTimeout(() => {
        if (reached !== undefined) this.#timers.clearTimeout(reached)
        this.#waiters = this.#waiters.filter((w) => w !== waiter)
        reject(
          new WaitTimeoutError(
            `${where}: version ${version} did not arrive within waitTimeoutMs=${timeoutMs} (newest seen: ${this.#version})`,
            { option: 'waitTimeoutMs' },
          ),
        )
      }, timeoutMs)
      this.#waiters.push(waiter)
    })
  }

  /** Release every waiter (the cache is closing). */
  close(): void {
    for (const w of this.#waiters) w.resolve()
    this.#waiters = []
  }
}
