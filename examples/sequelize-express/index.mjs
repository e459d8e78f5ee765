// stockcast in an Express 5 + Sequelize app. PostgreSQL when DATABASE_URL is set; otherwise an in-process PGlite
// served over the PostgreSQL protocol (@electric-sql/pglite-socket), so Sequelize's plain postgres dialect works
// with no service. Options: --port N (default 3000), --products N (default 200), --smoke (start, call the API,
// check that a write shows, exit 0/1).
import { once } from 'node:events'
import { parseArgs } from 'node:util'
import { attachSequelize, fromSequelize, sequelizeReader, sequelizeStore } from '@stockcast/sequelize'
import { Sequelize } from 'sequelize'
import { createStockCache } from 'stockcast'
import { DDL, schema, seed } from '../sql-demo/schema.mjs'
import { createApp } from './app.mjs'
import { defineModels } from './models.mjs'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '3000' },
    products: { type: 'string', default: '200' },
    smoke: { type: 'boolean', default: false },
  },
})

// 1. Sequelize on PostgreSQL, or on PGlite through a socket server on a free local port.
let sequelize
let stopDatabase = async () => {}
if (process.env.DATABASE_URL) {
  sequelize = new Sequelize(process.env.DATABASE_URL, { logging: false })
  console.log(`database: PostgreSQL (${new URL(process.env.DATABASE_URL).host})`)
} else {
  const { PGlite } = await import('@electric-sql/pglite')
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket')
  const pglite = await PGlite.create()
  const server = new PGLiteSocketServer({ db: pglite, host: '127.0.0.1', port: 0 })
  await server.start()
  // PGlite is one session: one pooled connection.
  sequelize = new Sequelize(`postgres://postgres@${server.getServerConn()}/postgres`, {
    logging: false,
    pool: { max: 1 },
  })
  stopDatabase = async () => {
    await server.stop()
    await pglite.close()
  }
  console.log(`database: in-process PGlite on ${server.getServerConn()} (set DATABASE_URL to use PostgreSQL)`)
}

// 2. Tables (the example schema's DDL), models, some data when the tables are empty.
const db = fromSequelize(sequelize)
for (const statement of DDL.split(';').filter((s) => s.trim())) await db.execute(statement)
const models = defineModels(sequelize)
if ((await models.StockMovement.count()) === 0) {
  await seed(db, Number(values.products))
  console.log(`seeded ${values.products} products`)
}

// 3. The cache over the same Sequelize pool, and the hooks: the whole stockcast setup.
const cache = createStockCache({
  schema,
  reader: sequelizeReader(sequelize, schema),
  store: sequelizeStore(sequelize),
  memory: { max: 10_000, ttl: 60_000 },
})
const detach = attachSequelize(sequelize, cache, schema)

// 4. HTTP.
const app = createApp({ sequelize, cache, models })
const http = app.listen(values.smoke ? 0 : Number(values.port), '127.0.0.1')
await once(http, 'listening')
const base = `http://127.0.0.1:${http.address().port}`
console.log(`listening on ${base}`)

async function shutdown() {
  await new Promise((resolve) => http.close(resolve))
  detach()
  await cache.close()
  await sequelize.close()
  await stopDatabase()
}

if (values.smoke) {
  process.exitCode = (await smoke(base)) ? 0 : 1
  await shutdown()
} else {
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => void shutdown())
}

/** A few requests: read, write through Sequelize (an order, a movement), read again, compare. */
async function smoke(url) {
  const call = async (method, path, body) => {
    const res = await fetch(url + path, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    })
    const json = await res.json()
    console.log(`${method} ${path} -> ${res.status}`, JSON.stringify(json).slice(0, 160))
    return { status: res.status, json }
  }
  const checks = []
  const check = (what, ok) => {
    checks.push(ok)
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
  }
  const round = (n) => Math.round(n * 1000) / 1000
  const p = 'SKU-00001'
  const before = (await call('GET', `/projection/${p}`)).json
  const stock = (await call('GET', `/stock/${p}`)).json.stockToday
  const tomorrow = before.days[1].date
  const order = await call('POST', '/orders', { lines: [{ product: p, quantity: 7.5, shipDate: tomorrow }] })
  check('POST /orders created the order', order.status === 201)
  const after = (await call('GET', `/projection/${p}`)).json
  check(
    `D1 closing fell by the order (${before.days[1].closing} -> ${after.days[1].closing})`,
    round(before.days[1].closing - after.days[1].closing) === 7.5,
  )
  const movement = await call('POST', '/movements', { product: p, quantity: 12 })
  check('POST /movements created the movement', movement.status === 201)
  const stock2 = (await call('GET', `/stock/${p}`)).json.stockToday
  check(`stock today rose by the movement (${stock} -> ${stock2})`, round(stock2 - stock) === 12)
  const refreshed = (await call('POST', `/refresh/${p}`)).json
  check('POST /refresh agrees with the cached value', refreshed.stockToday === stock2)
  const status = await call('GET', '/cache/status')
  check('GET /cache/status answers', status.status === 200 && status.json.closed === false)
  check('bad input is a 400', (await call('GET', '/stock/bad%20id')).status === 400)
  const watched = [p, 'SKU-00002', 'SKU-00003']
  await cache.getMany(watched)
  const report = await cache.validate({ products: watched })
  check(`validate: ${report.checked} checked, ${report.mismatches.length} mismatches`, report.mismatches.length === 0)
  const ok = checks.every(Boolean)
  console.log(ok ? 'smoke: all checks passed' : 'smoke: FAILED')
  return ok
}
