import type { StockcastError } from '../errors.js'
import type { DistributedLock, InvalidationBus } from '../invalidation/contracts.js'
import type { AfterCommitTransaction, TransactionScope } from '../invalidation/scope.js'
import type { Clock, Timers } from '../util/timers.js'
import type { Freshness } from './freshness.js'
import type { BatchLoader } from './loader.js'
import type { Versioned } from './memory-tier.js'
import type { Store } from './types.js'

/** What `flush()` did. */
export interface FlushReport {
  /** Units recomputed. */
  recomputed: number
  /** Units whose recompute failed: they stay dirty and are retried. */
  failed: string[]
  /** Units left dirty because a `disableCacheTemporarily` block is running (recomputed when it settles). */
  deferred: string[]
  /**
   * Units whose newest value this instance could not write to its shared store (a store with `capabilities.shared`
   * that failed or is degraded): other instances may still read the older value there. A mark source must keep
   * their marks (the SQL listener keeps their outbox rows and retries). Empty without a shared store.
   */
  unstored: string[]
  /**
   * Only with `flush({ units })`: the units whose marks made before the call are all reflected by a finished
   * recompute (and, with a shared store, stored there). A mark source may delete those marks (the SQL listener
   * deletes their outbox rows); marks of the other units must be kept and retried.
   */
  settled?: string[]
}

export interface FlushOptions {
  /**
   * Settle only these units (products): recompute the ones that are dirty, wait for recomputes of them already
   * running, and report `settled`. Other dirty units are left to the scheduler. @default every dirty unit
   */
  units?: readonly string[]
}

/** Where the engine reports what happens. */
export interface EngineHooks<V> {
  error(error: StockcastError, operation: string, unit?: string): void
  /** L2 failed (reads fall through to L3), or the bus lost its connection (nothing is served from L1). */
  degraded(tier: 'l2' | 'bus', error: StockcastError): void
  recovered(tier: 'l2' | 'bus'): void
  /** A unit's new values, with what L1 held for each key before. */
  computed(unit: string, values: ReadonlyMap<string, V>, previous: ReadonlyMap<string, V | undefined>): void
}

export interface EngineOptions<V extends Versioned> {
  loader: BatchLoader<V>
  freshness: Freshness<V>
  store?: Store<V> | undefined
  bus?: InvalidationBus | undefined
  lock?: DistributedLock | undefined
  clock: Clock
  timers: Timers
  memory: { max: number; ttl: number; onChange?: (key: string, value: V | undefined) => void }
  debounceMs: number
  maxWaitMs: number
  lockTimeoutMs: number
  graceMs: number
  batchSize: number
  waitTimeoutMs: number
  retryMs: number
  rebuildThreshold: number
  /** The unit of a key (the product of a location key). */
  unitOf(key: string): string
  /** A copy of a value flagged stale. */
  stale(value: V): V
  /** A value read from L2, made ready to serve. */
  adopt(value: V): V
  /** Whether two values hold the same content (versions and computation times aside). */
  same(a: V, b: V): boolean
  /** Every unit there is (bulk blocks that touched many units rebuild them all). */
  listUnits?: (() => Promise<string[]>) | undefined
  /** L2 expiry of a value, when the front end has one. */
  expiresAt?: (value: V) => number | undefined
  hooks: EngineHooks<V>
}

export interface MarkInput {
  version?: number | undefined
  /** Sources the change concerns; null means all. */
  sources: readonly string[] | null
  tx?: TransactionScope | AfterCommitTransaction | undefined
}
