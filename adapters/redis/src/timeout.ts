import { StoreUnavailableError, type Timers, withTimeout as within } from 'stockcast'

/** `promise`, or a `StoreUnavailableError` once `ms` pass without an answer (the call itself is left to finish). */
export function withTimeout<T>(promise: Promise<T>, ms: number, timers: Timers, what: string): Promise<T> {
  return within(
    promise,
    ms,
    timers,
    () => new StoreUnavailableError(`${what}: no answer from Redis within ${ms} ms`, { tier: 'l2' }),
  )
}
