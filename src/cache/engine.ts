import { ClosedError, InvalidInputError, StockcastError } from '../errors.js'
import { BulkMode } from '../invalidation/bulk.js'
import type { MarkSource } from '../invalidation/contracts.js'
import { KeyedLocks } from '../invalidation/locks.js'
import { MarkTable } from '../invalidation/marks.js'
import { FlushScheduler } from '../invalidation/scheduler.js'
import { type AfterCommitTransaction, type HeldMark, TransactionScope } from '../invalidation/scope.js'
import { VersionClock } from '../invalidation/versions.js'
import type { Clock } from '../util/timers.js'
import { type BatchResult, BatchRunner, type RunOptions } from './batch-runner.js'
import { BusLink } from './bus-link.js'
import type { EngineOptions, FlushOptions, FlushReport, MarkInput } from './engine-types.js'
import type { Freshness } from './freshness.js'
import { MemoryTier, type Versioned } from './memory-tier.js'
import { Metrics, type MetricsSnapshot } from './metrics.js'
import { messageOf, StoreFacade } from './store-facade.js'
import { TieredRead } from './tiered-read.js'

export type { EngineHooks, EngineOptions, FlushOptions, FlushReport, MarkInput } from './engine-types.js'

/**
 * The generic engine that keeps units fresh: marks (with transaction scopes), versions, the flush scheduler, bulk
 * mode, the batch runner and the tiered read path, composed. Front ends (the stock cache) add what a unit means
 * through a `BatchLoader` and a `Freshness`, and keep their hot paths inline over `marks.units` and `l1.lru`.
 */
export class CacheEngine<V extends Versioned> {
  readonly marks = new MarkTable()
  readonly metrics = new Metrics()
  readonly l1: MemoryTier<V>
  readonly l2: StoreFacade<V> | undefined
  readonly l2Shared: boolean
  readonly versions: VersionClock
  readonly bulk: BulkMode
  readonly locks: KeyedLocks
  readonly runner: BatchRunner<V>
  readonly reads: TieredRead<V>
  readonly freshness: Freshness<V>
  readonly clock: Clock
  readonly #o: EngineOptions<V>
  readonly #scheduler: FlushScheduler<FlushReport>
  readonly #sources = new Set<MarkSource>()
  readonly #foreign = new WeakMap<AfterCommitTransaction, HeldMark[]>()
  readonly #onClose: Array<() => void | Promise<void>> = []
  readonly #bus: BusLink<V> | undefined
  #closed = false

  constructor(o: EngineOptions<V>) {
    this.#o = o
    this.clock = o.clock
    this.freshness = o.freshness
    this.versions = new VersionClock(o.clock, o.timers)
    this.bulk = new BulkMode(o.rebuildThreshold)
    this.locks = new KeyedLocks(o.lockTimeoutMs)
    this.l1 = new MemoryTier<V>({
      max: o.memory.max,
      ttl: o.memory.ttl,
      ...(o.memory.onChange === undefined ? {} : { onChange: o.memory.onChange }),
      now: () => o.clock.now(),
      unitOf: o.unitOf,
    })
    this.l2Shared = o.store?.capabilities?.shared === true
    this.l2 =
      o.store === undefined
        ? undefined
        : new StoreFacade<V>(
            o.store,
            {
              onError: (error) => this.#error(error, 'l2'),
              onDegraded: (error) => {
                this.metrics.degraded++
                o.hooks.degraded('l2', error)
              },
              onRecovered: () => {
                this.metrics.recovered++
                o.hooks.recovered('l2')
              },
              now: () => o.clock.now(),
              setTimer: (fn, ms) => o.timers.setTimeout(fn, ms),
              clearTimer: (h) => o.timers.clearTimeout(h),
            },
            o.retryMs,
          )
    this.runner = new BatchRunner<V>({
      marks: this.marks,
      l1: this.l1,
      l2: this.l2,
      l2Shared: this.l2Shared,
      locks: this.locks,
      lock: o.lock,
      lockTimeoutMs: o.lockTimeoutMs,
      versions: this.versions,
      loader: o.loader,
      freshness: o.freshness,
      clock: o.clock,
      metrics: this.metrics,
      same: o.same,
      ...(o.expiresAt === undefined ? {} : { expiresAt: o.expiresAt }),
      hooks: {
        error: (e, op, unit) => this.#error(e, op, unit),
        computed: (unit, values, previous) => o.hooks.computed(unit, values, previous),
        cleaned: (units, version) => this.#bus?.publish(units, version),
      },
    })
    this.reads = new TieredRead<V>({
      marks: this.marks,
      l1: this.l1,
      l2: this.l2,
      runner: this.runner,
      loader: o.loader,
      freshness: o.freshness,
      bulk: this.bulk,
      clock: o.clock,
      metrics: this.metrics,
      graceMs: o.graceMs,
      batchSize: o.batchSize,
      unitOf: o.unitOf,
      stale: o.stale,
      adopt: o.adopt,
      schedule: () => this.#scheduler.schedule(),
    })
    this.#scheduler = new FlushScheduler<FlushReport>(
      o.timers,
      { debounceMs: o.debounceMs, maxWaitMs: o.maxWaitMs, retryMs: o.retryMs },
      () => this.#flushPending(),
    )
    this.#bus =
      o.bus === undefined
        ? undefined
        : new BusLink<V>(o.bus, this.l1, this.metrics, {
            degraded: (error) => o.hooks.degraded('bus', error),
            recovered: () => o.hooks.recovered('bus'),
            error: (error) => this.#error(error, 'bus'),
          })
  }

  get closed(): boolean {
    return this.#closed
  }

  assertOpen(): void {
    if (this.#closed) throw new ClosedError('the cache is closed')
  }

  // ---------------------------------------------------------------- marks

  /** Mark validated units; returns the version token. Held until commit when `tx` is given. */
  mark(units: readonly string[], input: MarkInput, where = 'markDirty'): number {
    const version = this.versions.next(input.version, where)
    const mark: HeldMark = { products: [...units], sources: input.sources, version }
    const tx = input.tx
    if (tx === undefined) {
      this.#apply([mark])
      return version
    }
    if (tx instanceof TransactionScope) tx.hold(mark)
    else if (tx !== null && typeof (tx as AfterCommitTransaction).afterCommit === 'function') {
      let held = this.#foreign.get(tx)
      if (held === undefined) {
        const list: HeldMark[] = []
        held = list
        this.#foreign.set(tx, list)
        tx.afterCommit(() => {
          this.#foreign.delete(tx)
          if (!this.#closed) this.#apply(list)
        })
      }
      held.push(mark)
    } else throw new InvalidInputError(`${where}: tx must be a cache.transaction() scope or have afterCommit(fn)`)
    this.metrics.marksHeld += units.length
    return version
  }

  transaction(): TransactionScope {
    this.assertOpen()
    return new TransactionScope((marks) => {
      if (!this.#closed) this.#apply(marks)
    })
  }

  #apply(marks: readonly HeldMark[]): void {
    const now = this.clock.now()
    const bulk = this.bulk.active
    let added = 0
    let n = 0
    for (const m of marks) {
      for (const u of m.products) {
        if (this.marks.mark(u, m.version, m.sources, now, bulk)) added++
        n++
      }
    }
    this.metrics.marks += n
    this.metrics.dirtyAdded += added
    this.versions.notify()
    if (!bulk) this.#scheduler.schedule()
  }

  // ---------------------------------------------------------------- flush

  /** Recompute every dirty unit now (or settle only `units`). */
  async flush(options?: FlushOptions): Promise<FlushReport> {
    if (options?.units !== undefined) return this.#flushUnits(options.units)
    // Wait for batches already running, then recompute what is still dirty.
    await Promise.allSettled(this.#runningBatches())
    const report = await this.#scheduler.run()
    if (report.failed.length === 0) this.#scheduler.resetRetry()
    // Whichever recompute last wrote them (this flush, a read, a timer): the units the shared store lacks now.
    return { ...report, unstored: this.marks.unstoredUnits() }
  }

  async #flushUnits(units: readonly string[]): Promise<FlushReport> {
    const list = [...new Set(units)]
    const report: FlushReport = { recomputed: 0, failed: [], deferred: [], unstored: [], settled: [] }
    // The newest mark of each unit at the call: settled once a finished recompute started after it.
    const target = new Map<string, number>()
    for (const u of list) target.set(u, this.marks.target(u))
    await Promise.allSettled(list.map((u) => this.marks.batchOf(u)?.promise))
    if (this.bulk.active) {
      for (const u of list) if (this.marks.isDirty(u)) report.deferred.push(u)
    } else {
      const dirty = list.filter((u) => this.marks.isDirty(u))
      await this.#runChunks(dirty, { full: false }, report)
    }
    for (const u of list) {
      if (this.marks.isUnstored(u)) report.unstored.push(u)
      else if (this.marks.isSettled(u, target.get(u)!)) report.settled!.push(u)
    }
    return report
  }

  async #flushPending(): Promise<FlushReport> {
    const report: FlushReport = { recomputed: 0, failed: [], deferred: [], unstored: [] }
    const units = this.marks.dirtyUnits()
    if (this.bulk.active) {
      report.deferred = units
      return report
    }
    if (units.length === 0) return report
    this.metrics.flushes++
    await this.#runChunks(units, { full: false }, report)
    return report
  }

  async #runChunks(units: readonly string[], options: RunOptions, report: FlushReport): Promise<void> {
    // A unit whose running batch already covers its newest mark is waited for, not recomputed a second time.
    const covering = new Set<Promise<unknown>>()
    for (const u of units) {
      const b = this.marks.batchOf(u)
      if (b?.promise !== undefined && this.marks.target(u) <= b.startSeq) covering.add(b.promise)
    }
    if (covering.size > 0) {
      this.metrics.joinedRecomputes += covering.size
      await Promise.allSettled(covering)
    }
    const size = this.#o.batchSize
    for (let i = 0; i < units.length; i += size) {
      const chunk = units.slice(i, i + size).filter((u) => this.marks.isDirty(u))
      if (chunk.length === 0) continue
      const result = await this.runner.run(chunk, options).catch(() => undefined)
      for (const u of chunk) {
        const r = result?.get(u)
        if (r === undefined || 'error' in r) report.failed.push(u)
        else report.recomputed++
      }
    }
  }

  #runningBatches(): Array<Promise<unknown>> {
    const out = new Set<Promise<unknown>>()
    for (const u of this.marks.units.values()) if (u.batch?.promise !== undefined) out.add(u.batch.promise)
    return [...out]
  }

  /** Recompute units from the sources now, whatever is cached, in batches. */
  async refresh(
    units: readonly string[],
    want?: ReadonlyMap<string, string>,
    onChunk?: (result: BatchResult<V>, done: number) => void,
  ): Promise<BatchResult<V>> {
    const all: BatchResult<V> = new Map()
    const size = this.#o.batchSize
    for (let i = 0; i < units.length; i += size) {
      const chunk = units.slice(i, i + size)
      const result = await this.runner.run(chunk, { full: true, ...(want === undefined ? {} : { want }) })
      for (const [u, r] of result) all.set(u, r)
      onChunk?.(result, Math.min(i + size, units.length))
    }
    return all
  }

  // ---------------------------------------------------------------- bulk

  async disable<T>(fn: () => Promise<T> | T): Promise<T> {
    this.assertOpen()
    if (typeof fn !== 'function') throw new InvalidInputError('disableCacheTemporarily expects a function')
    if (!this.bulk.active) this.#scheduler.pause()
    this.bulk.enter()
    try {
      return await fn()
    } finally {
      // Outermost block: changes written inside it through other connections reach the cache through its mark
      // sources; hand them over while still in bulk mode, so the one settling pass covers them.
      if (this.bulk.depth === 1) await this.#catchUpSources()
      if (this.bulk.exit()) {
        this.#scheduler.resume()
        await this.#settleBulk()
        for (const s of [...this.#sources]) {
          try {
            s.afterBulk?.()
          } catch (cause) {
            this.#error(
              new StockcastError(`mark source ${s.name}: afterBulk failed: ${messageOf(cause)}`, { cause }),
              'bulk',
            )
          }
        }
      }
    }
  }

  async #catchUpSources(): Promise<void> {
    for (const s of [...this.#sources]) {
      try {
        await s.catchUp()
      } catch (cause) {
        this.#error(
          new StockcastError(`mark source ${s.name}: catch-up after a bulk block failed: ${messageOf(cause)}`, {
            cause,
          }),
          'bulk',
        )
      }
    }
  }

  async #settleBulk(): Promise<void> {
    const touched = this.marks.bulkCount()
    try {
      if (this.bulk.shouldRebuild(touched, this.#o.listUnits !== undefined)) {
        this.bulk.rebuilds++
        await this.refresh(await this.#o.listUnits!())
        this.metrics.rebuilds++
      }
      await this.flush()
    } catch (cause) {
      // Failed units stay dirty and are served from the sources; the error reached the 'error' event.
      if (!(cause instanceof StockcastError)) this.#error(new StockcastError(messageOf(cause), { cause }), 'bulk')
    }
  }

  // ---------------------------------------------------------------- sources, bus, status

  attachSource(source: MarkSource): () => void {
    this.assertOpen()
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

  /** Age in ms of the oldest pending mark (0 when none). */
  oldestDirtyMs(): number {
    const since = this.marks.oldestSince()
    return since === undefined ? 0 : Math.max(0, this.clock.now() - since)
  }

  /** Age in ms of the oldest committed change not yet reflected: pending marks and every mark source's backlog. */
  oldestUnprocessedMs(): number {
    let age = this.oldestDirtyMs()
    for (const s of this.#sources) {
      try {
        age = Math.max(age, s.oldestUnprocessedMs())
      } catch {
        // a source that cannot tell does not hide the others
      }
    }
    return age
  }

  metricsSnapshot(): MetricsSnapshot {
    this.metrics.marksCoalesced = this.marks.coalesced
    this.metrics.racesKeptDirty = this.marks.keptDirty
    this.metrics.bulkBlocks = this.bulk.blocks
    this.metrics.bulkRebuilds = this.bulk.rebuilds
    return this.metrics.snapshot({
      l2Hits: this.l2?.hits ?? 0,
      l2Misses: this.l2?.misses ?? 0,
      l2Errors: this.l2?.errors ?? 0,
      lockWaits: this.locks.waits,
      freshnessLagMs: this.oldestUnprocessedMs(),
    })
  }

  /** True while the bus reports that peers' messages may be lost (L1 serves nothing meanwhile). */
  get busDegraded(): boolean {
    return this.#bus?.degraded ?? false
  }

  #error(error: StockcastError, operation: string, unit?: string): void {
    this.metrics.errors++
    this.#o.hooks.error(error, operation, unit)
  }

  /** Report an error through the engine's hooks (front ends use it for their own operations). */
  reportError(error: StockcastError, operation: string, unit?: string): void {
    this.#error(error, operation, unit)
  }

  /** Run `fn` when the engine closes (jobs, timers of front ends). */
  onClose(fn: () => void | Promise<void>): void {
    this.#onClose.push(fn)
  }

  /** Armed scheduler timers (tests). */
  get armedTimers(): number {
    return this.#scheduler.armed
  }

  async close(closeStore: () => Promise<void> = async () => {}): Promise<void> {
    if (this.#closed) return
    try {
      await this.flush()
    } catch {
      // errors already reached the 'error' event
    }
    this.#closed = true
    this.#bus?.stop()
    this.#scheduler.close()
    this.versions.close()
    for (const fn of this.#onClose.splice(0)) {
      try {
        await fn()
      } catch {
        // closing goes on
      }
    }
    await this.#bus?.close()
    await this.l2?.close()
    await closeStore()
    this.freshness.close()
    this.l1.clear()
  }
}
