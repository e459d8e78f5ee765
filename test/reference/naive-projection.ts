/**
 * A deliberately naive reference for property tests: BigInt rationals, Date.UTC calendars, one filter over all
 * rows per day. Slow and obvious; it shares no code with src/projection.
 */
import type {
  Availability,
  AvailabilityOptions,
  DecimalInput,
  FlowRow,
  LaterFlow,
  MovementRow,
  Projection,
  ProjectionDay,
  ProjectionInputs,
  StockStatus,
} from '../../src/projection/index.js'

export interface NaiveOptions {
  today: string
  timeZone?: string
  horizonDays?: number
  scale?: number
  safetyStock?: DecimalInput
  criticalDays?: number
  stockoutThreshold?: DecimalInput
}

const DAY = 86_400_000

export function naiveDay(date: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date)
  if (!m) throw new Error(`bad date ${date}`)
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])]
  const t = new Date(0)
  t.setUTCFullYear(y, mo - 1, d)
  if (t.getUTCFullYear() !== y || t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d) throw new Error(`bad ${date}`)
  return Math.floor(t.getTime() / DAY)
}

export function naiveDate(day: number): string {
  return new Date(day * DAY).toISOString().slice(0, 10)
}

/** A decimal string (or number) as an exact rational num/den, den a power of ten. */
function rational(value: DecimalInput): { num: bigint; den: bigint } {
  let s = typeof value === 'number' ? String(value) : value.trim()
  const exp = /^(-?)(\d+)(?:\.(\d+))?e([+-]\d+)$/.exec(s)
  if (exp) {
    const digits = (exp[2] ?? '') + (exp[3] ?? '')
    const shift = Number(exp[4]) - (exp[3] ?? '').length
    const num = BigInt(digits) * (exp[1] === '-' ? -1n : 1n)
    return shift >= 0 ? { num: num * 10n ** BigInt(shift), den: 1n } : { num, den: 10n ** BigInt(-shift) }
  }
  const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(s)
  if (!m || ((m[2] ?? '') === '' && (m[3] ?? '') === '')) throw new Error(`bad decimal ${JSON.stringify(value)}`)
  s = (m[2] ?? '') + (m[3] ?? '')
  const num = BigInt(s === '' ? '0' : s) * (m[1] === '-' ? -1n : 1n)
  return { num, den: 10n ** BigInt((m[3] ?? '').length) }
}

/** Scaled BigInt, rounded half away from zero. */
export function naiveScaled(value: DecimalInput, scale: number): bigint {
  const { num, den } = rational(value)
  const n = num * 10n ** BigInt(scale)
  const abs = n < 0n ? -n : n
  const rounded = (2n * abs + den) / (2n * den)
  return n < 0n ? -rounded : rounded
}

function toNum(x: bigint, scale: number): number {
  const neg = x < 0n
  const digits = (neg ? -x : x).toString().padStart(scale + 1, '0')
  const text = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`
  return Number((neg ? '-' : '') + text)
}

function sum(values: bigint[]): bigint {
  return values.reduce((a, b) => a + b, 0n)
}

export function naiveProjectStock(inputs: ProjectionInputs, options: NaiveOptions): Projection {
  const scale = options.scale ?? 3
  const h = options.horizonDays ?? 29
  const criticalDays = options.criticalDays ?? 7
  const safety = naiveScaled(options.safetyStock ?? 0, scale)
  const threshold = naiveScaled(options.stockoutThreshold ?? 0, scale)
  const d0 = naiveDay(options.today)
  const last = d0 + h - 1
  const q = (row: { quantity: DecimalInput }) => naiveScaled(row.quantity, scale)

  const movements: MovementRow[] = Array.isArray(inputs.onHand) ? [...inputs.onHand] : []
  const supply: FlowRow[] = [...(inputs.supply ?? [])]
  const demand: FlowRow[] = [...(inputs.demand ?? [])]
  const movDay = (r: MovementRow) => (r.date == null ? null : naiveDay(r.date))

  const stockToday = Array.isArray(inputs.onHand)
    ? sum(
        movements
          .filter((r) => {
            const d = movDay(r)
            return d === null || d <= d0
          })
          .map(q),
      )
    : naiveScaled(inputs.onHand as DecimalInput, scale)

  // The day a flow counts on: overdue rows count on D0.
  const flowDay = (r: FlowRow) => Math.max(naiveDay(r.date), d0)

  const days: ProjectionDay[] = []
  const closings: bigint[] = []
  let closing = stockToday
  let withPending = stockToday
  for (let k = 0; k < h; k++) {
    const day = d0 + k
    const mov = k === 0 ? 0n : sum(movements.filter((r) => movDay(r) === day).map(q))
    const sup = sum(supply.filter((r) => !r.pending && flowDay(r) === day).map(q))
    const dem = sum(demand.filter((r) => !r.pending && flowDay(r) === day).map(q))
    const pSup = sum(supply.filter((r) => r.pending === true && flowDay(r) === day).map(q))
    const pDem = sum(demand.filter((r) => r.pending === true && flowDay(r) === day).map(q))
    const opening = closing
    closing = opening + mov + sup - dem
    withPending = withPending + mov + sup - dem + pSup - pDem
    closings.push(closing)
    days.push({
      date: naiveDate(day),
      opening: toNum(opening, scale),
      movements: toNum(mov, scale),
      supply: toNum(sup, scale),
      demand: toNum(dem, scale),
      closing: toNum(closing, scale),
      closingWithPending: toNum(withPending, scale),
    })
  }

  const laterDates = new Set<number>()
  for (const r of movements) {
    const d = movDay(r)
    if (d !== null && d > last) laterDates.add(d)
  }
  for (const r of [...supply, ...demand]) if (naiveDay(r.date) > last) laterDates.add(naiveDay(r.date))
  const later: LaterFlow[] = [...laterDates]
    .sort((a, b) => a - b)
    .map((day) => {
      const mov = sum(movements.filter((r) => movDay(r) === day).map(q))
      const sup = sum(supply.filter((r) => !r.pending && naiveDay(r.date) === day).map(q))
      const dem = sum(demand.filter((r) => !r.pending && naiveDay(r.date) === day).map(q))
      const pSup = sum(supply.filter((r) => r.pending === true && naiveDay(r.date) === day).map(q))
      const pDem = sum(demand.filter((r) => r.pending === true && naiveDay(r.date) === day).map(q))
      return {
        date: naiveDate(day),
        net: toNum(mov + sup - dem, scale),
        netWithPending: toNum(mov + sup - dem + pSup - pDem, scale),
      }
    })

  const window7 = closings.slice(0, Math.min(8, h))
  let min7 = window7[0] ?? 0n
  for (const c of window7) if (c < min7) min7 = c
  const min7Index = window7.indexOf(min7)
  const stockoutIndex = closings.findIndex((c) => c < threshold)
  const criticalWindow = closings.slice(0, Math.min(criticalDays, h - 1) + 1)
  let status: StockStatus = 'OK'
  if (criticalWindow.some((c) => c < threshold)) status = 'CRITICAL'
  else if (stockoutIndex >= 0 || min7 < safety) status = 'ATTENTION'

  const overdue = (rows: FlowRow[]) => sum(rows.filter((r) => !r.pending && naiveDay(r.date) < d0).map(q))
  return {
    today: options.today,
    timeZone: options.timeZone ?? 'UTC',
    horizonDays: h,
    scale,
    stockToday: toNum(stockToday, scale),
    supplyToday: days[0]?.supply ?? 0,
    demandToday: days[0]?.demand ?? 0,
    overdueSupply: toNum(overdue(supply), scale),
    overdueDemand: toNum(overdue(demand), scale),
    days,
    minClosing7d: toNum(min7, scale),
    minClosing7dDate: naiveDate(d0 + min7Index),
    firstStockoutDate: stockoutIndex < 0 ? null : naiveDate(d0 + stockoutIndex),
    daysOfCover: stockoutIndex < 0 ? null : stockoutIndex,
    status,
    safetyStock: toNum(safety, scale),
    stockoutThreshold: toNum(threshold, scale),
    later,
  }
}

export function naiveAvailabilityDate(
  projection: Projection,
  qty: DecimalInput,
  options: AvailabilityOptions = {},
): Availability {
  const rule = options.rule ?? 'promise'
  const scale = projection.scale
  const d0 = naiveDay(projection.today)
  const want = naiveScaled(qty, scale)
  if (want <= 0n) return { date: projection.today, dayIndex: 0, rule, reason: null }
  const points: { day: number; balance: bigint }[] = projection.days.map((d) => ({
    day: naiveDay(d.date),
    balance: naiveScaled(options.includePending ? d.closingWithPending : d.closing, scale),
  }))
  let balance = points[points.length - 1]?.balance ?? 0n
  for (const l of projection.later) {
    balance += naiveScaled(options.includePending ? l.netWithPending : l.net, scale)
    points.push({ day: naiveDay(l.date), balance })
  }
  const ok = (i: number) =>
    rule === 'point' ? (points[i]?.balance ?? 0n) >= want : points.slice(i).every((p) => p.balance >= want)
  for (let i = 0; i < points.length; i++) {
    const p = points[i]
    if (p && ok(i)) return { date: naiveDate(p.day), dayIndex: p.day - d0, rule, reason: null }
  }
  const reached = points.some((p) => p.balance >= want)
  return { date: null, dayIndex: null, rule, reason: reached ? 'not-sustained' : 'never-reached' }
}
