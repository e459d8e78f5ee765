import type { StockProjection } from '../cache/types.js'
import { StockcastError } from '../errors.js'
import { formatDate, tryParseDate } from '../projection/dates.js'
import type { LaterFlow, ProjectionDay, StockStatus } from '../projection/types.js'

/**
 * How a store turns values into text and back. `decode(encode(v))` equals `v` (for the values the codec
 * accepts); `decode` throws a `StockcastError` on text that is not one of its encodings.
 */
export interface ValueCodec<V = StockProjection> {
  encode(value: V): string
  decode(text: string): V
}

/** Compact projection encoding, version 1. JSON text never starts with `p`, so both read back unambiguously. */
const TAG = 'p1'
const FIELDS = 24
const STATUSES: ReadonlySet<string> = new Set<StockStatus>(['OK', 'ATTENTION', 'CRITICAL'])

/** A value that cannot take the compact form (the caller falls back to JSON). */
const NOT_COMPACT = Symbol('not compact')

/** `x` as an integer count of 10^-scale units, when that is exact (the value a decimal of that scale prints as). */
function scaled(x: unknown, m: number): number {
  // -0 would read back as 0 (JSON has no -0), NaN and infinities have no integer form.
  if (typeof x !== 'number' || Object.is(x, -0)) throw NOT_COMPACT
  const i = Math.round(x * m)
  if (!Number.isSafeInteger(i) || i / m !== x) throw NOT_COMPACT
  return i
}

function finite(x: unknown): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || Object.is(x, -0)) throw NOT_COMPACT
  return x
}

function text(x: unknown): string {
  if (typeof x !== 'string') throw NOT_COMPACT
  return x
}

function textOrNull(x: unknown): string | null {
  if (x === null) return null
  return text(x)
}

/** The dates D0..D(n-1) of a `today`, shared by every value decoded with them (a few D0s are live at once). */
const dateRuns = new Map<string, readonly string[]>()

/** The last run handed out: nearly every value of a read has the same D0 (no key built, no map lookup). */
let lastRun: { today: string; n: number; run: readonly string[] } | undefined

function datesFrom(today: string, n: number): readonly string[] {
  if (lastRun !== undefined && lastRun.today === today && lastRun.n === n) return lastRun.run
  const k = `${today}/${n}`
  let run = dateRuns.get(k)
  if (run === undefined) {
    const d0 = tryParseDate(today)
    if (Number.isNaN(d0)) throw new StockcastError(`projection codec: bad D0 ${JSON.stringify(today)}`)
    const out: string[] = []
    for (let i = 0; i < n; i++) out.push(formatDate(d0 + i))
    run = out
    if (dateRuns.size >= 64) dateRuns.clear()
    dateRuns.set(k, run)
  }
  lastRun = { today, n, run }
  return run
}

function compact(v: StockProjection): string {
  if (v === null || typeof v !== 'object' || Object.keys(v).length !== FIELDS) throw NOT_COMPACT
  const scale = v.scale
  if (!Number.isInteger(scale) || scale < 0 || scale > 9) throw NOT_COMPACT
  const m = 10 ** scale
  const n = v.horizonDays
  const days = v.days
  if (!Number.isInteger(n) || n < 1 || !Array.isArray(days) || days.length !== n) throw NOT_COMPACT
  const today = text(v.today)
  if (Number.isNaN(tryParseDate(today))) throw NOT_COMPACT
  const dates = datesFrom(today, n)
  const series: number[] = new Array(n * 6)
  for (let i = 0, j = 0; i < n; i++, j += 6) {
    const d = days[i] as ProjectionDay
    if (d === null || typeof d !== 'object' || Object.keys(d).length !== 7 || d.date !== dates[i]) throw NOT_COMPACT
    series[j] = scaled(d.opening, m)
    series[j + 1] = scaled(d.movements, m)
    series[j + 2] = scaled(d.supply, m)
    series[j + 3] = scaled(d.demand, m)
    series[j + 4] = scaled(d.closing, m)
    series[j + 5] = scaled(d.closingWithPending, m)
  }
  const laterFlows = v.later
  if (!Array.isArray(laterFlows)) throw NOT_COMPACT
  const later: Array<string | number> = []
  for (const l of laterFlows as LaterFlow[]) {
    if (l === null || typeof l !== 'object' || Object.keys(l).length !== 3) throw NOT_COMPACT
    later.push(text(l.date), scaled(l.net, m), scaled(l.netWithPending, m))
  }
  if (!STATUSES.has(v.status)) throw NOT_COMPACT
  if (typeof v.stale !== 'boolean') throw NOT_COMPACT
  const daysOfCover = v.daysOfCover === null ? null : finite(v.daysOfCover)
  return (
    TAG +
    JSON.stringify([
      text(v.key),
      text(v.product),
      textOrNull(v.location),
      today,
      text(v.timeZone),
      n,
      scale,
      scaled(v.stockToday, m),
      scaled(v.supplyToday, m),
      scaled(v.demandToday, m),
      scaled(v.overdueSupply, m),
      scaled(v.overdueDemand, m),
      scaled(v.minClosing7d, m),
      text(v.minClosing7dDate),
      textOrNull(v.firstStockoutDate),
      daysOfCover,
      v.status,
      scaled(v.safetyStock, m),
      scaled(v.stockoutThreshold, m),
      finite(v.version),
      finite(v.computedAt),
      v.stale ? 1 : 0,
      ...(sparse(series, n) ?? [series]),
      later,
    ])
  )
}

/**
 * The day series as events: D0's opening, then `[day, movements, supply, demand, pending]` for each day on which
 * one is not 0 (`pending`: the change of `closingWithPending - closing` that day). Every other number follows:
 * opening = the day before's closing, closing = opening + movements + supply - demand, closingWithPending = closing
 * + the pending total so far. Null when a series does not follow those rules (then it is written whole). Integers
 * of 10^-scale units, so the sums are exact.
 */
function sparse(series: readonly number[], n: number): [number, number[]] | null {
  const events: number[] = []
  let close = series[0]!
  let gap = 0
  for (let i = 0, j = 0; i < n; i++, j += 6) {
    const open = series[j]!
    const mv = series[j + 1]!
    const sup = series[j + 2]!
    const dem = series[j + 3]!
    if (open !== close || open + mv + sup - dem !== series[j + 4]) return null
    close = series[j + 4]!
    const g = series[j + 5]! - close
    const pg = g - gap
    if (!Number.isSafeInteger(g) || !Number.isSafeInteger(pg)) return null
    gap = g
    if (mv !== 0 || sup !== 0 || dem !== 0 || pg !== 0) events.push(i, mv, sup, dem, pg)
  }
  return [series[0]!, events]
}

/**
 * Throws unless `events` (flat `[day, movements, supply, demand, pending]` groups) are integers, in day order within
 * D0..D(n-1), and every sum `unsparse` makes of them is a safe integer: then the lazy expansion cannot fail.
 */
function checkEvents(opening: number, events: readonly number[], n: number): void {
  if (events.length % 5 !== 0) throw bad('wrong shape')
  let close = opening
  let gap = 0
  let last = -1
  for (let e = 0; e < events.length; e += 5) {
    const day = events[e]!
    if (!Number.isInteger(day) || day <= last || day >= n) throw bad('day events out of order')
    last = day
    const mv = events[e + 1]!
    const sup = events[e + 2]!
    const dem = events[e + 3]!
    const pg = events[e + 4]!
    if (
      !Number.isSafeInteger(mv) ||
      !Number.isSafeInteger(sup) ||
      !Number.isSafeInteger(dem) ||
      !Number.isSafeInteger(pg)
    )
      throw bad('a day event is not an integer')
    close = close + mv + sup - dem
    gap = gap + pg
    if (!Number.isSafeInteger(close) || !Number.isSafeInteger(gap) || !Number.isSafeInteger(close + gap))
      throw bad('a day quantity is out of range')
  }
}

/** The whole day series (integers) from its events (checked by `checkEvents`): the rules of `sparse`. */
function unsparse(opening: number, events: readonly number[], n: number): number[] {
  const series: number[] = new Array(n * 6)
  let close = opening
  let gap = 0
  let e = 0
  for (let i = 0, j = 0; i < n; i++, j += 6) {
    let mv = 0
    let sup = 0
    let dem = 0
    let pg = 0
    if (e < events.length && events[e] === i) {
      mv = events[e + 1]!
      sup = events[e + 2]!
      dem = events[e + 3]!
      pg = events[e + 4]!
      e += 5
    }
    const open = close
    close = open + mv + sup - dem
    gap = gap + pg
    series[j] = open
    series[j + 1] = mv
    series[j + 2] = sup
    series[j + 3] = dem
    series[j + 4] = close
    series[j + 5] = close + gap
  }
  return series
}

/** The frozen day objects of a series of 10^-scale integers. */
function daysOf(series: readonly number[], dates: readonly string[], n: number, m: number): readonly ProjectionDay[] {
  const days: ProjectionDay[] = new Array(n)
  for (let i = 0, j = 0; i < n; i++, j += 6) {
    days[i] = Object.freeze({
      date: dates[i]!,
      opening: series[j]! / m,
      movements: series[j + 1]! / m,
      supply: series[j + 2]! / m,
      demand: series[j + 3]! / m,
      closing: series[j + 4]! / m,
      closingWithPending: series[j + 5]! / m,
    })
  }
  return Object.freeze(days)
}

const NO_LATER: readonly LaterFlow[] = Object.freeze([])
const QUANTITY_FIELDS = [7, 8, 9, 10, 11, 12, 17, 18] as const

function bad(why: string): StockcastError {
  return new StockcastError(`projection codec: not a compact projection (${why})`)
}

/** What a decoded projection needs to build its days, until it has (then the frozen days themselves). */
interface PendingDays {
  opening: number
  /** The day events (`sparse`), or null when `series` is the whole series. */
  events: readonly number[] | null
  series: readonly number[] | null
  dates: readonly string[]
  n: number
  m: number
}

/** A constructor that returns the object it is given: a subclass's private field is then added to that object. */
class Returning {
  constructor(o: object) {
    // biome-ignore lint/correctness/noConstructorReturn: the point: it lets LazyDays stamp a plain object
    return o
  }
}

/**
 * The private slot of a decoded projection: invisible to `Object.keys`, JSON, spreads, `structuredClone` and deep
 * equality, and writable after the object is frozen (private names are not properties).
 */
class LazyDays extends Returning {
  #days: PendingDays | readonly ProjectionDay[]

  constructor(o: object, pending: PendingDays) {
    super(o)
    this.#days = pending
  }

  static days(o: object): readonly ProjectionDay[] {
    const d = (o as LazyDays).#days
    if (Array.isArray(d)) return d as readonly ProjectionDay[]
    const p = d as PendingDays
    const built = daysOf(p.events === null ? p.series! : unsparse(p.opening, p.events, p.n), p.dates, p.n, p.m)
    ;(o as LazyDays).#days = built
    return built
  }
}

/**
 * `days` of every decoded projection: one shared getter, so V8 keeps the objects in fast mode (an object literal
 * with a getter of its own is a dictionary of about 1.8 kB).
 */
const DAYS: PropertyDescriptor = {
  get(this: object) {
    return LazyDays.days(this)
  },
  enumerable: true,
  configurable: false,
}

function expand(t: string): StockProjection {
  let a: unknown[]
  try {
    a = JSON.parse(t.slice(TAG.length))
  } catch {
    throw bad('invalid JSON')
  }
  // 24 fields with the whole day series, or 25 with D0's opening and the day events (`sparse`).
  if (!Array.isArray(a) || (a.length !== 24 && a.length !== 25)) throw bad('wrong shape')
  const n = a[5] as number
  const scale = a[6] as number
  const laterFlat = a[a.length - 1] as Array<string | number>
  if (
    !Number.isInteger(n) ||
    n < 1 ||
    !Number.isInteger(scale) ||
    scale < 0 ||
    scale > 9 ||
    !Array.isArray(laterFlat) ||
    laterFlat.length % 3 !== 0 ||
    typeof a[3] !== 'string'
  ) {
    throw bad('wrong shape')
  }
  // Checked now, expanded on first use: a read that looks only at the summary fields (a dashboard, a listing)
  // allocates no day objects.
  let opening = 0
  let events: readonly number[] | null = null
  let series: readonly number[] | null = null
  if (a.length === 25) {
    opening = a[22] as number
    if (!Number.isSafeInteger(opening) || !Array.isArray(a[23])) throw bad('wrong shape')
    events = a[23] as number[]
    checkEvents(opening, events, n)
  } else {
    series = a[22] as number[]
    if (!Array.isArray(series) || series.length !== n * 6) throw bad('wrong shape')
    for (const x of series) if (!Number.isSafeInteger(x)) throw bad('a day quantity is not an integer')
  }
  for (let j = 0; j < laterFlat.length; j += 3) {
    if (
      typeof laterFlat[j] !== 'string' ||
      !Number.isSafeInteger(laterFlat[j + 1]) ||
      !Number.isSafeInteger(laterFlat[j + 2])
    ) {
      throw bad('a later flow is malformed')
    }
  }
  for (const i of QUANTITY_FIELDS) if (!Number.isSafeInteger(a[i])) throw bad('a quantity is not an integer')
  const m = 10 ** scale
  const dates = datesFrom(a[3] as string, n)
  let later = NO_LATER
  if (laterFlat.length > 0) {
    const out: LaterFlow[] = []
    for (let j = 0; j < laterFlat.length; j += 3) {
      out.push(
        Object.freeze({
          date: laterFlat[j] as string,
          net: (laterFlat[j + 1] as number) / m,
          netWithPending: (laterFlat[j + 2] as number) / m,
        }),
      )
    }
    later = Object.freeze(out)
  }
  // The same key order as a computed projection (`projectStock`, then the cache's fields); `days` is an own,
  // enumerable getter in its place.
  const o: Record<string, unknown> = {
    today: a[3] as string,
    timeZone: a[4] as string,
    horizonDays: n,
    scale,
    stockToday: (a[7] as number) / m,
    supplyToday: (a[8] as number) / m,
    demandToday: (a[9] as number) / m,
    overdueSupply: (a[10] as number) / m,
    overdueDemand: (a[11] as number) / m,
  }
  Object.defineProperty(o, 'days', DAYS)
  o.minClosing7d = (a[12] as number) / m
  o.minClosing7dDate = a[13] as string
  o.firstStockoutDate = a[14] as string | null
  o.daysOfCover = a[15] as number | null
  o.status = a[16] as StockStatus
  o.safetyStock = (a[17] as number) / m
  o.stockoutThreshold = (a[18] as number) / m
  o.later = later
  o.key = a[0] as string
  o.product = a[1] as string
  o.location = a[2] as string | null
  o.version = a[19] as number
  o.computedAt = a[20] as number
  o.stale = a[21] === 1
  new LazyDays(o, { opening, events, series, dates, n, m })
  return Object.freeze(o) as unknown as StockProjection
}

/**
 * The stores' codec: a projection in a compact form (a few hundred bytes where its JSON takes about 4 kB): the day
 * series as the events that make it (D0's opening, then each day's non-zero movements, supply, demand and pending
 * change, as integers of 10^-scale units), the day dates from D0; any other value as JSON. Exact: a projection takes
 * the compact form only when every quantity is a decimal of its `scale` (what the calculator produces) and its days
 * are D0..D(n-1) in order, and its series as events only when it follows the calculator's rules (otherwise the
 * series is written whole), so `decode(encode(v))` always equals `v` for JSON-safe values. Decoded projections are
 * frozen.
 */
export const projectionCodec: {
  encode(value: unknown): string
  decode<V = StockProjection>(text: string): V
} = {
  encode(value: unknown): string {
    try {
      return compact(value as StockProjection)
    } catch (e) {
      if (e !== NOT_COMPACT) throw e
    }
    const json = JSON.stringify(value)
    if (json === undefined) throw new StockcastError('projection codec: the value has no JSON form')
    return json
  },
  decode<V = StockProjection>(t: string): V {
    if (typeof t !== 'string') throw bad('not text')
    if (t.startsWith(TAG)) return expand(t) as V
    try {
      return JSON.parse(t) as V
    } catch {
      throw bad('neither compact nor JSON')
    }
  },
}
