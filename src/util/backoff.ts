/**
 * The one retry delay of stockcast: `baseMs` doubled per failed attempt, capped at `maxMs`. `attempt` counts from 0
 * (the first retry waits `baseMs`). Used by the engine's background retries, the L2 recovery probe and the SQL
 * outbox consumer.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs = 30_000): number {
  if (!(attempt > 0)) return Math.min(baseMs, maxMs)
  // 2 ** 31 and beyond only overflow the cap: stop doubling once past it.
  return attempt >= 31 ? maxMs : Math.min(baseMs * 2 ** attempt, maxMs)
}
