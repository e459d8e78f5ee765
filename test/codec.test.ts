import assert from 'node:assert'
import { describe, expect, it } from 'vitest'
import type { StockProjection } from '../src/cache/types.js'
import { StockcastError } from '../src/errors.js'
import { projectStock } from '../src/projection/project.js'
import type { FlowRow, MovementRow } from '../src/projection/types.js'
import { projectionCodec } from '../src/stock/codec.js'
import { freezeProjection } from '../src/stock/projection-loader.js'
import { addDays, mulberry32 } from './helpers/fixtures.js'

/** Every own property equal by Object.is (so -0, NaN and key sets count), recursively. */
function same(a: unknown, b: unknown, path = '$'): string | null {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) {
    return Object.is(a, b) ? null : `${path}: ${String(a)} vs ${String(b)}`
  }
  const ka = Object.keys(a)
  const kb = Object.keys(b)
  if (ka.length !== kb.length || ka.some((k) => !kb.includes(k))) return `${path}: keys ${ka} vs ${kb}`
  for (const k of ka) {
    const d = same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`)
    if (d !== null) return d
  }
  return null
}

/** A decimal of `scale` places with up to `digits` significant digits, maybe negative. */
function decimal(rnd: () => number, scale: number, digits: number): string {
  const n = 1 + Math.floor(rnd() * Math.max(1, digits))
  let s = ''
  for (let i = 0; i < n; i++) s += String(Math.floor(rnd() * 10))
  s = s.replace(/^0+(?=\d)/, '')
  const neg = rnd() < 0.3 ? '-' : ''
  if (scale === 0 || s.length <= scale) return `${neg}${s}`
  return `${neg}${s.slice(0, s.length - scale)}.${s.slice(s.length - scale)}`
}

function randomProjection(seed: number): StockProjection {
  const rnd = mulberry32(seed)
  const scale = Math.floor(rnd() * 10)
  const horizonDays = [1, 7, 29, 60][Math.floor(rnd() * 4)]!
  const today = addDays('2026-11-27', Math.floor(rnd() * 800) - 400)
  // The calculator's exact range is 15 significant digits; leave room for sums of a few rows.
  const digits = rnd() < 0.3 ? 13 - scale : Math.min(6, 13 - scale)
  const flow = (): FlowRow => ({
    date: addDays(today, Math.floor(rnd() * (horizonDays + 20)) - 10),
    quantity: decimal(rnd, scale, digits),
    ...(rnd() < 0.2 ? { pending: true } : {}),
  })
  const movement = (): MovementRow => ({
    quantity: decimal(rnd, scale, digits),
    ...(rnd() < 0.5 ? { date: addDays(today, Math.floor(rnd() * (horizonDays + 5)) - 5) } : {}),
  })
  const p = projectStock(
    {
      onHand: Array.from({ length: Math.floor(rnd() * 4) }, movement),
      supply: Array.from({ length: Math.floor(rnd() * 8) }, flow),
      demand: Array.from({ length: Math.floor(rnd() * 10) }, flow),
    },
    {
      today,
      horizonDays,
      scale,
      timeZone: rnd() < 0.5 ? 'UTC' : 'America/Sao_Paulo',
      safetyStock: decimal(rnd, scale, 4),
      ...(rnd() < 0.3 ? { stockoutThreshold: decimal(rnd, scale, 3) } : {}),
    },
  )
  const location = rnd() < 0.3 ? `WH-${Math.floor(rnd() * 9)}` : null
  const product = `SKU-${seed}-ü€𝄞`
  return freezeProjection({
    ...p,
    key: location === null ? product : `${product}\u001f${location}`,
    product,
    location,
    version: 1795809833436000 + seed,
    computedAt: 1795809833436 + seed,
    stale: false,
  })
}

describe('projectionCodec', () => {
  it('round-trips 3 000 random projections exactly, each in the compact form', () => {
    let compactBytes = 0
    let jsonBytes = 0
    for (let seed = 1; seed <= 3000; seed++) {
      const p = randomProjection(seed)
      const text = projectionCodec.encode(p)
      expect(text.startsWith('p1'), `seed ${seed} fell back to JSON`).toBe(true)
      // The day series as events (the calculator's series follow the rules `sparse` relies on).
      expect(JSON.parse(text.slice(2)).length, `seed ${seed} wrote the whole series`).toBe(25)
      const back = projectionCodec.decode<StockProjection>(text)
      const diff = same(back, p)
      expect(diff, `seed ${seed}`).toBeNull()
      expect(Object.isFrozen(back) && Object.isFrozen(back.days) && Object.isFrozen(back.days[0])).toBe(true)
      expect(JSON.stringify(back)).toBe(JSON.stringify(p))
      compactBytes += text.length
      jsonBytes += JSON.stringify(p).length
    }
    // Much smaller than JSON.
    expect(compactBytes).toBeLessThan(jsonBytes / 4)
  })

  it('edge cases: negatives, 15 significant digits, pending series, overdue rows, a location, a stale flag', () => {
    const today = '2026-11-27'
    const p = projectStock(
      {
        onHand: [{ quantity: '-123456789012.345' }, { date: addDays(today, 3), quantity: '0.001' }],
        supply: [
          { date: addDays(today, -4), quantity: '999999999999.999' },
          { date: addDays(today, 2), quantity: '5', pending: true },
          { date: addDays(today, 40), quantity: '7.5' },
        ],
        demand: [
          { date: addDays(today, -1), quantity: '0.003' },
          { date: addDays(today, 1), quantity: '-2.5' },
          { date: addDays(today, 35), quantity: '1', pending: true },
        ],
      },
      { today, scale: 3, safetyStock: '-1.5' },
    )
    expect(p.overdueSupply).not.toBe(0)
    expect(p.later.length).toBeGreaterThan(0)
    for (const stale of [false, true]) {
      const v = freezeProjection({
        ...p,
        key: 'A\u001fWH 1',
        product: 'A',
        location: 'WH 1',
        version: 2 ** 52,
        computedAt: 1.5,
        stale,
      })
      const text = projectionCodec.encode(v)
      expect(text.startsWith('p1')).toBe(true)
      expect(same(projectionCodec.decode(text), v)).toBeNull()
    }
  })

  it('a day series that does not follow the calculator rules is written whole, and reads back equal', () => {
    const p = randomProjection(21)
    // An opening that is not the day before's closing (a hand-made value).
    const days = p.days.map((d, i) =>
      i === p.days.length - 1 ? { ...d, opening: d.opening + 1, closing: d.closing + 1 } : d,
    )
    const odd = { ...p, horizonDays: p.days.length, days }
    const text = projectionCodec.encode(odd)
    expect(text.startsWith('p1')).toBe(true)
    expect(JSON.parse(text.slice(2)).length).toBe(p.days.length > 1 ? 24 : 25)
    expect(same(projectionCodec.decode(text), odd)).toBeNull()
  })

  it('a value that is not exactly a projection is written as JSON and reads back equal', () => {
    const p = randomProjection(7)
    const cases: unknown[] = [
      // A quantity that is no decimal of 9 places or fewer: not compact, but exact as JSON.
      { ...p, stockToday: 0.1 + 0.2 },
      // An extra field.
      { ...p, note: 'x' },
      // Days that are not D0..D(n-1).
      { ...p, days: p.days.map((d, i) => (i === 0 ? { ...d, date: '2000-01-01' } : d)) },
      { hello: 'world', n: 1.25, list: [1, 2, 3] },
      'text',
      42,
      null,
      [1, 'two'],
    ]
    for (const [i, v] of cases.entries()) {
      const text = projectionCodec.encode(v)
      expect(text.startsWith('p1'), `case ${i}`).toBe(false)
      expect(same(projectionCodec.decode(text), v)).toBeNull()
    }
    // -0 has no compact form (and JSON has none either: it reads back as 0, as JSON does).
    const negZero = { ...p, stockToday: -0 }
    expect(projectionCodec.encode(negZero).startsWith('p1')).toBe(false)
  })

  it('a decoded projection builds its days on first read, and is still an ordinary frozen value', () => {
    for (const seed of [1, 2, 7, 40]) {
      const v = randomProjection(seed)
      const text = projectionCodec.encode(v)
      expect(text.startsWith('p1')).toBe(true)
      const d = projectionCodec.decode(text)
      // An own, enumerable getter: copies, JSON, clones and deep equality see the array.
      expect(typeof Object.getOwnPropertyDescriptor(d, 'days')?.get).toBe('function')
      expect(Object.keys(d)).toEqual(Object.keys(v))
      expect(JSON.stringify(d)).toBe(JSON.stringify(v))
      expect(same({ ...d }, v)).toBeNull()
      expect(same(structuredClone(d), v)).toBeNull()
      assert.deepStrictEqual(d, v)
      expect(d.days).toBe(d.days)
      expect(Object.isFrozen(d)).toBe(true)
      expect(Object.isFrozen(d.days)).toBe(true)
      expect(d.days.every((day) => Object.isFrozen(day))).toBe(true)
      expect(() => {
        ;(d as { stockToday: number }).stockToday = 1
      }).toThrow(TypeError)
    }
  })

  it('day events that could not expand are refused when decoded, not when the days are read', () => {
    const v = randomProjection(9)
    const text = projectionCodec.encode(v)
    const a = JSON.parse(text.slice(2)) as unknown[]
    expect(a).toHaveLength(25)
    const n = a[5] as number
    const withEvents = (events: number[], opening = a[22]) => {
      const b = [...a]
      b[22] = opening
      b[23] = events
      return `p1${JSON.stringify(b)}`
    }
    for (const bad of [
      withEvents([3, 1, 0, 0, 0, 2, 1, 0, 0, 0]), // out of day order
      withEvents([1, 1, 0, 0, 0, 1, 1, 0, 0, 0]), // the same day twice
      withEvents([n, 1, 0, 0, 0]), // past the horizon
      withEvents([-1, 1, 0, 0, 0]),
      withEvents([0, 1.5, 0, 0, 0]), // not an integer
      withEvents([0, 1, 0, 0]), // not groups of five
      withEvents([0, 2 ** 52, 0, 0, 0, 1, 2 ** 52, 0, 0, 0]), // a closing past 2^53
      withEvents([], 1.5), // D0's opening not an integer
    ]) {
      expect(() => projectionCodec.decode(bad), bad).toThrow(StockcastError)
    }
    expect(projectionCodec.decode(withEvents([0, 1, 0, 0, 0], 0)).days[0]!.closing).toBe(1 / 10 ** v.scale)
  })

  it('reads the JSON a store wrote before the compact form', () => {
    const p = randomProjection(11)
    expect(same(projectionCodec.decode(JSON.stringify(p)), JSON.parse(JSON.stringify(p)))).toBeNull()
  })

  it('garbage is a StockcastError, not a value', () => {
    for (const t of [
      'p1',
      'p1[',
      'p1[1,2]',
      'p1{"a":1}',
      '{not json',
      '',
      'p1[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24]',
    ]) {
      expect(() => projectionCodec.decode(t), JSON.stringify(t)).toThrow(StockcastError)
    }
    const good = projectionCodec.encode(randomProjection(3))
    // A corrupted day quantity or header is refused, not read as NaN.
    expect(() => projectionCodec.decode(good.replace(/,\[(-?\d+),/, ',["x",'))).toThrow(StockcastError)
    expect(() => projectionCodec.decode(good.replace(/"(OK|ATTENTION|CRITICAL)",(-?\d+)/, '"$1","7"'))).toThrow(
      StockcastError,
    )
    expect(() => projectionCodec.encode(undefined)).toThrow(StockcastError)
    // A D0 that is no date: written as JSON, not refused.
    const p = randomProjection(5)
    expect(projectionCodec.encode({ ...p, today: 'someday' }).startsWith('{')).toBe(true)
  })
})
