// A Prisma app importing a CSV of stock movements through the @stockcast/prisma extension, inside
// cache.disableCacheTemporarily: the import marks products without recomputing them row by row; when it ends the
// touched products are recomputed in batches, and the projections that changed are printed.
// Options: --rows N (default 100000), --products N (default 2000), --no-progress. Exits 1 when the cache is wrong.
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { finished } from 'node:stream/promises'
import { parseArgs } from 'node:util'
import { stockcastExtension } from '@stockcast/prisma'
import { sqlReader, sqlStore } from '@stockcast/sql'
import cliProgress from 'cli-progress'
import { createStockCache } from 'stockcast'
import { openDatabase, schema } from './db.mjs'

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000' },
    products: { type: 'string', default: '2000' },
    'no-progress': { type: 'boolean', default: false },
  },
})
const ROWS = Number(values.rows)
const PRODUCTS = Number(values.products)
if (!Number.isInteger(ROWS) || ROWS < 1 || !Number.isInteger(PRODUCTS) || PRODUCTS < 1) {
  console.error('--rows and --products must be positive integers')
  process.exit(2)
}
const ms = (t0) => `${(performance.now() - t0).toFixed(0)} ms`
const sku = (i) => `P-${String(i).padStart(5, '0')}`
const dayFromToday = (n) => new Date(Date.UTC(...utcToday(), n))
const utcToday = () => {
  const d = new Date()
  return [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()]
}
/** A small seeded PRNG: the same data on every run. */
const random = (() => {
  let a = 42
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), a | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
})()
/** Quantities in thousandths (exact), printed with three decimals. */
const qty = (thousandths) => (thousandths / 1000).toFixed(3)

const failures = []
const db = await openDatabase()
console.log(`database: ${db.label}`)

// 1. Seed the products (plain client: nothing to mark yet), then build the cache.
let t0 = performance.now()
const expectedOnHand = new Map()
const moves = []
const supply = []
const demand = []
for (let i = 1; i <= PRODUCTS; i++) {
  const p = sku(i)
  const onHand = Math.floor(random() * 400_000) + 50_000
  expectedOnHand.set(p, onHand)
  moves.push({ productCode: p, quantity: qty(onHand), reference: 'opening' })
  supply.push({
    productCode: p,
    plannedQty: qty(Math.floor(random() * 200_000)),
    scheduledFor: dayFromToday(3 + (i % 20)),
  })
  for (let k = 0; k < 3; k++) {
    demand.push({
      productCode: p,
      openQty: qty(Math.floor(random() * 150_000)),
      shipDate: dayFromToday((i + k * 7) % 29),
    })
  }
}
for (let i = 0; i < moves.length; i += 5000)
  await db.prisma.stockMovement.createMany({ data: moves.slice(i, i + 5000) })
for (let i = 0; i < supply.length; i += 5000)
  await db.prisma.productionOrder.createMany({ data: supply.slice(i, i + 5000) })
for (let i = 0; i < demand.length; i += 5000) await db.prisma.orderLine.createMany({ data: demand.slice(i, i + 5000) })
console.log(`seeded ${PRODUCTS} products (${moves.length + supply.length + demand.length} rows) in ${ms(t0)}`)

const store = sqlStore(db.sqlDb)
await store.install()
const cache = createStockCache({
  schema,
  reader: sqlReader(db.sqlDb, schema),
  store,
  memory: { max: PRODUCTS * 2, ttl: 10 * 60_000 },
})
// The one line a Prisma app adds: every write through `prisma` now marks the products it touches.
const prisma = db.prisma.$extends(stockcastExtension({ cache, schema }))
t0 = performance.now()
await cache.rebuildAll()
const before = await cache.getMany([...expectedOnHand.keys()])
console.log(`rebuildAll: ${before.size} projections in ${ms(t0)}`)

// 2. The CSV of movements, written to a temp dir (your file would come from a WMS or an ERP export).
const dir = await mkdtemp(join(tmpdir(), 'stockcast-prisma-import-'))
const csv = join(dir, 'movements.csv')
const out = createWriteStream(csv)
out.write('product_code,quantity,reference\n')
for (let r = 0; r < ROWS; r++) {
  const p = sku(1 + Math.floor(random() * PRODUCTS))
  const q = Math.floor(random() * 60_000) - 40_000 // mostly issues: some products run out
  expectedOnHand.set(p, expectedOnHand.get(p) + q)
  if (!out.write(`${p},${qty(q)},import-${r}\n`)) await new Promise((resolve) => out.once('drain', resolve))
}
out.end()
await finished(out)
console.log(`wrote ${ROWS} movements to ${csv}`)

// 3. The import: createMany batches through the extended client, inside disableCacheTemporarily.
const changed = []
const onUpdated = (e) => {
  if (e.location === null && e.previous !== undefined) changed.push(e)
}
cache.on('updated', onUpdated)
const bar = values['no-progress']
  ? undefined
  : new cliProgress.SingleBar(
      { format: 'import [{bar}] {percentage}% | {value}/{total} rows | {eta}s left' },
      cliProgress.Presets.shades_classic,
    )
const recomputesBefore = cache.metrics().recomputes
t0 = performance.now()
let imported = 0
bar?.start(ROWS, 0)
await cache.disableCacheTemporarily(async () => {
  const batch = []
  const flush = async () => {
    if (batch.length === 0) return
    await prisma.stockMovement.createMany({ data: batch.splice(0) })
  }
  const lines = createInterface({ input: createReadStream(csv), crlfDelay: Number.POSITIVE_INFINITY })
  let header = true
  for await (const line of lines) {
    if (header) {
      header = false
      continue
    }
    if (line === '') continue
    const [productCode, quantity, reference] = line.split(',')
    batch.push({ productCode, quantity, reference })
    imported++
    if (batch.length === 2000) {
      await flush()
      bar?.update(imported)
    }
  }
  await flush()
  bar?.update(imported)
})
bar?.stop()
cache.off('updated', onUpdated)
const recomputes = cache.metrics().recomputes - recomputesBefore
console.log(`imported ${imported} rows and recomputed the touched products (${recomputes} recomputes) in ${ms(t0)}`)
await rm(dir, { recursive: true, force: true })

// 4. The projections that changed.
const statusMoves = new Map()
for (const e of changed) {
  if (e.previous.status === e.projection.status) continue
  const k = `${e.previous.status} -> ${e.projection.status}`
  statusMoves.set(k, (statusMoves.get(k) ?? 0) + 1)
}
const newStockouts = changed.filter(
  (e) => e.previous.firstStockoutDate === null && e.projection.firstStockoutDate !== null,
)
console.log(
  `\n${changed.length} projections changed; status changes: ${JSON.stringify(Object.fromEntries(statusMoves))}`,
)
console.log(`${newStockouts.length} products now run out within the horizon. The ten largest moves of stock today:`)
console.table(
  [...changed]
    .sort(
      (a, b) =>
        Math.abs(b.projection.stockToday - b.previous.stockToday) -
        Math.abs(a.projection.stockToday - a.previous.stockToday),
    )
    .slice(0, 10)
    .map((e) => ({
      product: e.product,
      'stock before': e.previous.stockToday,
      'stock after': e.projection.stockToday,
      '7-day min': e.projection.minClosing7d,
      'stock-out': e.projection.firstStockoutDate ?? '-',
      status: `${e.previous.status} -> ${e.projection.status}`,
    })),
)

// 5. Check the result: every row imported, every projection equal to the tables, stock today as computed here.
const [{ n }] = await db.prisma
  .$queryRaw`SELECT count(*)::int AS n FROM stock_movements WHERE reference LIKE 'import-%'`
if (n !== ROWS) failures.push(`expected ${ROWS} imported rows, found ${n}`)
t0 = performance.now()
const report = await cache.validate()
console.log(`\nvalidate: ${report.checked} checked, ${report.mismatches.length} mismatches in ${ms(t0)}`)
if (report.mismatches.length > 0) failures.push(`validate: ${JSON.stringify(report.mismatches.slice(0, 3))}`)
const after = await cache.getMany([...expectedOnHand.keys()])
for (const [p, thousandths] of expectedOnHand) {
  if (after.get(p)?.stockToday !== thousandths / 1000) {
    failures.push(`${p}: stock today ${after.get(p)?.stockToday}, expected ${qty(thousandths)}`)
    if (failures.length > 5) break
  }
}

await cache.close()
await db.close()
if (failures.length > 0) {
  console.error(`WRONG RESULT:\n  ${failures.join('\n  ')}`)
  process.exitCode = 1
} else console.log('result: ok (every projection matches the tables)')
