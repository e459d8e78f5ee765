import { describe, expect, it } from 'vitest'
import {
  availabilityDate,
  formatDate,
  formatDecimal,
  type Projection,
  parseDate,
  parseDecimal,
  projectStock,
  resolveProjectionOptions,
  todayIn,
  toNumber,
} from '../src/projection/index.js'

const D0 = '2026-11-22'
/** D0 + n days. */
function d(n: number): string {
  return formatDate(parseDate(D0) + n)
}
function closings(p: Projection): number[] {
  return p.days.map((x) => x.closing)
}

describe('projectStock: the day series', () => {
  it('computes opening, flows and closing day by day, and the derived fields', () => {
    const p = projectStock(
      {
        onHand: '10',
        supply: [{ date: d(2), quantity: '5' }],
        demand: [{ date: d(1), quantity: '12.5' }],
      },
      { today: D0, horizonDays: 5 },
    )
    expect(p.today).toBe(D0)
    expect(p.timeZone).toBe('UTC')
    expect(p.horizonDays).toBe(5)
    expect(p.scale).toBe(3)
    expect(p.days).toEqual([
      { date: d(0), opening: 10, movements: 0, supply: 0, demand: 0, closing: 10, closingWithPending: 10 },
      { date: d(1), opening: 10, movements: 0, supply: 0, demand: 12.5, closing: -2.5, closingWithPending: -2.5 },
      { date: d(2), opening: -2.5, movements: 0, supply: 5, demand: 0, closing: 2.5, closingWithPending: 2.5 },
      { date: d(3), opening: 2.5, movements: 0, supply: 0, demand: 0, closing: 2.5, closingWithPending: 2.5 },
      { date: d(4), opening: 2.5, movements: 0, supply: 0, demand: 0, closing: 2.5, closingWithPending: 2.5 },
    ])
    expect(p.stockToday).toBe(10)
    expect(p.minClosing7d).toBe(-2.5)
    expect(p.minClosing7dDate).toBe(d(1))
    expect(p.firstStockoutDate).toBe(d(1))
    expect(p.daysOfCover).toBe(1)
    expect(p.status).toBe('CRITICAL')
    expect(p.later).toEqual([])
  })

  it('defaults to 29 days, D0..D28', () => {
    const p = projectStock({ onHand: 3 }, { today: D0 })
    expect(p.days).toHaveLength(29)
    expect(p.days[28]?.date).toBe('2026-12-20')
    expect(p.status).toBe('OK')
    expect(p.firstStockoutDate).toBeNull()
    expect(p.daysOfCover).toBeNull()
  })

  it('walks month and year ends, and leap days', () => {
    const p = projectStock({ onHand: 0 }, { today: '2028-02-27', horizonDays: 4 })
    expect(p.days.map((x) => x.date)).toEqual(['2028-02-27', '2028-02-28', '2028-02-29', '2028-03-01'])
    const q = projectStock({ onHand: 0 }, { today: '2026-12-30', horizonDays: 3 })
    expect(q.days.map((x) => x.date)).toEqual(['2026-12-30', '2026-12-31', '2027-01-01'])
  })

  it('counts overdue rows on D0 and reports the firm ones', () => {
    const p = projectStock(
      {
        onHand: '10',
        supply: [
          { date: d(-2), quantity: '3' },
          { date: d(0), quantity: '1' },
        ],
        demand: [
          { date: d(-1), quantity: '4' },
          { date: d(-3), quantity: '100', pending: true },
        ],
      },
      { today: D0, horizonDays: 3 },
    )
    expect(p.overdueSupply).toBe(3)
    expect(p.overdueDemand).toBe(4)
    expect(p.supplyToday).toBe(4)
    expect(p.demandToday).toBe(4)
    expect(p.days[0]).toEqual({
      date: D0,
      opening: 10,
      movements: 0,
      supply: 4,
      demand: 4,
      closing: 10,
      closingWithPending: -90,
    })
    expect(p.status).toBe('OK')
  })

  it('keeps pending rows out of the firm series and in closingWithPending', () => {
    const p = projectStock(
      {
        onHand: '10',
        supply: [{ date: d(2), quantity: '50', pending: true }],
        demand: [
          { date: d(2), quantity: '20' },
          { date: d(1), quantity: '5', pending: true, source: 'quotations' },
        ],
      },
      { today: D0, horizonDays: 4 },
    )
    expect(closings(p)).toEqual([10, 10, -10, -10])
    expect(p.days.map((x) => x.closingWithPending)).toEqual([10, 5, 35, 35])
    expect(p.days[2]?.supply).toBe(0)
    expect(p.days[2]?.demand).toBe(20)
    expect(p.firstStockoutDate).toBe(d(2))
  })

  it('reads on-hand movements: undated and up to D0 make stockToday, later ones apply on their day', () => {
    const p = projectStock(
      {
        onHand: [
          { quantity: '100' },
          { date: null, quantity: 1 },
          { date: d(-5), quantity: '-30' },
          { date: d(0), quantity: '5' },
          { date: d(2), quantity: '-10' },
          { date: d(40), quantity: '7' },
        ],
      },
      { today: D0, horizonDays: 10 },
    )
    expect(p.stockToday).toBe(76)
    expect(p.days[0]).toMatchObject({ movements: 0, closing: 76 })
    expect(p.days[2]).toMatchObject({ opening: 76, movements: -10, closing: 66, closingWithPending: 66 })
    expect(p.later).toEqual([{ date: d(40), net: 7, netWithPending: 7 }])
  })

  it('keeps flows after the horizon in `later`, one entry per date, sorted', () => {
    const p = projectStock(
      {
        onHand: '1',
        supply: [
          { date: d(5), quantity: '10' },
          { date: d(5), quantity: '2', pending: true },
          { date: d(9), quantity: '3', pending: true },
        ],
        demand: [
          { date: d(5), quantity: '1' },
          { date: d(3), quantity: '4' },
        ],
      },
      { today: D0, horizonDays: 3 },
    )
    expect(closings(p)).toEqual([1, 1, 1])
    expect(p.later).toEqual([
      { date: d(3), net: -4, netWithPending: -4 },
      { date: d(5), net: 9, netWithPending: 11 },
      { date: d(9), net: 0, netWithPending: 3 },
    ])
  })

  it('sorts many later dates given in any order', () => {
    const offsets = Array.from({ length: 40 }, (_, i) => 45 - i) // 45, 44, ..., 6
    const p = projectStock(
      {
        onHand: '0',
        supply: offsets.map((k) => ({ date: d(k), quantity: k })),
        demand: offsets.map((k) => ({ date: d(k), quantity: '1', pending: true })),
      },
      { today: D0, horizonDays: 6 },
    )
    expect(p.later.map((l) => l.date)).toEqual(offsets.map((k) => d(k)).reverse())
    expect(p.later[0]).toEqual({ date: d(6), net: 6, netWithPending: 5 })
    expect(p.later[39]).toEqual({ date: d(45), net: 45, netWithPending: 44 })
  })

  it('returns a fresh object per call (the cache deep-freezes what it keeps)', () => {
    const inputs = { onHand: '1', demand: [{ date: d(40), quantity: 1 }] }
    const p = projectStock(inputs, { today: D0, horizonDays: 2 })
    const q = projectStock(inputs, { today: D0, horizonDays: 2 })
    expect(p).toEqual(q)
    expect(p).not.toBe(q)
    expect(p.days).not.toBe(q.days)
    expect(p.later).not.toBe(q.later)
  })
})

describe('projectStock: status, stock-out and the 7-day minimum', () => {
  const at = (k: number, qty: string, extra: object = {}) =>
    projectStock({ onHand: '10', demand: [{ date: d(k), quantity: qty }] }, { today: D0, ...extra })

  it('is CRITICAL for a stock-out within D0..D7 and ATTENTION for one later in the horizon', () => {
    expect(at(7, '11').status).toBe('CRITICAL')
    expect(at(8, '11').status).toBe('ATTENTION')
    expect(at(8, '11').firstStockoutDate).toBe(d(8))
    expect(at(8, '11').daysOfCover).toBe(8)
    expect(at(28, '11').status).toBe('ATTENTION')
    expect(at(29, '11').status).toBe('OK')
    expect(at(29, '11').later).toEqual([{ date: d(29), net: -11, netWithPending: -11 }])
  })

  it('uses criticalDays, clamped to the horizon', () => {
    expect(at(1, '11', { criticalDays: 0 }).status).toBe('ATTENTION')
    expect(at(0, '11', { criticalDays: 0 }).status).toBe('CRITICAL')
    expect(at(0, '11', { criticalDays: 0 }).daysOfCover).toBe(0)
    expect(at(10, '11', { criticalDays: 10 }).status).toBe('CRITICAL')
    expect(at(2, '11', { horizonDays: 3, criticalDays: 30 }).status).toBe('CRITICAL')
  })

  it('is ATTENTION when the 7-day minimum is below safetyStock', () => {
    expect(projectStock({ onHand: '10' }, { today: D0, safetyStock: '10.001' }).status).toBe('ATTENTION')
    expect(projectStock({ onHand: '10' }, { today: D0, safetyStock: 10 }).status).toBe('OK')
    const p = at(3, '4', { safetyStock: 7 })
    expect(p.minClosing7d).toBe(6)
    expect(p.safetyStock).toBe(7)
    expect(p.status).toBe('ATTENTION')
  })

  it('takes the 7-day minimum over D0..D7 only, at its first occurrence', () => {
    const p = at(8, '5', { safetyStock: 8 })
    expect(p.minClosing7d).toBe(10)
    expect(p.minClosing7dDate).toBe(D0)
    expect(p.status).toBe('OK')
    const q = projectStock(
      {
        onHand: '10',
        demand: [{ date: d(1), quantity: '5' }],
        supply: [{ date: d(3), quantity: '3' }],
      },
      { today: D0 },
    )
    expect(q.minClosing7d).toBe(5)
    expect(q.minClosing7dDate).toBe(d(1))
    const short = projectStock(
      { onHand: '1', demand: [{ date: d(2), quantity: '0.5' }] },
      { today: D0, horizonDays: 3 },
    )
    expect(short.minClosing7d).toBe(0.5)
    expect(short.minClosing7dDate).toBe(d(2))
  })

  it('uses stockoutThreshold for stock-outs', () => {
    const p = at(3, '6', { stockoutThreshold: '5' })
    expect(p.firstStockoutDate).toBe(d(3))
    expect(p.daysOfCover).toBe(3)
    expect(p.status).toBe('CRITICAL')
    expect(p.stockoutThreshold).toBe(5)
    expect(at(3, '5', { stockoutThreshold: '5' }).firstStockoutDate).toBeNull()
  })

  it('keeps negative values', () => {
    const p = projectStock({ onHand: '-3', supply: [{ date: d(1), quantity: '1' }] }, { today: D0, horizonDays: 2 })
    expect(closings(p)).toEqual([-3, -2])
    expect(p.daysOfCover).toBe(0)
    expect(p.firstStockoutDate).toBe(D0)
  })
})

describe('exact decimals', () => {
  it('adds 0.1 and 0.2 to exactly 0.3, from numbers and strings', () => {
    for (const [a, b] of [
      [0.1, 0.2],
      ['0.1', '0.2'],
    ] as const) {
      const p = projectStock({ onHand: a, supply: [{ date: D0, quantity: b }] }, { today: D0, horizonDays: 1 })
      expect(p.days[0]?.closing).toBe(0.3)
    }
    const many = projectStock(
      { onHand: 0, supply: Array.from({ length: 10 }, () => ({ date: D0, quantity: 0.1 })) },
      { today: D0, horizonDays: 1 },
    )
    expect(many.days[0]?.closing).toBe(1)
  })

  it('rounds half away from zero at scale', () => {
    const one = (q: string | number, scale: number) =>
      projectStock({ onHand: q }, { today: D0, horizonDays: 1, scale }).stockToday
    expect(one('0.005', 2)).toBe(0.01)
    expect(one('-0.005', 2)).toBe(-0.01)
    expect(one('0.0049', 2)).toBe(0)
    expect(one('-0.0049', 2)).toBe(0)
    expect(Object.is(one('-0.0049', 2), 0)).toBe(true)
    expect(one(1.005, 2)).toBe(1.01) // the decimal 1.005, not its binary neighbour 1.00499999...
    expect(one('2.5', 0)).toBe(3)
    expect(one('-2.5', 0)).toBe(-3)
    expect(one('123.456789', 9)).toBe(123.456789)
  })

  it('parses plain decimals', () => {
    expect(parseDecimal('12.5', 1000, 3)).toBe(12500)
    expect(parseDecimal(' -3 ', 1000, 3)).toBe(-3000)
    expect(parseDecimal('+.5', 1000, 3)).toBe(500)
    expect(parseDecimal('7.', 1000, 3)).toBe(7000)
    expect(parseDecimal('0012.500000', 1000, 3)).toBe(12500)
    expect(parseDecimal(-0, 1000, 3)).toBe(0)
    expect(Object.is(parseDecimal('-0', 1000, 3), 0)).toBe(true)
    expect(parseDecimal(1e-7, 1e9, 9)).toBe(100)
    expect(parseDecimal(5e-7, 1e6, 6)).toBe(1)
    expect(parseDecimal(-5e-7, 1e6, 6)).toBe(-1)
    expect(parseDecimal(4.9999999e-7, 1e6, 6)).toBe(0)
    expect(parseDecimal('999999999999.999', 1000, 3)).toBe(999_999_999_999_999)
  })

  it('formats and converts scaled integers', () => {
    expect(formatDecimal(12500, 3)).toBe('12.500')
    expect(formatDecimal(-5, 3)).toBe('-0.005')
    expect(formatDecimal(0, 0)).toBe('0')
    expect(formatDecimal(7, 0)).toBe('7')
    expect(formatDecimal(-123456789, 9)).toBe('-0.123456789')
    expect(toNumber(1, 10)).toBe(0.1)
    expect(toNumber(3, 10)).toBe(0.3)
  })
})

describe('D0 and time zones', () => {
  const instant = Date.parse('2026-11-22T23:30:00Z')
  const clock = { now: () => instant }

  it('picks D0 in the configured zone', () => {
    expect(projectStock({ onHand: 1 }, { clock, timeZone: 'Asia/Tokyo' }).today).toBe('2026-11-23')
    expect(projectStock({ onHand: 1 }, { clock, timeZone: 'America/Sao_Paulo' }).today).toBe('2026-11-22')
    expect(projectStock({ onHand: 1 }, { clock }).today).toBe('2026-11-22')
    expect(projectStock({ onHand: 1 }, { clock, timeZone: 'Asia/Tokyo', today: '2026-01-01' }).today).toBe('2026-01-01')
  })

  it('gives the day and when it ends', () => {
    expect(todayIn('Asia/Tokyo', instant)).toEqual({
      date: '2026-11-23',
      day: parseDate('2026-11-23'),
      endsAtMs: Date.parse('2026-11-23T15:00:00Z'),
    })
    expect(todayIn('America/Sao_Paulo', instant)).toEqual({
      date: '2026-11-22',
      day: parseDate('2026-11-22'),
      endsAtMs: Date.parse('2026-11-23T03:00:00Z'),
    })
    expect(todayIn('UTC', instant).endsAtMs).toBe(Date.parse('2026-11-23T00:00:00Z'))
    expect(todayIn('Asia/Kolkata', instant)).toMatchObject({
      date: '2026-11-23',
      endsAtMs: Date.parse('2026-11-23T18:30:00Z'),
    })
  })

  it('handles the 23-hour DST day (America/New_York, 2026-03-08)', () => {
    const tz = 'America/New_York'
    expect(todayIn(tz, Date.parse('2026-03-08T04:59:59.999Z'))).toMatchObject({
      date: '2026-03-07',
      endsAtMs: Date.parse('2026-03-08T05:00:00Z'),
    })
    for (const at of ['2026-03-08T05:00:00Z', '2026-03-08T06:59:00Z', '2026-03-08T12:00:00Z', '2026-03-09T03:59:59Z']) {
      expect(todayIn(tz, Date.parse(at))).toMatchObject({
        date: '2026-03-08',
        endsAtMs: Date.parse('2026-03-09T04:00:00Z'),
      })
    }
  })

  it('handles the 25-hour DST day (America/New_York, 2026-11-01)', () => {
    const tz = 'America/New_York'
    for (const at of ['2026-11-01T04:00:00Z', '2026-11-01T05:30:00Z', '2026-11-01T06:30:00Z', '2026-11-02T04:59:59Z']) {
      expect(todayIn(tz, Date.parse(at))).toMatchObject({
        date: '2026-11-01',
        endsAtMs: Date.parse('2026-11-02T05:00:00Z'),
      })
    }
    expect(todayIn(tz, Date.parse('2026-11-01T03:59:59Z')).endsAtMs).toBe(Date.parse('2026-11-01T04:00:00Z'))
  })

  it('handles a DST change that skips midnight (America/Santiago, 2026-09-06 starts at 01:00)', () => {
    const tz = 'America/Santiago'
    const ends = Date.parse('2026-09-06T04:00:00Z')
    expect(todayIn(tz, Date.parse('2026-09-05T12:00:00Z'))).toMatchObject({ date: '2026-09-05', endsAtMs: ends })
    expect(todayIn(tz, ends - 1).date).toBe('2026-09-05')
    expect(todayIn(tz, ends).date).toBe('2026-09-06')
  })

  it('follows the clock across midnight and back', () => {
    let now = Date.parse('2026-11-22T23:59:59.999Z')
    const moving = { now: () => now }
    const options = { clock: moving }
    expect(projectStock({ onHand: 1 }, options).today).toBe('2026-11-22')
    now += 1
    expect(projectStock({ onHand: 1 }, options).today).toBe('2026-11-23')
    now -= 2 * 86_400_000
    expect(projectStock({ onHand: 1 }, options).today).toBe('2026-11-21')
  })

  it('sees changes to a reused options object', () => {
    const options: { today: string; horizonDays: number } = { today: D0, horizonDays: 2 }
    expect(projectStock({ onHand: 1 }, options).today).toBe(D0)
    options.today = '2026-11-25'
    options.horizonDays = 3
    const p = projectStock({ onHand: 1 }, options)
    expect(p.today).toBe('2026-11-25')
    expect(p.days).toHaveLength(3)
  })

  it('resolves options with their defaults', () => {
    expect(resolveProjectionOptions()).toMatchObject({
      today: undefined,
      timeZone: 'UTC',
      horizonDays: 29,
      scale: 3,
      factor: 1000,
      safetyStock: 0,
      criticalDays: 7,
      stockoutThreshold: 0,
    })
    expect(resolveProjectionOptions({ today: '2026-11-22', scale: 2, safetyStock: '1.005' })).toMatchObject({
      today: '2026-11-22',
      todayDay: parseDate('2026-11-22'),
      safetyStock: 1.01,
      safetyStockScaled: 101,
    })
  })
})

describe('dates', () => {
  it('parses and formats day numbers', () => {
    expect(parseDate('1970-01-01')).toBe(0)
    expect(parseDate('1970-01-02')).toBe(1)
    expect(parseDate('1969-12-31')).toBe(-1)
    expect(parseDate('2000-02-29')).toBe(Date.UTC(2000, 1, 29) / 86_400_000)
    expect(parseDate('2024-02-29')).toBe(Date.UTC(2024, 1, 29) / 86_400_000)
    expect(formatDate(0)).toBe('1970-01-01')
    expect(formatDate(-1)).toBe('1969-12-31')
    for (let day = parseDate('0001-01-01'); day <= parseDate('9999-12-31'); day += 997) {
      const iso = new Date(day * 86_400_000).toISOString().slice(0, 10)
      expect(formatDate(day)).toBe(iso)
      expect(parseDate(iso)).toBe(day)
    }
  })
})

describe('availabilityDate', () => {
  // closings D0..D4: 10, 2, 2, 22, 7; later: D10 -5 -> 2, D15 +30 -> 32
  const p = projectStock(
    {
      onHand: '10',
      supply: [
        { date: d(3), quantity: '20' },
        { date: d(15), quantity: '30' },
      ],
      demand: [
        { date: d(1), quantity: '8' },
        { date: d(4), quantity: '15' },
        { date: d(10), quantity: '5' },
      ],
    },
    { today: D0, horizonDays: 5 },
  )

  it('promise: the first day from which the balance never falls below qty', () => {
    expect(closings(p)).toEqual([10, 2, 2, 22, 7])
    expect(availabilityDate(p, 2)).toEqual({ date: D0, dayIndex: 0, rule: 'promise', reason: null })
    expect(availabilityDate(p, '3')).toEqual({ date: d(15), dayIndex: 15, rule: 'promise', reason: null })
    expect(availabilityDate(p, '32')).toEqual({ date: d(15), dayIndex: 15, rule: 'promise', reason: null })
    expect(availabilityDate(p, '32.001')).toEqual({
      date: null,
      dayIndex: null,
      rule: 'promise',
      reason: 'never-reached',
    })
  })

  it('point: the first day the balance reaches qty', () => {
    const o = { rule: 'point' } as const
    expect(availabilityDate(p, 3, o)).toEqual({ date: D0, dayIndex: 0, rule: 'point', reason: null })
    expect(availabilityDate(p, 11, o)).toEqual({ date: d(3), dayIndex: 3, rule: 'point', reason: null })
    expect(availabilityDate(p, 25, o)).toEqual({ date: d(15), dayIndex: 15, rule: 'point', reason: null })
    expect(availabilityDate(p, 40, o)).toEqual({ date: null, dayIndex: null, rule: 'point', reason: 'never-reached' })
  })

  it('reports not-sustained when the quantity is reached but a later day dips below it', () => {
    const q = projectStock({ onHand: '10', demand: [{ date: d(5), quantity: '8' }] }, { today: D0, horizonDays: 3 })
    expect(availabilityDate(q, 5)).toEqual({ date: null, dayIndex: null, rule: 'promise', reason: 'not-sustained' })
    expect(availabilityDate(q, 5, { rule: 'point' })).toMatchObject({ date: D0, dayIndex: 0 })
    expect(availabilityDate(q, 2)).toMatchObject({ date: D0, dayIndex: 0 })
  })

  it('answers D0 for qty <= 0', () => {
    const short = projectStock({ onHand: '-10' }, { today: D0, horizonDays: 2 })
    expect(availabilityDate(short, 0)).toEqual({ date: D0, dayIndex: 0, rule: 'promise', reason: null })
    expect(availabilityDate(short, '-3', { rule: 'point' })).toEqual({
      date: D0,
      dayIndex: 0,
      rule: 'point',
      reason: null,
    })
    expect(availabilityDate(short, '0.0004')).toMatchObject({ date: D0, dayIndex: 0 }) // rounds to 0 at scale 3
  })

  it('counts pending rows with includePending', () => {
    const q = projectStock(
      { onHand: '0', supply: [{ date: d(1), quantity: '10', pending: true }] },
      { today: D0, horizonDays: 3 },
    )
    expect(availabilityDate(q, 5)).toMatchObject({ date: null, reason: 'never-reached' })
    expect(availabilityDate(q, 5, { includePending: true })).toMatchObject({ date: d(1), dayIndex: 1 })
    const r = projectStock(
      { onHand: '0', supply: [{ date: d(7), quantity: '10', pending: true }] },
      { today: D0, horizonDays: 3 },
    )
    expect(availabilityDate(r, 5, { includePending: true })).toMatchObject({ date: d(7), dayIndex: 7 })
    expect(availabilityDate(r, 5)).toMatchObject({ date: null, reason: 'never-reached' })
  })

  it('compares exactly', () => {
    const q = projectStock({ onHand: 0.1, supply: [{ date: d(1), quantity: 0.2 }] }, { today: D0, horizonDays: 2 })
    expect(availabilityDate(q, 0.3)).toMatchObject({ date: d(1), dayIndex: 1 })
    expect(availabilityDate(q, '0.3004')).toMatchObject({ date: d(1), dayIndex: 1 })
    expect(availabilityDate(q, '0.3005')).toMatchObject({ date: null, reason: 'never-reached' })
  })

  it('works on a projection that went through JSON', () => {
    const copy = JSON.parse(JSON.stringify(p)) as Projection
    expect(availabilityDate(copy, '3')).toEqual(availabilityDate(p, '3'))
  })
})
