/**
 * Calendar days as integers (days since 1970-01-01, proleptic Gregorian) and the IANA time-zone logic that
 * decides which day is today. Parsing and formatting allocate nothing but the result; only `todayIn` uses Intl.
 */
import { InvalidInputError } from '../errors.js'
import { describeContext, showValue } from './decimal.js'

const DAY_MS = 86_400_000

/** Where a bad date came from, for the error message. */
export interface DateContext {
  source?: string
  productId?: string
  /** What the value is: `date`, `supply[3].date`, `today`... */
  field?: string
  /** The option at fault, when the value is an option. */
  option?: string
}

/** Today in a time zone, as `todayIn` returns it. */
export interface ZonedToday {
  /** `YYYY-MM-DD` */
  date: string
  /** Days since 1970-01-01. */
  day: number
  /** Epoch ms at which this day ends in the zone (the first instant of the next local day). */
  endsAtMs: number
}

/** Days since 1970-01-01 of a valid civil date (Howard Hinnant's days_from_civil, in int32 arithmetic). @internal */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year
  const era = ((y >= 0 ? y : y - 399) / 400) | 0
  const yoe = y - era * 400
  const mp = month > 2 ? month - 3 : month + 9
  const doy = (((153 * mp + 2) / 5) | 0) + day - 1
  const doe = yoe * 365 + ((yoe / 4) | 0) - ((yoe / 100) | 0) + doy
  return era * 146_097 + doe - 719_468
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}

/** First day number of every month of 1900..2299 (index (year - 1900) * 12 + month - 1), plus one sentinel. */
const TABLE_FIRST_YEAR = 1900
const TABLE_MONTHS = 400 * 12
const monthStart = new Int32Array(TABLE_MONTHS + 1)
{
  let day = daysFromCivil(TABLE_FIRST_YEAR, 1, 1)
  for (let i = 0; i <= TABLE_MONTHS; i++) {
    monthStart[i] = day
    day += daysInMonth(TABLE_FIRST_YEAR + Math.floor(i / 12), (i % 12) + 1)
  }
}

/**
 * The day number of a strict `YYYY-MM-DD` string, or NaN when it is not one (hot path, no throw).
 * @internal
 */
export function tryParseDate(s: unknown): number {
  if (typeof s !== 'string' || s.length !== 10 || s.charCodeAt(4) !== 45 || s.charCodeAt(7) !== 45) return Number.NaN
  const y1 = s.charCodeAt(0) - 48
  const y2 = s.charCodeAt(1) - 48
  const y3 = s.charCodeAt(2) - 48
  const y4 = s.charCodeAt(3) - 48
  const m1 = s.charCodeAt(5) - 48
  const m2 = s.charCodeAt(6) - 48
  const d1 = s.charCodeAt(8) - 48
  const d2 = s.charCodeAt(9) - 48
  // `>>> 0` turns a negative (a char below '0') into a huge number: one unsigned test per digit.
  if (
    y1 >>> 0 > 9 ||
    y2 >>> 0 > 9 ||
    y3 >>> 0 > 9 ||
    y4 >>> 0 > 9 ||
    m1 >>> 0 > 9 ||
    m2 >>> 0 > 9 ||
    d1 >>> 0 > 9 ||
    d2 >>> 0 > 9
  ) {
    return Number.NaN
  }
  const year = y1 * 1000 + y2 * 100 + y3 * 10 + y4
  const month = m1 * 10 + m2
  const day = d1 * 10 + d2
  if (month < 1 || month > 12 || day < 1) return Number.NaN
  const i = (year - TABLE_FIRST_YEAR) * 12 + month - 1
  if (i >= 0 && i < TABLE_MONTHS) {
    const start = monthStart[i] as number
    return day <= (monthStart[i + 1] as number) - start ? start + day - 1 : Number.NaN
  }
  return day <= daysInMonth(year, month) ? daysFromCivil(year, month, day) : Number.NaN
}

/**
 * The day number (days since 1970-01-01) of a strict `YYYY-MM-DD` calendar date.
 * Only strings are accepted: format `Date` objects in the adapter, in the time zone they mean.
 * @throws InvalidInputError naming the value (and its field, source and product when given).
 * @example parseDate('1970-01-02') // 1
 */
export function parseDate(s: string, ctx?: DateContext): number {
  const day = tryParseDate(s)
  if (!Number.isNaN(day)) return day
  throw dateError(s, ctx)
}

/** The error for a value `tryParseDate` rejected. @internal */
export function dateError(value: unknown, ctx?: DateContext): InvalidInputError {
  const what = ctx?.field ?? ctx?.option ?? 'date'
  const hint =
    value instanceof Date
      ? ' (a Date object: format it as YYYY-MM-DD in the time zone it means)'
      : typeof value === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(value)
        ? ' (no such day)'
        : ''
  const context: { source?: string; productId?: string; option?: string } = {}
  if (ctx?.source !== undefined) context.source = ctx.source
  if (ctx?.productId !== undefined) context.productId = ctx.productId
  if (ctx?.option !== undefined) context.option = ctx.option
  return new InvalidInputError(
    `Invalid ${what} ${showValue(value)}${describeContext(ctx)}${hint}: expected a calendar date as a 'YYYY-MM-DD' string.`,
    context,
  )
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n)
}

/**
 * The `YYYY-MM-DD` string of a day number (Howard Hinnant's civil_from_days).
 * @example formatDate(0) // '1970-01-01'
 */
export function formatDate(dayNumber: number): string {
  const z = dayNumber + 719_468
  const era = Math.floor(z / 146_097)
  const doe = z - era * 146_097
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365)
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100))
  const mp = Math.floor((5 * doy + 2) / 153)
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1
  const month = mp < 10 ? mp + 3 : mp - 9
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0)
  const y = year >= 0 && year < 1000 ? String(year).padStart(4, '0') : String(year)
  return `${y}-${pad2(month)}-${pad2(day)}`
}

const formatters = new Map<string, Intl.DateTimeFormat>()

function formatterFor(timeZone: unknown, label = ''): Intl.DateTimeFormat {
  if (typeof timeZone === 'string') {
    const cached = formatters.get(timeZone)
    if (cached !== undefined) return cached
  }
  if (typeof timeZone !== 'string' || timeZone.trim() === '') {
    throw new InvalidInputError(
      `Invalid time zone ${showValue(timeZone)}${label}: expected an IANA name such as "UTC" or "America/Sao_Paulo".`,
      { option: 'timeZone' },
    )
  }
  let fmt: Intl.DateTimeFormat
  try {
    fmt = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    })
  } catch (cause) {
    throw new InvalidInputError(
      `Unknown time zone ${JSON.stringify(timeZone)}${label}: expected an IANA name such as "UTC" or "America/Sao_Paulo".`,
      { option: 'timeZone', cause },
    )
  }
  if (formatters.size >= 256) formatters.clear()
  formatters.set(timeZone, fmt)
  return fmt
}

/**
 * Throws InvalidInputError unless `timeZone` is an IANA time zone this runtime knows.
 * @example assertTimeZone('Europe/Lisbon')
 */
export function assertTimeZone(timeZone: string): void {
  formatterFor(timeZone)
}

/** `assertTimeZone` for the `timeZone` option: the message names the option. @internal */
export function assertTimeZoneOption(timeZone: unknown): void {
  formatterFor(timeZone, ' (option timeZone)')
}

/** Local wall-clock time at `t` in the formatter's zone, as ms since 1970-01-01T00:00 of that wall clock. */
function wallMs(fmt: Intl.DateTimeFormat, t: number): number {
  let year = 0
  let month = 1
  let day = 1
  let hour = 0
  let minute = 0
  let second = 0
  for (const part of fmt.formatToParts(t)) {
    switch (part.type) {
      case 'year':
        year = Number(part.value)
        break
      case 'month':
        month = Number(part.value)
        break
      case 'day':
        day = Number(part.value)
        break
      case 'hour':
        hour = Number(part.value) % 24
        break
      case 'minute':
        minute = Number(part.value)
        break
      case 'second':
        second = Number(part.value)
        break
    }
  }
  const ms = ((t % 1000) + 1000) % 1000
  return daysFromCivil(year, month, day) * DAY_MS + ((hour * 60 + minute) * 60 + second) * 1000 + ms
}

function localDay(fmt: Intl.DateTimeFormat, t: number): number {
  return Math.floor(wallMs(fmt, t) / DAY_MS)
}

/**
 * The calendar day at `nowMs` in `timeZone`, and the instant that day ends there (the next local midnight, or
 * the first instant of the next day when a DST change skips midnight). Days of 23 or 25 hours come out right.
 * Callers cache the result until `endsAtMs`.
 * @throws InvalidInputError for an unknown time zone or a non-finite `nowMs`.
 * @example todayIn('Asia/Tokyo', Date.parse('2026-11-22T23:30:00Z')) // { date: '2026-11-23', ... }
 */
export function todayIn(timeZone: string, nowMs: number): ZonedToday {
  const fmt = formatterFor(timeZone)
  if (typeof nowMs !== 'number' || !Number.isFinite(nowMs)) {
    throw new InvalidInputError(`Invalid clock reading ${showValue(nowMs)}: expected epoch milliseconds.`, {
      option: 'clock',
    })
  }
  const now = Math.floor(nowMs)
  const wall = wallMs(fmt, now)
  const day = Math.floor(wall / DAY_MS)
  const target = (day + 1) * DAY_MS // next local midnight, as wall time
  // Guess the instant of the next midnight with the current offset, then with the offset found there
  // (covers a DST change during the day). Keep a candidate only if it is the first instant of a later day.
  const c1 = target - (wall - now)
  const c2 = target - (wallMs(fmt, c1) - c1)
  const first = Math.min(c1, c2)
  const second = Math.max(c1, c2)
  for (const c of first === second ? [first] : [first, second]) {
    if (c > now && localDay(fmt, c) > day && localDay(fmt, c - 1) <= day) {
      return { date: formatDate(day), day, endsAtMs: c }
    }
  }
  // Midnight does not exist that night (a DST change at 00:00): search for the first instant of a later day.
  let lo = now
  let hi = now + 2 * DAY_MS + 3_600_000
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2)
    if (localDay(fmt, mid) > day) hi = mid
    else lo = mid
  }
  return { date: formatDate(day), day, endsAtMs: hi }
}
