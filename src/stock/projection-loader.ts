import type { BatchLoader, LoadContext, LoadOutcome, LoadRequest } from '../cache/loader.js'
import type { Metrics } from '../cache/metrics.js'
import { messageOf } from '../cache/store-facade.js'
import type { SourceInputs, SourceReader, StockProjection } from '../cache/types.js'
import { InvalidInputError, ReadTimeoutError, SourceUnavailableError, StockcastError } from '../errors.js'
import { projectStock } from '../projection/project.js'
import type { FlowRow, MovementRow, Projection, ProjectionOptions } from '../projection/types.js'
import type { Timers } from '../util/timers.js'
import type { DayClock } from './day-clock.js'
import { KEY_SEPARATOR } from './keys.js'
import type { StockSchema } from './schema.js'

export const EMPTY_INPUTS: SourceInputs = Object.freeze({
  onHand: [],
  supply: [],
  demand: [],
}) as unknown as SourceInputs

export interface ProjectionLoaderOptions {
  schema: StockSchema
  reader: SourceReader
  projection: ProjectionOptions
  day: DayClock
  metrics: Metrics
  timers: Timers
  readTimeoutMs: number
  /**
   * Reuse a product's cached source rows where they are known to be current: for a product with no pending mark
   * (a day rollover) and, with `selectiveReads`, for the sources its marks did not name. Only a cache that sees every
   * change of its sources may do so: one instance, no shared store and no bus.
   */
  reuseInputs: boolean
  /** Re-read only the sources a mark named (opt-in, see `StockCacheOptions.selectiveReads`). */
  selectiveReads: boolean
  /** Report an error through the cache's `error` event. */
  error: (error: StockcastError, operation: string, product?: string) => void
}

/**
 * The stock cache's `BatchLoader`: reads the sources of a batch of products with one reader call (the SQL reader
 * reads every source of a call in one snapshot), then computes each product's projection and its locations'.
 * A product whose marks name some sources re-reads only those when `selectiveReads` is on; otherwise every dirty
 * product re-reads everything, so a value is always one state of the database, never a mix of reads made at
 * different moments.
 */
export class ProjectionLoader implements BatchLoader<StockProjection> {
  readonly #o: ProjectionLoaderOptions
  #dayOptions: ProjectionOptions = {}

  constructor(options: ProjectionLoaderOptions) {
    this.#o = options
  }

  async load(
    requests: ReadonlyArray<LoadRequest<StockProjection>>,
    ctx: LoadContext,
  ): Promise<Map<string, LoadOutcome<StockProjection>>> {
    const o = this.#o
    const out = new Map<string, LoadOutcome<StockProjection>>()
    const needAll: string[] = []
    const selective = new Map<string, SourceInputs>()
    const needSome = new Set<string>()
    const inputsOf = new Map<string, SourceInputs>()
    for (const r of requests) {
      const cached = !ctx.full && o.reuseInputs ? (r.previous?.extra as SourceInputs | undefined) : undefined
      if (cached === undefined || r.sources === null) needAll.push(r.unit)
      else if (r.sources === undefined)
        inputsOf.set(r.unit, cached) // clean: the cached rows are current
      else if (o.selectiveReads) {
        selective.set(r.unit, cached)
        for (const s of r.sources) needSome.add(s)
      } else needAll.push(r.unit)
    }
    if (needAll.length > 0) {
      const read = await this.#read(needAll, undefined, out)
      for (const p of needAll) if (!out.has(p)) inputsOf.set(p, read.get(p) ?? EMPTY_INPUTS)
    }
    if (selective.size > 0) {
      const sources = [...needSome]
      const units = [...selective.keys()]
      const read = await this.#read(units, sources, out)
      o.metrics.selectiveReads++
      const named = new Set(sources)
      for (const p of units) {
        if (!out.has(p)) inputsOf.set(p, mergeInputs(selective.get(p)!, read.get(p) ?? EMPTY_INPUTS, named))
      }
    }
    const today = o.day.day().date
    for (const r of requests) {
      if (out.has(r.unit)) continue
      const inputs = inputsOf.get(r.unit)!
      try {
        const values = this.computeKeys(r.unit, inputs, today, r.version, ctx.computedAt, r.keys, r.want)
        out.set(r.unit, { values, extra: inputs })
      } catch (cause) {
        const error =
          cause instanceof StockcastError
            ? cause
            : new InvalidInputError(`projection of ${JSON.stringify(r.unit)} failed: ${messageOf(cause)}`, {
                productId: r.unit,
                cause,
              })
        o.metrics.invalidInputs++
        o.error(error, 'compute', r.unit)
        out.set(r.unit, { error })
      }
    }
    return out
  }

  /**
   * The source rows of `products`, read as a recompute reads them (one reader call, `readTimeoutMs`); products whose
   * read failed are absent (the failure is reported through the `error` event).
   */
  async readInputs(products: readonly string[]): Promise<Map<string, SourceInputs>> {
    const failed = new Map<string, LoadOutcome<StockProjection>>()
    const read = await this.#read(products, undefined, failed)
    const out = new Map<string, SourceInputs>()
    for (const p of products) if (!failed.has(p)) out.set(p, read.get(p) ?? EMPTY_INPUTS)
    return out
  }

  /**
   * One reader call for `products` (with `readTimeoutMs`). Products the reader rejects (`InvalidInputError` naming
   * them in `products`) get that error and the others are read again; any other failure fails them all.
   */
  async #read(
    products: readonly string[],
    sources: readonly string[] | undefined,
    out: Map<string, LoadOutcome<StockProjection>>,
  ): Promise<Map<string, SourceInputs>> {
    const o = this.#o
    let list = [...products]
    for (;;) {
      try {
        const result = await this.#timed(list, sources)
        o.metrics.reads++
        return result
      } catch (cause) {
        const rejected = cause instanceof InvalidInputError ? rejectedBy(cause, list) : []
        if (rejected.length > 0) {
          o.metrics.invalidInputs += rejected.length
          for (const p of rejected) {
            o.error(cause as InvalidInputError, 'read', p)
            out.set(p, { error: cause as InvalidInputError })
          }
          const bad = new Set(rejected)
          list = list.filter((p) => !bad.has(p))
          if (list.length === 0) return new Map()
          continue
        }
        o.metrics.sourceErrors++
        const error =
          cause instanceof InvalidInputError || cause instanceof ReadTimeoutError
            ? cause
            : new SourceUnavailableError(
                `source read failed for ${list.length} product(s) (${list.slice(0, 3).join(', ')}${list.length > 3 ? ', …' : ''}): ${messageOf(cause)}; they stay dirty`,
                { tier: 'l3', cause, ...(list.length === 1 ? { productId: list[0]! } : {}) },
              )
        o.error(error, 'read')
        for (const p of list) out.set(p, { error })
        return new Map()
      }
    }
  }

  /** The reader call, failing with `ReadTimeoutError` after `readTimeoutMs` (the query itself is not cancelled). */
  #timed(products: readonly string[], sources: readonly string[] | undefined): Promise<Map<string, SourceInputs>> {
    const o = this.#o
    const options = { timeZone: o.projection.timeZone ?? 'UTC', ...(sources === undefined ? {} : { sources }) }
    const call = Promise.resolve().then(() => o.reader.read(products, options))
    if (o.readTimeoutMs === 0) return call
    return new Promise((resolve, reject) => {
      const timer = o.timers.setTimeout(() => {
        o.metrics.readTimeouts++
        reject(
          new ReadTimeoutError(
            `the source reader did not answer within readTimeoutMs=${o.readTimeoutMs} for ${products.length} product(s) (${products.slice(0, 3).join(', ')}${products.length > 3 ? ', …' : ''}); they stay dirty`,
            {
              tier: 'l3',
              option: 'readTimeoutMs',
              ...(products.length === 1 ? { productId: products[0]! } : {}),
            },
          ),
        )
      }, o.readTimeoutMs)
      call.then(
        (v) => {
          o.timers.clearTimeout(timer)
          resolve(v)
        },
        (e: unknown) => {
          o.timers.clearTimeout(timer)
          reject(e)
        },
      )
    })
  }

  /** Projections of every key of a product: the product (or roll-up) and, with locations, each location. */
  computeKeys(
    product: string,
    inputs: SourceInputs,
    today: string,
    version: number,
    computedAt: number,
    keys: readonly string[],
    want: string | undefined,
  ): Map<string, StockProjection> {
    const o = this.#o
    const out = new Map<string, StockProjection>()
    // One options object per day: the calculator resolves a given options object once.
    if (this.#dayOptions.today !== today) this.#dayOptions = { ...o.projection, today }
    const opts = this.#dayOptions
    const wrap = (key: string, location: string | null, p: Projection): StockProjection =>
      freezeProjection({ ...p, key, product, location, version, computedAt, stale: false })
    const compute = (b: SourceInputs): Projection => {
      try {
        return projectStock(b, opts)
      } catch (cause) {
        if (cause instanceof StockcastError) {
          const table =
            cause.source === undefined ? undefined : o.schema.sources.find((s) => s.id === cause.source)?.table
          throw new InvalidInputError(
            `${JSON.stringify(product)}${table === undefined ? '' : ` (table ${table})`}: ${cause.message}`,
            { productId: product, ...(cause.source === undefined ? {} : { source: cause.source }), cause },
          )
        }
        throw cause
      }
    }
    out.set(product, wrap(product, null, compute(inputs)))
    if (!o.schema.hasLocations) return out
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
    for (const k of keys) if (k !== product) bucket(k.slice(product.length + 1))
    if (want !== undefined && want !== product) bucket(want.slice(product.length + 1))
    for (const [loc, b] of byLoc) {
      if (loc === '') continue
      const key = product + KEY_SEPARATOR + loc
      out.set(key, wrap(key, loc, compute(b)))
    }
    return out
  }
}

/** The products of the batch an `InvalidInputError` from the reader names. */
function rejectedBy(error: InvalidInputError, batch: readonly string[]): string[] {
  const named = error.products ?? (error.productId === undefined ? [] : [error.productId])
  const inBatch = new Set(batch)
  return [...new Set(named)].filter((p) => inBatch.has(p))
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

/** Deep-freeze a projection the cache keeps: L1 hands out the same object to every reader (no clone on hit). */
export function freezeProjection<T extends StockProjection>(p: T): T {
  if (Object.isFrozen(p)) return p
  for (const d of p.days) Object.freeze(d)
  Object.freeze(p.days)
  for (const l of p.later) Object.freeze(l)
  Object.freeze(p.later)
  return Object.freeze(p)
}
