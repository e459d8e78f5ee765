/**
 * When an L1 entry may be served: the policy seam of the tiered read path. The engine stamps every L1 entry with
 * the epoch current when it was written; an entry with another epoch is not fresh. The stock cache's epoch is the
 * day (D0 moves at the zone's midnight even when no row changes); a cache of plain values may keep one epoch forever
 * and rely on TTLs.
 */
export interface Freshness<V> {
  /** The current epoch, after reading the clock (slow paths). */
  current(): number
  /** Whether a value (just computed, or read from L2) belongs to the current epoch and may enter L1. */
  accepts(value: V): boolean
  /** Stop timers. */
  close(): void
}
