// stockcast operated over HTTP: an Express 5 app on the example ERP schema with the HTTP handler and its dashboard
// (under /stock-api), the maintenance jobs, and a webhook receiver that prints when a product turns CRITICAL.
// PostgreSQL when DATABASE_URL is set (in a schema of its own, stockcast_http_api); otherwise embedded PGlite.
// Options: --port N (default 3000), --products N (default 500), --smoke (start, call the API, commit a write by plain
// SQL, wait for the webhook and the API to show it, exit 0/1).
import { once } from 'node:events'
import { parseArgs } from 'node:util'
import { sqlChangeCapture, sqlReader, sqlStore } from '@stockcast/sql'
import express from 'express'
import { createHttpHandler, createStockCache, createWebhookDelivery, startJobs } from 'stockcast'
import { openDatabase } from '../sql-demo/database.mjs'
import { DDL, schema, seed, TABLES } from '../sql-demo/schema.mjs'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '3000' },
    products: { type: 'string', default: '500' },
    smoke: { type: 'boolean', default: false },
  },
})
const TOKEN = process.env.STOCKCAST_OPS_TOKEN ?? 'change-me'

// 1. The database.
const { db, close: closeDb } = await openDatabase('stockcast_http_api')

// 2. Tables and data (fresh each start), triggers + outbox, the store, the cache and its listener.
const capture = sqlChangeCapture(db, schema)
await capture.uninstall().catch(() => {})
for (const table of TABLES) await db.execute(`DROP TABLE IF EXISTS ${table}`)
for (const statement of DDL.split(';').filter((s) => s.trim())) await db.execute(statement)
await seed(db, Number(values.products))
await capture.install()
const store = sqlStore(db)
await store.install()
const cache = createStockCache({
  schema,
  reader: sqlReader(db, schema),
  store,
  pendingMarks: capture,
  debounceMs: 20,
  memory: { max: 50_000, ttl: 10 * 60_000 },
})
const listener = await capture.listen(cache)
const built = await cache.rebuildAll()
console.log(`rebuildAll: ${built.products} products in ${built.ms.toFixed(0)} ms`)

// 3. Jobs: tomorrow prepared before midnight and swapped in at midnight, hot products kept warm, old values
// refreshed, products left dirty retried, a precision sample every 10 minutes. cache.close() stops them.
const jobs = startJobs(cache, {
  rollover: true,
  warm: { top: 1000 },
  refreshStale: { afterMs: 15 * 60_000 },
  dirtySweep: true,
  precision: { sample: 100, every: 10 * 60_000 },
  onError: (error, job) => console.error(`job ${job}: ${error.message}`),
})
cache.on('error', ({ error, operation }) => console.error(`stockcast ${operation}: ${error.message}`))

// 4. HTTP: the handler under /stock-api (read-only except refresh with the bearer token), and a webhook receiver.
const app = express()
app.use('/stock-api', createHttpHandler({ cache, authorize: (req) => req.headers.authorization === `Bearer ${TOKEN}` }))
const received = []
app.post('/hooks/stock', express.json(), (req, res) => {
  const t = req.body
  received.push(t)
  if (t.kind === 'critical') {
    console.log(`webhook: ${t.product} turned CRITICAL (stock today ${t.stockToday}, stock-out ${t.firstStockoutDate})`)
  } else console.log(`webhook: ${t.product} ${t.kind}`)
  res.sendStatus(204)
})
const server = app.listen(values.smoke ? 0 : Number(values.port), '127.0.0.1')
await once(server, 'listening')
const base = `http://127.0.0.1:${server.address().port}`
console.log(`dashboard: ${base}/stock-api/   metrics: ${base}/stock-api/metrics`)

// 5. Webhooks: transitions posted to the receiver above, with retries; 'quiet' sends nothing for products already
// CRITICAL at start (only what changes from now on).
const webhooks = createWebhookDelivery(cache, { url: `${base}/hooks/stock`, initial: 'quiet' })

async function shutdown() {
  await webhooks.stop()
  await jobs.stop()
  await listener.stop()
  await cache.close()
  await new Promise((resolve) => server.close(resolve))
  await closeDb()
}

if (values.smoke) {
  let ok = false
  try {
    ok = await smoke()
  } catch (e) {
    console.error(`smoke failed: ${e.stack ?? e}`)
  }
  await shutdown()
  process.exitCode = ok ? 0 : 1
} else {
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => shutdown().then(() => process.exit(0)))
}

async function smoke() {
  const get = async (path, init) => {
    const res = await fetch(`${base}/stock-api${path}`, init)
    return { status: res.status, type: res.headers.get('content-type'), body: await res.text() }
  }
  const check = (what, cond) => {
    console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`)
    return cond
  }
  const sku = 'SKU-00007'
  let good = true
  const page = await get('/')
  good &&= check('GET / serves the dashboard', page.status === 200 && page.body.includes('<title>'))
  const status = JSON.parse((await get('/cache/status')).body)
  good &&= check('GET /cache/status', status.status.l1Size >= Number(values.products))
  const before = JSON.parse((await get(`/stock/${sku}`)).body)
  good &&= check(
    `GET /stock/${sku}: ${before.status}, stock today ${before.stockToday}`,
    typeof before.stockToday === 'number',
  )
  good &&= check('bad id is a 400', (await get('/stock/%00')).status === 400)
  good &&= check(
    'refresh without the token is a 401',
    (await get(`/stock/${sku}/refresh`, { method: 'POST' })).status === 401,
  )
  const metrics = await get('/metrics')
  good &&= check(
    'GET /metrics is Prometheus text',
    metrics.type.startsWith('text/plain') && metrics.body.includes('stockcast_gets_total'),
  )
  // A write by plain SQL that no ORM sees: the trigger records it, the listener recomputes, the webhook fires.
  await db.execute(
    'INSERT INTO order_lines (product_code, open_qty, ship_date) VALUES ($1, 100000, current_date + 1)',
    [sku],
  )
  const deadline = Date.now() + 15_000
  while (!received.some((t) => t.product === sku && t.kind === 'critical') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50))
  }
  good &&= check(
    `webhook told ${sku} turned CRITICAL`,
    received.some((t) => t.product === sku && t.kind === 'critical'),
  )
  const after = JSON.parse((await get(`/stock/${sku}`)).body)
  good &&= check(`GET /stock/${sku} after the write: ${after.status}`, after.status === 'CRITICAL')
  const listed = JSON.parse((await get('/stock?status=CRITICAL&limit=1000')).body)
  good &&= check(
    'GET /stock?status=CRITICAL lists it',
    listed.items.some((i) => i.product === sku),
  )
  const refreshed = await get(`/stock/${sku}/refresh`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}` },
  })
  good &&= check('refresh with the token', refreshed.status === 200)
  const js = jobs.status()
  good &&= check(
    `jobs running (${Object.keys(js).join(', ')})`,
    Object.values(js).every((s) => s.nextAt !== null),
  )
  return good
}
