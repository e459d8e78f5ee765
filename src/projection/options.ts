/**
 * The calculator's options: checked once per options object (a WeakMap keeps the resolved copy), completed with
 * their defaults, and the current day per time zone.
 */
import { InvalidInputError } from '../errors.js'
import { assertTimeZoneOption, dateError, formatDate, todayIn, tryParseDate } from './dates.js'
import { decimalError, scaleFactor, showValue, tryParseDecimal } from './decimal.js'
import type { ProjectionOptions } from './types.js'

/** The largest `horizonDays` accepted (ten years). */
export const MAX_HORIZON_DAYS = 3660

/** `ProjectionOptions` checked and completed with their defaults. Frozen. */
export interface ResolvedProjectionOptions {
  /** D0 when fixed by the caller; `undefined` means today in `timeZone` by `clock`. */
  readonly today: string | undefined
  /** Day number (days since 1970-01-01) of `today`, when fixed. */
  readonly todayDay: number | undefined
  readonly clock: { now(): number }
  readonly timeZone: string
  readonly horizonDays: number
  readonly scale: number
  /** `10^scale` */
  readonly factor: number
  readonly safetyStock: number
  /** `safetyStock` as a scaled integer. */
  readonly safetyStockScaled: number
  readonly criticalDays: number
  readonly stockoutThreshold: number
  /** `stockoutThreshold` as a scaled integer. */
  readonly stockoutThresholdScaled: number
}

interface CachedOptions {
  readonly today: unknown
  readonly clock: unknown
  readonly timeZone: unknown
  readonly horizonDays: unknown
  readonly scale: unknown
  readonly safetyStock: unknown
  readonly criticalDays: unknown
  readonly stockoutThreshold: unknown
  readonly resolved: ResolvedProjectionOptions
}

const resolvedCache = new WeakMap<object, CachedOptions>()
let defaultResolved: ResolvedProjectionOptions | undefined

function optionError(option: string, value: unknown, expected: string): InvalidInputError {
  return new InvalidInputError(`Invalid option ${option}: ${showValue(value)}. Expected ${expected}.`, { option })
}

function resolveFresh(options: ProjectionOptions | undefined): ResolvedProjectionOptions {
  const o: ProjectionOptions = options ?? {}
  if (typeof o !== 'object' || o === null) {
    throw new InvalidInputError(`Invalid projection options ${showValue(options)}: expected an object or undefined.`)
  }
  const timeZone = o.timeZone ?? 'UTC'
  // Throws InvalidInputError naming the zone; the formatter is cached per zone.
  assertTimeZoneOption(timeZone)

  const horizonDays = o.horizonDays ?? 29
  if (!Number.isInteger(horizonDays) || horizonDays < 1 || horizonDays > MAX_HORIZON_DAYS) {
    throw optionError(
      'horizonDays',
      horizonDays,
      `an integer from 1 to ${MAX_HORIZON_DAYS} (days D0..D(horizonDays-1))`,
    )
  }
  const scale = o.scale ?? 3
  if (!Number.isInteger(scale) || scale < 0 || scale > 9) {
    throw optionError('scale', scale, 'an integer from 0 to 9 (decimal places of exact arithmetic)')
  }
  const factor = scaleFactor(scale)
  const criticalDays = o.criticalDays ?? 7
  if (!Number.isInteger(criticalDays) || criticalDays < 0) {
    throw optionError('criticalDays', criticalDays, 'an integer >= 0')
  }
  const safetyStockScaled = tryParseDecimal(o.safetyStock ?? 0, factor, scale)
  if (!Number.isFinite(safetyStockScaled)) {
    throw decimalError(o.safetyStock, safetyStockScaled, scale, { field: 'option safetyStock', option: 'safetyStock' })
  }
  const stockoutThresholdScaled = tryParseDecimal(o.stockoutThreshold ?? 0, factor, scale)
  if (!Number.isFinite(stockoutThresholdScaled)) {
    throw decimalError(o.stockoutThreshold, stockoutThresholdScaled, scale, {
      field: 'option stockoutThreshold',
      option: 'stockoutThreshold',
    })
  }
  let todayDay: number | undefined
  if (o.today !== undefined) {
    todayDay = tryParseDate(o.today)
    if (Number.isNaN(todayDay)) throw dateError(o.today, { field: 'option today', option: 'today' })
  }
  const clock = o.clock ?? Date
  if ((typeof clock !== 'object' && typeof clock !== 'function') || clock === null || typeof clock.now !== 'function') {
    throw optionError('clock', clock, 'an object with a now() method returning epoch milliseconds')
  }
  return Object.freeze({
    today: todayDay === undefined ? undefined : formatDate(todayDay),
    todayDay,
    clock,
    timeZone,
    horizonDays,
    scale,
    factor,
    safetyStock: safetyStockScaled / factor,
    safetyStockScaled,
    criticalDays,
    stockoutThreshold: stockoutThresholdScaled / factor,
    stockoutThresholdScaled,
  })
}

function sameOptions(c: CachedOptions, o: ProjectionOptions): boolean {
  return (
    c.today === o.today &&
    c.clock === o.clock &&
    c.timeZone === o.timeZone &&
    c.horizonDays === o.horizonDays &&
    c.scale === o.scale &&
    c.safetyStock === o.safetyStock &&
    c.criticalDays === o.criticalDays &&
    c.stockoutThreshold === o.stockoutThreshold
  )
}

/** The last options resolved: also matches a fresh object literal with the same values. */
let lastOptions: CachedOptions | undefined

/**
 * Checks `options` and fills in the defaults. Every bad option is an InvalidInputError naming it.
 * Results are cached by value (the last one) and per options object; a hit is re-checked field by field, so
 * mutating an options object is safe.
 * @example resolveProjectionOptions({ timeZone: 'America/Sao_Paulo' }).horizonDays // 29
 */
export function resolveProjectionOptions(options?: ProjectionOptions): ResolvedProjectionOptions {
  if (options === undefined) {
    if (defaultResolved === undefined) defaultResolved = resolveFresh(undefined)
    return defaultResolved
  }
  if (typeof options !== 'object' || options === null) return resolveFresh(options)
  if (lastOptions !== undefined && sameOptions(lastOptions, options)) return lastOptions.resolved
  const cached = resolvedCache.get(options)
  if (cached !== undefined && sameOptions(cached, options)) {
    lastOptions = cached
    return cached.resolved
  }
  const entry: CachedOptions = {
    today: options.today,
    clock: options.clock,
    timeZone: options.timeZone,
    horizonDays: options.horizonDays,
    scale: options.scale,
    safetyStock: options.safetyStock,
    criticalDays: options.criticalDays,
    stockoutThreshold: options.stockoutThreshold,
    resolved: resolveFresh(options),
  }
  resolvedCache.set(options, entry)
  lastOptions = entry
  return entry.resolved
}

// ---------------------------------------------------------------------------------------------------------------
// Today by the clock: the last answer per zone is reused while the clock stays inside that day.

export interface TodayEntry {
  fromMs: number
  endsAtMs: number
  day: number
  date: string
}
const todayByZone = new Map<string, TodayEntry>()

export function currentDay(r: ResolvedProjectionOptions): TodayEntry {
  const now = r.clock.now()
  const hit = todayByZone.get(r.timeZone)
  if (hit !== undefined && now >= hit.fromMs && now < hit.endsAtMs) return hit
  const t = todayIn(r.timeZone, now)
  const entry: TodayEntry = { fromMs: now, endsAtMs: t.endsAtMs, day: t.day, date: t.date }
  if (todayByZone.size >= 256) todayByZone.clear()
  todayByZone.set(r.timeZone, entry)
  return entry
}
