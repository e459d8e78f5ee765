// The bundled demo: the core on an in-memory source and memoryStore(), no service needed.
// Run with `npm run demo` (options: --products N, --bulk N, --no-progress).
import { parseArgs } from 'node:util'
import { createStockCache, defineStockSchema, memorySource, memoryStore } from 'stockcast'

const { values } = parseArgs({
  options: {
    products: { type: 'string', default: '3000' },
    bulk: { type: 'string', default: '100000' },
    'no-progress': { type: 'boolean', default: false },
  },
})
const PRODUCTS = Number(values.products)
const BULK = Number(values.bulk)

const schema = defineStockSchema({
  onHand: [{ table: 'stock_movements', product: 'product_code', quantity: 'quantity' }],
  supply: [{ table: 'production_schedule', product: 'product_code', quantity: 'planned_qty', date: 'scheduled_for' }],
  demand: [
    {
      table: 'order_lines',
      product: 'product_code',
      quantity: 'open_qty',
      date: 'ship_date',
      where: 'picking_batch_id IS NULL',
    },
    { table: 'quotations', product: 'product_code', quantity: 'qty', date: 'ship_date', pending: true },
  ],
})

// The in-memory source stands in for the SQL `where` with a function.
const db = memorySource(schema, { filters: { order_lines: (row) => row.picking_batch_id == null } })
const today = new Date().toISOString().slice(0, 10)
const day = (n) => {
  const d = new Date(`${today}T00:00:00Z`)
  d.setUTCDate(d.getUTCDate() + n)
  return d.toISOString().slice(0, 10)
}
let seed = 42
const rnd = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31
  return seed / 2 ** 31
}
const sku = (i) => `SKU-${String(i).padStart(5, '0')}`

const ms = (t0) => `${(performance.now() - t0).toFixed(1)} ms`
let t0 = performance.now()
for (let i = 0; i < PRODUCTS; i++) {
  db.insert('stock_movements', { product_code: sku(i), quantity: (rnd() * 500).toFixed(3) })
  for (let k = 0; k < 4; k++) {
    db.insert('order_lines', {
      product_code: sku(i),
      open_qty: (rnd() * 80).toFixed(1),
      ship_date: day(Math.floor(rnd() * 30) - 2),
    })
  }
  if (rnd() < 0.6)
    db.insert('production_schedule', {
      product_code: sku(i),
      planned_qty: (rnd() * 200).toFixed(0),
      scheduled_for: day(Math.floor(rnd() * 20)),
    })
  if (rnd() < 0.3) db.insert('quotations', { product_code: sku(i), qty: '25', ship_date: day(5) })
}
console.log(`seeded ${PRODUCTS} products, ${db.count('order_lines')} order lines in ${ms(t0)}`)

const cache = createStockCache({ schema, reader: db.reader, store: memoryStore(), debounceMs: 50 })
db.attach(cache)
let stockouts = 0
cache.on('stockout', () => stockouts++)

t0 = performance.now()
const built = await cache.rebuildAll()
console.log(`rebuildAll: ${built.products} products in ${ms(t0)}`)

const show = async (title, products) => {
  const rows = await cache.getMany(products)
  console.log(`\n${title}`)
  console.table(
    [...rows.values()].map((p) => ({
      product: p.product,
      'stock today': p.stockToday,
      'D1 closing': p.days[1].closing,
      '7-day min': p.minClosing7d,
      'stock-out': p.firstStockoutDate ?? '-',
      status: p.status,
    })),
  )
}
const watched = [sku(1), sku(2), sku(3)]
await show('Projections', watched)

t0 = performance.now()
const N = 100_000
for (let i = 0; i < N; i++) cache.peek(sku(i % PRODUCTS))
console.log(`\n${N} peek() reads in ${ms(t0)}; ${N} awaited get() reads:`)
t0 = performance.now()
for (let i = 0; i < N; i++) await cache.get(sku(i % PRODUCTS))
console.log(`  ${ms(t0)}`)

// A committed transaction: the next read already reflects it.
await db.transaction((tx) => {
  tx.insert('stock_movements', { product_code: sku(1), quantity: '-1000' })
  tx.insert('production_schedule', { product_code: sku(2), planned_qty: '5000', scheduled_for: day(1) })
})
await show('After a committed transaction (SKU-00001 -1000 on hand, SKU-00002 +5000 supply tomorrow)', watched)

// A rolled-back transaction: nothing changes, nothing is even marked.
await db
  .transaction((tx) => {
    tx.insert('stock_movements', { product_code: sku(3), quantity: '-99999' })
    throw new Error('rolled back')
  })
  .catch(() => {})
await show('After a rolled-back transaction (SKU-00003 unchanged)', watched)

// A bulk import: marks are collected, then the touched products are recomputed in batches.
const bar = values['no-progress'] ? undefined : progressBar(BULK)
t0 = performance.now()
await cache.disableCacheTemporarily(async () => {
  for (let i = 0; i < BULK; i++) {
    db.insert('stock_movements', { product_code: sku(Math.floor(rnd() * PRODUCTS)), quantity: '1' })
    if (bar && i % 5000 === 4999) bar(i + 1)
  }
})
bar?.(BULK, true)
console.log(`bulk import of ${BULK} movements inside disableCacheTemporarily (with the recompute after it): ${ms(t0)}`)

t0 = performance.now()
const report = await cache.validate({ sample: 500 })
console.log(
  `validate (500 sampled products): ${report.checked} checked, ${report.mismatches.length} mismatches in ${ms(t0)}`,
)
if (report.mismatches.length > 0) process.exitCode = 1

const m = cache.metrics()
console.log('\nmetrics:', {
  l1Hits: m.l1Hits,
  l1Misses: m.l1Misses,
  l2Hits: m.l2Hits,
  recomputes: m.recomputes,
  reads: m.reads,
  marks: m.marks,
  marksCoalesced: m.marksCoalesced,
  stockoutEvents: stockouts,
})
console.log('status:', cache.status())
await cache.close()

function progressBar(total) {
  return (done, end = false) => {
    const width = 30
    const filled = Math.round((done / total) * width)
    process.stdout.write(`\r  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}${end ? '\n' : ''}`)
  }
}
