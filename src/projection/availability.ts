/**
 * `availabilityDate`: the first day a quantity can be promised, from a projection.
 */
import { InvalidInputError } from '../errors.js'
import { dateError, tryParseDate } from './dates.js'
import { decimalError, scaledFromOutput, scaleFactor, showValue, tryParseDecimal } from './decimal.js'
import type { Availability, AvailabilityOptions, AvailabilityRule, DecimalInput, Projection } from './types.js'

let series = new Float64Array(64)

function badProjection(what: string, value: unknown): InvalidInputError {
  return new InvalidInputError(
    `Invalid projection: ${what} is ${showValue(value)}. Pass a Projection returned by projectStock.`,
  )
}

function answer(date: string | null, dayIndex: number | null, rule: AvailabilityRule, reason: Availability['reason']) {
  return Object.freeze({ date, dayIndex, rule, reason })
}

/**
 * The first day `qty` can be promised, searching the days D0..D(h-1) and then every later flow date (the running
 * balance after each `later` entry).
 *
 * - `rule: 'promise'` (default): the first day k with min(balance(k..end)) >= qty, so promising it never drives a
 *   later day below zero.
 * - `rule: 'point'`: the first day with balance(k) >= qty.
 * - `qty <= 0` is available on D0. When no day qualifies, `date` is null and `reason` says whether the quantity is
 *   never reached or reached but not sustained (the latter only with `promise`).
 * - `includePending` uses `closingWithPending` and `later[].netWithPending`.
 *
 * Comparisons are exact: the projection's numbers are read back as scaled integers at its `scale`, and `qty` is
 * rounded at that scale, half away from zero.
 * @throws InvalidInputError for a bad `qty`, option or projection.
 * @example availabilityDate(projection, '25').date // '2026-11-30'
 */
export function availabilityDate(
  projection: Projection,
  qty: DecimalInput,
  options?: AvailabilityOptions,
): Availability {
  if (typeof projection !== 'object' || projection === null) throw badProjection('the projection', projection)
  const rule = options?.rule ?? 'promise'
  if (rule !== 'promise' && rule !== 'point') {
    throw new InvalidInputError(`Invalid option rule: ${showValue(rule)}. Expected 'promise' or 'point'.`, {
      option: 'rule',
    })
  }
  const includePending = options?.includePending ?? false
  if (typeof includePending !== 'boolean') {
    throw new InvalidInputError(`Invalid option includePending: ${showValue(includePending)}. Expected a boolean.`, {
      option: 'includePending',
    })
  }
  const scale = projection.scale
  if (!Number.isInteger(scale) || scale < 0 || scale > 9) throw badProjection('scale', scale)
  const factor = scaleFactor(scale)
  const days = projection.days
  if (!Array.isArray(days) || days.length === 0) throw badProjection('days', days)
  const later = projection.later ?? []
  if (!Array.isArray(later)) throw badProjection('later', later)

  const q = tryParseDecimal(qty, factor, scale)
  if (!Number.isFinite(q)) throw decimalError(qty, q, scale, { field: 'qty' })
  if (q <= 0) return answer(days[0]?.date ?? projection.today, 0, rule, null)

  const h = days.length
  const n = h + later.length
  if (series.length < n) series = new Float64Array(Math.max(n, series.length * 2))
  for (let k = 0; k < h; k++) {
    const day = days[k]
    const x = includePending ? day?.closingWithPending : day?.closing
    const s = scaledFromOutput(x, factor)
    if (Number.isNaN(s)) throw badProjection(`days[${k}].${includePending ? 'closingWithPending' : 'closing'}`, x)
    series[k] = s
  }
  let p = series[h - 1] as number
  for (let j = 0; j < later.length; j++) {
    const flow = later[j]
    const x = includePending ? flow?.netWithPending : flow?.net
    const s = scaledFromOutput(x, factor)
    if (Number.isNaN(s)) throw badProjection(`later[${j}].${includePending ? 'netWithPending' : 'net'}`, x)
    p += s
    if (!Number.isSafeInteger(p)) throw badProjection(`the running balance at later[${j}]`, p)
    series[h + j] = p
  }

  let found = -1
  let max = Number.NEGATIVE_INFINITY
  if (rule === 'point') {
    for (let k = 0; k < n; k++) {
      if ((series[k] as number) >= q) {
        found = k
        break
      }
    }
  } else {
    // The suffix minimum only falls as k goes down, so the days that qualify are a suffix: find where it starts.
    let suffixMin = Number.POSITIVE_INFINITY
    for (let k = n - 1; k >= 0; k--) {
      const s = series[k] as number
      if (s > max) max = s
      if (s < suffixMin) suffixMin = s
      if (suffixMin >= q) found = k
    }
  }
  if (found < 0) {
    if (rule === 'point') return answer(null, null, rule, 'never-reached')
    return answer(null, null, rule, max >= q ? 'not-sustained' : 'never-reached')
  }
  if (found < h) return answer((days[found] as { date: string }).date, found, rule, null)
  const date = (later[found - h] as { date: string }).date
  const day = tryParseDate(date)
  if (Number.isNaN(day)) throw dateError(date, { field: `projection later[${found - h}].date` })
  const d0 = tryParseDate(projection.today)
  if (Number.isNaN(d0)) throw dateError(projection.today, { field: 'projection today' })
  return answer(date, day - d0, rule, null)
}
