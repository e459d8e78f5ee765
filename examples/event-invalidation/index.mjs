// An endpoint cache invalidated by domain events after commit, as the systems stockcast replaces did with a map
// such as 'pedido.criado' -> ['dashboard_*', 'vendedor_apuracao_*']: here the patterns are tags the entries carry.
// GET /dashboard and GET /sellers/:id/report are cached; POST /orders writes in a transaction and publishes the
// domain event 'order.created' only when it commits (a rolled-back order invalidates nothing).
// PostgreSQL when DATABASE_URL is set (schema stockcast_event_invalidation); otherwise embedded PGlite.
// Options: --port N (default 3000), --smoke (start, call, write, check, exit 0/1).
import { once } from 'node:events'
import http from 'node:http'
import { parseArgs } from 'node:util'
import { createCache } from 'stockcast'
import { openDatabase } from '../sql-demo/database.mjs'

const { values } = parseArgs({
  options: { port: { type: 'string', default: '3000' }, smoke: { type: 'boolean', default: false } },
})

const { db, close: closeDb } = await openDatabase('stockcast_event_invalidation')
await db.execute('DROP TABLE IF EXISTS orders')
await db.execute('CREATE TABLE orders (id serial PRIMARY KEY, seller text NOT NULL, total numeric(12,2) NOT NULL)')
await db.execute("INSERT INTO orders (seller, total) VALUES ('ana', 100), ('ana', 50), ('bruno', 70)")

// The event map, declared once: which tags each domain event invalidates.
const cache = createCache({
  name: 'endpoints',
  events: {
    'order.created': ['dashboard', 'seller-report'],
    'seller.renamed': ['seller-report'],
  },
})
let queries = 0
const dashboard = cache.cached(
  async () => {
    queries++
    const [row] = await db.query('SELECT count(*)::int AS orders, sum(total)::text AS revenue FROM orders')
    return row
  },
  { key: 'dashboard', ttl: 10 * 60_000, tags: ['dashboard'] },
)
const sellerReport = cache.cached(
  async (seller) => {
    queries++
    const [row] = await db.query(
      'SELECT count(*)::int AS orders, coalesce(sum(total), 0)::text AS total FROM orders WHERE seller = $1',
      [seller],
    )
    return { seller, ...row }
  },
  {
    key: (seller) => `seller-report:${seller}`,
    ttl: 10 * 60_000,
    tags: (seller) => ['seller-report', `seller:${seller}`],
  },
)

/** Create an order; the domain event goes out after the commit, never for a rollback. */
async function createOrder(seller, total, { fail = false } = {}) {
  const scope = cache.transaction()
  try {
    await db.transaction(async (tx) => {
      await tx.execute('INSERT INTO orders (seller, total) VALUES ($1, $2)', [seller, total])
      await cache.invalidate({ events: ['order.created'] }, { tx: scope })
      if (fail) throw new Error('payment declined')
    })
    scope.commit()
  } catch (e) {
    scope.rollback()
    throw e
  }
}

const server = http.createServer(async (req, res) => {
  const send = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  try {
    const url = new URL(req.url, 'http://x')
    const report = /^\/sellers\/([a-z]+)\/report$/.exec(url.pathname)
    if (req.method === 'GET' && url.pathname === '/dashboard') return send(200, await dashboard())
    if (req.method === 'GET' && report) return send(200, await sellerReport(report[1]))
    if (req.method === 'POST' && url.pathname === '/orders') {
      const seller = url.searchParams.get('seller') ?? 'ana'
      const total = Number(url.searchParams.get('total') ?? '10')
      try {
        await createOrder(seller, total, { fail: url.searchParams.get('fail') === '1' })
        return send(201, { ok: true })
      } catch (e) {
        return send(409, { error: e.message })
      }
    }
    send(404, { error: 'not found' })
  } catch (e) {
    send(500, { error: e.message })
  }
})
server.listen(values.smoke ? 0 : Number(values.port), '127.0.0.1')
await once(server, 'listening')
const base = `http://127.0.0.1:${server.address().port}`
console.log(`listening on ${base}: GET /dashboard, GET /sellers/ana/report, POST /orders?seller=ana&total=10`)

async function shutdown() {
  await new Promise((r) => server.close(r))
  await cache.close()
  await closeDb()
}

if (values.smoke) {
  const get = async (path, init) => (await fetch(base + path, init)).json()
  const check = (what, ok) => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
    return ok
  }
  let good = true
  const d1 = await get('/dashboard')
  await get('/dashboard')
  await get('/sellers/ana/report')
  good &&= check(
    `dashboard ${JSON.stringify(d1)}: read twice, the report once: 2 queries`,
    queries === 2 && d1.orders === 3,
  )
  const failed = await fetch(`${base}/orders?seller=ana&total=5&fail=1`, { method: 'POST' })
  const d2 = await get('/dashboard')
  good &&= check(
    'a rolled-back order invalidates nothing (no new query)',
    failed.status === 409 && queries === 2 && d2.orders === 3,
  )
  await fetch(`${base}/orders?seller=ana&total=25`, { method: 'POST' })
  const d3 = await get('/dashboard')
  const r3 = await get('/sellers/ana/report')
  good &&= check(
    `after order.created: dashboard ${JSON.stringify(d3)}, ana ${JSON.stringify(r3)}`,
    d3.orders === 4 && r3.orders === 3,
  )
  good &&= check(`metrics ${JSON.stringify(cache.metrics().invalidations)}`, cache.metrics().invalidations.tags === 2)
  await shutdown()
  process.exitCode = good ? 0 : 1
} else {
  for (const s of ['SIGINT', 'SIGTERM']) process.once(s, () => shutdown().then(() => process.exit(0)))
}
