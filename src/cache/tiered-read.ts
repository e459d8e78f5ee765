import { LockTimeoutError, SourceUnavailableError, type StockcastError } from '../errors.js'
import type { BulkMode } from '../invalidation/bulk.js'
import type { MarkTable } from '../invalidation/marks.js'
import type { Clock } from '../util/timers.js'
import type { BatchResult, BatchRunner } from './batch-runner.js'
import type { Freshness } from './freshness.js'
import type { BatchLoader } from './loader.js'
import type { MemoryTier, Versioned } from './memory-tier.js'
import type { Metrics } from './metrics.js'
import type { StoreFacade } from './store-facade.js'

export interface ReadOptions {
  /** Answer at once from whatever is cached (flagged stale), recomputing in the background. */
  allowStale?: boolean
  /** Do not take a value from L2 (strong reads recompute instead). */
  skipL2?: boolean
  /** Never serve an old value when the sources fail (strong reads): the error reaches the caller. */
  strict?: boolean
}

export interface TieredReadDeps<V extends Versioned> {
  marks: MarkTable
  l1: MemoryTier<V>
  l2: StoreFacade<V> | undefined
  runner: BatchRunner<V>
  loader: BatchLoader<V>
  freshness: Freshness<V>
  bulk: BulkMode
  clock: Clock
  metrics: Metrics
  graceMs: number
  batchSize: number
  /** The unit of a key. */
  unitOf: (key: string) => string
  /** A copy of a value flagged stale. */
  stale: (value: V) => V
  /** A value read from L2, made ready to serve (frozen). */
  adopt: (value: V) => V
  /** Ask the scheduler for a background flush. */
  schedule: () => void
}

/**
 * The read path, generic in the value: a marked unit is recomputed now (joining a batch that already covers its
 * newest mark), else fresh L1, else L2, else a batch. `allowStale` answers at once, flagged; a failed source read
 * serves the old value within `graceMs`, flagged (stale-if-error). Inside a bulk block a marked unit is computed
 * straight from the sources and cached nowhere.
 */
export class TieredRead<V extends Versioned> {
  readonly #d: TieredReadDeps<V>
  #queued: Set<string> | undefined
  #queuedPromise: Promise<BatchResult<V>> | undefined

  constructor(deps: TieredReadDeps<V>) {
    this.#d = deps
  }

  async read(key: string, options: ReadOptions = {}): Promise<V> {
    const d = this.#d
    const unit = d.unitOf(key)
    if (d.marks.isDirty(unit)) {
      if (d.bulk.active) return this.direct(key)
      if (options.allowStale) {
        const e = d.l1.peek(key)
        if (e !== undefined) {
          d.metrics.staleServed++
          d.schedule()
          return d.stale(e.value)
        }
      }
      return this.recompute(key, options.strict)
    }
    const e = d.l1.get(key)
    if (e !== undefined) {
      if (e.epoch === d.freshness.current()) {
        d.metrics.l1Hits++
        return e.value
      }
      if (options.allowStale) {
        d.metrics.staleServed++
        void this.recompute(key).catch(() => {})
        return d.stale(e.value)
      }
    }
    d.metrics.l1Misses++
    if (d.l2 !== undefined && !options.skipL2) {
      const generation = d.l1.generation
      const entry = (await d.l2.getMany([key])).get(key)
      if (entry !== undefined && d.freshness.accepts(entry.value) && !d.marks.isDirty(unit)) {
        const value = d.adopt(entry.value)
        d.l1.set(key, value, d.freshness.current(), undefined, generation)
        return value
      }
    }
    return this.recompute(key, options.strict)
  }

  /** Many keys: one L2 round trip for the L1 misses, batched recomputes for the rest. Keys come back in order. */
  async readMany(keys: readonly string[], options: ReadOptions = {}): Promise<Map<string, V>> {
    const d = this.#d
    const out = new Map<string, V>()
    const epoch = d.freshness.current()
    const misses: string[] = []
    let toCompute: string[] = []
    for (const key of keys) {
      if (out.has(key)) continue
      const unit = d.unitOf(key)
      if (d.marks.isDirty(unit)) {
        const old = options.allowStale && !d.bulk.active ? d.l1.peek(key) : undefined
        if (old !== undefined) {
          d.metrics.staleServed++
          out.set(key, d.stale(old.value))
        } else toCompute.push(key)
        continue
      }
      const e = d.l1.get(key)
      if (e !== undefined && e.epoch === epoch) {
        d.metrics.l1Hits++
        out.set(key, e.value)
      } else {
        d.metrics.l1Misses++
        misses.push(key)
      }
    }
    if (options.allowStale && toCompute.length + misses.length > 0 && !d.bulk.active) d.schedule()
    if (misses.length > 0 && d.l2 !== undefined && !options.skipL2) {
      const generation = d.l1.generation
      const found = await d.l2.getMany(misses)
      for (const key of misses) {
        const entry = found.get(key)
        if (entry !== undefined && d.freshness.accepts(entry.value) && !d.marks.isDirty(d.unitOf(key))) {
          const value = d.adopt(entry.value)
          d.l1.set(key, value, d.freshness.current(), undefined, generation)
          out.set(key, value)
        } else toCompute.push(key)
      }
    } else toCompute = toCompute.concat(misses)
    if (toCompute.length > 0) {
      if (d.bulk.active) {
        const direct = toCompute.filter((k) => d.marks.isDirty(d.unitOf(k)))
        await Promise.all(direct.map(async (k) => out.set(k, await this.direct(k))))
        toCompute = toCompute.filter((k) => !d.marks.isDirty(d.unitOf(k)))
      }
      for (let i = 0; i < toCompute.length; i += d.batchSize) {
        const chunk = toCompute.slice(i, i + d.batchSize)
        const want = new Map<string, string>()
        for (const k of chunk) if (d.unitOf(k) !== k) want.set(d.unitOf(k), k)
        const result = await d.runner.run(
          chunk.map((k) => d.unitOf(k)),
          { full: false, ...(want.size > 0 ? { want } : {}) },
        )
        for (const k of chunk) out.set(k, this.serve(result, k, options.strict))
      }
    }
    const ordered = new Map<string, V>()
    for (const k of keys) {
      const v = out.get(k)
      if (v !== undefined) ordered.set(k, v)
    }
    return ordered
  }

  /** A read of a dirty or missing key: join a batch that already covers the unit's newest mark, or start one. */
  async recompute(key: string, strict = false): Promise<V> {
    const d = this.#d
    const unit = d.unitOf(key)
    const running = d.marks.batchOf(unit)
    if (running?.promise !== undefined && d.marks.target(unit) <= running.startSeq) {
      d.metrics.joinedRecomputes++
      const result = (await running.promise) as BatchResult<V>
      const got = result.get(unit)
      if (got !== undefined && 'values' in got && got.values.has(key)) return this.serve(result, key, strict)
    }
    const result = await this.#queue(unit, key)
    return this.serve(result, key, strict)
  }

  /** Compute from the sources without caching (reads of touched units inside a bulk block). */
  async direct(key: string): Promise<V> {
    const d = this.#d
    const unit = d.unitOf(key)
    d.metrics.directReads++
    const loaded = await d.loader.load(
      [{ unit, sources: null, previous: undefined, keys: [unit], want: key === unit ? undefined : key, version: 0 }],
      { full: true, computedAt: d.clock.now() },
    )
    const out = loaded.get(unit)
    if (out === undefined || 'error' in out) {
      throw out?.error ?? new SourceUnavailableError(`no value for ${JSON.stringify(key)}`, { key, productId: unit })
    }
    const v = out.values.get(key)
    if (v === undefined)
      throw new SourceUnavailableError(`no value for ${JSON.stringify(key)}`, { key, productId: unit })
    return v
  }

  /** The value of a key from a batch result, or the old value within `graceMs` when its sources failed. */
  serve(result: BatchResult<V>, key: string, strict = false): V {
    const d = this.#d
    const unit = d.unitOf(key)
    const r = result.get(unit)
    if (r !== undefined && 'values' in r) {
      const v = r.values.get(key)
      if (v !== undefined) return v
    }
    const error: StockcastError =
      r !== undefined && 'error' in r
        ? r.error
        : new SourceUnavailableError(`no value for ${JSON.stringify(key)}`, { key, productId: unit })
    if (!strict && (error instanceof SourceUnavailableError || error instanceof LockTimeoutError)) {
      const old = d.l1.peek(key)
      if (old !== undefined && d.clock.now() - old.value.computedAt <= d.graceMs) {
        d.metrics.staleIfError++
        return d.stale(old.value)
      }
    }
    throw error
  }

  /** Reads of plain unit keys that arrive in the same tick share one batch. */
  #queue(unit: string, key: string): Promise<BatchResult<V>> {
    if (key !== unit) return this.#d.runner.run([unit], { full: false, want: new Map([[unit, key]]) })
    if (this.#queued === undefined) {
      const queued = new Set<string>()
      this.#queued = queued
      this.#queuedPromise = new Promise<void>((r) => queueMicrotask(r)).then(() => {
        this.#queued = undefined
        this.#queuedPromise = undefined
        return this.#d.runner.run([...queued], { full: false })
      })
    }
    this.#queued.add(unit)
    return this.#queuedPromise!
  }
}
