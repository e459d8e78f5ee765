import type { CacheEngine } from '../cache/engine.js'
import { messageOf } from '../cache/store-facade.js'
import type { SourceInputs, SourceReader, StockProjection, StoreEntry } from '../cache/types.js'
import { InvalidInputError, MismatchError, SourceUnavailableError } from '../errors.js'
import { firstDifference } from './compare.js'
import type { DayClock } from './day-clock.js'
import { assertProduct, KEY_SEPARATOR } from './keys.js'
import { EMPTY_INPUTS, type ProjectionLoader } from './projection-loader.js'

export interface ValidateOptions {
  /** Check this many products picked at random. @default all */
  sample?: number
  /** Check these products. @default every product the reader lists, else the cached ones */
  products?: readonly string[]
  /** Mark mismatching products dirty so they are recomputed. @default false */
  repair?: boolean
  /**
   * Also emit an `error` event (operation `validate`, a `MismatchError` naming the products) when there are
   * mismatches: what the precision job of `startJobs` does. @default false
   */
  report?: boolean
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

export interface ValidateContext {
  engine: CacheEngine<StockProjection>
  reader: SourceReader
  loader: ProjectionLoader
  day: DayClock
  batchSize: number
  timeZone: string
}

/** Compare what the cache would serve (L1, else L2) with a fresh computation from the sources. */
export async function validate(ctx: ValidateContext, options: ValidateOptions = {}): Promise<ValidationReport> {
  const { engine, reader, loader } = ctx
  let products: string[]
  if (options.products !== undefined) {
    for (const p of options.products) assertProduct(p, 'validate')
    products = [...new Set(options.products)]
  } else if (typeof reader.products === 'function') products = await reader.products()
  else products = [...new Set([...engine.l1.keys()].map((k) => k.split(KEY_SEPARATOR)[0]!))]
  if (options.sample !== undefined) {
    if (!Number.isInteger(options.sample) || options.sample < 0) {
      throw new InvalidInputError(`validate: sample must be a non-negative integer, got ${String(options.sample)}`)
    }
    products = sampleOf(products, options.sample)
  }
  const report: ValidationReport = { checked: 0, mismatches: [], rate: 0, uncached: 0, skipped: 0, invalid: [] }
  const today = ctx.day.day()
  const epoch = engine.freshness.current()
  for (let i = 0; i < products.length; i += ctx.batchSize) {
    const chunk = products.slice(i, i + ctx.batchSize)
    const startSeq = engine.marks.seq
    let read: Map<string, SourceInputs>
    try {
      read = await reader.read(chunk, { timeZone: ctx.timeZone })
    } catch (cause) {
      if (cause instanceof InvalidInputError) throw cause
      throw new SourceUnavailableError(`validate: source read failed: ${messageOf(cause)}`, { tier: 'l3', cause })
    }
    const keysOf = new Map<string, string[]>()
    for (const p of chunk) keysOf.set(p, engine.l1.keysOf(p))
    const l2Keys = chunk.flatMap((p) => keysOf.get(p)!.filter((k) => engine.l1.get(k) === undefined))
    const l2 =
      engine.l2 !== undefined && l2Keys.length > 0
        ? await engine.l2.getMany(l2Keys)
        : new Map<string, StoreEntry<StockProjection>>()
    for (const p of chunk) {
      let truth: Map<string, StockProjection>
      try {
        truth = loader.computeKeys(p, read.get(p) ?? EMPTY_INPUTS, today.date, 0, 0, [], undefined)
      } catch (cause) {
        // Source rows the calculator rejects: reported per product; the rest of the check goes on.
        if (!(cause instanceof InvalidInputError)) throw cause
        report.invalid.push({ product: p, message: cause.message })
        continue
      }
      const keys = new Set([...keysOf.get(p)!, ...truth.keys()])
      for (const key of keys) {
        if (engine.marks.isDirty(p)) {
          report.skipped++
          continue
        }
        const l1 = engine.l1.get(key)
        const cached = l1 !== undefined && l1.epoch === epoch ? l1.value : l2.get(key)?.value
        if (cached === undefined || cached.today !== today.date) {
          report.uncached++
          continue
        }
        const t = truth.get(key) ?? loader.computeKeys(p, EMPTY_INPUTS, today.date, 0, 0, [key], undefined).get(key)!
        const diff = firstDifference(cached, t)
        if (diff === null) {
          report.checked++
          continue
        }
        // A write that landed while we read makes the comparison meaningless: skip it.
        if (engine.marks.isDirty(p) && engine.marks.target(p) > startSeq) {
          report.skipped++
          continue
        }
        report.checked++
        report.mismatches.push({ key, product: p, location: t.location, ...diff })
        if (options.repair) engine.mark([p], { sources: null }, 'validate')
      }
    }
  }
  report.rate = report.checked === 0 ? 0 : report.mismatches.length / report.checked
  engine.metrics.validations++
  engine.metrics.mismatches += report.mismatches.length
  if (options.report === true && report.mismatches.length > 0) {
    const products = [...new Set(report.mismatches.map((m) => m.product))]
    const first = report.mismatches[0]!
    engine.reportError(
      new MismatchError(
        `validate: ${report.mismatches.length} of ${report.checked} checked key(s) differ from a fresh computation (${products.slice(0, 5).join(', ')}${products.length > 5 ? ', …' : ''}); first: ${first.key} ${first.field} cached ${JSON.stringify(first.cached)}, truth ${JSON.stringify(first.truth)}${options.repair ? '; marked for recompute' : ''}`,
        { products, productId: products[0]! },
      ),
      'validate',
    )
  }
  return report
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
