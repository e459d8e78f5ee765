import type { CacheEngine } from '../cache/engine.js'
import type { L1Entry } from '../cache/memory-tier.js'
import type { SourceInputs, StockProjection } from '../cache/types.js'
import { todayIn } from '../projection/dates.js'
import type { DayClock } from './day-clock.js'
import type { ProjectionLoader } from './projection-loader.js'

/** What `cache.prepareRollover()` did. */
export interface RolloverReport {
  /** The day prepared for (D0 after the coming midnight in the configured time zone). */
  date: string
  /** When that day starts (epoch ms). */
  startsAt: number
  /** Products whose next-day projections wait to be swapped in at midnight. */
  prepared: number
  /** Of those, products whose source rows were read (the others reused the rows their L1 value was computed from). */
  read: number
  /** Products skipped: dirty or recomputing, or their read failed (they are recomputed on their first read). */
  skipped: number
  ms: number
}

interface Prepared {
  /** The L1 entries the values were rolled from, by key: swapped only while L1 still holds these very entries. */
  basis: Map<string, L1Entry<StockProjection> | undefined>
  values: Map<string, StockProjection>
  extra: SourceInputs
  previous: Map<string, StockProjection | undefined>
}

export interface RolloverContext {
  engine: CacheEngine<StockProjection>
  loader: ProjectionLoader
  day: DayClock
  timeZone: string
  batchSize: number
  unitOf: (key: string) => string
  /** Emit `updated` / `transition` events for the swapped values (as a recompute would). */
  computed: (
    unit: string,
    values: ReadonlyMap<string, StockProjection>,
    previous: ReadonlyMap<string, StockProjection | undefined>,
  ) => void
}

const yieldToIo = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * The day rollover: before midnight, compute every L1 product's projections for the next day (the calculator is
 * pure: the same source rows with another D0), then swap them into L1 at the moment D0 moves, before any read of the
 * new day is answered. The rows come from the L1 entry itself (the rows its value was computed from) or, for values
 * adopted from the shared store, from one batched read.
 *
 * Why a swapped value is as current as the value it replaces: it is swapped only if L1 still holds the very entry it
 * was rolled from and the product is neither dirty nor recomputing, so any mark, recompute, peer invalidation or
 * eviction since `prepare()` cancels it (the product is then recomputed on its first read, as without a rollover).
 * It keeps the replaced value's version, so a peer's announcement of a newer recompute still drops it. It is not
 * written to the shared store: another instance rolls its own L1.
 */
export class DayRollover {
  readonly #c: RolloverContext
  #pending: { date: string; units: Map<string, Prepared> } | undefined
  /** Products swapped in at the last midnight. */
  swapped = 0

  constructor(context: RolloverContext) {
    this.#c = context
    context.day.onNewDay = (date) => this.#apply(date)
  }

  async prepare(): Promise<RolloverReport> {
    const c = this.#c
    const started = c.engine.clock.now()
    const today = c.day.day()
    const next = todayIn(c.timeZone, today.endsAtMs)
    const l1 = c.engine.l1
    const marks = c.engine.marks
    const units = new Set<string>()
    for (const key of l1.keys()) units.add(c.unitOf(key))
    const prepared = new Map<string, Prepared>()
    const toRead: string[] = []
    let skipped = 0
    const busy = (unit: string) => marks.isDirty(unit) || marks.batchOf(unit) !== undefined
    const basisOf = (unit: string) => {
      const basis = new Map<string, L1Entry<StockProjection> | undefined>()
      for (const key of l1.keysOf(unit)) basis.set(key, l1.peek(key))
      return basis
    }
    const roll = (unit: string, basis: Prepared['basis'], inputs: SourceInputs): boolean => {
      const own = basis.get(unit)
      if (own === undefined || own.value.today !== today.date) return false
      const values = c.loader.computeKeys(
        unit,
        inputs,
        next.date,
        own.value.version,
        own.value.computedAt,
        [...basis.keys()],
        undefined,
      )
      const previous = new Map<string, StockProjection | undefined>()
      for (const key of values.keys()) previous.set(key, basis.get(key)?.value)
      prepared.set(unit, { basis, values, extra: inputs, previous })
      return true
    }
    let n = 0
    for (const unit of units) {
      if (busy(unit)) {
        skipped++
        continue
      }
      const basis = basisOf(unit)
      const extra = basis.get(unit)?.extra as SourceInputs | undefined
      if (extra === undefined) toRead.push(unit)
      else {
        try {
          if (!roll(unit, basis, extra)) skipped++
        } catch {
          skipped++ // rows the calculator rejects: the product's first read of the new day reports it
        }
      }
      if (++n % 256 === 0) await yieldToIo()
    }
    let read = 0
    for (let i = 0; i < toRead.length; i += c.batchSize) {
      const slice = toRead.slice(i, i + c.batchSize)
      const chunk = slice.filter((u) => !busy(u))
      skipped += slice.length - chunk.length
      if (chunk.length === 0) continue
      // The basis is taken before the read starts: a change committed after it replaces the L1 entry (its mark's
      // recompute) or leaves the product dirty, and either cancels the swap.
      const bases = new Map(chunk.map((u) => [u, basisOf(u)]))
      const inputs = await c.loader.readInputs(chunk)
      for (const unit of chunk) {
        const rows = inputs.get(unit)
        let ok = false
        if (rows !== undefined) {
          try {
            ok = roll(unit, bases.get(unit)!, rows)
          } catch {
            ok = false
          }
        }
        if (ok) read++
        else skipped++
      }
    }
    this.#pending = { date: next.date, units: prepared }
    return {
      date: next.date,
      startsAt: today.endsAtMs,
      prepared: prepared.size,
      read,
      skipped,
      ms: c.engine.clock.now() - started,
    }
  }

  /** D0 moved to `date`: swap in what was prepared for it (synchronously, inside the day clock's reading). */
  #apply(date: string): void {
    const pending = this.#pending
    this.#pending = undefined
    this.swapped = 0
    if (pending === undefined || pending.date !== date) return
    const c = this.#c
    const l1 = c.engine.l1
    const marks = c.engine.marks
    const epoch = c.day.epoch
    const generation = l1.generation
    const done: Array<[string, Prepared]> = []
    for (const [unit, p] of pending.units) {
      if (marks.isDirty(unit) || marks.batchOf(unit) !== undefined) continue
      let same = true
      for (const key of l1.keysOf(unit)) {
        if (!p.basis.has(key)) same = false // a key added since (a new location): recompute instead
      }
      for (const [key, entry] of p.basis) {
        if (l1.peek(key) !== entry) same = false
      }
      if (!same) continue
      for (const [key, value] of p.values) l1.set(key, value, epoch, key === unit ? p.extra : undefined, generation)
      done.push([unit, p])
    }
    this.swapped = done.length
    if (done.length === 0) return
    // Events later, in chunks between other work: the reads of the new day are answered first.
    const emitFrom = (i: number) => {
      const end = Math.min(done.length, i + 256)
      for (let j = i; j < end; j++) c.computed(done[j]![0], done[j]![1].values, done[j]![1].previous)
      if (end < done.length) setImmediate(() => emitFrom(end))
    }
    setImmediate(() => emitFrom(0))
  }

  /** Forget what was prepared (the cache is closing). */
  clear(): void {
    this.#pending = undefined
  }
}
