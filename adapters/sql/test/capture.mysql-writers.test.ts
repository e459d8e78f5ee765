import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import mysql from 'mysql2/promise'
import { createStockCache, defineStockSchema } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { fromMysql, type SqlDb, sqlChangeCapture, sqlReader } from '../src/index.js'
import { describeService, MYSQL_URL, mysqlDown, mysqlPool, uniquePrefix } from './services.js'

// Writers in OS processes of their own (plain mysql2, as another service would write) while the capture's listener
// consumes the outbox: the capture must cost them no error (issue 10 item 4: ER_LOCK_DEADLOCK and
// ER_AUTOINC_READ_FAILED with the listener running, none without it).

const WRITERS = 4
const SECONDS = 10
const PRODUCTS = 60
const BATCHES = 20
const SEEDED_MOVEMENTS = 400

const schema = defineStockSchema({
  onHand: [{ table: 'mw_movements', product: 'sku', quantity: 'qty' }],
  supply: [{ table: 'mw_supply', product: 'sku', quantity: 'qty', date: 'due' }],
  demand: [
    {
      table: 'mw_picking',
      product: 'sku',
      quantity: 'qty',
      date: 'ship',
      where: "EXISTS (SELECT 1 FROM mw_orders o WHERE o.batch = mw_picking.batch AND o.status = 'OPEN')",
    },
  ],
  related: [{ table: 'mw_orders', products: 'SELECT sku FROM mw_picking WHERE batch = :batch' }],
})

interface WriterStats {
  commits: number
  rollbacks: number
  errors: Record<string, number>
  samples: string[]
}

const script = fileURLToPath(new URL('./writers/mysql-writer.mjs', import.meta.url))

function runWriter(uri: string, seed: number): Promise<WriterStats> {
  const config = {
    uri,
    seconds: SECONDS,
    seed,
    products: PRODUCTS,
    batches: BATCHES,
    movementIds: [1, SEEDED_MOVEMENTS],
  }
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, JSON.stringify(config)], { timeout: (SECONDS + 30) * 1000 }, (err, out) => {
      if (err) reject(err)
      else resolve(JSON.parse(out.trim().split('\n').pop()!) as WriterStats)
    })
  })
}

describeService(mysqlDown, 'MariaDB/MySQL capture: writer processes and the listener', () => {
  const database = uniquePrefix('sc_mw')
  let admin: mysql.Pool
  let pool: mysql.Pool
  let db: SqlDb
  let uri: string

  beforeAll(async () => {
    admin = mysqlPool(2)
    await admin.query(`CREATE DATABASE \`${database}\``)
    const url = new URL(MYSQL_URL)
    url.pathname = `/${database}`
    uri = url.toString()
    pool = mysql.createPool({ uri, connectionLimit: 12, decimalNumbers: false, dateStrings: true })
    db = fromMysql(pool)
    await pool.query(
      'CREATE TABLE mw_movements (id INT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(64) NOT NULL, qty DECIMAL(18,3) NOT NULL, INDEX (sku)) ENGINE=InnoDB',
    )
    await pool.query(
      'CREATE TABLE mw_supply (id INT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(64) NOT NULL, qty DECIMAL(18,3) NOT NULL, due DATE NOT NULL, INDEX (sku)) ENGINE=InnoDB',
    )
    await pool.query(
      'CREATE TABLE mw_orders (id INT AUTO_INCREMENT PRIMARY KEY, batch INT NOT NULL UNIQUE, status VARCHAR(10) NOT NULL) ENGINE=InnoDB',
    )
    await pool.query(
      'CREATE TABLE mw_picking (id INT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(64) NOT NULL, qty DECIMAL(18,3) NOT NULL, ship DATE NOT NULL, batch INT NOT NULL, INDEX (batch), INDEX (sku)) ENGINE=InnoDB',
    )
    const movements: unknown[][] = []
    for (let i = 0; i < SEEDED_MOVEMENTS; i++) movements.push([`MW${i % PRODUCTS}`, '10.000'])
    await pool.query('INSERT INTO mw_movements (sku, qty) VALUES ?', [movements])
    for (let b = 0; b < BATCHES; b++) {
      await pool.query("INSERT INTO mw_orders (batch, status) VALUES (?, 'OPEN')", [b])
      for (let k = 0; k < 3; k++) {
        await pool.query('INSERT INTO mw_picking (sku, qty, ship, batch) VALUES (?, 1, CURRENT_DATE, ?)', [
          `MW${(b * 3 + k) % PRODUCTS}`,
          b,
        ])
      }
    }
  })
  afterAll(async () => {
    await pool?.end()
    await admin?.query(`DROP DATABASE IF EXISTS \`${database}\``)
    await admin?.end()
  })

  it(`${WRITERS} writer processes for ${SECONDS} s with the listener running: no writer error; the cache ends exact`, async () => {
    const capture = sqlChangeCapture(db, schema, { prefix: uniquePrefix('mw').replace(/_\d+_/, ''), pollMs: 20 })
    await capture.install()
    const cache = createStockCache({ schema, reader: sqlReader(db, schema), pendingMarks: capture, debounceMs: 10 })
    const listener = await capture.listen(cache)
    try {
      const products = Array.from({ length: PRODUCTS }, (_, i) => `MW${i}`)
      await cache.getMany(products)
      // Strong reads meanwhile (pending() queries on the outbox) and default reads.
      let reading = true
      let reads = 0
      const reader = (async () => {
        while (reading) {
          await cache.get(products[reads % PRODUCTS]!, { consistency: reads % 2 === 0 ? 'strong' : 'default' })
          reads++
          await new Promise((r) => setTimeout(r, 5))
        }
      })()
      const results = await Promise.all(Array.from({ length: WRITERS }, (_, i) => runWriter(uri, i + 1)))
      reading = false
      await reader
      await listener.drain(60_000)
      await cache.flush()
      const commits = results.reduce((n, r) => n + r.commits, 0)
      const errors: Record<string, number> = {}
      for (const r of results) for (const [code, n] of Object.entries(r.errors)) errors[code] = (errors[code] ?? 0) + n
      const status = listener.status()
      console.info(
        `[mysql writers] ${WRITERS} processes, ${SECONDS} s: ${commits} commits, ${results.reduce((n, r) => n + r.rollbacks, 0)} rollbacks, ` +
          `errors ${JSON.stringify(errors)}; ${reads} reads; listener: ${status.processed} rows in ${status.batches} batches`,
        results.flatMap((r) => r.samples).slice(0, 3),
      )
      expect(errors).toEqual({})
      expect(commits).toBeGreaterThan(200)
      expect(status.lastError).toBeNull()
      const report = await cache.validate({ products })
      expect(report.mismatches).toEqual([])
      expect(report.checked).toBe(PRODUCTS)
    } finally {
      await listener.stop()
      await cache.close()
      await capture.uninstall()
    }
  })
})
