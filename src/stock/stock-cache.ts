import type { LRUCache } from 'lru-cache'
import mitt, { type Emitter } from 'mitt'
import { CacheEngine, type FlushOptions, type FlushReport } from '../cache/engine.js'
import type { L1Entry, MemoryTier } from '../cache/memory-tier.js'
import type { Metrics, MetricsSnapshot } from '../cache/metrics.js'
import { messageOf } from '../cache/store-facade.js'
import type { StockProjection } from '../cache/types.js'
import { ConfigError, InvalidInputError, SourceUnavailableError } from '../errors.js'
import type { MarkSource, PendingMarks } from '../invalidation/contracts.js'
import type { MarkTable } from '../invalidation/marks.js'
import type { TransactionScope } from '../invalidation/scope.js'
import { projectStock } from '../projection/project.js'
import type { ProjectionOptions } from '../projection/types.js'
import { release, retain } from '../util/shared.js'
import { defaultTimers } from '../util/timers.js'
import { DayClock } from './day-clock.js'
import { assertConsistency, assertLocation, assertProduct, KEY_SEPARATOR, keyOf } from './keys.js'
import { type ListContext, type ListPage, type ListQuery, listPage, StatusIndex } from './list.js'
import { rebuildAll, sourcesOf } from './ops.js'
import { type ResolvedOptions, resolveOptions, type StockCacheOptions, warnOnce } from './options.js'
import { freezeProjection, ProjectionLoader } from './projection-loader.js'
import { DayRollover, type RolloverReport } from './rollover.js'
import type { StockSchema } from './schema.js'
import { emitComputed, type StockCacheEvents } from './stock-events.js'
import { type StrongContext, strongGetMany } from './strong-reads.js'
import type {
  CachedEntry,
  EntriesOptions,
  GetManyOptions,
  GetOptions,
  MarkOptions,
  RebuildProgress,
  RebuildReport,
  StockCache,
  StockCacheStatus,
} from './types.js'
import { type ValidateOptions, type ValidationReport, validate } from './validate.js'

export type { FlushOptions, FlushReport } from '../cache/engine.js'
export type { RolloverReport } from './rollover.js'

import { firstDifference } from './compare.js'

export { freezeProjection } from './projection-loader.js'
export type {
  ErrorEvent,
  StockCacheEvents,
  StockoutEvent,
  TransitionEvent,
  TransitionKind,
  UpdatedEvent,
} from './stock-events.js'
export type * from './types.js'
export type { ValidateOptions, ValidationMismatch, ValidationReport } from './validate.js'
export { firstDifference }

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

const unitOf = (key: string): string => {
  const i = key.indexOf(KEY_SEPARATOR)
  return i < 0 ? key : key.slice(0, i)
}

const staleCopy = (value: StockProjection): StockProjection => Object.freeze({ ...value, stale: true })

/**
 * The stock front end of the generic engine: option checks, what a product key means (the projection loader, the
 * day clock, events), and the inline hot paths. `get`, `peek` and the `getMany` fast path read the engine's mark
 * map and L1 `LRUCache` directly, so an L1 hit costs one map lookup, one LRU lookup and an epoch compare.
 */
class StockCacheImpl implements StockCache {
  readonly #o: ResolvedOptions
  readonly #schema: StockSchema
  readonly #reader: StockCacheOptions['reader']
  readonly #engine: CacheEngine<StockProjection>
  readonly #loader: ProjectionLoader
  readonly #day: DayClock
  readonly #emitter: Emitter<StockCacheEvents> = mitt<StockCacheEvents>()
  readonly #sourceIds: Set<string>
  readonly #strong: StrongContext
  // The hot path's view of the engine.
  readonly #units: Map<string, { dirty: boolean }>
  readonly #lru: LRUCache<string, L1Entry<StockProjection>>
  #closing: Promise<void> | undefined
  readonly #l1: MemoryTier<StockProjection>
  readonly #marks: MarkTable
  readonly #m: Metrics
  readonly #exact: boolean
  #hits = 0
  readonly #index = new StatusIndex()
  /** L1's removal count and generation when `rebuildAll()` last put every product there. */
  #complete: { removals: number; generation: number } | undefined
  #listContext: ListContext | undefined
  readonly #rollover: DayRollover

  constructor(options: StockCacheOptions) {
    this.#o = resolveOptions(options)
    const o = this.#o
    this.#schema = options.schema
    this.#reader = options.reader
    const clock = options.clock ?? Date
    const timers = options.timers ?? defaultTimers
    this.#sourceIds = new Set(this.#schema.sources.map((s) => s.id))
    const projection: ProjectionOptions = {
      timeZone: o.timeZone,
      horizonDays: o.horizonDays,
      scale: o.scale,
      safetyStock: o.safetyStock,
      criticalDays: o.criticalDays,
    }
    // A throwaway projection checks the calculator options (safetyStock, scale) once, at construction.
    try {
      projectStock({ onHand: 0 }, { ...projection, today: '2000-01-01' })
    } catch (cause) {
      throw new ConfigError(`createStockCache: ${messageOf(cause)}`, { cause })
    }
    this.#exact = options.clock !== undefined && options.timers === undefined
    this.#day = new DayClock(o.timeZone, clock, timers, this.#exact)
    const emit = <K extends keyof StockCacheEvents>(type: K, event: StockCacheEvents[K]) =>
      this.#emitter.emit(type, event)
    const shared = options.store?.capabilities?.shared === true
    let engine: CacheEngine<StockProjection> | undefined
    this.#loader = new ProjectionLoader({
      schema: this.#schema,
      reader: options.reader,
      projection,
      day: this.#day,
      get metrics() {
        return engine!.metrics
      },
      timers,
      readTimeoutMs: o.readTimeoutMs,
      reuseInputs: !shared && options.bus === undefined,
      selectiveReads: o.selectiveReads,
      error: (error, operation, product) => engine!.reportError(error, operation, product),
    })
    engine = new CacheEngine<StockProjection>({
      loader: this.#loader,
      freshness: this.#day,
      store: options.store,
      bus: options.bus,
      lock: options.lock,
      clock,
      timers,
      memory: { max: o.memoryMax, ttl: o.memoryTtl, onChange: (key, value) => this.#index.change(key, value) },
      debounceMs: o.debounceMs,
      maxWaitMs: o.maxWaitMs,
      lockTimeoutMs: o.lockTimeoutMs,
      graceMs: o.graceMs,
      batchSize: o.batchSize,
      waitTimeoutMs: o.waitTimeoutMs,
      retryMs: o.retryMs,
      rebuildThreshold: o.rebuildThreshold,
      unitOf,
      stale: staleCopy,
      adopt: freezeProjection,
      same: (a, b) => firstDifference(a, b) === null,
      listUnits: typeof options.reader.products === 'function' ? () => options.reader.products!() : undefined,
      hooks: {
        error: (error, operation, product) =>
          emit('error', product === undefined ? { error, operation } : { error, operation, product }),
        degraded: (tier, error) => emit('degraded', { tier, error }),
        recovered: (tier) => emit('recovered', { tier }),
        computed: (product, values, previous) => emitComputed(emit, engine!.metrics, product, values, previous),
      },
    })
    this.#engine = engine
    const rollover = new DayRollover({
      engine,
      loader: this.#loader,
      day: this.#day,
      timeZone: o.timeZone,
      batchSize: o.batchSize,
      unitOf,
      computed: (product, values, previous) => emitComputed(emit, engine.metrics, product, values, previous),
    })
    this.#rollover = rollover
    engine.onClose(() => rollover.clear())
    this.#units = engine.marks.units
    this.#lru = engine.l1.lru
    this.#l1 = engine.l1
    this.#marks = engine.marks
    this.#m = engine.metrics
    this.#strong = { engine, pendingMarks: options.pendingMarks as PendingMarks | undefined }
    if (shared && options.bus === undefined && o.memoryTtl === 0 && o.memoryMax > 0) {
      warnOnce(
        'STOCKCAST_SHARED_STORE_WITHOUT_BUS',
        'stockcast: a shared store without a bus and without memory.ttl: this instance keeps its L1 values until its own ' +
          'marks invalidate them, so writes seen only by another instance reach it late. Add a bus (the bus option: an ' +
          'InvalidationBus such as redisBus of @stockcast/redis), set memory.ttl, or read with consistency: "strong".',
      )
    }
    retain(options.reader)
  }

  // ---------------------------------------------------------------- reads (hot paths inline)

  get(product: string, options?: GetOptions): Promise<StockProjection> {
    if (options === undefined && typeof product === 'string') {
      const u = this.#units.get(product)
      if (u === undefined || !u.dirty) {
        const e = this.#lru.get(product)
        if (e !== undefined) {
          // The day rolls over by a timer at the zone's midnight; the clock is also read every 1024 hits.
          if (this.#exact || (++this.#hits & 1023) === 0) this.#day.day()
          if (e.epoch === this.#day.epoch) {
            this.#m.l1Hits++
            return e.promise
          }
        }
      }
    }
    return this.#getSlow(product, options)
  }

  peek(product: string, location?: string | null): StockProjection | undefined {
    const u = this.#units.get(product)
    if (u?.dirty === true) return undefined
    const e = this.#lru.get(location == null ? product : product + KEY_SEPARATOR + location)
    if (e === undefined) return undefined
    if (this.#exact || (++this.#hits & 1023) === 0) this.#day.day()
    return e.epoch === this.#day.epoch ? e.value : undefined
  }

  async #getSlow(product: string, options: GetOptions = {}): Promise<StockProjection> {
    assertProduct(product, 'get')
    assertLocation(options.location, 'get')
    assertConsistency(options.consistency, 'get')
    this.#engine.assertOpen()
    if (options.atLeast !== undefined) {
      await this.#engine.versions.wait(options.atLeast, this.#o.waitTimeoutMs, 'get')
    }
    // A token may come from another instance, whose marks this one never saw: with a mark source the read is strong
    // (never older than a commit that finished before it began), so the token's write is in it wherever it was made.
    const strong =
      options.consistency === 'strong' || (options.atLeast !== undefined && this.#strong.pendingMarks !== undefined)
    if (strong) {
      const got = (await strongGetMany(this.#strong, [product], options.location)).get(product)
      if (got === undefined) throw new SourceUnavailableError(`no projection for ${product}`, { productId: product })
      return got
    }
    return this.#engine.reads.read(keyOf(product, options.location), options.allowStale ? { allowStale: true } : {})
  }

  async getMany(products: readonly string[], options: GetManyOptions = {}): Promise<Map<string, StockProjection>> {
    if (!Array.isArray(products)) throw new InvalidInputError('getMany: products must be an array of product ids')
    if (options.location == null && !options.allowStale && options.consistency === undefined && !this.#engine.closed) {
      // Fast path, the dashboard case: every product a fresh L1 hit. One pass, the answer built in caller order. The
      // LRU lookup comes first: an id that is not a string, empty or a location key is not held under itself, so it
      // misses and the slow path rejects it. The dirty check is skipped while no unit is dirty, and the separator
      // check while L1 holds no location key (only then could an id with one find an entry).
      const epoch = this.#day.current()
      const anyDirty = this.#marks.dirtyCount > 0
      const locationKeys = this.#l1.hasLocationKeys
      const lru = this.#lru
      const hits = new Map<string, StockProjection>()
      let complete = true
      for (let i = 0; i < products.length; i++) {
        const p = products[i]!
        const e = lru.get(p)
        if (
          e === undefined ||
          e.epoch !== epoch ||
          (anyDirty && this.#units.get(p)?.dirty === true) ||
          (locationKeys && p.includes(KEY_SEPARATOR))
        ) {
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
    assertConsistency(options.consistency, 'getMany')
    this.#engine.assertOpen()
    if (options.consistency === 'strong') return strongGetMany(this.#strong, [...new Set(products)], options.location)
    const keys = products.map((p) => keyOf(p, options.location))
    const byKey = await this.#engine.reads.readMany(keys, options.allowStale ? { allowStale: true } : {})
    const out = new Map<string, StockProjection>()
    for (let i = 0; i < products.length; i++) {
      const v = byKey.get(keys[i]!)
      if (v !== undefined) out.set(products[i]!, v)
    }
    return out
  }

  async refresh(product: string, location?: string | null): Promise<StockProjection> {
    assertProduct(product, 'refresh')
    assertLocation(location, 'refresh')
    this.#engine.assertOpen()
    const key = keyOf(product, location)
    const want = key === product ? undefined : new Map([[product, key]])
    const result = await this.#engine.refresh([product], want)
    return this.#engine.reads.serve(result, key)
  }

  ensureFresh(product: string, location?: string | null): Promise<StockProjection> {
    return this.#getSlow(product, location == null ? {} : { location })
  }

  // ---------------------------------------------------------------- marks

  markDirty(products: string | readonly string[], options: MarkOptions = {}): number {
    this.#engine.assertOpen()
    const list = typeof products === 'string' ? [products] : products
    if (!Array.isArray(list))
      throw new InvalidInputError('markDirty: products must be a product id or an array of them')
    for (const p of list) assertProduct(p, 'markDirty')
    return this.#engine.mark(list, {
      version: options.version,
      sources: sourcesOf(this.#schema, this.#sourceIds, options.reason),
      tx: options.tx,
    })
  }

  transaction(): TransactionScope {
    return this.#engine.transaction()
  }

  async flush(options?: FlushOptions): Promise<FlushReport> {
    if (options?.units !== undefined) {
      if (!Array.isArray(options.units)) throw new InvalidInputError('flush: units must be an array of product ids')
      for (const p of options.units) assertProduct(p, 'flush')
      this.#engine.assertOpen()
    }
    return this.#engine.flush(options)
  }

  attachSource(source: MarkSource): () => void {
    return this.#engine.attachSource(source)
  }

  disableCacheTemporarily<T>(fn: () => Promise<T> | T): Promise<T> {
    return this.#engine.disable(fn)
  }

  // ---------------------------------------------------------------- ops

  async rebuildAll(options: { onProgress?: (p: RebuildProgress) => void } = {}): Promise<RebuildReport> {
    this.#engine.assertOpen()
    const before = { removals: this.#l1.removals, generation: this.#l1.generation }
    const report = await rebuildAll(this.#engine, this.#reader, options)
    // Every product is in L1 if none failed and nothing left it meanwhile (no eviction, no bus outage).
    this.#complete =
      report.failed === 0 && this.#l1KeptSince(before) && this.#o.memoryMax > 0 && this.#o.memoryTtl === 0
        ? before
        : undefined
    return report
  }

  /** True when no key has left L1 and its generation is the same since `mark` (and it is not suspended). */
  #l1KeptSince(mark: { removals: number; generation: number } | undefined): boolean {
    const l1 = this.#l1
    return mark !== undefined && mark.removals === l1.removals && mark.generation === l1.generation && !l1.suspended
  }

  prepareRollover(): Promise<RolloverReport> {
    this.#engine.assertOpen()
    return this.#rollover.prepare()
  }

  entries(options: EntriesOptions = {}): CachedEntry[] {
    const order = options.order ?? 'recent'
    if (order !== 'recent' && order !== 'computedAt') {
      throw new InvalidInputError(`entries: order must be 'recent' or 'computedAt', got ${String(order)}`)
    }
    const limit = options.limit ?? Number.POSITIVE_INFINITY
    if (!(limit >= 0) || (limit !== Number.POSITIVE_INFINITY && !Number.isInteger(limit))) {
      throw new InvalidInputError(`entries: limit must be a non-negative integer, got ${String(options.limit)}`)
    }
    const out: CachedEntry[] = []
    const full = order === 'computedAt'
    for (const [key, e] of this.#lru.entries()) {
      if (!full && out.length >= limit) break
      const v = e.value
      out.push({ key, product: v.product, location: v.location, computedAt: v.computedAt, today: v.today })
    }
    if (!full) return out
    out.sort((a, b) => a.computedAt - b.computedAt)
    return limit < out.length ? out.slice(0, limit) : out
  }

  onClose(fn: () => void | Promise<void>): () => void {
    if (typeof fn !== 'function') throw new InvalidInputError('onClose: expected a function')
    this.#engine.assertOpen()
    let on = true
    this.#engine.onClose(() => (on ? fn() : undefined))
    return () => {
      on = false
    }
  }

  list(query?: ListQuery): Promise<ListPage> {
    this.#listContext ??= {
      engine: this.#engine,
      index: this.#index,
      complete: () => this.#l1KeptSince(this.#complete),
      today: () => this.#day.day().date,
      getMany: (products, location) => this.getMany(products, location === null ? {} : { location }),
    }
    return listPage(this.#listContext, query)
  }

  validate(options: ValidateOptions = {}): Promise<ValidationReport> {
    this.#engine.assertOpen()
    return validate(
      {
        engine: this.#engine,
        reader: this.#reader,
        loader: this.#loader,
        day: this.#day,
        batchSize: this.#o.batchSize,
        timeZone: this.#o.timeZone,
      },
      options,
    )
  }

  status(): StockCacheStatus {
    const e = this.#engine
    return {
      dirty: e.marks.dirtyCount,
      oldestDirtyMs: e.oldestDirtyMs(),
      oldestUnprocessedMs: e.oldestUnprocessedMs(),
      inFlight: e.runner.running,
      degraded: e.l2?.degraded ?? false,
      busDegraded: e.busDegraded,
      storeDebt: e.l2?.debt ?? 0,
      bulkDepth: e.bulk.depth,
      l1Size: e.l1.size,
      locks: e.locks.size,
      today: this.#day.day().date,
      dayEndsAt: this.#day.day().endsAtMs,
      closed: e.closed,
    }
  }

  metrics(): MetricsSnapshot {
    return this.#engine.metricsSnapshot()
  }

  on<K extends keyof StockCacheEvents>(type: K, handler: (event: StockCacheEvents[K]) => void): void {
    this.#emitter.on(type, handler)
  }

  off<K extends keyof StockCacheEvents>(type: K, handler: (event: StockCacheEvents[K]) => void): void {
    this.#emitter.off(type, handler)
  }

  /** Closes the reader (and, through the engine, the store) unless another open cache uses the same object. */
  close(): Promise<void> {
    this.#closing ??= this.#engine.close(async () => {
      if (release(this.#reader)) await this.#reader.close?.()
    })
    return this.#closing
  }

  /** @internal test hook: what the cache holds about a product. */
  _inspect(product: string): { dirty: boolean; inFlight: boolean; l1: boolean } {
    const e = this.#engine
    return { dirty: e.marks.isDirty(product), inFlight: e.marks.batchOf(product) !== undefined, l1: e.l1.has(product) }
  }
}
