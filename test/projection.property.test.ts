import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  type AvailabilityOptions,
  availabilityDate,
  type DecimalInput,
  type FlowRow,
  formatDate,
  type MovementRow,
  type ProjectionInputs,
  parseDate,
  parseDecimal,
  projectStock,
  toNumber,
} from '../src/projection/index.js'
import {
  type NaiveOptions,
  naiveAvailabilityDate,
  naiveDate,
  naiveDay,
  naiveProjectStock,
  naiveScaled,
} from './reference/naive-projection.js'

const RUNS = 500

/** A decimal with up to `maxDecimals` decimals, as a string (in several spellings) or as a number. */
function quantity(maxUnits = 1_000, maxDecimals = 3): fc.Arbitrary<DecimalInput> {
  return fc
    .record({
      units: fc.integer({ min: 0, max: maxUnits }),
      negative: fc.boolean(),
      decimals: fc.integer({ min: 0, max: maxDecimals }),
      fraction: fc.nat(),
      spelling: fc.constantFrom('number', 'plain', 'padded', 'plus', 'spaces', 'trailing-zeros'),
    })
    .map(({ units, negative, decimals, fraction, spelling }): DecimalInput => {
      const den = 10 ** decimals
      const scaled = (negative ? -1 : 1) * (units * den + (fraction % den))
      if (spelling === 'number') return scaled / den
      const neg = scaled < 0
      const digits = String(Math.abs(scaled)).padStart(decimals + 1, '0')
      let text = decimals === 0 ? digits : `${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`
      if (spelling === 'trailing-zeros') text = decimals === 0 ? `${text}.000` : `${text}00`
      if (spelling === 'padded') text = `00${text}`
      const signed = (neg ? '-' : spelling === 'plus' ? '+' : '') + text
      return spelling === 'spaces' ? `  ${signed}\t` : signed
    })
}

/** Mostly small whole numbers (so balances collide and cross thresholds), sometimes wide decimals. */
const anyQuantity = fc.oneof({ arbitrary: quantity(6, 0), weight: 2 }, { arbitrary: quantity(), weight: 3 })

const dayOffset = fc.integer({ min: -10, max: 40 })

interface Case {
  d0: number
  inputs: ProjectionInputs
  options: NaiveOptions
}

const caseArb: fc.Arbitrary<Case> = fc
  .record({
    d0: fc.integer({ min: naiveDay('2019-01-01'), max: naiveDay('2031-12-31') }),
    onHand: fc.oneof(
      anyQuantity,
      fc.array(
        fc.record({
          offset: fc.option(dayOffset, { nil: undefined }),
          nullDate: fc.boolean(),
          quantity: anyQuantity,
        }),
        { maxLength: 10 },
      ),
    ),
    supply: fc.array(
      fc.record({ offset: dayOffset, quantity: anyQuantity, pending: fc.boolean(), source: fc.constantFrom('a', 'b') }),
      { maxLength: 25 },
    ),
    demand: fc.array(
      fc.record({ offset: dayOffset, quantity: anyQuantity, pending: fc.boolean(), source: fc.constantFrom('a', 'b') }),
      { maxLength: 25 },
    ),
    horizonDays: fc.integer({ min: 1, max: 40 }),
    scale: fc.constantFrom(0, 1, 2, 3, 3, 3, 4),
    safetyStock: fc.option(fc.oneof(quantity(6, 0), quantity(200)), { nil: undefined }),
    criticalDays: fc.option(fc.integer({ min: 0, max: 45 }), { nil: undefined }),
    stockoutThreshold: fc.option(fc.oneof(quantity(3, 0), quantity(50)), { nil: undefined }),
  })
  .map((r): Case => {
    const date = (offset: number) => naiveDate(r.d0 + offset)
    const flows = (rows: typeof r.supply): FlowRow[] =>
      rows.map((x) => ({
        date: date(x.offset),
        quantity: x.quantity,
        source: x.source,
        ...(x.pending ? { pending: true } : {}),
      }))
    const onHand = Array.isArray(r.onHand)
      ? r.onHand.map(
          (m): MovementRow =>
            m.offset === undefined
              ? m.nullDate
                ? { date: null, quantity: m.quantity }
                : { quantity: m.quantity }
              : { date: date(m.offset), quantity: m.quantity },
        )
      : r.onHand
    const options: NaiveOptions = { today: naiveDate(r.d0), horizonDays: r.horizonDays, scale: r.scale }
    if (r.safetyStock !== undefined) options.safetyStock = r.safetyStock
    if (r.criticalDays !== undefined) options.criticalDays = r.criticalDays
    if (r.stockoutThreshold !== undefined) options.stockoutThreshold = r.stockoutThreshold
    return { d0: r.d0, inputs: { onHand, supply: flows(r.supply), demand: flows(r.demand) }, options }
  })

describe('projectStock matches the naive reference', () => {
  it('on random inputs', () => {
    fc.assert(
      fc.property(caseArb, ({ inputs, options }) => {
        expect(projectStock(inputs, options)).toEqual(naiveProjectStock(inputs, options))
      }),
      { numRuns: RUNS },
    )
  })

  it('when the same options object is reused across different inputs', () => {
    const options = { today: '2026-11-22', horizonDays: 12, scale: 2, safetyStock: '3.5' }
    fc.assert(
      fc.property(caseArb, ({ inputs }) => {
        expect(projectStock(inputs, options)).toEqual(naiveProjectStock(inputs, options))
      }),
      { numRuns: RUNS },
    )
  })
})

describe('availabilityDate matches the naive reference', () => {
  it('for random quantities, both rules, with and without pending rows', () => {
    const opts = fc.record({
      rule: fc.constantFrom('promise', 'point') as fc.Arbitrary<'promise' | 'point'>,
      includePending: fc.boolean(),
    })
    fc.assert(
      fc.property(
        caseArb,
        fc.array(fc.tuple(fc.oneof(quantity(10, 0), quantity(3_000)), opts), { minLength: 1, maxLength: 8 }),
        (c, asks) => {
          const fast = projectStock(c.inputs, c.options)
          const naive = naiveProjectStock(c.inputs, c.options)
          for (const [qty, o] of asks as [DecimalInput, AvailabilityOptions][]) {
            expect(availabilityDate(fast, qty, o)).toEqual(naiveAvailabilityDate(naive, qty, o))
          }
          // Quantities at the exact balances are the edge cases.
          for (const day of naive.days) {
            for (const rule of ['promise', 'point'] as const) {
              expect(availabilityDate(fast, day.closing, { rule })).toEqual(
                naiveAvailabilityDate(naive, day.closing, { rule }),
              )
            }
          }
        },
      ),
      { numRuns: RUNS },
    )
  })
})

describe('decimals and dates against the reference', () => {
  it('parseDecimal rounds like exact rational arithmetic', () => {
    fc.assert(
      fc.property(quantity(1_000_000, 7), fc.integer({ min: 0, max: 6 }), (q, scale) => {
        expect(parseDecimal(q, 10 ** scale, scale)).toBe(Number(naiveScaled(q, scale)))
      }),
      { numRuns: RUNS },
    )
  })

  it('outputs print exactly and read back to the same scaled integer', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -999_999_999_999_999, max: 999_999_999_999_999 }),
        fc.integer({ min: 0, max: 9 }),
        (scaled, scale) => {
          const factor = 10 ** scale
          const x = toNumber(scaled, factor)
          expect(parseDecimal(x, factor, scale)).toBe(scaled)
          expect(naiveScaled(x, scale)).toBe(BigInt(scaled))
        },
      ),
      { numRuns: 2_000 },
    )
  })

  it('parseDate and formatDate agree with Date', () => {
    fc.assert(
      fc.property(fc.integer({ min: naiveDay('0001-01-01'), max: naiveDay('9999-12-31') }), (day) => {
        const iso = naiveDate(day)
        expect(formatDate(day)).toBe(iso)
        expect(parseDate(iso)).toBe(day)
      }),
      { numRuns: 2_000 },
    )
  })
})
