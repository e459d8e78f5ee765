/** Where time comes from. Inject a fake one in tests. */
export interface Clock {
  now(): number
}

/**
 * Timer functions. Inject fake ones to drive debounce, maxWait, retries and polling without sleeping. Every timer
 * stockcast starts (the engine's and the SQL change capture's) goes through one of these.
 */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

/** The global timers, unref'd: a cache never keeps a process alive on its own. */
export const defaultTimers: Timers = {
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return t
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>)
  },
}

/** A repeating timer built on `Timers` (so fake timers drive it too). Returns the function that stops it. */
export function every(timers: Timers, ms: number, fn: () => void): () => void {
  let handle: unknown
  let stopped = false
  const tick = () => {
    if (stopped) return
    handle = timers.setTimeout(tick, ms)
    fn()
  }
  handle = timers.setTimeout(tick, ms)
  return () => {
    stopped = true
    timers.clearTimeout(handle)
  }
}

/**
 * `promise`, or a rejection with `onTimeout()` once `ms` pass on `timers` without an answer. The promise itself is
 * left to finish; its late result is ignored.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, timers: Timers, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = timers.setTimeout(() => reject(onTimeout()), ms)
    promise.then(
      (v) => {
        timers.clearTimeout(timer)
        resolve(v)
      },
      (e) => {
        timers.clearTimeout(timer)
        reject(e)
      },
    )
  })
}
