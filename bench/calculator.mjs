// The exact calculator: projectStock on dated decimal rows, against a naive float loop over the same rows.

import { projectStock } from 'stockcast'
import { Bench } from 'tinybench'
import { addDays, fmtInt, fmtRatio, isMain, medianOpsPerSec, printTable, rme, rng, verdict } from './lib.mjs'

const TODAY = '2025-03-10'
const HORIZON = 29
const TARGET = 200_000
/** Calls per tinybench sample (same for the calculator and the naive loop). */
const BATCH = 20

/** `rows` dated rows, half supply, half demand: decimal strings, dates spread over D0-3..D0+35. */
export function makeInputs(rows, seed = 42) {
  const rand = rng(seed)
  const half = rows / 2
  const flow = () =>
    Array.from({ length: half }, (_, i) => ({
      // Evenly spread offsets (-3..35), then a seeded jitter of a day, so some rows are overdue and some late.
      date: addDays(TODAY, Math.min(35, -3 + Math.floor((i * 39) / half) + (rand() < 0.5 ? 0 : 1))),
      quantity: (rand() * 100).toFixed(3),
    }))
  return { onHand: '1234.5', supply: flow(), demand: flow() }
}

/** Day index of each date string of the horizon, built once per (today, horizon): the naive loop's calendar. */
const calendars = new Map()
function calendarOf(today, horizonDays) {
  const id = `${today}/${horizonDays}`
  let c = calendars.get(id)
  if (c === undefined) {
    const index = new Map(Array.from({ length: horizonDays }, (_, i) => [addDays(today, i), i]))
    c = { index, end: addDays(today, horizonDays) }
    calendars.set(id, c)
  }
  return c
}

/**
 * The naive baseline: floats, parseFloat, per-day sums, running closing, 7-day minimum, first stock-out.
 * Dates are looked up in a calendar built once (ISO dates compare as strings: before D0 counts on D0, from the
 * end of the horizon on is skipped), so the loop is close to the least work the figures need.
 */
export function naiveProjection(inputs, today, horizonDays) {
  const { index, end } = calendarOf(today, horizonDays)
  const delta = new Float64Array(horizonDays)
  for (const r of inputs.supply) {
    if (r.date < today) delta[0] += parseFloat(r.quantity)
    else if (r.date < end) delta[index.get(r.date)] += parseFloat(r.quantity)
  }
  for (const r of inputs.demand) {
    if (r.date < today) delta[0] -= parseFloat(r.quantity)
    else if (r.date < end) delta[index.get(r.date)] -= parseFloat(r.quantity)
  }
  let closing = parseFloat(inputs.onHand)
  let min7 = Number.POSITIVE_INFINITY
  let stockout = -1
  for (let d = 0; d < horizonDays; d++) {
    closing += delta[d]
    if (d <= 7 && closing < min7) min7 = closing
    if (stockout < 0 && closing < 0) stockout = d
  }
  return { closing, min7, stockout }
}

export async function main({ time = 1000, warmupTime = 250 } = {}) {
  console.log(`## calculator: projectStock(inputs, { today, horizonDays: ${HORIZON} }), onHand "1234.5"`)
  console.log('rows: half supply, half demand, decimal strings ("12.345"), dated D0-3..D0+35')

  let sink = 0
  const bench = new Bench({ name: 'calculator', time, warmupTime, warmup: true, throws: true })
  const sizes = [10, 50, 200]
  const sharedOptions = { today: TODAY, horizonDays: HORIZON }
  for (const rows of sizes) {
    const inputs = makeInputs(rows)
    // Sanity check before timing: both see the same rows and agree on the last closing (to float precision).
    const exact = projectStock(inputs, { today: TODAY, horizonDays: HORIZON })
    const naive = naiveProjection(inputs, TODAY, HORIZON)
    const last = exact.days[HORIZON - 1].closing
    if (Math.abs(last - naive.closing) > 1e-6) {
      throw new Error(`${rows} rows: calculator closing ${last} differs from the naive float sum ${naive.closing}`)
    }
    bench.add(`projectStock ${rows} rows`, () => {
      for (let i = 0; i < BATCH; i++) sink += projectStock(inputs, { today: TODAY, horizonDays: HORIZON }).days.length
    })
    if (rows === 50) {
      bench.add(`projectStock ${rows} rows, reused options object`, () => {
        for (let i = 0; i < BATCH; i++) sink += projectStock(inputs, sharedOptions).days.length
      })
    }
    bench.add(`naive float loop ${rows} rows`, () => {
      for (let i = 0; i < BATCH; i++) sink += naiveProjection(inputs, TODAY, HORIZON).stockout
    })
  }
  await bench.run()

  const ops = new Map(bench.tasks.map((t) => [t.name, medianOpsPerSec(t, BATCH)]))
  const rmeOf = new Map(bench.tasks.map((t) => [t.name, rme(t)]))
  const rows = []
  for (const n of sizes) {
    const calc = ops.get(`projectStock ${n} rows`)
    const naive = ops.get(`naive float loop ${n} rows`)
    rows.push([
      `projectStock ${n} rows`,
      fmtInt(calc),
      `±${rmeOf.get(`projectStock ${n} rows`).toFixed(1)}%`,
      fmtRatio(calc / naive),
      n === 50 ? `>= ${fmtInt(TARGET)}/s` : '',
      n === 50 ? verdict(calc, TARGET) : '',
    ])
    if (n === 50) {
      const name = `projectStock ${n} rows, reused options object`
      rows.push([
        `  same, reused options object`,
        fmtInt(ops.get(name)),
        `±${rmeOf.get(name).toFixed(1)}%`,
        fmtRatio(ops.get(name) / naive),
        '',
        '',
      ])
    }
    rows.push([
      `naive float loop ${n} rows`,
      fmtInt(naive),
      `±${rmeOf.get(`naive float loop ${n} rows`).toFixed(1)}%`,
      '1.00',
      '',
      '',
    ])
  }
  console.log()
  printTable(['task', 'median projections/s', 'rme', 'ratio calc/naive', 'target', ''], rows)
  console.log()
  console.log(
    `${BATCH} calls per sample; the naive loop is inexact (floats) and computes far less: it is a floor, not a rival`,
  )
  if (sink === 0.5) console.log('') // keeps the results observable
  return { ops50: ops.get('projectStock 50 rows') }
}

if (isMain(import.meta.url)) await main()
