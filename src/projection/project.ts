/**
 * `projectStock`: the day-by-day projection of one key, computed exactly on scaled integers.
 *
 * One pass over the rows fills per-day accumulators (module-level scratch buffers, reset on every call; the
 * function is synchronous and calls no user code while they are in use), then one pass over the days builds the
 * frozen result. Every addition is range-checked, so the arithmetic is exact or it throws.
 */
import { InvalidInputError } from '../errors.js'
import { dateError, formatDate, tryParseDate } from './dates.js'
import { decimalError, formatDecimal, MAX_EXACT_SCALED, showValue, tryParseDecimal } from './decimal.js'
import { currentDay, resolveProjectionOptions } from './options.js'
import type {
  FlowRow,
  LaterFlow,
  MovementRow,
  Projection,
  ProjectionDay,
  ProjectionInputs,
  ProjectionOptions,
  StockStatus,
} from './types.js'

export type { ResolvedProjectionOptions } from './options.js'
export { MAX_HORIZON_DAYS, resolveProjectionOptions } from './options.js'

// ---------------------------------------------------------------------------------------------------------------
// Scratch state of the running projection.

/** Per-day sums, interleaved: [4k] movements, [4k+1] firm supply, [4k+2] firm demand, [4k+3] pending net. */
let buf = new Float64Array(4 * 64)
const MOV = 0
const SUP = 1
const DEM = 2
const PEND = 3

let curScale = 3
let overdueSup = 0
let overdueDem = 0

/** Flows after the horizon, one slot per date: found by a linear scan while few, then through `laterIndex`. */
const LATER_SCAN = 16
const laterIndex = new Map<number, number>()
const laterDays: number[] = []
/** The row's own date string: strict parsing makes it the canonical `YYYY-MM-DD` of that day. */
const laterDates: string[] = []
const laterNet: number[] = []
const laterNetP: number[] = []
const laterOrder: number[] = []
/** Slots in use (the arrays keep their capacity between calls). */
let laterCount = 0

let datesStart = Number.NaN
let datesCache: string[] = []

function dateStrings(d0: number, h: number): string[] {
  if (datesStart !== d0 || datesCache.length < h) {
    const list: string[] = []
    for (let k = 0; k < h; k++) list.push(formatDate(d0 + k))
    datesStart = d0
    datesCache = list
  }
  return datesCache
}

function overflowError(): InvalidInputError {
  return new InvalidInputError(
    `A balance or a sum of quantities exceeds the exact range at scale ${curScale} ` +
      `(±${formatDecimal(MAX_EXACT_SCALED, curScale)}): use a smaller scale.`,
    { option: 'scale' },
  )
}

/** Exact addition of scaled integers, or throws when the result leaves the exact range. */
function add(a: number, b: number): number {
  const r = a + b
  if (r > MAX_EXACT_SCALED || r < -MAX_EXACT_SCALED) throw overflowError()
  return r
}

function rowError(kind: string, i: number, row: unknown): InvalidInputError {
  return new InvalidInputError(
    `Invalid ${kind}[${i}] ${showValue(row)}: expected a row object with a date and a quantity.`,
  )
}

function sourceOf(row: { source?: unknown }): string | undefined {
  return typeof row.source === 'string' ? row.source : undefined
}

function addLater(day: number, date: string, net: number, netP: number): void {
  const n = laterCount
  let idx = -1
  if (n <= LATER_SCAN) {
    for (let i = 0; i < n; i++) {
      if (laterDays[i] === day) {
        idx = i
        break
      }
    }
  } else {
    idx = laterIndex.get(day) ?? -1
  }
  if (idx < 0) {
    idx = n
    if (n < laterDays.length) {
      laterDays[n] = day
      laterDates[n] = date
      laterNet[n] = 0
      laterNetP[n] = 0
    } else {
      laterDays.push(day)
      laterDates.push(date)
      laterNet.push(0)
      laterNetP.push(0)
    }
    laterCount = n + 1
    if (n === LATER_SCAN) for (let i = 0; i <= n; i++) laterIndex.set(laterDays[i] as number, i)
    else if (n > LATER_SCAN) laterIndex.set(day, idx)
  }
  laterNet[idx] = add(laterNet[idx] as number, net)
  laterNetP[idx] = add(laterNetP[idx] as number, netP)
}

/** Sums the on-hand movements into stockToday (returned) and the dated buffers. */
function readMovements(rows: readonly MovementRow[], d0: number, h: number, factor: number, scale: number): number {
  let stock = 0
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]
    if (typeof row !== 'object' || row === null) throw rowError('onHand', i, row)
    const q = tryParseDecimal(row.quantity, factor, scale)
    if (!Number.isFinite(q)) {
      throw decimalError(row.quantity, q, scale, { field: `onHand[${i}].quantity`, source: sourceOf(row) })
    }
    const date = row.date
    if (date === undefined || date === null) {
      stock = add(stock, q)
      continue
    }
    const day = tryParseDate(date)
    if (Number.isNaN(day)) throw dateError(date, { field: `onHand[${i}].date`, source: sourceOf(row) })
    const k = day - d0
    if (k <= 0) stock = add(stock, q)
    else if (k < h) buf[4 * k + MOV] = add(buf[4 * k + MOV] as number, q)
    else addLater(day, date, q, q)
  }
  return stock
}

/** Adds supply or demand rows into the buffers (pending ones into the pending net, signed), or into `later`. */
function readFlows(
  rows: readonly FlowRow[] | undefined,
  kind: 'supply' | 'demand',
  d0: number,
  h: number,
  factor: number,
  scale: number,
): void {
  if (rows === undefined || rows === null) return
  if (!Array.isArray(rows)) {
    throw new InvalidInputError(`Invalid ${kind} ${showValue(rows)}: expected an array of rows or undefined.`)
  }
  const isSupply = kind === 'supply'
  const slot = isSupply ? SUP : DEM
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as FlowRow
    if (typeof row !== 'object' || row === null) throw rowError(kind, i, row)
    const q = tryParseDecimal(row.quantity, factor, scale)
    if (!Number.isFinite(q)) {
      throw decimalError(row.quantity, q, scale, { field: `${kind}[${i}].quantity`, source: sourceOf(row) })
    }
    const day = tryParseDate(row.date)
    if (Number.isNaN(day)) throw dateError(row.date, { field: `${kind}[${i}].date`, source: sourceOf(row) })
    const pending = row.pending === true
    let k = day - d0
    if (k < 0) {
      if (!pending) {
        if (isSupply) overdueSup = add(overdueSup, q)
        else overdueDem = add(overdueDem, q)
      }
      k = 0
    }
    if (k < h) {
      const at = pending ? 4 * k + PEND : 4 * k + slot
      buf[at] = add(buf[at] as number, pending && !isSupply ? -q : q)
    } else {
      const signed = isSupply ? q : -q
      addLater(day, row.date, pending ? 0 : signed, signed)
    }
  }
}

function resetBuffer(h: number): void {
  if (4 * h > buf.length) buf = new Float64Array(4 * h)
  else buf.fill(0, 0, 4 * h)
}

/**
 * Projects the stock of one key over D0..D(horizonDays-1).
 *
 * - `stockToday` is `onHand` (a decimal, or the sum of the movements without a date or dated on or before D0);
 *   a movement dated inside the horizon applies on its day (`day.movements`), a later one goes to `later`.
 * - Supply and demand dated before D0 count on D0 (firm ones are also reported as `overdueSupply`/`overdueDemand`);
 *   rows after the horizon go to `later`, one entry per date, sorted.
 * - `closing(k) = opening(k) + movements(k) + supply(k) - demand(k)`, `opening(0) = stockToday`. Pending rows are
 *   left out of `supply`, `demand` and `closing` and counted in `closingWithPending`.
 * - Quantities are exact at `scale` decimals (more decimals are rounded half away from zero); every balance and
 *   sum must stay within ±(10^15 - 1) scaled units, else InvalidInputError.
 *
 * The result, its `days`, `later` and every element are frozen.
 * @throws InvalidInputError for a bad option, quantity, date or row, naming it.
 * @example
 * const p = projectStock(
 *   { onHand: '10', demand: [{ date: '2026-11-24', quantity: '12.5' }] },
 *   { today: '2026-11-22' },
 * )
 * p.firstStockoutDate // '2026-11-24'
 */
export function projectStock(inputs: ProjectionInputs, options?: ProjectionOptions): Projection {
  const r = resolveProjectionOptions(options)
  if (typeof inputs !== 'object' || inputs === null) {
    throw new InvalidInputError(
      `Invalid projection inputs ${showValue(inputs)}: expected { onHand, supply?, demand? }.`,
    )
  }
  let d0: number
  let todayStr: string
  if (r.todayDay !== undefined) {
    d0 = r.todayDay
    todayStr = r.today as string
  } else {
    const t = currentDay(r)
    d0 = t.day
    todayStr = t.date
  }
  const h = r.horizonDays
  const factor = r.factor
  const scale = r.scale

  // Reset the scratch state.
  resetBuffer(h)
  curScale = scale
  overdueSup = 0
  overdueDem = 0
  if (laterCount > LATER_SCAN) laterIndex.clear()
  laterCount = 0

  const onHand = inputs.onHand
  let stock: number
  if (Array.isArray(onHand)) {
    stock = readMovements(onHand as readonly MovementRow[], d0, h, factor, scale)
  } else {
    stock = tryParseDecimal(onHand, factor, scale)
    if (!Number.isFinite(stock)) {
      throw decimalError(onHand, stock, scale, { field: 'onHand' })
    }
  }
  readFlows(inputs.supply, 'supply', d0, h, factor, scale)
  readFlows(inputs.demand, 'demand', d0, h, factor, scale)

  const dates = dateStrings(d0, h)
  const threshold = r.stockoutThresholdScaled
  const minWindow = h > 8 ? 7 : h - 1 // D0..D7, or the whole horizon when shorter
  const days: ProjectionDay[] = []
  let opening = stock
  let openingOut = stock / factor
  let withPending = stock
  let withPendingOut = openingOut
  let min7 = 0
  let min7Index = 0
  let stockoutIndex = -1
  // Divisions are skipped for zeros and reused for equal values: most days have no flow.
  for (let k = 0; k < h; k++) {
    const m = k === 0 ? 0 : (buf[4 * k + MOV] as number)
    const s = buf[4 * k + SUP] as number
    const d = buf[4 * k + DEM] as number
    const pend = buf[4 * k + PEND] as number
    let closing = opening
    let closingOut = openingOut
    if (m !== 0 || s !== 0 || d !== 0) {
      closing = add(opening, add(add(m, s), -d))
      closingOut = closing / factor
    }
    const net = closing - opening
    if (net !== 0 || pend !== 0) {
      const next = add(add(withPending, net), pend)
      if (next !== withPending) {
        withPending = next
        withPendingOut = next === closing ? closingOut : next / factor
      }
    }
    days.push({
      date: dates[k] as string,
      opening: openingOut,
      movements: m === 0 ? 0 : m / factor,
      supply: s === 0 ? 0 : s / factor,
      demand: d === 0 ? 0 : d / factor,
      closing: closingOut,
      closingWithPending: withPendingOut,
    })
    if (k === 0 || (k <= minWindow && closing < min7)) {
      min7 = closing
      min7Index = k
    }
    if (stockoutIndex < 0 && closing < threshold) stockoutIndex = k
    opening = closing
    openingOut = closingOut
  }

  let later: readonly LaterFlow[] = EMPTY
  if (laterCount > 0) {
    // Slot numbers by date: insertion sort for the usual handful, the built-in sort beyond.
    const order = laterOrder
    if (laterCount <= LATER_SCAN) {
      for (let i = 0; i < laterCount; i++) {
        const day = laterDays[i] as number
        let j = i
        while (j > 0 && (laterDays[order[j - 1] as number] as number) > day) {
          order[j] = order[j - 1] as number
          j--
        }
        order[j] = i
      }
    } else {
      order.length = laterCount
      for (let i = 0; i < laterCount; i++) order[i] = i
      order.sort((a, b) => (laterDays[a] as number) - (laterDays[b] as number))
    }
    const list: LaterFlow[] = []
    let p = opening
    let pw = withPending
    for (let o = 0; o < laterCount; o++) {
      const i = order[o] as number
      const net = laterNet[i] as number
      const netP = laterNetP[i] as number
      // The cumulative series availabilityDate walks must stay exact too.
      p = add(p, net)
      pw = add(pw, netP)
      list.push({ date: laterDates[i] as string, net: net / factor, netWithPending: netP / factor })
    }
    later = list
  }

  const criticalWindow = Math.min(r.criticalDays, h - 1)
  let status: StockStatus = 'OK'
  if (stockoutIndex >= 0 && stockoutIndex <= criticalWindow) status = 'CRITICAL'
  else if (stockoutIndex >= 0 || min7 < r.safetyStockScaled) status = 'ATTENTION'

  // Not frozen here: freezing 29 day objects costs more than computing them. The cache deep-freezes what it keeps.
  return {
    today: todayStr,
    timeZone: r.timeZone,
    horizonDays: h,
    scale,
    stockToday: stock / factor,
    supplyToday: (buf[SUP] as number) / factor,
    demandToday: (buf[DEM] as number) / factor,
    overdueSupply: overdueSup / factor,
    overdueDemand: overdueDem / factor,
    days,
    minClosing7d: min7 / factor,
    minClosing7dDate: dates[min7Index] as string,
    firstStockoutDate: stockoutIndex < 0 ? null : (dates[stockoutIndex] as string),
    daysOfCover: stockoutIndex < 0 ? null : stockoutIndex,
    status,
    safetyStock: r.safetyStock,
    stockoutThreshold: r.stockoutThreshold,
    later,
  }
}

const EMPTY: readonly LaterFlow[] = Object.freeze([])
