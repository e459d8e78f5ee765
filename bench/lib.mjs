// Shared helpers of the bench scripts: the schema, seeded data, tinybench figures and plain-text tables.

import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defineStockSchema, memorySource } from 'stockcast'

/** The schema every bench uses. */
export const schema = defineStockSchema({
  onHand: [{ table: 'stock_movements', product: 'product_code', quantity: 'quantity' }],
  supply: [{ table: 'production_schedule', product: 'product_code', quantity: 'planned_qty', date: 'scheduled_for' }],
  demand: [{ table: 'order_lines', product: 'product_code', quantity: 'open_qty', date: 'ship_date' }],
})

/** A small seeded PRNG (mulberry32): the same rows on every run. */
export function rng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Milliseconds for a table: `us` below 1 ms, else one decimal. */
export function fmtMs(ms) {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} us` : `${ms.toFixed(1)} ms`
}

/** The `p`-th percentile (0-100) of `xs` (nearest rank, not interpolated). */
export function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}

/** `YYYY-MM-DD` of `today` shifted by `offset` days (UTC calendar arithmetic). */
export function addDays(today, offset) {
  return new Date(Date.parse(`${today}T00:00:00Z`) + offset * 86_400_000).toISOString().slice(0, 10)
}

/** D0 of the running process in UTC (what a default cache uses). */
export function todayUtc() {
  return new Date().toISOString().slice(0, 10)
}

/** Product ids `${prefix}0000`.. with `count` entries. */
export function productIds(prefix, count) {
  return Array.from({ length: count }, (_, i) => prefix + String(i).padStart(4, '0'))
}

/** A memorySource holding an on-hand row, two supply and two demand rows per product. */
export function seededSource(products, seed = 1) {
  const db = memorySource(schema)
  const rand = rng(seed)
  const today = todayUtc()
  const qty = () => (rand() * 100).toFixed(3)
  const day = () => addDays(today, Math.floor(rand() * 39) - 3)
  for (const p of products) {
    db.insert('stock_movements', { product_code: p, quantity: (rand() * 500).toFixed(3) })
    for (let i = 0; i < 2; i++) {
      db.insert('production_schedule', { product_code: p, planned_qty: qty(), scheduled_for: day() })
      db.insert('order_lines', { product_code: p, open_qty: qty(), ship_date: day() })
    }
  }
  return db
}

/**
 * Median ops/s of a tinybench task whose function performs `batch` operations per call:
 * tinybench's median throughput (calls/s) times the batch.
 */
export function medianOpsPerSec(task, batch = 1) {
  const r = task.result
  if (r.state !== 'completed') {
    throw new Error(`task ${task.name} did not complete (${r.state}): ${r.error?.stack ?? r.error ?? ''}`)
  }
  return r.throughput.p50 * batch
}

/** Relative margin of error (percent) of a task's latency, as tinybench reports it. */
export function rme(task) {
  return task.result.latency.rme
}

/** `1234567.8` -> `1 234 568` */
export function fmtInt(n) {
  return Math.round(n)
    .toString()
    .replace(/\B(?=(\d{3})+(?!\d))/g, ' ')
}

export function fmtRatio(r) {
  return Number.isFinite(r) ? r.toFixed(2) : '-'
}

export function verdict(ratioOrValue, target) {
  return ratioOrValue >= target ? 'PASS' : 'BELOW'
}

/** Print rows (arrays of cells) under a header, columns padded; numeric-looking cells are right-aligned. */
export function printTable(header, rows) {
  const all = [header, ...rows].map((r) => r.map((c) => String(c)))
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)))
  const numeric = /^[-+]?[\d\s.,x%]+$|^-$/
  const line = (r) =>
    r
      .map((c, i) => (i > 0 && numeric.test(c) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd()
  console.log(line(all[0]))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const r of all.slice(1)) console.log(line(r))
}

/** The installed version of a package, found by walking up from its resolved entry. */
export function versionOf(name) {
  try {
    let dir = dirname(fileURLToPath(import.meta.resolve(name)))
    for (;;) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
        if (pkg.name === name) return pkg.version
      } catch {
        // no package.json here: keep walking up
      }
      const up = dirname(dir)
      if (up === dir) return '?'
      dir = up
    }
  } catch {
    return '?'
  }
}

/** True when the calling module is the script node was started with. */
export function isMain(metaUrl) {
  return process.argv[1] !== undefined && fileURLToPath(metaUrl) === process.argv[1]
}
