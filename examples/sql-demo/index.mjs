// The bundled demo: stockcast on embedded PGlite (no service), or on PostgreSQL when DATABASE_URL is set.
// Options: --products N (default 3000), --bulk N (default 100000), --no-progress.
import { parseArgs } from 'node:util'
import { sqlChangeCapture, sqlReader, sqlStore } from '@stockcast/sql'
import cliProgress from 'cli-progress'
import { createStockCache } from 'stockcast'
import { openDatabase } from './database.mjs'
import { DDL, schema, seed, TABLES } from './schema.mjs'

const { values } = parseArgs({
  options: {
    products: { type: 'string', default: '3000' },
    bulk: { type: 'string', default: '100000' },
    'no-progress': { type: 'boolean', default: false },
  },
})
const PRODUCTS = Number(values.products)
const BULK = Number(values.bulk)
const t = () => performance.now()
const ms = (t0) => `${(performance.now() - t0).toFixed(0)} ms`

// 1. A database: embedded PGlite by default, PostgreSQL with DATABASE_URL (schema stockcast_demo).
const { db, close: shutdown } = await openDatabase('stockcast_demo')

// 2. The example ERP schema, a few thousand products.
let t0 = t()
const capture = sqlChangeCapture(db, schema)
await capture.uninstall().catch(() => {})
for (const table of TABLES) await db.execute(`DROP TABLE IF EXISTS ${table}`)
for (const statement of DDL.split(';').filter((s) => s.trim())) await db.execute(statement)
await seed(db, PRODUCTS)
const [{ n: lines }] = await db.query('SELECT count(*)::int AS n FROM order_lines')
console.log(`seeded ${PRODUCTS} products, ${lines} order lines in ${ms(t0)}`)

// 3. Triggers + outbox (they see every writer), the projection table (L2), the cache.
t0 = t()
await capture.install()
const store = sqlStore(db)
await store.install()
console.log(`installed triggers and outbox in ${ms(t0)}; verify: ${(await capture.verify()).ok ? 'ok' : 'NOT OK'}`)
// One instance here; with several, add a bus (the `bus` option, an InvalidationBus such as Redis pub/sub) so peers drop their L1 copies. memory.ttl bounds
// how long an L1 value can outlive a write another instance consumed.
const cache = createStockCache({
  schema,
  reader: sqlReader(db, schema),
  store,
  pendingMarks: capture,
  debounceMs: 20,
  memory: { max: 20_000, ttl: 10 * 60_000 },
})
const listener = await capture.listen(cache)

t0 = t()
const built = await cache.rebuildAll()
console.log(`rebuildAll: ${built.products} products (${built.keys} projections) in ${ms(t0)}`)

const sku = (i) => `SKU-${String(i).padStart(5, '0')}`
const watched = [sku(1), sku(2), sku(3)]
async function show(title) {
  const rows = await cache.getMany(watched)
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
await show('Projections')

// 4. A committed write by plain SQL (any client): the trigger records it, the listener recomputes.
t0 = t()
await db.transaction(async (tx) => {
  await tx.execute('INSERT INTO stock_movements (product_code, quantity) VALUES ($1, -1000)', [sku(1)])
  await tx.execute(
    'INSERT INTO production_schedule (product_code, planned_qty, scheduled_for) VALUES ($1, 5000, current_date + 1)',
    [sku(2)],
  )
})
const strong = await cache.get(sku(1), { consistency: 'strong' })
console.log(`\ncommitted by SQL; a strong read answered in ${ms(t0)}: ${sku(1)} stock today ${strong.stockToday}`)
await listener.drain()
await show('After a committed transaction (SKU-00001 -1000 on hand, SKU-00002 +5000 supply tomorrow)')

// 5. A rolled-back write: the trigger's outbox row rolls back with it.
await db
  .transaction(async (tx) => {
    await tx.execute('INSERT INTO stock_movements (product_code, quantity) VALUES ($1, -99999)', [sku(3)])
    throw new Error('rolled back')
  })
  .catch(() => {})
await listener.drain()
await show('After a rolled-back transaction (SKU-00003 unchanged)')

// 6. A bulk import of movements inside disableCacheTemporarily (via capture.bulkImport), with a progress bar.
const recomputesBefore = cache.metrics().recomputes
const bar = values['no-progress'] ? undefined : new cliProgress.SingleBar({}, cliProgress.Presets.shades_classic)
const chunk = 10_000
t0 = t()
bar?.start(BULK, 0)
await capture.bulkImport(cache, async (session) => {
  for (let done = 0; done < BULK; done += chunk) {
    const n = Math.min(chunk, BULK - done)
    await session.execute(
      `INSERT INTO stock_movements (product_code, quantity)
       SELECT 'SKU-' || lpad((1 + floor(random() * $2))::int::text, 5, '0'), 1 FROM generate_series(1, $1)`,
      [n, PRODUCTS],
    )
    bar?.update(done + n)
  }
})
bar?.stop()
console.log(
  `bulk import of ${BULK} movements (and the recompute after it): ${ms(t0)}; ` +
    `${cache.metrics().recomputes - recomputesBefore} recomputes for the touched products`,
)
await listener.drain()

t0 = t()
const report = await cache.validate({ sample: 500 })
console.log(
  `validate (500 sampled products): ${report.checked} checked, ${report.mismatches.length} mismatches in ${ms(t0)}`,
)
if (report.mismatches.length > 0) process.exitCode = 1

const m = cache.metrics()
console.log('\nmetrics:', {
  l1Hits: m.l1Hits,
  l2Hits: m.l2Hits,
  recomputes: m.recomputes,
  reads: m.reads,
  marks: m.marks,
  marksCoalesced: m.marksCoalesced,
  strongChecks: m.strongChecks,
})
console.log('listener:', listener.status())
await listener.stop()
await cache.close()
await shutdown()
