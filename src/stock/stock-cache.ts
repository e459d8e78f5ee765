import { LRUCache } from 'lru-cache'
import mitt, { type Emitter } from 'mitt'
import pDebounce from 'p-debounce'
import { messageOf, StoreFacade } from '../cache/store-facade.js'
import type { SourceInputs, StockProjection, StoreEntry } from '../cache/types.js'
import {
  ClosedError,
  ConfigError,
  InvalidInputError,
  LockTimeoutError,
  SourceUnavailableError,
  StockcastError,
  WaitTimeoutError,
} from '../errors.js'
import type { MarkSource } from '../invalidation/contracts.js'
import { KeyedLocks } from '../invalidation/locks.js'
import { type AfterCommitTransaction, type HeldMark, TransactionScope } from '../invalidation/scope.js'
import { Metrics, type MetricsSnapshot } from '../ops/metrics.js'
import { todayIn } from '../projection/dates.js'
import { projectStock } from '../projection/project.js'
import type { FlowRow, MovementRow, Projection, ProjectionOptions } from '../projection/types.js'
import { assertLocation, assertProduct, KEY_SEPARATOR, keyOf } from './keys.js'
import { type Clock, type ResolvedOptions, resolveOptions, type StockCacheOptions, type Timers } from './options.js'
import type { StockSchema } from './schema.js'

/** Which sources a mark concerns: a source id or table name, a list of them, or free text (everything). */
export type MarkReason = string | { sources?: readonly string[]; tables?: readonly string[]; note?: string }

export interface MarkOptions {
  /** Why: names the changed sources (ids or tables) so only they are re-read. Anything else re-reads all. */
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
   * `strong`: first ask the mark source (the SQL adapter's outbox, option `pendingMarks`) whether marks for this
   * product are still unprocessed, and recompute first if so: no committed write by any writer is missed, for one
   * round trip. With a shared store (`capabilities.shared`), an L1 hit is also checked against the store's entry (a
   * second round trip): another instance may have consumed the marks and recomputed; when they differ, the product
   * is recomputed from the sources. @default 'default' (relies on the listener)
   */
  consistency?: 'default' | 'strong'
}

/** What `flush()` did. */
export interface FlushReport {
  /** Products recomputed. */
  recomputed: number
  /** Products whose recompute failed: they stay dirty and are retried. */
  failed: string[]
  /** Products left dirty because a `disableCacheTemporarily` block is running (recomputed when it settles). */
  deferred: string[]
  /**
   * Products whose newest value this instance could not write to its shared store (a store with
   * `capabilities.shared` that failed or is degraded): other instances may still read the older value there. A mark
   * source must keep their marks (the SQL listener keeps their outbox rows and retries). Empty without a shared store.
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
   * running, and report `settled`. Other dirty products are left to the scheduler. @default every dirty product
   */
  units?: readonly string[]
}

export interface ValidateOptions {
  /** Check this many products picked at random. @default all */
  sample?: number
  /** Check these products. @default every product the reader lists, else the cached ones */
  products?: readonly string[]
  /** Mark mismatching products dirty so they are recomputed. @default false */
  repair?: boolean
}

export interface ValidationMismatch {
  key: string
  product: string
  location: string | null
  /** The first field that differs (`days[3].closing`, `status`). */
  field: string
  cached: unknown
  truth: unknown
}

export interface ValidationReport {
  /** Keys whose cached value was compared with a fresh computation. */
  checked: number
  mismatches: ValidationMismatch[]
  /** mismatches / checked (0 when nothing was checked). */
  rate: number
  /** Keys with nothing cached (nothing to be wrong). */
  uncached: number
  /** Keys skipped because their product was dirty or changed while validating (the cache would not serve them). */
  skipped: number
  /** Products whose source rows the calculator rejects (the cache cannot serve them either). */
  invalid: Array<{ product: string; message: string }>
}

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
  /** L2 keys that must be deleted before L2 is trusted again. */
  storeDebt: number
  /** Nesting depth of `disableCacheTemporarily`. */
  bulkDepth: number
  l1Size: number
  locks: number
  /** D0 in the configured time zone. */
  today: string
  closed: boolean
}

export interface UpdatedEvent {
  key: string
  product: string
  location: string | null
  projection: StockProjection
  previous: StockProjection | undefined
}

export interface StockoutEvent {
  key: string
  product: string
  location: string | null
  date: string
  projection: StockProjection
}

export interface ErrorEvent {
  error: StockcastError
  operation: string
  product?: string
}

export type StockCacheEvents = {
  updated: UpdatedEvent
  stockout: StockoutEvent
  error: ErrorEvent
  degraded: { tier: 'l2'; error: StockcastError }
  recovered: { tier: 'l2' }
}

/** The public face of the cache (`createStockCache`). */
export interface StockCache {
  /** The projection of a product (or of one location); never one a committed, marked change has outdated. */
  get(product: string, options?: GetOptions): Promise<StockProjection>
  /** Synchronous: the fresh L1 projection, or undefined (never a dirty or out-of-date one). */
  peek(product: string, location?: string | null): StockProjection | undefined
  /** Many at once: one L2 round trip and one batched recompute for the misses. */
  getMany(
    products: readonly string[],
    options?: Pick<GetOptions, 'location' | 'allowStale'>,
  ): Promise<Map<string, StockProjection>>
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
  status(): StockCacheStatus
  metrics(): MetricsSnapshot
  on<K extends keyof StockCacheEvents>(type: K, handler: (event: StockCacheEvents[K]) => void): void
  off<K extends keyof StockCacheEvents>(type: K, handler: (event: StockCacheEvents[K]) => void): void
  /** Flush pending marks, stop timers, close the store and reader. */
  close(): Promise<void>
}

interface L1Entry {
  value: StockProjection
  promise: Promise<StockProjection>
  /** The day epoch it was computed for: fresh while it equals the cache's current epoch. */
  epoch: number
  /** Source rows of the product (roll-up / product key only), reused by selective recompute and day rollover. */
  inputs?: SourceInputs
}

interface DirtyState {
  /** Internal sequence of the newest pending mark (race detection). */
  seq: number
  /** Highest version token among pending marks. */
  version: number
  /** Sources to re-read; null means all. */
  sources: Set<string> | null
  /** When it first became dirty. */
  since: number
  /** The newest mark sequence a finished recompute covered while newer marks kept it dirty. */
  covered?: number
}

interface Today {
  date: string
  endsAtMs: number
}

type BatchResult = Map<string, { projections: Map<string, StockProjection> } | { error: StockcastError }>

const EMPTY_INPUTS: SourceInputs = Object.freeze({ onHand: [], supply: [], demand: [] }) as unknown as SourceInputs

const defaultTimers: Timers = {
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return t
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>)
  },
}

/**
 * Create a stock cache: exact projections, three tiers, commit-aware invalidation.
 *
 * @example
 * ```ts
 * const cache = createStockCache({ schema, reader: sqlReader(pool, schema), store: sqlStore(pool) })
 * const p = await cache.get('SKU-1')
 * console.log(p.stockToday, p.minClosing7d, p.firstStockoutDate, p.status)
 * ```
 */
export function createStockCache(options: StockCacheOptions): StockCache {
  return new StockCacheImpl(options)
}

class StockCacheImpl implements StockCache {
  readonly #o: ResolvedOptions
  readonly #schema: StockSchema
  readonly #reader: StockCacheOptions['reader']
  readonly #clock: Clock
  readonly #timers: Timers
  readonly #l1: LRUCache<string, L1Entry>
  readonly #l2: StoreFacade | undefined
  /** The store is shared with other instances (`capabilities.shared`): strong reads check L1 against it. */
  readonly #l2Shared: boolean
  /** Products whose newest value the shared store did not take (see `FlushReport.unstored`). */
  readonly #unstored = new Set<string>()
  readonly #locks: KeyedLocks
  readonly #emitter: Emitter<StockCacheEvents> = mitt<StockCacheEvents>()
  readonly #m = new Metrics()
  readonly #dirty = new Map<string, DirtyState>()
  /** Location keys present in L1, by product (so a recompute overwrites vanished locations). */
  readonly #locKeys = new Map<string, Set<string>>()
  readonly #inFlight = new Map<string, { startSeq: number; promise: Promise<BatchResult> }>()
  readonly #projectionOptions: ProjectionOptions
  #dayOptions: ProjectionOptions = {}
  readonly #sourceIds: Set<string>
  readonly #origin = Math.random().toString(36).slice(2)
  #seq = 0
  #version = 0
  #today: Today = { date: '', endsAtMs: 0 }
  /** Bumped when D0 changes. L1 hits compare epochs instead of reading the clock (a clock read costs ~50 ns). */
  #dayEpoch = 0
  /** With an injected clock and no injected timers, every hit reads the clock (tests move time by hand). */
  readonly #exactClock: boolean
  #dayTimer: unknown = undefined
  #hitsSinceCheck = 0
  #quietTimer: unknown = undefined
  #maxWaitTimer: unknown = undefined
  #retryTimer: unknown = undefined
  #retryAttempt = 0
  #batches = 0
  #bulkDepth = 0
  #bulkTouched = new Set<string>()
  #closed = false
  #versionWaiters: Array<{ version: number; resolve: () => void }> = []
  #queued: Set<string> | undefined
  #queuedPromise: Promise<BatchResult> | undefined
  #unsubscribe: Promise<() => Promise<void>> | undefined
  readonly #flushRunner: () => Promise<FlushReport>

  constructor(options: StockCacheOptions) {
    this.#o = resolveOptions(options)
    this.#schema = options.schema
    this.#reader = options.reader
    this.#clock = options.clock ?? Date
    // Versions start from the clock (ms x 1000), not from 0: a restarted or second instance then writes L2 entries
    // that are newer than the ones an earlier process left, instead of being refused as older.
    this.#version = Math.floor(this.#clock.now()) * 1000
    this.#exactClock = options.clock !== undefined && options.timers === undefined
    this.#timers = options.timers ?? defaultTimers
    this.#sourceIds = new Set(this.#schema.sources.map((s) => s.id))
    this.#projectionOptions = {
      timeZone: this.#o.timeZone,
      horizonDays: this.#o.horizonDays,
      scale: this.#o.scale,
      safetyStock: this.#o.safetyStock,
      criticalDays: this.#o.criticalDays,
    }
    // A throwaway projection checks the calculator options (safetyStock, scale) once, at construction.
    try {
      projectStock({ onHand: 0 }, { ...this.#projectionOptions, today: '2000-01-01' })
    } catch (cause) {
      throw new ConfigError(`createStockCache: ${messageOf(cause)}`, { cause })
    }
    this.#l1 = new LRUCache<string, L1Entry>({
      max: this.#o.memoryMax,
      ...(this.#o.memoryTtl > 0 ? { ttl: this.#o.memoryTtl, perf: { now: () => this.#clock.now() } } : {}),
      dispose: (_value, key, reason) => {
        if (reason === 'set') return
        const i = key.indexOf(KEY_SEPARATOR)
        if (i < 0) return
        const product = key.slice(0, i)
        const set = this.#locKeys.get(product)
        if (set) {
          set.delete(key)
          if (set.size === 0) this.#locKeys.delete(product)
        }
      },
    })
    this.#locks = new KeyedLocks(this.#o.lockTimeoutMs)
    this.#l2Shared = options.store?.capabilities?.shared === true
    if (options.store) {
      this.#l2 = new StoreFacade(
        options.store,
        {
          onError: (error) => this.#emitError(error, 'l2'),
          onDegraded: (error) => {
            this.#m.count('degraded')
            this.#emitter.emit('degraded', { tier: 'l2', error })
          },
          onRecovered: () => {
            this.#m.count('recovered')
            this.#emitter.emit('recovered', { tier: 'l2' })
          },
          now: () => this.#clock.now(),
          setTimer: (fn, ms) => this.#timers.setTimeout(fn, ms),
          clearTimer: (h) => this.#timers.clearTimeout(h),
        },
        this.#o.retryMs,
      )
    }
    this.#flushRunner = pDebounce.promise(() => this.#flushPending(), { after: true })
    if (options.bus) {
      this.#unsubscribe = options.bus.subscribe((msg) => this.#onBusMessage(msg))
      this.#unsubscribe.catch((cause) =>
        this.#emitError(new StockcastError(`invalidation bus subscribe failed: ${messageOf(cause)}`, { cause }), 'bus'),
      )
    }
    this.#bus = options.bus
    this.#lock = options.lock
    if (options.store?.capabilities?.shared && options.bus === undefined && this.#o.memoryTtl === 0) {
      warnOnce(
        'STOCKCAST_SHARED_STORE_WITHOUT_BUS',
        'stockcast: a shared store without a bus and without memory.ttl: this instance keeps its L1 values until its own ' +
          'marks invalidate them, so writes seen only by another instance reach it late. Add a bus (the bus option: an ' +
          'InvalidationBus, e.g. over Redis pub/sub), ' +
          'set memory.ttl, or read with consistency: "strong".',
      )
    }
    this.#pendingMarks = options.pendingMarks
  }

  readonly #bus: StockCacheOptions['bus']
  readonly #lock: StockCacheOptions['lock']
  readonly #pendingMarks: StockCacheOptions['pendingMarks']

  // ---------------------------------------------------------------- reads

  get(product: string, options?: GetOptions): Promise<StockProjection> {
    if (options === undefined && typeof product === 'string' && !this.#dirty.has(product)) {
      const e = this.#l1.get(product)
      if (e !== undefined) {
        // The day rolls over by a timer at the zone's midnight; the clock is also read every 1024 hits.
        if (this.#exactClock || (++this.#hitsSinceCheck & 1023) === 0) this.#currentDay()
        if (e.epoch === this.#dayEpoch) {
          this.#m.l1Hits++
          return e.promise
        }
      }
    }
    return this.#getSlow(product, options)
  }

  peek(product: string, location?: string | null): StockProjection | undefined {
    if (this.#dirty.has(product)) return undefined
    const e = this.#l1.get(location == null ? product : product + KEY_SEPARATOR + location)
    if (e === undefined) return undefined
    if (this.#exactClock || (++this.#hitsSinceCheck & 1023) === 0) this.#currentDay()
    return e.epoch === this.#dayEpoch ? e.value : undefined
  }

  async #getSlow(product: string, options: GetOptions = {}): Promise<StockProjection> {
    assertProduct(product, 'get')
    assertLocation(options.location, 'get')
    this.#assertOpen()
    if (options.atLeast !== undefined) await this.#waitForVersion(options.atLeast)
    const strong = options.consistency === 'strong'
    if (strong) await this.#checkPending([product])
    else if (options.consistency !== undefined && options.consistency !== 'default') {
      throw new InvalidInputError(
        `get: consistency must be 'default' or 'strong', got ${JSON.stringify(options.consistency)}`,
      )
    }
    const key = keyOf(product, options.location)
    const today = this.#currentDay()
    if (this.#dirty.has(product)) {
      if (this.#bulkDepth > 0) return this.#computeDirect(product, key)
      if (options.allowStale) {
        const e = this.#l1.peek(key, { allowStale: true })
        if (e !== undefined) {
          this.#m.staleServed++
          this.#schedule()
          return staleCopy(e.value)
        }
      }
      return this.#recomputeForRead(product, key)
    }
    const e = this.#l1.get(key)
    if (e !== undefined) {
      if (e.epoch === this.#dayEpoch) {
        if (strong && this.#l2Shared && !(await this.#sharedStoreAgrees(product, key, e.value))) {
          // Marked first: a clean product's recompute would reuse the inputs this instance read before.
          this.markDirty([product], { reason: 'strong read: the shared store holds another value' })
          return this.#recomputeForRead(product, key)
        }
        this.#m.l1Hits++
        return e.value
      }
      if (options.allowStale) {
        this.#m.staleServed++
        void this.#recomputeForRead(product, key).catch(() => {})
        return staleCopy(e.value)
      }
    }
    this.#m.l1Misses++
    if (this.#l2 !== undefined) {
      const found = await this.#l2.getMany([key])
      const entry = found.get(key)
      if (entry !== undefined && entry.value.today === today.date && !this.#dirty.has(product)) {
        this.#setL1(key, freezeProjection(entry.value))
        return entry.value
      }
    }
    return this.#recomputeForRead(product, key)
  }

  async getMany(
    products: readonly string[],
    options: Pick<GetOptions, 'location' | 'allowStale'> = {},
  ): Promise<Map<string, StockProjection>> {
    if (!Array.isArray(products)) throw new InvalidInputError('getMany: products must be an array of product ids')
    if (options.location == null && !options.allowStale && !this.#closed) {
      // Fast path, the dashboard case: every product a fresh L1 hit. One pass, the answer built in caller order.
      this.#currentDay()
      const hits = new Map<string, StockProjection>()
      let complete = true
      for (const p of products) {
        if (typeof p !== 'string' || p === '' || p.includes(KEY_SEPARATOR) || this.#dirty.has(p)) {
          complete = false
          break
        }
        const e = this.#l1.get(p)
        if (e === undefined || e.epoch !== this.#dayEpoch) {
          complete = false
          break
        }
        hits.set(p, e.value)
      }
      if (complete) {
        this.#m.l1Hits += products.length
        return hits
      }
    }
    for (const p of products) assertProduct(p, 'getMany')
    assertLocation(options.location, 'getMany')
    this.#assertOpen()
    const out = new Map<string, StockProjection>()
    const today = this.#currentDay()
    const misses: string[] = []
    const dirty: string[] = []
    for (const p of products) {
      if (out.has(p)) continue
      const key = keyOf(p, options.location)
      if (this.#dirty.has(p)) {
        const stale = options.allowStale ? this.#l1.peek(key, { allowStale: true }) : undefined
        if (stale !== undefined && this.#bulkDepth === 0) {
          this.#m.staleServed++
          out.set(p, staleCopy(stale.value))
        } else dirty.push(p)
        continue
      }
      const e = this.#l1.get(key)
      if (e !== undefined && e.epoch === this.#dayEpoch) {
        this.#m.l1Hits++
        out.set(p, e.value)
      } else {
        this.#m.l1Misses++
        misses.push(p)
      }
    }
    if (options.allowStale && dirty.length + misses.length > 0 && this.#bulkDepth === 0) this.#schedule()
    let toCompute = dirty
    if (misses.length > 0 && this.#l2 !== undefined) {
      const keys = misses.map((p) => keyOf(p, options.location))
      const found = await this.#l2.getMany(keys)
      for (const p of misses) {
        const key = keyOf(p, options.location)
        const entry = found.get(key)
        if (entry !== undefined && entry.value.today === today.date && !this.#dirty.has(p)) {
          this.#setL1(key, freezeProjection(entry.value))
          out.set(p, entry.value)
        } else toCompute.push(p)
      }
    } else toCompute = toCompute.concat(misses)
    if (toCompute.length > 0) {
      if (this.#bulkDepth > 0) {
        const direct = toCompute.filter((p) => this.#dirty.has(p))
        const normal = toCompute.filter((p) => !this.#dirty.has(p))
        await Promise.all(direct.map(async (p) => out.set(p, await this.#computeDirect(p, keyOf(p, options.location)))))
        toCompute = normal
      }
      for (let i = 0; i < toCompute.length; i += this.#o.batchSize) {
        const chunk = toCompute.slice(i, i + this.#o.batchSize)
        const result = await this.#recomputeBatch(chunk, { full: false, requestedLocation: options.location ?? null })
        for (const p of chunk) {
          out.set(p, this.#pick(result, p, keyOf(p, options.location)))
        }
      }
    }
    // Keep the caller's order.
    const ordered = new Map<string, StockProjection>()
    for (const p of products) {
      const v = out.get(p)
      if (v !== undefined) ordered.set(p, v)
    }
    return ordered
  }

  async refresh(product: string, location?: string | null): Promise<StockProjection> {
    assertProduct(product, 'refresh')
    assertLocation(location, 'refresh')
    this.#assertOpen()
    const key = keyOf(product, location)
    const result = await this.#recomputeBatch([product], { full: true, requestedLocation: location ?? null })
    return this.#pick(result, product, key)
  }

  ensureFresh(product: string, location?: string | null): Promise<StockProjection> {
    return this.#getSlow(product, location == null ? {} : { location })
  }

  /**
   * Strong reads with a shared store, on an L1 hit with no pending mark: is the shared store's entry the one this
   * instance holds? Another instance may have consumed the marks of a write (the SQL outbox deletes its rows only
   * after the recompute wrote the store), so no pending mark is left to tell this one; the store then holds another
   * projection. Any difference in content (or no entry, or a store that does not answer) means: recompute from the
   * sources, as the strongest answer costs. Content, not versions: two instances can stamp the same clock-based
   * version in the same millisecond.
   */
  async #sharedStoreAgrees(product: string, key: string, value: StockProjection): Promise<boolean> {
    const found = await this.#l2!.getMany([key])
    if (this.#dirty.has(product)) return false // a mark arrived meanwhile: recompute (not a mismatch)
    const entry = found.get(key)
    const agrees = entry !== undefined && firstDifference(value, entry.value) === null
    if (!agrees) this.#m.strongStoreMismatches++
    return agrees
  }

  /** Strong reads: ask the mark source for unprocessed marks of these products and apply them first. */
  async #checkPending(products: readonly string[]): Promise<void> {
    const source = this.#pendingMarks
    if (source === undefined) {
      throw new ConfigError(
        "get: consistency 'strong' needs a mark source: pass createStockCache({ pendingMarks }) (the SQL adapter's change capture)",
        { option: 'pendingMarks' },
      )
    }
    let pending: Map<string, number>
    try {
      pending = await source.pending(products)
    } catch (cause) {
      throw new SourceUnavailableError(`strong read: asking the mark source failed: ${messageOf(cause)}`, {
        tier: 'l3',
        cause,
        ...(products.length === 1 ? { productId: products[0]! } : {}),
      })
    }
    this.#m.strongChecks++
    const marked = [...pending.keys()].filter((p) => products.includes(p))
    if (marked.length === 0) return
    this.#m.strongMarks += marked.length
    for (const p of marked) this.markDirty([p], { version: pending.get(p)!, reason: 'pending marks (strong read)' })
  }

  // ---------------------------------------------------------------- marks

  markDirty(products: string | readonly string[], options: MarkOptions = {}): number {
    this.#assertOpen()
    const list = typeof products === 'string' ? [products] : products
    if (!Array.isArray(list))
      throw new InvalidInputError('markDirty: products must be a product id or an array of them')
    for (const p of list) assertProduct(p, 'markDirty')
    const version = this.#nextVersion(options.version)
    const sources = this.#sourcesOf(options.reason)
    const mark: HeldMark = { products: [...list], sources, version }
    const tx = options.tx
    if (tx !== undefined) {
      if (tx instanceof TransactionScope) tx.hold(mark)
      else if (tx !== null && typeof (tx as AfterCommitTransaction).afterCommit === 'function') {
        this.#holdForeign(tx as AfterCommitTransaction, mark)
      } else throw new InvalidInputError('markDirty: tx must be a cache.transaction() scope or have afterCommit(fn)')
      this.#m.marksHeld += list.length
    } else this.#applyMarks([mark])
    return version
  }

  transaction(): TransactionScope {
    this.#assertOpen()
    return new TransactionScope((marks) => {
      if (!this.#closed) this.#applyMarks(marks)
    })
  }

  readonly #foreign = new WeakMap<AfterCommitTransaction, HeldMark[]>()

  #holdForeign(tx: AfterCommitTransaction, mark: HeldMark): void {
    let held = this.#foreign.get(tx)
    if (held === undefined) {
      held = []
      this.#foreign.set(tx, held)
      const list = held
      tx.afterCommit(() => {
        this.#foreign.delete(tx)
        if (!this.#closed) this.#applyMarks(list)
      })
    }
    held.push(mark)
  }

  /** The version counter, moved up to the clock (ms x 1000): versions of different instances compare by time. */
  #versionNow(): number {
    const t = Math.floor(this.#clock.now()) * 1000
    if (t > this.#version) this.#version = t
    return this.#version
  }

  #nextVersion(given: number | undefined): number {
    if (given === undefined) {
      this.#versionNow()
      return ++this.#version
    }
    if (typeof given !== 'number' || !Number.isSafeInteger(given) || given < 1) {
      throw new InvalidInputError(`markDirty: version must be a positive integer, got ${String(given)}`)
    }
    if (given > this.#version) this.#version = given
    return given
  }

  #sourcesOf(reason: MarkReason | undefined): string[] | null {
    if (reason === undefined) return null
    const names = typeof reason === 'string' ? [reason] : [...(reason.sources ?? []), ...(reason.tables ?? [])]
    if (names.length === 0) return null
    const out = new Set<string>()
    for (const n of names) {
      if (this.#sourceIds.has(n)) out.add(n)
      else {
        const byTable = this.#schema.sourcesForTable(n)
        if (byTable.length === 0) return null // unknown or related table: re-read everything
        for (const s of byTable) out.add(s.id)
      }
    }
    return [...out]
  }

  #applyMarks(marks: readonly HeldMark[]): void {
    const now = this.#clock.now()
    let added = 0
    for (const mark of marks) {
      for (const p of mark.products) {
        const seq = ++this.#seq
        const st = this.#dirty.get(p)
        if (st === undefined) {
          this.#dirty.set(p, {
            seq,
            version: mark.version,
            sources: mark.sources === null ? null : new Set(mark.sources),
            since: now,
          })
          added++
        } else {
          this.#m.marksCoalesced++
          st.seq = seq
          if (mark.version > st.version) st.version = mark.version
          if (mark.sources === null) st.sources = null
          else if (st.sources !== null) for (const s of mark.sources) st.sources.add(s)
        }
        if (this.#bulkDepth > 0) this.#bulkTouched.add(p)
      }
    }
    this.#m.marks += marks.reduce((n, m) => n + m.products.length, 0)
    this.#m.dirtyAdded += added
    this.#resolveVersionWaiters()
    if (this.#bulkDepth === 0) this.#schedule()
  }

  #waitForVersion(version: number): Promise<void> {
    if (typeof version !== 'number' || !Number.isFinite(version)) {
      return Promise.reject(new InvalidInputError(`get: atLeast must be a version number, got ${String(version)}`))
    }
    if (version <= this.#version) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        version,
        resolve: () => {
          this.#timers.clearTimeout(timer)
          resolve()
        },
      }
      const timer = this.#timers.setTimeout(() => {
        this.#versionWaiters = this.#versionWaiters.filter((w) => w !== waiter)
        reject(
          new WaitTimeoutError(
            `get: version ${version} did not arrive within waitTimeoutMs=${this.#o.waitTimeoutMs} (newest seen: ${this.#version})`,
            { option: 'waitTimeoutMs' },
          ),
        )
      }, this.#o.waitTimeoutMs)
      this.#versionWaiters.push(waiter)
    })
  }

  #resolveVersionWaiters(): void {
    if (this.#versionWaiters.length === 0) return
    const ready = this.#versionWaiters.filter((w) => w.version <= this.#version)
    if (ready.length === 0) return
    this.#versionWaiters = this.#versionWaiters.filter((w) => w.version > this.#version)
    for (const w of ready) w.resolve()
  }

  // ---------------------------------------------------------------- scheduling

  #schedule(): void {
    if (this.#closed || this.#bulkDepth > 0) return
    if (this.#o.debounceMs === 0) {
      if (this.#quietTimer === undefined) {
        this.#quietTimer = this.#timers.setTimeout(() => this.#fire(), 0)
      }
      return
    }
    if (this.#quietTimer !== undefined) this.#timers.clearTimeout(this.#quietTimer)
    this.#quietTimer = this.#timers.setTimeout(() => this.#fire(), this.#o.debounceMs)
    if (this.#maxWaitTimer === undefined) {
      this.#maxWaitTimer = this.#timers.setTimeout(() => this.#fire(), this.#o.maxWaitMs)
    }
  }

  #clearTimers(): void {
    if (this.#quietTimer !== undefined) this.#timers.clearTimeout(this.#quietTimer)
    if (this.#maxWaitTimer !== undefined) this.#timers.clearTimeout(this.#maxWaitTimer)
    if (this.#retryTimer !== undefined) this.#timers.clearTimeout(this.#retryTimer)
    this.#quietTimer = undefined
    this.#maxWaitTimer = undefined
    this.#retryTimer = undefined
  }

  #fire(): void {
    this.#clearTimers()
    void this.#flushRunner().catch(() => {})
  }

  async #flushPending(): Promise<FlushReport> {
    const report: FlushReport = { recomputed: 0, failed: [], deferred: [], unstored: [] }
    if (this.#bulkDepth > 0) {
      report.deferred = [...this.#dirty.keys()]
      return report
    }
    const products = [...this.#dirty.keys()]
    if (products.length === 0) return report
    this.#m.flushes++
    for (let i = 0; i < products.length; i += this.#o.batchSize) {
      const chunk = products.slice(i, i + this.#o.batchSize).filter((p) => this.#dirty.has(p))
      if (chunk.length === 0) continue
      const result = await this.#recomputeBatch(chunk, { full: false, requestedLocation: null }).catch(() => undefined)
      if (result === undefined) report.failed.push(...chunk)
      else
        for (const [p, r] of result) {
          if ('error' in r) report.failed.push(p)
          else report.recomputed++
        }
    }
    const failed = report.failed.length > 0
    if (failed && !this.#closed) {
      // Failed products stay dirty; try again later so background freshness recovers on its own.
      const delay = Math.min(this.#o.retryMs * 2 ** this.#retryAttempt, 30_000)
      this.#retryAttempt++
      if (this.#retryTimer === undefined) {
        this.#retryTimer = this.#timers.setTimeout(() => {
          this.#retryTimer = undefined
          void this.#flushRunner().catch(() => {})
        }, delay)
      }
    } else this.#retryAttempt = 0
    return report
  }

  readonly #sources = new Set<MarkSource>()

  attachSource(source: MarkSource): () => void {
    this.#assertOpen()
    if (
      source === null ||
      typeof source !== 'object' ||
      typeof source.oldestUnprocessedMs !== 'function' ||
      typeof source.catchUp !== 'function'
    ) {
      throw new InvalidInputError('attachSource: a mark source has name, oldestUnprocessedMs() and catchUp()')
    }
    this.#sources.add(source)
    return () => {
      this.#sources.delete(source)
    }
  }

  /** `flush({ units })`: settle only these units and say which are settled. */
  async #flushUnits(units: readonly string[]): Promise<FlushReport> {
    if (!Array.isArray(units)) throw new InvalidInputError('flush: units must be an array of product ids')
    for (const p of units) assertProduct(p, 'flush')
    this.#assertOpen()
    const list = [...new Set(units)]
    const report: FlushReport = { recomputed: 0, failed: [], deferred: [], unstored: [], settled: [] }
    // The newest mark of each unit at the call: settled once a finished recompute started after it.
    const target = new Map<string, number>()
    for (const p of list) target.set(p, this.#dirty.get(p)?.seq ?? 0)
    await Promise.allSettled(list.map((p) => this.#inFlight.get(p)?.promise))
    if (this.#bulkDepth > 0) {
      for (const p of list) if (this.#dirty.has(p)) report.deferred.push(p)
    } else {
      const dirty = list.filter((p) => this.#dirty.has(p))
      for (let i = 0; i < dirty.length; i += this.#o.batchSize) {
        const chunk = dirty.slice(i, i + this.#o.batchSize)
        const result = await this.#recomputeBatch(chunk, { full: false, requestedLocation: null }).catch(
          () => undefined,
        )
        for (const p of chunk) {
          const r = result?.get(p)
          if (r === undefined || 'error' in r) report.failed.push(p)
          else report.recomputed++
        }
      }
    }
    for (const p of list) {
      const st = this.#dirty.get(p)
      const covered = st === undefined || (st.covered ?? 0) >= target.get(p)!
      if (this.#unstored.has(p)) report.unstored.push(p)
      else if (covered) report.settled!.push(p)
    }
    return report
  }

  async flush(options?: FlushOptions): Promise<FlushReport> {
    if (options?.units !== undefined) return this.#flushUnits(options.units)
    this.#clearTimers()
    // Wait for batches already running, then recompute what is still dirty.
    await Promise.allSettled([...this.#inFlight.values()].map((f) => f.promise))
    const report = await this.#flushRunner()
    if (report.failed.length === 0) this.#retryAttempt = 0
    // Whichever recompute last wrote them (this flush, a read, a timer): the products the shared store lacks now.
    return { ...report, unstored: [...this.#unstored] }
  }

  // ---------------------------------------------------------------- recompute

  /** A read of a dirty or missing product: join a batch that already covers its newest mark, or start one. */
  async #recomputeForRead(product: string, key: string): Promise<StockProjection> {
    const st = this.#dirty.get(product)
    const running = this.#inFlight.get(product)
    if (running !== undefined && (st === undefined || st.seq <= running.startSeq)) {
      this.#m.joinedRecomputes++
      const result = await running.promise
      const got = result.get(product)
      if (got !== undefined && 'projections' in got && got.projections.has(key))
        return this.#serveOrFallback(result, product, key)
    }
    // Reads that arrive in the same tick share one reader call.
    const result = await this.#queueRead(product, key)
    return this.#serveOrFallback(result, product, key)
  }

  #queueRead(product: string, key: string): Promise<BatchResult> {
    const requested = key === product ? null : key.slice(product.length + 1)
    if (requested !== null) {
      return this.#recomputeBatch([product], { full: false, requestedLocation: requested })
    }
    if (this.#queued === undefined) {
      const queued = new Set<string>()
      this.#queued = queued
      this.#queuedPromise = new Promise<void>((r) => queueMicrotask(r)).then(() => {
        this.#queued = undefined
        this.#queuedPromise = undefined
        return this.#recomputeBatch([...queued], { full: false, requestedLocation: null })
      })
    }
    this.#queued.add(product)
    return this.#queuedPromise!
  }

  #serveOrFallback(result: BatchResult, product: string, key: string): StockProjection {
    const r = result.get(product)
    if (r !== undefined && 'projections' in r) {
      const p = r.projections.get(key)
      if (p !== undefined) return p
    }
    const error =
      r !== undefined && 'error' in r
        ? r.error
        : new SourceUnavailableError(`no projection for ${key}`, { key, productId: product })
    if (error instanceof SourceUnavailableError || error instanceof LockTimeoutError) {
      const old = this.#l1.peek(key, { allowStale: true })
      if (old !== undefined && this.#clock.now() - old.value.computedAt <= this.#o.graceMs) {
        this.#m.staleIfError++
        return staleCopy(old.value)
      }
    }
    throw error
  }

  #pick(result: BatchResult, product: string, key: string): StockProjection {
    return this.#serveOrFallback(result, product, key)
  }

  /**
   * Recompute a batch: lock each product (sorted, so two batches never deadlock), read its sources once for the
   * batch, compute every key, store L2 then L1, and clear a product's dirty mark only if no mark arrived after
   * this batch started reading.
   */
  #recomputeBatch(
    products: readonly string[],
    opts: { full: boolean; requestedLocation: string | null },
  ): Promise<BatchResult> {
    const startSeqHolder = { seq: Number.POSITIVE_INFINITY }
    const promise = this.#runBatch(products, opts, startSeqHolder)
    // Register as in flight with the sequence the batch reads at (known once locks are held).
    const entry = {
      get startSeq() {
        return startSeqHolder.seq
      },
      promise,
    }
    for (const p of products) this.#inFlight.set(p, entry)
    this.#batches++
    const done = () => {
      this.#batches--
      for (const p of products) if (this.#inFlight.get(p) === entry) this.#inFlight.delete(p)
    }
    promise.then(done, done)
    return promise
  }

  async #runBatch(
    products: readonly string[],
    opts: { full: boolean; requestedLocation: string | null },
    startSeqHolder: { seq: number },
  ): Promise<BatchResult> {
    const result: BatchResult = new Map()
    const sorted = [...new Set(products)].sort()
    const releases: Array<() => void | Promise<void>> = []
    const locked: string[] = []
    try {
      for (const p of sorted) {
        try {
          releases.push(await this.#locks.acquire(p, p))
          if (this.#lock !== undefined) releases.push(await this.#lock.acquire(p, this.#o.lockTimeoutMs))
          locked.push(p)
        } catch (cause) {
          const error =
            cause instanceof StockcastError
              ? cause
              : new LockTimeoutError(`lock of ${JSON.stringify(p)} failed: ${messageOf(cause)}`, {
                  productId: p,
                  cause,
                })
          if (error instanceof LockTimeoutError) this.#m.lockTimeouts++
          this.#emitError(error, 'lock', p)
          result.set(p, { error })
        }
      }
      if (locked.length === 0) return result
      const startSeq = this.#seq
      // Every version handed out before this point is covered by what this batch reads (or is still held in an
      // open transaction, whose commit marks the product again): the entries get this version, so they are
      // monotonic per product and an L2 write from here never loses to an older entry.
      const startVersion = this.#versionNow()
      startSeqHolder.seq = startSeq
      const today = this.#currentDay()
      // What each product needs: a full read, some sources, or nothing (not dirty, inputs cached: a day rollover).
      const needAll: string[] = []
      const needSome = new Set<string>()
      const selective: string[] = []
      const cachedInputs = new Map<string, SourceInputs>()
      for (const p of locked) {
        const st = this.#dirty.get(p)
        const inputs = opts.full ? undefined : this.#l1.peek(p, { allowStale: true })?.inputs
        if (inputs === undefined || (st !== undefined && st.sources === null)) needAll.push(p)
        else {
          cachedInputs.set(p, inputs)
          if (st !== undefined && st.sources !== null) {
            selective.push(p)
            for (const s of st.sources) needSome.add(s)
          }
        }
      }
      const fresh = new Map<string, SourceInputs>()
      try {
        if (needAll.length > 0) {
          const read = await this.#reader.read(needAll)
          this.#m.reads++
          for (const p of needAll) fresh.set(p, read.get(p) ?? EMPTY_INPUTS)
        }
        if (selective.length > 0) {
          const sources = [...needSome]
          const read = await this.#reader.read(selective, { sources })
          this.#m.reads++
          this.#m.selectiveReads++
          for (const p of selective)
            fresh.set(p, mergeInputs(cachedInputs.get(p)!, read.get(p) ?? EMPTY_INPUTS, new Set(sources)))
        }
      } catch (cause) {
        this.#m.sourceErrors++
        const error =
          cause instanceof InvalidInputError
            ? cause
            : new SourceUnavailableError(
                `source read failed for ${locked.length} product(s) (${locked.slice(0, 3).join(', ')}${locked.length > 3 ? ', …' : ''}): ${messageOf(cause)}; they stay dirty`,
                { tier: 'l3', cause, ...(locked.length === 1 ? { productId: locked[0]! } : {}) },
              )
        this.#emitError(error, 'read')
        for (const p of locked) result.set(p, { error })
        return result
      }
      for (const [p, inputs] of cachedInputs) if (!fresh.has(p)) fresh.set(p, inputs)

      const computedAt = this.#clock.now()
      const l2Entries: Array<[string, StoreEntry]> = []
      const l1Writes: Array<{ key: string; value: StockProjection; inputs?: SourceInputs }> = []
      const events: UpdatedEvent[] = []
      for (const p of locked) {
        const inputs = fresh.get(p)!
        const prevVersion = this.#l1.peek(p, { allowStale: true })?.value.version ?? 0
        const version = Math.max(prevVersion, startVersion)
        let projections: Map<string, StockProjection>
        try {
          projections = this.#computeKeys(p, inputs, today.date, version, computedAt, opts.requestedLocation)
        } catch (cause) {
          const error =
            cause instanceof StockcastError
              ? cause
              : new InvalidInputError(`projection of ${JSON.stringify(p)} failed: ${messageOf(cause)}`, {
                  productId: p,
                  cause,
                })
          this.#m.invalidInputs++
          this.#emitError(error, 'compute', p)
          result.set(p, { error })
          continue
        }
        result.set(p, { projections })
        for (const [key, value] of projections) {
          l2Entries.push([key, { value, version: value.version, computedAt }])
          l1Writes.push(key === p ? { key, value, inputs } : { key, value })
          events.push({
            key,
            product: p,
            location: value.location,
            projection: value,
            previous: this.#l1.peek(key, { allowStale: true })?.value,
          })
        }
        this.#m.recomputes++
        this.#m.keysComputed += projections.size
      }
      if (this.#l2 !== undefined && l2Entries.length > 0) {
        const stored = await this.#l2.setMany(l2Entries)
        if (this.#l2Shared) {
          for (const [p, r] of result) {
            if ('error' in r) continue
            if (stored) this.#unstored.delete(p)
            else this.#unstored.add(p)
          }
        }
      }
      for (const w of l1Writes) this.#setL1(w.key, w.value, w.inputs, today)
      // Clear a dirty mark only when no newer mark arrived while we read.
      const cleaned: string[] = []
      for (const p of locked) {
        const r = result.get(p)
        if (r === undefined || 'error' in r) continue
        const st = this.#dirty.get(p)
        if (st !== undefined && st.seq <= startSeq) {
          this.#dirty.delete(p)
          this.#bulkTouched.delete(p)
          cleaned.push(p)
        } else if (st !== undefined) {
          this.#m.racesKeptDirty++
          if ((st.covered ?? 0) < startSeq) st.covered = startSeq
        }
      }
      for (const ev of events) {
        this.#emitter.emit('updated', ev)
        const date = ev.projection.firstStockoutDate
        if (date !== null && ev.previous?.firstStockoutDate !== date) {
          this.#emitter.emit('stockout', {
            key: ev.key,
            product: ev.product,
            location: ev.location,
            date,
            projection: ev.projection,
          })
        }
      }
      if (this.#bus !== undefined && cleaned.length > 0) {
        const version = Math.max(
          ...cleaned.map(
            (p) => (result.get(p) as { projections: Map<string, StockProjection> }).projections.get(p)?.version ?? 0,
          ),
        )
        this.#bus
          .publish({ products: cleaned, version, origin: this.#origin })
          .catch((cause) =>
            this.#emitError(
              new StockcastError(`invalidation bus publish failed: ${messageOf(cause)}`, { cause }),
              'bus',
            ),
          )
      }
      return result
    } finally {
      for (const r of releases.reverse()) {
        try {
          await r()
        } catch (cause) {
          this.#emitError(new StockcastError(`lock release failed: ${messageOf(cause)}`, { cause }), 'lock')
        }
      }
    }
  }

  /** Projections of every key of a product: the product (or roll-up) and, with locations, each location. */
  #computeKeys(
    product: string,
    inputs: SourceInputs,
    today: string,
    version: number,
    computedAt: number,
    requestedLocation: string | null,
  ): Map<string, StockProjection> {
    const out = new Map<string, StockProjection>()
    // One options object per day: the calculator resolves a given options object once.
    if (this.#dayOptions.today !== today) this.#dayOptions = { ...this.#projectionOptions, today }
    const opts = this.#dayOptions
    const wrap = (key: string, location: string | null, p: Projection): StockProjection =>
      freezeProjection({ ...p, key, product, location, version, computedAt, stale: false })
    const attribute = (fn: () => Projection): Projection => {
      try {
        return fn()
      } catch (cause) {
        if (cause instanceof StockcastError) {
          throw new InvalidInputError(`${JSON.stringify(product)}: ${cause.message}`, {
            productId: product,
            ...(cause.source === undefined ? {} : { source: cause.source }),
            cause,
          })
        }
        throw cause
      }
    }
    out.set(
      product,
      wrap(
        product,
        null,
        attribute(() => projectStock(inputs, opts)),
      ),
    )
    if (!this.#schema.hasLocations) return out
    const byLoc = new Map<string, SourceInputs>()
    const bucket = (loc: string | null | undefined): SourceInputs => {
      const l = loc ?? ''
      let b = byLoc.get(l)
      if (b === undefined) {
        b = { onHand: [], supply: [], demand: [] }
        byLoc.set(l, b)
      }
      return b
    }
    for (const r of inputs.onHand) bucket(r.location).onHand.push(r)
    for (const r of inputs.supply) bucket(r.location).supply.push(r)
    for (const r of inputs.demand) bucket(r.location).demand.push(r)
    // Locations that vanished since the last recompute get an empty projection, so no old value survives.
    for (const k of this.#locKeys.get(product) ?? []) bucket(k.slice(product.length + 1))
    if (requestedLocation !== null) bucket(requestedLocation)
    for (const [loc, b] of byLoc) {
      if (loc === '') continue
      const key = product + KEY_SEPARATOR + loc
      out.set(
        key,
        wrap(
          key,
          loc,
          attribute(() => projectStock(b, opts)),
        ),
      )
    }
    return out
  }

  #setL1(key: string, value: StockProjection, inputs?: SourceInputs, today: Today = this.#currentDay()): void {
    const cur = this.#l1.peek(key, { allowStale: true })
    if (
      cur !== undefined &&
      (cur.value.version > value.version ||
        (cur.value.version === value.version && cur.value.computedAt > value.computedAt))
    ) {
      return
    }
    if (value.today !== today.date) return
    const entry: L1Entry = { value, promise: Promise.resolve(value), epoch: this.#dayEpoch }
    if (inputs !== undefined) entry.inputs = inputs
    else if (cur?.inputs !== undefined && cur.value.version === value.version) entry.inputs = cur.inputs
    this.#l1.set(key, entry)
    const i = key.indexOf(KEY_SEPARATOR)
    if (i >= 0) {
      const product = key.slice(0, i)
      let set = this.#locKeys.get(product)
      if (set === undefined) {
        set = new Set()
        this.#locKeys.set(product, set)
      }
      set.add(key)
    }
  }

  /** Compute from the sources without caching (reads of touched products inside disableCacheTemporarily). */
  async #computeDirect(product: string, key: string): Promise<StockProjection> {
    this.#m.directReads++
    let read: Map<string, SourceInputs>
    try {
      read = await this.#reader.read([product])
    } catch (cause) {
      throw new SourceUnavailableError(`source read failed for ${JSON.stringify(product)}: ${messageOf(cause)}`, {
        productId: product,
        tier: 'l3',
        cause,
      })
    }
    const location = key === product ? null : key.slice(product.length + 1)
    const projections = this.#computeKeys(
      product,
      read.get(product) ?? EMPTY_INPUTS,
      this.#currentDay().date,
      0,
      this.#clock.now(),
      location,
    )
    return projections.get(key)!
  }

  #currentDay(): Today {
    const now = this.#clock.now()
    if (now < this.#today.endsAtMs) return this.#today
    const t = todayIn(this.#o.timeZone, now)
    if (t.date !== this.#today.date) this.#dayEpoch++
    this.#today = { date: t.date, endsAtMs: t.endsAtMs }
    if (!this.#exactClock && !this.#closed) {
      if (this.#dayTimer !== undefined) this.#timers.clearTimeout(this.#dayTimer)
      this.#dayTimer = this.#timers.setTimeout(
        () => {
          this.#dayTimer = undefined
          this.#currentDay()
        },
        Math.min(t.endsAtMs - now + 1, 2 ** 31 - 1),
      )
    }
    return this.#today
  }

  #onBusMessage(msg: { products: string[]; version: number; origin: string }): void {
    if (msg.origin === this.#origin) return
    for (const p of msg.products) {
      for (const key of [p, ...(this.#locKeys.get(p) ?? [])]) {
        const e = this.#l1.peek(key, { allowStale: true })
        if (e !== undefined && e.value.version < msg.version) this.#l1.delete(key)
      }
    }
  }

  // ---------------------------------------------------------------- bulk

  async disableCacheTemporarily<T>(fn: () => Promise<T> | T): Promise<T> {
    this.#assertOpen()
    if (typeof fn !== 'function') throw new InvalidInputError('disableCacheTemporarily expects a function')
    if (this.#bulkDepth === 0) this.#clearTimers()
    this.#bulkDepth++
    this.#m.bulkBlocks++
    try {
      return await fn()
    } finally {
      // Outermost block: changes written inside it through other connections reach the cache through its mark
      // sources; hand them over while still in bulk mode, so the one settling pass covers them.
      if (this.#bulkDepth === 1) await this.#catchUpSources()
      this.#bulkDepth--
      if (this.#bulkDepth === 0) {
        await this.#settleBulk()
        for (const s of [...this.#sources]) s.afterBulk?.()
      }
    }
  }

  async #catchUpSources(): Promise<void> {
    for (const s of [...this.#sources]) {
      try {
        await s.catchUp()
      } catch (cause) {
        this.#emitError(
          new StockcastError(`mark source ${s.name}: catch-up after a bulk block failed: ${messageOf(cause)}`, {
            cause,
          }),
          'bulk',
        )
      }
    }
  }

  async #settleBulk(): Promise<void> {
    const touched = this.#bulkTouched.size
    this.#bulkTouched = new Set()
    try {
      if (touched >= this.#o.rebuildThreshold && typeof this.#reader.products === 'function') {
        this.#m.bulkRebuilds++
        await this.rebuildAll()
      }
      await this.flush()
    } catch (cause) {
      // Failed products stay dirty and are served from the sources; the error reached the 'error' event.
      if (!(cause instanceof StockcastError)) this.#emitError(new StockcastError(messageOf(cause), { cause }), 'bulk')
    }
  }

  // ---------------------------------------------------------------- ops

  async rebuildAll(options: { onProgress?: (p: RebuildProgress) => void } = {}): Promise<RebuildReport> {
    this.#assertOpen()
    if (typeof this.#reader.products !== 'function') {
      throw new ConfigError('rebuildAll: the reader has no products() method to list every product', {
        option: 'reader',
      })
    }
    const started = this.#clock.now()
    let products: string[]
    try {
      products = await this.#reader.products()
    } catch (cause) {
      throw new SourceUnavailableError(`rebuildAll: listing products failed: ${messageOf(cause)}`, {
        tier: 'l3',
        cause,
      })
    }
    let keys = 0
    let failed = 0
    let done = 0
    for (let i = 0; i < products.length; i += this.#o.batchSize) {
      const chunk = products.slice(i, i + this.#o.batchSize)
      const result = await this.#recomputeBatch(chunk, { full: true, requestedLocation: null })
      for (const r of result.values()) {
        if ('error' in r) failed++
        else keys += r.projections.size
      }
      done += chunk.length
      options.onProgress?.({ done, total: products.length, elapsedMs: this.#clock.now() - started })
    }
    this.#m.rebuilds++
    return { products: products.length, keys, failed, ms: this.#clock.now() - started }
  }

  async validate(options: ValidateOptions = {}): Promise<ValidationReport> {
    this.#assertOpen()
    let products: string[]
    if (options.products !== undefined) {
      for (const p of options.products) assertProduct(p, 'validate')
      products = [...new Set(options.products)]
    } else if (typeof this.#reader.products === 'function') products = await this.#reader.products()
    else products = [...new Set([...this.#l1.keys()].map((k) => k.split(KEY_SEPARATOR)[0]!))]
    if (options.sample !== undefined) {
      if (!Number.isInteger(options.sample) || options.sample < 0) {
        throw new InvalidInputError(`validate: sample must be a non-negative integer, got ${String(options.sample)}`)
      }
      products = sampleOf(products, options.sample)
    }
    const report: ValidationReport = { checked: 0, mismatches: [], rate: 0, uncached: 0, skipped: 0, invalid: [] }
    const today = this.#currentDay()
    for (let i = 0; i < products.length; i += this.#o.batchSize) {
      const chunk = products.slice(i, i + this.#o.batchSize)
      const startSeq = this.#seq
      let read: Map<string, SourceInputs>
      try {
        read = await this.#reader.read(chunk)
      } catch (cause) {
        throw new SourceUnavailableError(`validate: source read failed: ${messageOf(cause)}`, { tier: 'l3', cause })
      }
      const keysOf = new Map<string, string[]>()
      for (const p of chunk) keysOf.set(p, [p, ...(this.#locKeys.get(p) ?? [])])
      const l2Keys = chunk.flatMap((p) => keysOf.get(p)!.filter((k) => this.#l1.peek(k) === undefined))
      const l2 =
        this.#l2 !== undefined && l2Keys.length > 0 ? await this.#l2.getMany(l2Keys) : new Map<string, StoreEntry>()
      for (const p of chunk) {
        let truth: Map<string, StockProjection>
        try {
          truth = this.#computeKeys(p, read.get(p) ?? EMPTY_INPUTS, today.date, 0, 0, null)
        } catch (cause) {
          // Source rows the calculator rejects: reported per product; the rest of the check goes on.
          if (!(cause instanceof InvalidInputError)) throw cause
          report.invalid.push({ product: p, message: cause.message })
          continue
        }
        const keys = new Set([...keysOf.get(p)!, ...truth.keys()])
        for (const key of keys) {
          const st = this.#dirty.get(p)
          if (st !== undefined) {
            report.skipped++
            continue
          }
          const l1 = this.#l1.peek(key)
          const cached = l1 !== undefined && l1.epoch === this.#dayEpoch ? l1.value : l2.get(key)?.value
          if (cached === undefined || cached.today !== today.date) {
            report.uncached++
            continue
          }
          const t =
            truth.get(key) ?? this.#computeKeys(p, EMPTY_INPUTS, today.date, 0, 0, key.slice(p.length + 1)).get(key)!
          const diff = firstDifference(cached, t)
          if (diff === null) {
            report.checked++
            continue
          }
          // A write that landed while we read makes the comparison meaningless: skip it.
          const now = this.#dirty.get(p)
          if (now !== undefined && now.seq > startSeq) {
            report.skipped++
            continue
          }
          report.checked++
          report.mismatches.push({ key, product: p, location: t.location, ...diff })
          if (options.repair) this.markDirty([p], { reason: 'validate' })
        }
      }
    }
    report.rate = report.checked === 0 ? 0 : report.mismatches.length / report.checked
    this.#m.validations++
    this.#m.mismatches += report.mismatches.length
    return report
  }

  status(): StockCacheStatus {
    const now = this.#clock.now()
    let oldest = now
    for (const st of this.#dirty.values()) if (st.since < oldest) oldest = st.since
    let unprocessed = now - oldest
    for (const s of this.#sources) {
      try {
        unprocessed = Math.max(unprocessed, s.oldestUnprocessedMs())
      } catch {
        // a source that cannot tell does not hide the others
      }
    }
    return {
      dirty: this.#dirty.size,
      oldestDirtyMs: now - oldest,
      oldestUnprocessedMs: unprocessed,
      inFlight: this.#batches,
      degraded: this.#l2?.degraded ?? false,
      storeDebt: this.#l2?.debt ?? 0,
      bulkDepth: this.#bulkDepth,
      l1Size: this.#l1.size,
      locks: this.#locks.size,
      today: this.#currentDay().date,
      closed: this.#closed,
    }
  }

  metrics(): MetricsSnapshot {
    return this.#m.snapshot({
      l2Hits: this.#l2?.hits ?? 0,
      l2Misses: this.#l2?.misses ?? 0,
      l2Errors: this.#l2?.errors ?? 0,
      lockWaits: this.#locks.waits,
    })
  }

  on<K extends keyof StockCacheEvents>(type: K, handler: (event: StockCacheEvents[K]) => void): void {
    this.#emitter.on(type, handler)
  }

  off<K extends keyof StockCacheEvents>(type: K, handler: (event: StockCacheEvents[K]) => void): void {
    this.#emitter.off(type, handler)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    try {
      await this.flush()
    } catch {
      // errors already reached the 'error' event
    }
    this.#closed = true
    this.#clearTimers()
    if (this.#dayTimer !== undefined) this.#timers.clearTimeout(this.#dayTimer)
    this.#dayTimer = undefined
    for (const w of this.#versionWaiters) w.resolve()
    this.#versionWaiters = []
    if (this.#unsubscribe !== undefined) {
      try {
        await (await this.#unsubscribe)()
      } catch {
        // the bus is going away with us
      }
    }
    await this.#l2?.close()
    await this.#reader.close?.()
    this.#l1.clear()
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError('the stock cache is closed')
  }

  #emitError(error: StockcastError, operation: string, product?: string): void {
    this.#m.errors++
    this.#emitter.emit('error', product === undefined ? { error, operation } : { error, operation, product })
  }

  /** @internal test hook: what the cache holds about a product. */
  _inspect(product: string): { dirty: boolean; inFlight: boolean; l1: boolean } {
    return { dirty: this.#dirty.has(product), inFlight: this.#inFlight.has(product), l1: this.#l1.has(product) }
  }
}

const warned = new Set<string>()

/** A risky but legal setup: one process warning per code. */
function warnOnce(code: string, message: string): void {
  if (warned.has(code)) return
  warned.add(code)
  process.emitWarning(message, { code, type: 'StockcastWarning' })
}

/** Deep-freeze a projection the cache keeps: L1 hands out the same object to every reader (no clone on hit). */
export function freezeProjection<T extends StockProjection>(p: T): T {
  if (Object.isFrozen(p)) return p
  for (const d of p.days) Object.freeze(d)
  Object.freeze(p.days)
  for (const l of p.later) Object.freeze(l)
  Object.freeze(p.later)
  return Object.freeze(p)
}

function staleCopy(value: StockProjection): StockProjection {
  return Object.freeze({ ...value, stale: true })
}

/** Replace the rows of the re-read sources, keep the rest. */
function mergeInputs(cached: SourceInputs, read: SourceInputs, sources: ReadonlySet<string>): SourceInputs {
  const keep = <R extends MovementRow | FlowRow>(rows: readonly R[]) =>
    rows.filter((r) => r.source === undefined || !sources.has(r.source))
  return {
    onHand: [...keep(cached.onHand), ...read.onHand],
    supply: [...keep(cached.supply), ...read.supply],
    demand: [...keep(cached.demand), ...read.demand],
  }
}

const IGNORED = new Set(['version', 'computedAt', 'stale', 'key', 'product', 'location'])

/** The first field where two projections differ, or null. */
export function firstDifference(
  a: object,
  b: object,
  path = '',
): { field: string; cached: unknown; truth: unknown } | null {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  for (const k of keys) {
    if (path === '' && IGNORED.has(k)) continue
    const x = (a as Record<string, unknown>)[k]
    const y = (b as Record<string, unknown>)[k]
    const field = path === '' ? k : Array.isArray(a) ? `${path}[${k}]` : `${path}.${k}`
    if (x !== null && y !== null && typeof x === 'object' && typeof y === 'object') {
      const d = firstDifference(x, y, field)
      if (d !== null) return d
    } else if (!Object.is(x, y)) return { field, cached: x, truth: y }
  }
  return null
}

function sampleOf<T>(list: readonly T[], n: number): T[] {
  if (n >= list.length) return [...list]
  const copy = [...list]
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(Math.random() * (copy.length - i))
    const t = copy[i]!
    copy[i] = copy[j]!
    copy[j] = t
  }
  return copy.slice(0, n)
}
