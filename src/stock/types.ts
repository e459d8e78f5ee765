import type { FlushOptions, FlushReport } from '../cache/engine.js'
import type { MetricsSnapshot } from '../cache/metrics.js'
import type { StockProjection } from '../cache/types.js'
import type { MarkSource } from '../invalidation/contracts.js'
import type { AfterCommitTransaction, TransactionScope } from '../invalidation/scope.js'
import type { ListPage, ListQuery } from './list.js'
import type { RolloverReport } from './rollover.js'
import type { StockCacheEvents } from './stock-events.js'
import type { ValidateOptions, ValidationReport } from './validate.js'

/** Which sources a mark concerns: a source id or table name, a list of them, or free text (everything). */
export type MarkReason = string | { sources?: readonly string[]; tables?: readonly string[]; note?: string }

export interface MarkOptions {
  /**
   * Why: names the changed sources (ids or tables). With `selectiveReads`, only they are re-read; otherwise every
   * source of the product is re-read (one snapshot).
   */
  reason?: MarkReason
  /** Hold the mark until this transaction commits (a `cache.transaction()` scope, or anything with `afterCommit`). */
  tx?: TransactionScope | AfterCommitTransaction
  /** The mark's version from the source (an outbox row id); must grow. @default the next internal version */
  version?: number
}

export interface GetOptions {
  /** The location, when the schema names a location column. @default the all-locations roll-up */
  location?: string | null
  /** Answer at once from whatever is cached (flagged `stale`), recomputing in the background. @default false */
  allowStale?: boolean
  /** Wait until the projection reflects the mark with this version token (read-your-writes). */
  atLeast?: number
  /**
   * `strong`: never older than a commit that finished before the read began, whichever instance or consumer saw it.
   * Asks the mark source (the SQL adapter's outbox, option `pendingMarks`) for unprocessed marks of the product and
   * recomputes first if there are any (one round trip); with a shared store (`capabilities.shared`) an L1 hit is
   * also checked against the store's entry (a second round trip: another instance may have consumed the marks and
   * recomputed) and recomputed when they differ; an L1 miss is recomputed from the sources.
   * `default`: fresh once the change capture has marked the change (the listener's lag). @default 'default'
   */
  consistency?: 'default' | 'strong'
}

/** Options of `getMany`. */
export type GetManyOptions = Pick<GetOptions, 'location' | 'allowStale' | 'consistency'>

export interface RebuildProgress {
  done: number
  total: number
  elapsedMs: number
}

export interface RebuildReport {
  products: number
  keys: number
  failed: number
  ms: number
}

export interface StockCacheStatus {
  /** Products with marks not yet recomputed. */
  dirty: number
  /** Age in ms of the oldest unprocessed mark (0 when none). */
  oldestDirtyMs: number
  /**
   * Age in ms of the oldest committed change not yet reflected: the largest of `oldestDirtyMs` and of every attached
   * mark source's oldest unprocessed change (the SQL outbox's oldest row). 0 when none.
   */
  oldestUnprocessedMs: number
  /** Recompute batches running. */
  inFlight: number
  /** L2 failed and is bypassed until it recovers. */
  degraded: boolean
  /** The bus reported a lost connection: L1 serves and keeps nothing until it recovers (reads go to L2 / L3). */
  busDegraded: boolean
  /** L2 keys that must be deleted before L2 is trusted again. */
  storeDebt: number
  /** Nesting depth of `disableCacheTemporarily`. */
  bulkDepth: number
  l1Size: number
  locks: number
  /** D0 in the configured time zone. */
  today: string
  /** When D0 ends: the next midnight in the configured time zone (epoch ms). */
  dayEndsAt: number
  closed: boolean
}

/** Options of `cache.entries()`. */
export interface EntriesOptions {
  /** `recent`: most recently used first; `computedAt`: oldest value first. @default 'recent' */
  order?: 'recent' | 'computedAt'
  /** At most this many. @default all */
  limit?: number
}

/** One key L1 holds (`cache.entries()`). */
export interface CachedEntry {
  key: string
  product: string
  location: string | null
  /** When its value was computed (epoch ms). */
  computedAt: number
  /** The D0 it was computed for. */
  today: string
}

/** The public face of the cache (`createStockCache`). */
export interface StockCache {
  /** The projection of a product (or of one location); never one a committed, marked change has outdated. */
  get(product: string, options?: GetOptions): Promise<StockProjection>
  /** Synchronous: the fresh L1 projection, or undefined (never a dirty or out-of-date one). */
  peek(product: string, location?: string | null): StockProjection | undefined
  /** Many at once: one L2 round trip and one batched recompute for the misses. */
  getMany(products: readonly string[], options?: GetManyOptions): Promise<Map<string, StockProjection>>
  /** Recompute from the sources now, whatever is cached. */
  refresh(product: string, location?: string | null): Promise<StockProjection>
  /** Make sure a fresh projection is in L1 (so `peek` hits); never answers stale. */
  ensureFresh(product: string, location?: string | null): Promise<StockProjection>
  /** Mark products changed; returns the version token for `get(p, { atLeast })`. */
  markDirty(products: string | readonly string[], options?: MarkOptions): number
  /** A transaction scope for marks: commit makes them pending, rollback drops them. */
  transaction(): TransactionScope
  /** Recompute every pending product (or only `units`) now and wait for it. */
  flush(options?: FlushOptions): Promise<FlushReport>
  /**
   * Attach a change capture (the SQL listener does it): `status()` reports its backlog and a
   * `disableCacheTemporarily` block asks it to catch up before settling. Returns the function that detaches it.
   */
  attachSource(source: MarkSource): () => void
  /** While `fn` runs, marks are only collected; when it settles the touched products are recomputed. */
  disableCacheTemporarily<T>(fn: () => Promise<T> | T): Promise<T>
  /** Compare cached values with a fresh computation. */
  validate(options?: ValidateOptions): Promise<ValidationReport>
  /** Recompute every product the reader lists, in batches. */
  rebuildAll(options?: { onProgress?: (p: RebuildProgress) => void }): Promise<RebuildReport>
  /**
   * Products (or one location's keys) by status, stock-out date or 7-day minimum, in pages: from L1 when it holds
   * every product (after `rebuildAll()`), else from the store's columns (`sqlStore`). As fresh as `getMany`.
   */
  list(query?: ListQuery): Promise<ListPage>
  /**
   * Compute, now, the next day's projections of every product in L1 (from the rows each value was computed from, or
   * one batched read for values adopted from the store) and swap them in at midnight, before any read of the new day.
   * A product marked, recomputed, invalidated or evicted meanwhile is not swapped. The rollover job calls it a few
   * minutes before midnight.
   */
  prepareRollover(): Promise<RolloverReport>
  /** What L1 holds: most recently used first (`order: 'recent'`), or oldest `computedAt` first. For maintenance jobs. */
  entries(options?: EntriesOptions): CachedEntry[]
  /** Run `fn` when the cache closes (jobs register here). Returns the function that unregisters it. */
  onClose(fn: () => void | Promise<void>): () => void
  status(): StockCacheStatus
  metrics(): MetricsSnapshot
  on<K extends keyof StockCacheEvents>(type: K, handler: (event: StockCacheEvents[K]) => void): void
  off<K extends keyof StockCacheEvents>(type: K, handler: (event: StockCacheEvents[K]) => void): void
  /** Flush pending marks, stop timers, close the store and reader. */
  close(): Promise<void>
}
