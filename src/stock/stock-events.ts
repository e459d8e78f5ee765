import type { Metrics } from '../cache/metrics.js'
import type { StockProjection } from '../cache/types.js'
import type { StockcastError } from '../errors.js'
import { firstDifference } from './compare.js'

export interface UpdatedEvent {
  key: string
  product: string
  location: string | null
  projection: StockProjection
  /** What this instance held before; undefined for the first value it computes for the key. */
  previous: StockProjection | undefined
}

export interface StockoutEvent {
  key: string
  product: string
  location: string | null
  date: string
  projection: StockProjection
}

/** The transitions a webhook usually wants. */
export type TransitionKind = 'stockout' | 'stockout-cleared' | 'critical' | 'critical-cleared'

export interface TransitionEvent {
  kind: TransitionKind
  key: string
  product: string
  location: string | null
  projection: StockProjection
  previous: StockProjection
}

export interface ErrorEvent {
  error: StockcastError
  operation: string
  product?: string
}

/**
 * Events (mitt):
 * - `updated`: a recompute produced a value that differs from the one this instance held (any field but version,
 *   computedAt and the like; a new day counts). The first value an instance computes for a key counts as a change.
 *   A recompute that changed nothing emits nothing.
 * - `transition`: a key moved into or out of stock-out (`firstStockoutDate` null <-> a date) or into or out of
 *   `CRITICAL`, compared with the value this instance held before. Never for the first value an instance computes
 *   for a key (after a restart, or once evicted), so restarts and midnights do not repeat them.
 * - `stockout`: the `stockout` transitions, with the date (kept for existing listeners).
 * - `error`; `degraded` / `recovered` with `tier`: `'l2'` (the shared store failed: reads fall through to the sources
 *   until a background probe succeeds) or `'bus'` (the bus lost its connection: L1 serves nothing until it is back).
 */
export type StockCacheEvents = {
  updated: UpdatedEvent
  stockout: StockoutEvent
  transition: TransitionEvent
  error: ErrorEvent
  degraded: { tier: 'l2' | 'bus'; error: StockcastError }
  recovered: { tier: 'l2' | 'bus' }
}

type Emit = <K extends keyof StockCacheEvents>(type: K, event: StockCacheEvents[K]) => void

/** Turn a product's new values into events (the batch runner's `computed` hook). */
export function emitComputed(
  emit: Emit,
  metrics: Metrics,
  product: string,
  values: ReadonlyMap<string, StockProjection>,
  previous: ReadonlyMap<string, StockProjection | undefined>,
): void {
  for (const [key, projection] of values) {
    const prev = previous.get(key)
    if (prev !== undefined && firstDifference(prev, projection) === null) {
      metrics.unchanged++
      continue
    }
    emit('updated', { key, product, location: projection.location, projection, previous: prev })
    if (prev === undefined) continue
    const kinds: TransitionKind[] = []
    const wasOut = prev.firstStockoutDate !== null
    const isOut = projection.firstStockoutDate !== null
    if (!wasOut && isOut) kinds.push('stockout')
    if (wasOut && !isOut) kinds.push('stockout-cleared')
    const wasCritical = prev.status === 'CRITICAL'
    const isCritical = projection.status === 'CRITICAL'
    if (!wasCritical && isCritical) kinds.push('critical')
    if (wasCritical && !isCritical) kinds.push('critical-cleared')
    for (const kind of kinds) {
      metrics.transitions++
      emit('transition', { kind, key, product, location: projection.location, projection, previous: prev })
      if (kind === 'stockout') {
        emit('stockout', {
          key,
          product,
          location: projection.location,
          date: projection.firstStockoutDate!,
          projection,
        })
      }
    }
  }
}
