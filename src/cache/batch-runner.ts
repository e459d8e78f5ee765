import { LockTimeoutError, StockcastError } from '../errors.js'
import type { DistributedLock } from '../invalidation/contracts.js'
import type { KeyedLocks } from '../invalidation/locks.js'
import type { BatchRef, MarkTable } from '../invalidation/marks.js'
import type { VersionClock } from '../invalidation/versions.js'
import type { Clock } from '../util/timers.js'
import type { Freshness } from './freshness.js'
import type { BatchLoader, LoadRequest } from './loader.js'
import type { MemoryTier, Versioned } from './memory-tier.js'
import type { Metrics } from './metrics.js'
import { messageOf, type StoreFacade } from './store-facade.js'
import type { StoreEntry } from './types.js'

/** What a batch produced per unit: its values by key, or why it failed (the unit stays dirty). */
export type BatchResult<V> = Map<string, { values: Map<string, V> } | { error: StockcastError }>

export interface RunOptions {
  /** Read everything from the sources, whatever is cached. */
  full: boolean
  /** Per unit, a key the caller needs (a location). */
  want?: ReadonlyMap<string, string>
}

export interface BatchHooks<V> {
  error(error: StockcastError, operation: string, unit?: string): void
  /** A unit's new values, with what L1 held for each key before (events compare them). */
  computed(unit: string, values: ReadonlyMap<string, V>, previous: ReadonlyMap<string, V | undefined>): void
  /** Units cleaned by a batch, at the highest version it wrote (the bus announces them). */
  cleaned(units: readonly string[], version: number): void
}

export interface BatchDeps<V extends Versioned> {
  marks: MarkTable
  l1: MemoryTier<V>
  l2: StoreFacade<V> | undefined
  /** Other instances read the store: a value it did not take leaves the unit `unstored`. */
  l2Shared: boolean
  locks: KeyedLocks
  lock: DistributedLock | undefined
  lockTimeoutMs: number
  versions: VersionClock
  loader: BatchLoader<V>
  freshness: Freshness<V>
  clock: Clock
  metrics: Metrics
  /** Whether two values hold the same content (versions and computation times aside). */
  same: (a: V, b: V) => boolean
  /** L2 entries' expiry, when the front end sets one. */
  expiresAt?: (value: V) => number | undefined
  hooks: BatchHooks<V>
}

/**
 * One recompute batch: lock each unit (sorted, so two batches never deadlock; the distributed lock too when there
 * is one), note the mark sequence its reads cover, load, write L2 then L1, settle each unit in the mark table (a
 * mark newer than the batch's start keeps it dirty), tell the front end, announce on the bus, release.
 */
export class BatchRunner<V extends Versioned> {
  readonly #d: BatchDeps<V>
  #running = 0

  constructor(deps: BatchDeps<V>) {
    this.#d = deps
  }

  /** Batches running now. */
  get running(): number {
    return this.#running
  }

  run(units: readonly string[], options: RunOptions): Promise<BatchResult<V>> {
    const { marks } = this.#d
    const list = [...new Set(units)].sort()
    // The batch is registered on its units at once (reads join it); its start sequence is known once locks are held.
    const batch: BatchRef = { startSeq: Number.POSITIVE_INFINITY }
    for (const u of list) marks.join(u, batch)
    this.#running++
    const promise = this.#run(list, options, batch)
    batch.promise = promise
    const done = () => {
      this.#running--
      for (const u of list) marks.leave(u, batch)
    }
    promise.then(done, done)
    return promise
  }

  /**
   * Write L2. With a shared store, say per unit whether the store now holds this batch's values: for the units that
   * were marked, the entries are read back and compared (a store keeps the higher version, and another instance's
   * write may have won), so a change capture acknowledges a mark only once the store serves a value that reflects it.
   */
  async #store(
    entries: ReadonlyArray<[string, StoreEntry<V>]>,
    writes: ReadonlyArray<{ unit: string; values: Map<string, V> }>,
    requests: ReadonlyArray<LoadRequest<V>>,
  ): Promise<Map<string, boolean> | undefined> {
    const d = this.#d
    if (d.l2 === undefined || entries.length === 0) return undefined
    const { ok, written } = await d.l2.setMany(entries)
    if (!d.l2Shared) return undefined
    const stored = new Map<string, boolean>()
    for (const w of writes) stored.set(w.unit, ok)
    if (!ok) return stored
    const marked = new Set(requests.filter((r) => r.sources !== undefined).map((r) => r.unit))
    // Keys the store says it wrote hold these values; the others may have lost to a higher version: read them back.
    const check = writes.filter(
      (w) => marked.has(w.unit) && (written === undefined || [...w.values.keys()].some((k) => !written.has(k))),
    )
    if (check.length === 0) return stored
    const found = await d.l2.getMany(check.flatMap((w) => [...w.values.keys()]))
    for (const w of check) {
      for (const [key, value] of w.values) {
        const entry = found.get(key)
        if (entry === undefined || !d.same(entry.value, value)) {
          d.metrics.storeOverwritten++
          stored.set(w.unit, false)
          break
        }
      }
    }
    return stored
  }

  async #run(units: readonly string[], options: RunOptions, batch: BatchRef): Promise<BatchResult<V>> {
    const d = this.#d
    const result: BatchResult<V> = new Map()
    const releases: Array<() => void | Promise<void>> = []
    const locked: string[] = []
    try {
      for (const u of units) {
        try {
          releases.push(await d.locks.acquire(u, u))
          if (d.lock !== undefined) releases.push(await d.lock.acquire(u, d.lockTimeoutMs))
          locked.push(u)
        } catch (cause) {
          const error =
            cause instanceof StockcastError
              ? cause
              : new LockTimeoutError(`lock of ${JSON.stringify(u)} failed: ${messageOf(cause)}`, {
                  productId: u,
                  cause,
                })
          if (error instanceof LockTimeoutError) d.metrics.lockTimeouts++
          d.hooks.error(error, 'lock', u)
          result.set(u, { error })
        }
      }
      if (locked.length === 0) return result
      // Every mark made up to here is covered by what this batch reads (or is held in an open transaction, whose
      // commit marks the unit again). The values get a stamp taken before the read starts, above any version this
      // instance has seen for the unit (whose read was earlier): a later read never carries a lower version.
      batch.startSeq = d.marks.seq
      const startVersion = d.versions.stamp()
      const generation = d.l1.generation
      const requests: Array<LoadRequest<V>> = locked.map((unit) => {
        const u = d.marks.units.get(unit)
        const previous = d.l1.peek(unit)
        return {
          unit,
          sources: u?.dirty === true ? u.sources : undefined,
          previous,
          keys: d.l1.keysOf(unit),
          want: options.want?.get(unit),
          version: Math.max((previous?.value.version ?? 0) + 1, startVersion),
        }
      })
      const computedAt = d.clock.now()
      let loaded: Awaited<ReturnType<BatchLoader<V>['load']>>
      try {
        loaded = await d.loader.load(requests, { full: options.full, computedAt })
      } catch (cause) {
        const error =
          cause instanceof StockcastError
            ? cause
            : new StockcastError(`loading ${locked.length} unit(s) failed: ${messageOf(cause)}`, { cause })
        d.hooks.error(error, 'read')
        for (const u of locked) result.set(u, { error })
        return result
      }
      const elapsedMs = Math.max(0, d.clock.now() - computedAt)
      const durationMs = Math.round(elapsedMs)
      d.metrics.batches++
      d.metrics.batchSeconds.observe(elapsedMs / 1000)
      const l2Entries: Array<[string, StoreEntry<V>]> = []
      const writes: Array<{ unit: string; values: Map<string, V>; extra: unknown }> = []
      for (const unit of locked) {
        const out = loaded.get(unit)
        if (out === undefined) {
          const error = new StockcastError(`the loader returned nothing for ${JSON.stringify(unit)}`, {
            productId: unit,
          })
          d.hooks.error(error, 'read', unit)
          result.set(unit, { error })
          continue
        }
        if ('error' in out) {
          result.set(unit, out)
          continue
        }
        result.set(unit, { values: out.values })
        writes.push({ unit, values: out.values, extra: out.extra })
        for (const [key, value] of out.values) {
          const expiresAt = d.expiresAt?.(value)
          l2Entries.push([
            key,
            expiresAt === undefined
              ? { value, version: value.version, computedAt: value.computedAt, durationMs }
              : { value, version: value.version, computedAt: value.computedAt, expiresAt, durationMs },
          ])
        }
        d.metrics.recomputes++
        d.metrics.keysComputed += out.values.size
      }
      const stored = await this.#store(l2Entries, writes, requests)
      const epoch = d.freshness.current()
      const previous = new Map<string, Map<string, V | undefined>>()
      for (const w of writes) {
        const before = new Map<string, V | undefined>()
        for (const [key, value] of w.values) {
          before.set(key, d.l1.peek(key)?.value)
          if (d.freshness.accepts(value)) {
            d.l1.set(key, value, epoch, key === w.unit ? w.extra : undefined, generation)
          }
        }
        previous.set(w.unit, before)
      }
      const cleaned: string[] = []
      let cleanedVersion = 0
      for (const w of writes) {
        if (d.marks.settle(w.unit, batch, stored?.get(w.unit)) === 'cleaned') {
          cleaned.push(w.unit)
          const v = w.values.get(w.unit)?.version ?? 0
          if (v > cleanedVersion) cleanedVersion = v
        }
      }
      for (const w of writes) d.hooks.computed(w.unit, w.values, previous.get(w.unit)!)
      if (cleaned.length > 0) d.hooks.cleaned(cleaned, cleanedVersion)
      return result
    } finally {
      for (const r of releases.reverse()) {
        try {
          await r()
        } catch (cause) {
          d.hooks.error(new StockcastError(`lock release failed: ${messageOf(cause)}`, { cause }), 'lock')
        }
      }
    }
  }
}
