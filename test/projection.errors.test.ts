import { describe, expect, it } from 'vitest'
import { InvalidInputError } from '../src/errors.js'
import {
  assertTimeZone,
  availabilityDate,
  type DecimalInput,
  type ProjectionInputs,
  type ProjectionOptions,
  parseDate,
  parseDecimal,
  projectStock,
  todayIn,
} from '../src/projection/index.js'

const today = '2026-11-22'

/** Runs fn, expects an InvalidInputError, and returns it. */
function invalid(fn: () => unknown): InvalidInputError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidInputError)
    const e = err as InvalidInputError
    expect(e.code).toBe('E_INVALID_INPUT')
    expect(e.name).toBe('InvalidInputError')
    return e
  }
  throw new Error('expected an InvalidInputError, nothing was thrown')
}

const project = (inputs: unknown, options: ProjectionOptions = { today }) =>
  projectStock(inputs as ProjectionInputs, options)

describe('bad quantities', () => {
  it.each([
    [Number.NaN, 'NaN'],
    ['abc', '"abc"'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
    [Number.NEGATIVE_INFINITY, '-Infinity'],
    ['', '""'],
    ['   ', '"   "'],
    ['NaN', '"NaN"'],
    ['1e5', '"1e5"'],
    ['1,5', '"1,5"'],
    ['1.2.3', '"1.2.3"'],
    ['-', '"-"'],
    ['.', '"."'],
    ['--1', '"--1"'],
    ['0x10', '"0x10"'],
    [null, 'null'],
    [undefined, 'undefined'],
    [{}, 'an object'],
  ])('rejects onHand %s', (value, shown) => {
    const e = invalid(() => project({ onHand: value }))
    expect(e.message).toContain(shown)
    expect(e.message).toContain('onHand')
  })

  it('names the row, field and source', () => {
    const e = invalid(() =>
      project({
        onHand: 1,
        supply: [
          { date: today, quantity: '1' },
          { date: today, quantity: 'abc', source: 'production_schedule' },
        ],
      }),
    )
    expect(e.message).toContain('supply[1].quantity')
    expect(e.message).toContain('"abc"')
    expect(e.message).toContain('production_schedule')
    expect(e.source).toBe('production_schedule')

    const m = invalid(() => project({ onHand: [{ quantity: '1' }, { date: today, quantity: Number.NaN }] }))
    expect(m.message).toContain('onHand[1].quantity')
    expect(m.message).toContain('NaN')

    const q = invalid(() => project({ onHand: 1, demand: [{ date: today, quantity: Number.POSITIVE_INFINITY }] }))
    expect(q.message).toContain('demand[0].quantity')
    expect(q.message).toContain('Infinity')
  })

  it('names the product when parseDecimal is given one', () => {
    const e = invalid(() =>
      parseDecimal('x1', 1000, 3, { productId: 'SKU-1', source: 'order_lines', field: 'open_qty' }),
    )
    expect(e.message).toContain('"x1"')
    expect(e.message).toContain('SKU-1')
    expect(e.message).toContain('order_lines')
    expect(e.message).toContain('open_qty')
    expect(e.productId).toBe('SKU-1')
  })

  it('rejects values beyond the exact range', () => {
    const big = invalid(() => project({ onHand: '1000000000000' }))
    expect(big.message).toContain('"1000000000000"')
    expect(big.message).toContain('exceeds the exact range at scale 3')
    invalid(() => project({ onHand: 1e15 }))
    invalid(() => project({ onHand: '1' }, { today, scale: 9, safetyStock: '1000000' }))
    expect(project({ onHand: '999999' }, { today, scale: 9, horizonDays: 1 }).stockToday).toBe(999999)

    const sum = invalid(() =>
      project({ onHand: '999999999999', supply: [{ date: '2026-11-23', quantity: '999999999999' }] }),
    )
    expect(sum.message).toContain('exceeds the exact range at scale 3')
    const rows = invalid(() =>
      project({ onHand: [{ quantity: '600000000000' }, { quantity: '600000000000' }, { quantity: '-600000000000' }] }),
    )
    expect(rows.message).toContain('exceeds the exact range')
  })
})

describe('bad dates', () => {
  it.each([
    ['2026-02-30', '"2026-02-30"'],
    ['2025-02-29', '"2025-02-29"'],
    ['2100-02-29', '"2100-02-29"'],
    ['2026-13-01', '"2026-13-01"'],
    ['2026-00-10', '"2026-00-10"'],
    ['2026-04-31', '"2026-04-31"'],
    ['2026-1-5', '"2026-1-5"'],
    ['2026-01-05T00:00:00Z', '"2026-01-05T00:00:00Z"'],
    ['26-01-05', '"26-01-05"'],
    ['', '""'],
    [undefined, 'undefined'],
    [20260105, '20260105'],
    [new Date('2026-01-05T00:00:00Z'), 'Date(2026-01-05T00:00:00.000Z)'],
  ])('rejects a row dated %s', (date, shown) => {
    const e = invalid(() => project({ onHand: 1, demand: [{ date, quantity: 1, source: 'order_lines' }] }))
    expect(e.message).toContain(shown)
    expect(e.message).toContain('demand[0].date')
    expect(e.message).toContain('order_lines')
  })

  it('accepts real leap days', () => {
    expect(() => parseDate('2024-02-29')).not.toThrow()
    expect(() => parseDate('2000-02-29')).not.toThrow()
    const e = invalid(() => parseDate('2026-02-30'))
    expect(e.message).toContain('no such day')
  })

  it('rejects a bad dated movement', () => {
    const e = invalid(() => project({ onHand: [{ date: '2026/11/22', quantity: 1 }] }))
    expect(e.message).toContain('onHand[0].date')
    expect(e.message).toContain('"2026/11/22"')
  })
})

describe('bad options', () => {
  it.each([
    [{ horizonDays: 0 }, 'horizonDays', '0'],
    [{ horizonDays: -1 }, 'horizonDays', '-1'],
    [{ horizonDays: 1.5 }, 'horizonDays', '1.5'],
    [{ horizonDays: 3661 }, 'horizonDays', '3661'],
    [{ horizonDays: Number.NaN }, 'horizonDays', 'NaN'],
    [{ horizonDays: '29' }, 'horizonDays', '"29"'],
    [{ scale: -1 }, 'scale', '-1'],
    [{ scale: 10 }, 'scale', '10'],
    [{ scale: 2.5 }, 'scale', '2.5'],
    [{ criticalDays: -1 }, 'criticalDays', '-1'],
    [{ criticalDays: 0.5 }, 'criticalDays', '0.5'],
    [{ safetyStock: 'abc' }, 'safetyStock', '"abc"'],
    [{ stockoutThreshold: Number.NaN }, 'stockoutThreshold', 'NaN'],
    [{ today: '2026-02-30' }, 'today', '"2026-02-30"'],
    [{ today: '22/11/2026' }, 'today', '"22/11/2026"'],
    [{ timeZone: 'Mars/Olympus_Mons' }, 'timeZone', '"Mars/Olympus_Mons"'],
    [{ timeZone: '' }, 'timeZone', '""'],
    [{ timeZone: 3 }, 'timeZone', '3'],
    [{ clock: {} }, 'clock', 'an object'],
  ])('rejects %o', (options, option, shown) => {
    const e = invalid(() => project({ onHand: 1 }, { today, ...options } as ProjectionOptions))
    expect(e.option).toBe(option)
    expect(e.message).toContain(option)
    expect(e.message).toContain(shown)
  })

  it('rejects a clock that returns no time', () => {
    const e = invalid(() => project({ onHand: 1 }, { clock: { now: () => Number.NaN } }))
    expect(e.message).toContain('NaN')
  })

  it('rejects unknown time zones in todayIn and assertTimeZone', () => {
    expect(invalid(() => todayIn('Nope/Zone', 0)).message).toContain('"Nope/Zone"')
    expect(invalid(() => assertTimeZone('Europe/Atlantis')).message).toContain('"Europe/Atlantis"')
    expect(() => assertTimeZone('Europe/Lisbon')).not.toThrow()
  })
})

describe('bad shapes', () => {
  it('rejects inputs that are not objects, and rows that are not rows', () => {
    invalid(() => project(null))
    invalid(() => project('10'))
    expect(invalid(() => project({ onHand: 1, supply: 'rows' })).message).toContain('supply')
    expect(invalid(() => project({ onHand: 1, demand: [null] })).message).toContain('demand[0]')
    expect(invalid(() => project({ onHand: [42] })).message).toContain('onHand[0]')
  })

  it('leaves no state behind after an error', () => {
    invalid(() =>
      project({
        onHand: 1,
        supply: [
          { date: '2026-11-23', quantity: 5 },
          { date: '2027-11-23', quantity: 5 },
          { date: '2026-11-23', quantity: 'x' },
        ],
      }),
    )
    const p = project({ onHand: 1 }, { today, horizonDays: 3 })
    expect(p.days.map((d) => d.closing)).toEqual([1, 1, 1])
    expect(p.later).toEqual([])
  })
})

describe('availabilityDate errors', () => {
  const p = projectStock({ onHand: 1 }, { today, horizonDays: 2 })
  it.each([
    ['abc', '"abc"'],
    [Number.NaN, 'NaN'],
    ['', '""'],
  ])('rejects qty %s', (qty, shown) => {
    const e = invalid(() => availabilityDate(p, qty as DecimalInput))
    expect(e.message).toContain(shown)
    expect(e.message).toContain('qty')
  })

  it('rejects bad options and projections', () => {
    const e = invalid(() => availabilityDate(p, 1, { rule: 'soon' as 'point' }))
    expect(e.option).toBe('rule')
    expect(e.message).toContain('"soon"')
    invalid(() => availabilityDate(null as never, 1))
    invalid(() => availabilityDate({ ...p, days: [] }, 1))
    invalid(() => availabilityDate({ ...p, days: [{ ...p.days[0], closing: 'x' }] } as never, 1))
  })
})
