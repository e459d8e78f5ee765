import type { FlowRow, MovementRow, Projection } from '../projection/types.js'

/** A projection as the cache serves it: the calculator's output plus where it stands. Frozen. */
export interface StockProjection extends Projection {
  /** The cache key: the product, or `product` + U+001F + `location`. */
  key: string
  product: string
  /** The location, or null for a product without locations and for the all-locations roll-up. */
  location: string | null
  /**
   * The cache's version counter when this projection's recompute started: at least the version of every mark it
   * reflects. Counters start from and follow the clock (ms x 1000), so versions of instances and restarts compare.
   */
  version: number
  /** Epoch ms when it was computed from the sources. */
  computedAt: number
  /** True only when served under `allowStale` or stale-if-error: it may miss a committed change. */
  stale: boolean
}

/** One L2 entry. */
export interface StoreEntry<V = StockProjection> {
  value: V
  version: number
  computedAt: number
  /** Epoch ms after which the entry must not be served (stores that support expiry may drop it then). */
  expiresAt?: number
  /**
   * Ms the recompute that produced it took: its batch's source read and computation (a batch computes its units
   * together). Stores with columns keep it for monitoring; the others may ignore it.
   */
  durationMs?: number
}

/**
 * The shared store (L2). Small on purpose: an SQL table, Redis or memory implement it.
 * Stores read and clear only keys under their own prefix.
 */
export interface Store<V = StockProjection> {
  /** Entries for the keys that exist (missing keys are absent from the map). */
  getMany(keys: readonly string[]): Promise<Map<string, StoreEntry<V>>>
  /**
   * Write entries; an entry never replaces one with a higher version. A store that knows which entries it wrote
   * (not kept back by a higher version) may return their keys: a shared cache then reads back only the others to
   * learn whether the store serves its values. Returning nothing is always correct (every key is read back).
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: void, so that stores written as `Promise<void>` still fit
  setMany(entries: ReadonlyArray<readonly [key: string, entry: StoreEntry<V>]>): Promise<void | ReadonlySet<string>>
  /** Delete these keys. */
  deleteMany(keys: readonly string[]): Promise<void>
  /** Delete every key of this store (its prefix only). */
  clear(): Promise<void>
  /** Release connections or timers the store owns. */
  close(): Promise<void>
  /** What the store can do. @default { shared: false } */
  readonly capabilities?: StoreCapabilities
  /**
   * Projections matching a listing, in its order, from columns the store keeps (the SQL store has them); a store
   * without it cannot answer `cache.list()`.
   */
  list?(query: StoreListQuery): Promise<Array<[key: string, entry: StoreEntry<V>]>>
}

export interface StoreCapabilities {
  /** Other processes see its writes (SQL, Redis). @default false */
  shared?: boolean
}

/** The order of a listing: ascending by this field, then by key (code point order). */
export type ListOrder = 'minClosing7d' | 'firstStockoutDate' | 'computedAt'

/** A listing as a store answers it (`Store.list`), from columns it keeps beside each projection. */
export interface StoreListQuery {
  /** Only these statuses; null: every status. */
  statuses: readonly string[] | null
  /** Only keys whose first stock-out is on a day before this one (`YYYY-MM-DD`); null: no such filter. */
  stockoutBefore: string | null
  /** Only keys whose 7-day minimum is below this; null: no such filter. */
  minClosingBelow: number | null
  /** The keys of this location; null: products' roll-ups. */
  location: string | null
  orderBy: ListOrder
  /** Keys after this position only (the last one of the previous page). */
  after: { value: number | string; key: string } | null
  limit: number
}

/** What a reader returns for one product: the rows of every source it read (aggregated by day is best). */
export interface SourceInputs {
  onHand: MovementRow[]
  supply: FlowRow[]
  demand: FlowRow[]
}

export interface ReadOptions {
  /** Read only these sources (ids from the schema); absent means all. */
  sources?: readonly string[]
  /**
   * The IANA zone in which timestamp columns are cut to days (the cache passes its own `timeZone`).
   * @default 'UTC'
   */
  timeZone?: string
}

/**
 * L3: reads the source tables for a batch of products, one set-based query per source, every source of one call
 * in one snapshot (a value read is then a state the database had). Products with no rows may be absent from the
 * map. Rows carry `source` (the schema source id). Ids the product column cannot hold, or rows the calculator
 * cannot take, are rejected with an `InvalidInputError` whose `products` lists them: the cache fails those and
 * reads the others again.
 */
export interface SourceReader {
  /** Rows for a batch of products. */
  read(products: readonly string[], options?: ReadOptions): Promise<Map<string, SourceInputs>>
  /** Every product the sources know (for `rebuildAll` and `validate`). */
  products?(): Promise<string[]>
  /** Release what the reader owns. */
  close?(): Promise<void>
}
