// Mark coalescing: how many marks one recompute absorbs under bursts, with real timers.

import { performance } from 'node:perf_hooks'
import { createStockCache } from 'stockcast'
import { fmtInt, fmtRatio, isMain, printTable, productIds, schema, seededSource } from './lib.mjs'

const PRODUCTS = 200
const BURST_MARKS = 10_000
const BURST_SIZE = 100

const nextTurn = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Counters that moved while `fn` ran, and its wall time. */
async function measure(cache, fn) {
  const m0 = cache.metrics()
  const t0 = performance.now()
  const mid = await fn()
  const ms = performance.now() - t0
  const m1 = cache.metrics()
  return {
    marks: m1.marks - m0.marks,
    recomputes: m1.recomputes - m0.recomputes,
    background: mid === undefined ? undefined : mid.recomputes - m0.recomputes,
    flushes: m1.flushes - m0.flushes,
    ms,
  }
}

/** The three scenarios against one cache configuration (and one build of stockcast). */
async function scenarios(options, create = createStockCache) {
  const products = productIds('C', PRODUCTS)
  const db = seededSource(products, 7)
  const cache = create({ schema, reader: db.reader, ...options })
  await cache.getMany(products) // warm: every recompute counted below comes from a mark

  const one = await measure(cache, async () => {
    for (let i = 0; i < 1000; i++) cache.markDirty(products[0])
    const mid = cache.metrics()
    await cache.flush()
    return mid
  })

  // Bursts of 100 marks over the 200 products, a setImmediate turn between bursts.
  const bursts = await measure(cache, async () => {
    for (let k = 0; k < BURST_MARKS; ) {
      for (let j = 0; j < BURST_SIZE; j++, k++) cache.markDirty(products[k % PRODUCTS])
      await nextTurn()
    }
    const mid = cache.metrics()
    await cache.flush()
    return mid
  })

  // The same marks with 5 ms between bursts (≈0.5 s in all): long enough for the timers to fire mid-stream.
  const spaced = await measure(cache, async () => {
    for (let k = 0; k < BURST_MARKS; ) {
      for (let j = 0; j < BURST_SIZE; j++, k++) cache.markDirty(products[k % PRODUCTS])
      await sleep(5)
    }
    const mid = cache.metrics()
    await cache.flush()
    return mid
  })

  await cache.close()
  return { one, bursts, spaced }
}

export async function main() {
  console.log('## coalescing: marks absorbed per recompute (real timers, 200 products warmed first)')
  const debounced = await scenarios({ debounceMs: 50, maxWaitMs: 200 })
  const immediate = await scenarios({ debounceMs: 0, maxWaitMs: 200 })
  // STOCKCAST_BEFORE=<another build's dist/index.js>: the same scenarios on that build, in the same run.
  const old = process.env.STOCKCAST_BEFORE
    ? await import((await import('node:url')).pathToFileURL(process.env.STOCKCAST_BEFORE).href)
    : undefined
  const before =
    old === undefined ? undefined : await scenarios({ debounceMs: 50, maxWaitMs: 200 }, old.createStockCache)

  const label = {
    one: 'tight loop',
    bursts: 'bursts + setImmediate',
    spaced: 'bursts + 5 ms sleep',
  }
  console.log('tight loop:            1 000 marks of one product in a tight loop, then await flush()')
  console.log('bursts + setImmediate: 10 000 marks over 200 products, bursts of 100, a setImmediate turn between')
  console.log('                       bursts, then await flush()')
  console.log(
    'bursts + 5 ms sleep:   the same marks with a 5 ms sleep between bursts (≈0.5 s: the timers fire mid-stream)',
  )
  const rows = []
  for (const key of ['one', 'bursts', 'spaced']) {
    for (const [config, r] of [
      ['debounce 50 / maxWait 200', debounced[key]],
      ['debounce 0 (baseline)', immediate[key]],
      ...(before === undefined ? [] : [['before: debounce 50 / maxWait 200', before[key]]]),
    ]) {
      rows.push([
        config === 'debounce 50 / maxWait 200' ? label[key] : '',
        config,
        fmtInt(r.marks),
        fmtInt(r.recomputes),
        `${fmtInt(r.background)}`,
        fmtInt(r.flushes),
        (r.marks / Math.max(1, r.recomputes)).toFixed(1),
        r.ms.toFixed(1),
      ])
    }
  }
  console.log()
  printTable(
    ['scenario', 'config', 'marks', 'recomputes', 'before flush', 'flushes', 'marks/recompute', 'wall ms'],
    rows,
  )
  console.log()
  for (const key of ['one', 'bursts', 'spaced']) {
    const a = debounced[key]
    const b = immediate[key]
    const ratio = a.marks / Math.max(1, a.recomputes) / (b.marks / Math.max(1, b.recomputes))
    console.log(`${label[key].padEnd(21)}  marks/recompute, debounce 50 vs debounce 0: ${fmtRatio(ratio)}x`)
  }
  if (before !== undefined) console.log(`before: ${process.env.STOCKCAST_BEFORE}`)
  console.log('recomputes count products recomputed (once per product per batch); "before flush" ran from the timers')
  return { debounced, immediate }
}

if (isMain(import.meta.url)) await main()
