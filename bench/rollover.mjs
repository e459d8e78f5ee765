// The first read after midnight: getMany of every product right after D0 moves, with and without the rollover job's
// prepareRollover(), against an ordinary L1 getMany of the same products in the same run (issue 13's target: at most
// 2x). Time is an injected clock (moved by hand across midnight); the source is an in-memory one, so the figures are
// the cache's own work, not the database's.
//
//   node bench/rollover.mjs [--products 5000] [--trials 7]

import { parseArgs } from 'node:util'
import { createStockCache } from 'stockcast'
import { fmtMs, isMain, printTable, productIds, schema, seededSource, todayUtc } from './lib.mjs'

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function time(fn) {
  const t0 = performance.now()
  const r = fn()
  return r instanceof Promise
    ? r.then((v) => ({ ms: performance.now() - t0, v }))
    : Promise.resolve({ ms: performance.now() - t0, v: r })
}

/** One trial: a cache at 23:50 with every product in L1, then midnight. */
async function trial(products, mode) {
  const db = seededSource(products)
  const clock = { ms: Date.parse(`${todayUtc()}T23:50:00Z`), now: () => clock.ms }
  // Exact mode (a clock, no timers): every read looks at the clock, so the read after midnight is the one that sees
  // the day move (the worst case: the swap runs inside it). `swapFirst` lets a status() call see it first, as the
  // day clock's midnight timer does in production.
  const cache = createStockCache({ schema, reader: db.reader, clock, debounceMs: 0 })
  await cache.getMany(products)
  // Ordinary L1 getMany, measured now (warm, same products).
  const ordinary = []
  for (let i = 0; i < 15; i++) ordinary.push((await time(() => cache.getMany(products))).ms)
  let prepare
  if (mode !== 'none') prepare = await time(() => cache.prepareRollover())
  clock.ms = Date.parse(`${todayUtc()}T23:59:59.999Z`) + 2
  let swapMs = 0
  if (mode === 'swap-first') swapMs = (await time(() => cache.status())).ms
  const first = await time(() => cache.getMany(products))
  const m = cache.metrics()
  const out = {
    ordinary: median(ordinary),
    first: first.ms,
    swapMs,
    prepareMs: prepare?.ms,
    prepared: prepare?.v.prepared,
    read: prepare?.v.read,
    recomputes: m.recomputes,
    tomorrow: [...first.v.values()].every((p) => p.today !== todayUtc()),
  }
  await cache.close()
  return out
}

export async function run(argv = []) {
  const { values } = parseArgs({
    args: argv,
    options: { products: { type: 'string', default: '5000' }, trials: { type: 'string', default: '7' } },
  })
  const n = Number(values.products)
  const trials = Number(values.trials)
  const products = productIds('R', n)
  console.log(`\nrollover: ${n} products, ${trials} trials per row (medians), injected clock across midnight`)
  const rows = []
  for (const [mode, label] of [
    ['none', 'no rollover job: first getMany after midnight'],
    ['swap-in-read', 'prepareRollover, the read sees the day move'],
    ['swap-first', 'prepareRollover, the midnight timer swaps first'],
  ]) {
    const rs = []
    for (let t = 0; t < trials; t++) rs.push(await trial(products, mode))
    const ordinary = median(rs.map((r) => r.ordinary))
    const first = median(rs.map((r) => r.first))
    const ratio = first / ordinary
    if (!rs.every((r) => r.tomorrow)) throw new Error(`${mode}: a value after midnight was not for the new day`)
    rows.push([
      label,
      fmtMs(ordinary),
      fmtMs(first),
      `${ratio.toFixed(2)}x`,
      mode === 'none' ? '-' : ratio <= 2 ? 'PASS' : 'ABOVE',
      mode === 'none'
        ? '-'
        : `${fmtMs(median(rs.map((r) => r.prepareMs)))} (${rs[0].prepared} rolled, ${rs[0].read} read)`,
      mode === 'swap-first' ? fmtMs(median(rs.map((r) => r.swapMs))) : '-',
      String(median(rs.map((r) => r.recomputes)) - n),
    ])
  }
  printTable(
    [
      'case',
      'ordinary L1 getMany',
      'first getMany after 00:00',
      'ratio',
      'target',
      'prepare (before 00:00)',
      'swap',
      'recomputes after 00:00',
    ],
    rows,
  )
}

if (isMain(import.meta.url)) await run(process.argv.slice(2))
