/**
 * Exact decimal arithmetic on scaled integers held in plain JS numbers.
 *
 * A quantity `q` at `scale` s is stored as the integer `q * 10^s` (the "scaled" value). Sums and differences of
 * scaled integers are exact as long as every intermediate stays within {@link MAX_EXACT_SCALED}; the projection
 * checks that at each addition.
 *
 * The exact range is ±(10^15 - 1) scaled units, a little under `Number.MAX_SAFE_INTEGER` on purpose: a decimal
 * with at most 15 significant digits survives the trip to the nearest double and back (`String(x)`), so every
 * number the calculator outputs prints as its exact decimal and can be read back exactly (availability search,
 * cache-versus-truth validation, JSON in a shared store). At scale 3 that is ±999 999 999 999.999.
 */

import { InvalidInputError } from '../errors.js'
import type { DecimalInput } from './types.js'

/** The largest scaled magnitude the calculator accepts (10^15 - 1). */
export const MAX_EXACT_SCALED = 999_999_999_999_999

/** 10^0 .. 10^9: the scale factors. */
const POW10 = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000] as const

/** Where a bad value came from, for the error message. */
export interface DecimalContext {
  /** The schema source (table) of the row. */
  source?: string
  /** The product (key) being computed. */
  productId?: string
  /** What the value is: `quantity`, `supply[3].quantity`, `safetyStock`... */
  field?: string
  /** The option at fault, when the value is an option. */
  option?: string
}

/** `10^scale` for an integer scale in 0..9. */
export function scaleFactor(scale: number): number {
  const f = POW10[scale]
  if (f === undefined) {
    throw new InvalidInputError(`Invalid scale ${String(scale)}: expected an integer from 0 to 9.`, { option: 'scale' })
  }
  return f
}

/**
 * Parses a decimal into its scaled integer, or returns a sentinel instead of throwing (hot path):
 * `NaN` when the value is not a decimal, `Infinity`/`-Infinity` when it is outside the exact range.
 * `factor` must be `10^scale`.
 * @internal
 */
export function tryParseDecimal(value: unknown, factor: number, scale: number): number {
  if (typeof value === 'string') return parseDecimalString(value, factor, scale)
  if (typeof value === 'number') {
    if (Number.isInteger(value)) {
      const r = value * factor
      if (r > MAX_EXACT_SCALED) return Number.POSITIVE_INFINITY
      if (r < -MAX_EXACT_SCALED) return Number.NEGATIVE_INFINITY
      return r + 0 // -0 -> 0
    }
    if (!Number.isFinite(value)) return Number.NaN
    // Non-integers mean their shortest decimal form (`String(x)`), so 0.1 is exactly one tenth. Fast path: when
    // r = round(x * factor) gives back x as r / factor, the decimal r/10^scale (at most 15 significant digits) is
    // the only one that short to map to x, so it is that shortest form, with no rounding needed.
    const r = Math.round(value * factor)
    if (r <= MAX_EXACT_SCALED && r >= -MAX_EXACT_SCALED && r / factor === value) return r + 0
    const s = String(value)
    return parseDecimalString(s.indexOf('e') === -1 ? s : expandExponent(s), factor, scale)
  }
  if (typeof value === 'bigint') return parseDecimalString(value.toString(), factor, scale)
  return Number.NaN
}

/**
 * Parses a decimal quantity into its scaled integer (`"12.5"` at scale 3 -> `12500`).
 *
 * - Strings: surrounding whitespace is ignored; then an optional sign, digits, and an optional `.` with digits
 *   (`"12.500"`, `"-3"`, `"+.5"`, `"7."`). No exponent, no thousands separators, no `NaN`/`Infinity`.
 * - Numbers: integers are scaled directly; other finite numbers are read through their shortest decimal form
 *   (`String(x)`), so `0.1` is exactly one tenth and `1e-7` is `0.0000001`.
 * - A bigint (some SQL drivers return them) is read as its integer value.
 * - More decimals than `scale`: rounded at `scale`, half away from zero (`"0.0005"` -> `0.001`, `"-0.0005"` ->
 *   `-0.001` at scale 3).
 *
 * @throws InvalidInputError when the value is not a decimal, or when its scaled value exceeds ±(10^15 - 1).
 * @example parseDecimal('12.5', 1000, 3) // 12500
 */
export function parseDecimal(value: DecimalInput, factor: number, scale: number, ctx?: DecimalContext): number {
  const r = tryParseDecimal(value, factor, scale)
  if (Number.isFinite(r)) return r
  throw decimalError(value, r, scale, ctx)
}

/** The error for a value `tryParseDecimal` rejected (`result` is its sentinel). @internal */
export function decimalError(value: unknown, result: number, scale: number, ctx?: DecimalContext): InvalidInputError {
  const what = ctx?.field ?? ctx?.option ?? 'quantity'
  const where = describeContext(ctx)
  const message = Number.isNaN(result)
    ? `Invalid ${what} ${showValue(value)}${where}: expected a decimal as a string ("12.500", "-3") or a finite number.`
    : `The ${what} ${showValue(value)}${where} exceeds the exact range at scale ${scale} ` +
      `(±${formatDecimal(MAX_EXACT_SCALED, scale)}): use a smaller scale.`
  const context: { source?: string; productId?: string; option?: string } = {}
  if (ctx?.source !== undefined) context.source = ctx.source
  if (ctx?.productId !== undefined) context.productId = ctx.productId
  if (ctx?.option !== undefined) context.option = ctx.option
  return new InvalidInputError(message, context)
}

/** ` (source "x", product "y")`, or nothing. @internal */
export function describeContext(ctx?: { source?: string; productId?: string }): string {
  if (ctx === undefined) return ''
  const parts: string[] = []
  if (ctx.source !== undefined) parts.push(`source ${JSON.stringify(ctx.source)}`)
  if (ctx.productId !== undefined) parts.push(`product ${JSON.stringify(ctx.productId)}`)
  return parts.length === 0 ? '' : ` (${parts.join(', ')})`
}

/** A short, readable rendering of any value for an error message. @internal */
export function showValue(value: unknown): string {
  let s: string
  if (typeof value === 'string') s = JSON.stringify(value)
  else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') s = String(value)
  else if (value === null) s = 'null'
  else if (value === undefined) s = 'undefined'
  else if (value instanceof Date) s = `Date(${Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString()})`
  else if (Array.isArray(value)) s = 'an array'
  else s = typeof value === 'object' ? 'an object' : `a ${typeof value}`
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}

/** `scaled / factor`: the double nearest the exact decimal (exact to print while |scaled| < 10^15). */
export function toNumber(scaled: number, factor: number): number {
  return scaled / factor
}

/**
 * The exact decimal string of a scaled integer, with exactly `scale` decimals.
 * @example formatDecimal(12500, 3) // '12.500'
 */
export function formatDecimal(scaled: number, scale: number): string {
  if (!Number.isSafeInteger(scaled)) {
    throw new InvalidInputError(`formatDecimal expects a safe integer scaled value, got ${showValue(scaled)}.`)
  }
  scaleFactor(scale)
  const neg = scaled < 0
  let digits = String(neg ? -scaled : scaled)
  if (scale === 0) return neg ? `-${digits}` : digits
  if (digits.length <= scale) digits = digits.padStart(scale + 1, '0')
  const cut = digits.length - scale
  return (neg ? '-' : '') + digits.slice(0, cut) + '.' + digits.slice(cut)
}

/**
 * Converts a number the calculator produced back to its scaled integer, exactly.
 * `Math.round(x * factor)` is exact for |scaled| < 2^51 because `x` is the double nearest `scaled / factor`.
 * Returns NaN when `x` is not a finite number or is out of range.
 * @internal
 */
export function scaledFromOutput(x: unknown, factor: number): number {
  if (typeof x !== 'number') return Number.NaN
  const r = Math.round(x * factor)
  if (!(r <= MAX_EXACT_SCALED && r >= -MAX_EXACT_SCALED)) return Number.NaN
  return r + 0
}

function isSpace(c: number): boolean {
  return c <= 32 || c === 0xa0 || c === 0xfeff || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029
}

/** Parses a plain decimal; surrounding whitespace is handled on the slow path only. */
function parseDecimalString(s: string, factor: number, scale: number): number {
  const r = parsePlain(s, factor, scale)
  if (!Number.isNaN(r) || s.length === 0 || !(isSpace(s.charCodeAt(0)) || isSpace(s.charCodeAt(s.length - 1)))) {
    return r
  }
  return parsePlain(s.trim(), factor, scale)
}

/** `[+-]digits[.digits]` (at least one digit), rounded at `scale` half away from zero; NaN or ±Infinity. */
function parsePlain(s: string, factor: number, scale: number): number {
  const n = s.length
  let i = 0
  let neg = false
  const c = n === 0 ? 0 : s.charCodeAt(0)
  if (c === 45 /* - */) {
    neg = true
    i = 1
  } else if (c === 43 /* + */) {
    i = 1
  }
  const intStart = i
  let int = 0
  for (; i < n; i++) {
    const d = s.charCodeAt(i) - 48
    if (d >>> 0 > 9) break
    int = int * 10 + d
  }
  let digits = i - intStart
  let frac = 0
  let kept = 0
  let roundUp = false
  if (i < n) {
    if (s.charCodeAt(i) !== 46 /* . */) return Number.NaN
    i++
    const fracStart = i
    const keepEnd = Math.min(n, fracStart + scale)
    for (; i < keepEnd; i++) {
      const d = s.charCodeAt(i) - 48
      if (d >>> 0 > 9) return Number.NaN
      frac = frac * 10 + d
    }
    kept = i - fracStart
    if (i < n) {
      // Digits beyond the scale: the first decides the rounding, the rest must still be digits.
      const d = s.charCodeAt(i) - 48
      if (d >>> 0 > 9) return Number.NaN
      roundUp = d >= 5
      for (i++; i < n; i++) if ((s.charCodeAt(i) - 48) >>> 0 > 9) return Number.NaN
    }
    digits += n - fracStart
  }
  if (digits === 0) return Number.NaN
  // int may be inexact once huge, but then it is far beyond the limit, which is all the check needs.
  let r = int * factor
  if (r > MAX_EXACT_SCALED) return neg ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY
  if (kept !== 0) r += frac * (POW10[scale - kept] as number)
  if (roundUp) r += 1
  if (r > MAX_EXACT_SCALED) return neg ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY
  return neg && r !== 0 ? -r : r
}

/** `"1.5e-7"` -> `"0.00000015"` (only what `String(number)` produces for small non-integers). */
function expandExponent(s: string): string {
  const e = s.indexOf('e')
  const exp = Number(s.slice(e + 1))
  let mantissa = s.slice(0, e)
  let sign = ''
  if (mantissa.charCodeAt(0) === 45) {
    sign = '-'
    mantissa = mantissa.slice(1)
  }
  const dot = mantissa.indexOf('.')
  const allDigits = dot === -1 ? mantissa : mantissa.slice(0, dot) + mantissa.slice(dot + 1)
  const point = (dot === -1 ? mantissa.length : dot) + exp
  if (point <= 0) return `${sign}0.${'0'.repeat(-point)}${allDigits}`
  if (point >= allDigits.length) return sign + allDigits + '0'.repeat(point - allDigits.length)
  return `${sign}${allDigits.slice(0, point)}.${allDigits.slice(point)}`
}
