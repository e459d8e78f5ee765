import type { StockcastError } from '../errors.js'
import type { L1Entry } from './memory-tier.js'

/** One unit a batch loads. */
export interface LoadRequest<V> {
  unit: string
  /**
   * What its pending marks named: a set of sources, null for everything, undefined when the unit is not dirty (an
   * L1 miss, a refresh or a day rollover).
   */
  sources: ReadonlySet<string> | null | undefined
  /** What L1 holds for the unit's own key, fresh or not (its `extra` may let the loader skip reads). */
  previous: L1Entry<V> | undefined
  /** Every key of the unit L1 holds (the loader recomputes them all, so none keeps an old value). */
  keys: readonly string[]
  /** A key the caller needs, that the loader must produce even when it has no data (a location asked for). */
  want: string | undefined
  /** The version the values get: at least the version of every mark the load covers. */
  version: number
}

export interface LoadContext {
  /** Read everything from the sources, whatever is cached (refresh, rebuild). */
  full: boolean
  /** Epoch ms the values are computed at. */
  computedAt: number
}

/** A unit's values by key, plus what the loader wants kept beside the unit's own L1 entry; or why it failed. */
export type LoadOutcome<V> = { values: Map<string, V>; extra?: unknown } | { error: StockcastError }

/**
 * How a batch of units becomes values: the policy seam of the batch runner. The stock loader reads the source
 * tables of a batch of products in one snapshot and computes each product's projections (and its locations'). A
 * failure of one unit is its own outcome; `load` rejects only when nothing could be loaded.
 */
export interface BatchLoader<V> {
  load(requests: ReadonlyArray<LoadRequest<V>>, context: LoadContext): Promise<Map<string, LoadOutcome<V>>>
}
