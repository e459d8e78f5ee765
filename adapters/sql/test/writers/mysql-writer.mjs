// A writer OS process for the MariaDB/MySQL capture tests: plain mysql2 transactions (no stockcast in this process,
// as another service writing to the same database would), for `seconds`, then one JSON line on stdout:
// { commits, rollbacks, errors: { CODE: n }, samples: [message, ...] }.
//
// Usage: node mysql-writer.mjs '{"uri":"mysql://root@127.0.0.1:3306/db","seconds":10,"seed":1,"products":60,"batches":20,"movementIds":[1,400]}'
//
// Each transaction makes at most one UPDATE of an existing row (by primary key or unique key) plus inserts, so the
// writers cannot deadlock one another by taking row locks in different orders: an error here is caused by what else
// runs against the database (the capture's triggers and its listener).
import mysql from 'mysql2/promise'

const config = JSON.parse(process.argv[2] ?? '{}')
const seconds = config.seconds ?? 10
const products = config.products ?? 60
const batches = config.batches ?? 20
const [lowId, highId] = config.movementIds ?? [1, 100]

// mulberry32: a reproducible stream per process.
let state = (config.seed ?? 1) >>> 0
const rand = () => {
  state = (state + 0x6d2b79f5) >>> 0
  let t = state
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const rnd = (n) => Math.floor(rand() * n)
const sku = () => `MW${rnd(products)}`
const qty = () => (rnd(20001) / 1000 - 5).toFixed(3)
const day = () => new Date(Date.now() + rnd(20) * 86_400_000).toISOString().slice(0, 10)

const inserts = [
  (c) => c.query('INSERT INTO mw_movements (sku, qty) VALUES (?, ?)', [sku(), qty()]),
  (c) => c.query('INSERT INTO mw_movements (sku, qty) VALUES (?, ?), (?, ?)', [sku(), qty(), sku(), qty()]),
  (c) => c.query('INSERT INTO mw_supply (sku, qty, due) VALUES (?, ?, ?)', [sku(), qty(), day()]),
]
const updates = [
  (c) => c.query('UPDATE mw_movements SET qty = ? WHERE id = ?', [qty(), lowId + rnd(highId - lowId + 1)]),
  // A key change: the movement moves to another product (old and new product are marked).
  (c) => c.query('UPDATE mw_movements SET sku = ? WHERE id = ?', [sku(), lowId + rnd(highId - lowId + 1)]),
  (c) => c.query('UPDATE mw_picking SET qty = qty + 1, ship = ? WHERE id = ?', [day(), 1 + rnd(batches * 3)]),
  // The related table: the trigger marks the products of the order's picking items.
  (c) => c.query(`UPDATE mw_orders SET status = IF(status = 'OPEN', 'CLOSED', 'OPEN') WHERE batch = ?`, [rnd(batches)]),
]

const stats = { commits: 0, rollbacks: 0, errors: {}, samples: [] }
const conn = await mysql.createConnection({ uri: config.uri })
const deadline = Date.now() + seconds * 1000
while (Date.now() < deadline) {
  const rollback = rnd(10) === 0
  try {
    await conn.beginTransaction()
    const steps = [inserts[rnd(inserts.length)]]
    if (rnd(2) === 0) steps.push(updates[rnd(updates.length)])
    if (rnd(3) === 0) steps.push(inserts[rnd(inserts.length)])
    for (const step of steps) await step(conn)
    if (rollback) {
      await conn.rollback()
      stats.rollbacks++
    } else {
      await conn.commit()
      stats.commits++
    }
  } catch (e) {
    await conn.rollback().catch(() => {})
    const code = e?.code ?? 'UNKNOWN'
    stats.errors[code] = (stats.errors[code] ?? 0) + 1
    if (stats.samples.length < 5) stats.samples.push(String(e?.message ?? e))
  }
  await new Promise((r) => setTimeout(r, rnd(3)))
}
await conn.end()
process.stdout.write(`${JSON.stringify(stats)}\n`)
