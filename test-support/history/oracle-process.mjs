// The history checker's control reader: reads a product's rows in ONE snapshot (REPEATABLE READ) and computes its
// projection with the checker's own aggregation, recording the read like a strong read. A sound checker never
// accuses these reads; run.mjs counts any accusation as a checker fault. No stockcast cache involved.
import { connect, marks } from './db.mjs'
import { fingerprint, inputsOf, truthProjection } from './truth.mjs'
import { imageOf, prng, selectList, tableNames, utcToday } from './workload.mjs'

const cfg = JSON.parse(process.argv[2])
const t = tableNames(cfg.prefix)
const pgDialect = cfg.dialect === 'postgres'
const send = (msg) => {
  if (process.connected) process.send(msg)
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
process.on('disconnect', () => process.exit(3))

const fpIds = new Map()
let newFps = []
let reads = []
const idOf = (fp) => {
  let id = fpIds.get(fp)
  if (id === undefined) {
    id = fpIds.size
    fpIds.set(fp, id)
    newFps.push([id, fp])
  }
  return id
}
const flushReads = () => {
  if (reads.length === 0 && newFps.length === 0) return
  send({ t: 'reads', fps: newFps, list: reads })
  newFps = []
  reads = []
}
const flusher = setInterval(flushReads, 100)
const errors = {}

async function oracleRead(conn, product) {
  await conn.q(pgDialect ? 'BEGIN ISOLATION LEVEL REPEATABLE READ' : 'START TRANSACTION WITH CONSISTENT SNAPSHOT')
  try {
    const rows = {}
    for (const table of ['movements', 'production', 'order_lines', 'picking_items']) {
      rows[table] = (
        await conn.q(`SELECT ${selectList(cfg.dialect, table)} FROM ${t[table]} WHERE product_code = ?`, [product])
      ).map((r) => imageOf(table, r))
    }
    const batches = [...new Set(rows.picking_items.map((r) => r[4]))]
    const status = new Map()
    if (batches.length > 0) {
      const orders = await conn.q(
        `SELECT picking_batch_id, status FROM ${t.orders} WHERE picking_batch_id IN (${marks(batches.length)})`,
        batches,
      )
      for (const o of orders) status.set(Number(o.picking_batch_id), String(o.status))
    }
    return fingerprint(truthProjection(inputsOf(rows, status), utcToday()))
  } finally {
    await conn.q('COMMIT').catch(() => {})
  }
}

let reading = false
const rng = prng(cfg.seed)
const products = cfg.productList
async function loop() {
  let conn = await connect({ ...cfg.conn, appName: cfg.appName })
  while (reading) {
    const p = rng.chance(0.5) ? products[rng.int(Math.max(1, products.length / 5))] : rng.pick(products)
    try {
      if (conn.broken) {
        await conn.close()
        conn = await connect({ ...cfg.conn, appName: cfg.appName })
      }
      const start = Date.now()
      const fp = await oracleRead(conn, p)
      const end = Date.now()
      reads.push(['o', p, idOf(fp), start, end])
    } catch (e) {
      const code = String(e?.code ?? 'error')
      errors[code] = (errors[code] ?? 0) + 1
    }
    await sleep(rng.int(3))
  }
  await conn.close()
}

let loops = []
const handlers = {
  async read() {
    reading = true
    loops = Array.from({ length: cfg.loops }, () => loop())
  },
  async stopReads() {
    reading = false
    await Promise.all(loops)
    flushReads()
    return { readErrors: Object.fromEntries(Object.entries(errors).map(([k, n]) => [`oracle:${k}`, n])) }
  },
  async exit() {
    clearInterval(flusher)
    return {}
  },
}
process.on('message', (msg) => {
  const h = handlers[msg?.t]
  if (h === undefined) return
  h().then(
    (result) => {
      if (msg.t !== 'exit') send({ t: 'reply', id: msg.id, result })
      else if (!process.connected) process.exit(0)
      else process.send({ t: 'reply', id: msg.id, result }, () => process.exit(0))
    },
    (e) => send({ t: 'reply', id: msg.id, error: String(e?.stack ?? e) }),
  )
})
send({ t: 'ready' })
