import { StoreUnavailableError, type Timers } from 'stockcast'

/** `promise`, or a `StoreUnavailableError` once `ms` pass without an answer (the call itself is left to finish). */
export function withTimeout<T>(promise: Promise<T>, ms: number, timers: Timers, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = timers.setTimeout(() => {
      reject(new StoreUnavailableError(`${what}: no answer from Redis within ${ms} ms`, { tier: 'l2' }))
    }, ms)
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
