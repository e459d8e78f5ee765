// @stockcast/sql on MariaDB/MySQL: a bulk import with and without the capture's row triggers, inside and outside
// bulkImport. Every figure is a ratio against the trigger-free statement measured in the same run. Needs MariaDB
// (STOCKCAST_MYSQL_URL or mysql://root@127.0.0.1:3306/test); it works in a database of its own,
// `stockcast_bench_mariadb`, and drops it after. Skipped (exit 0) when the server is unreachable.

import { fromMysql, sqlChangeCapture, sqlReader, sqlStore } from '@stockcast/sql'
import mysql from 'mysql2/promise'
import { createStockCache } from 'stockcast'
import { schema } from '../examples/sql-demo/schema.mjs'
import { fmtMs as fmt, isMain, printTable } from './lib.mjs'

const URL_ = process.env.STOCKCAST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test'
const DATABASE = 'stockcast_bench_mariadb'
const EMPTY_TRIGGER = 'bench_empty_insert'
const now = () => performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

// The demo schema (examples/sql-demo/schema.mjs) in MySQL syntax: its DDL is PostgreSQL's (bigserial, text keys).
// AUTO_INCREMENT keys, as the capture's bulk fast path needs; every product_code indexed.
const DDL = [
  `CREATE TABLE stock_movements (
    id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL, quantity DECIMAL(15,3) NOT NULL,
    moved_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, INDEX stock_movements_product (product_code)) ENGINE=InnoDB`,
  `CREATE TABLE production_schedule (
    id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL, planned_qty DECIMAL(15,3) NOT NULL,
    scheduled_for DATE NOT NULL, INDEX production_schedule_product (product_code)) ENGINE=InnoDB`,
  `CREATE TABLE orders (
    id BIGINT AUTO_INCREMENT PRIMARY KEY, picking_batch_id VARCHAR(32) NULL, status VARCHAR(16) NOT NULL DEFAULT 'OPEN',
    INDEX orders_batch (picking_batch_id)) ENGINE=InnoDB`,
  `CREATE TABLE order_lines (
    id BIGINT AUTO_INCREMENT PRIMARY KEY, order_id BIGINT NULL, product_code VARCHAR(32) NOT NULL,
    open_qty DECIMAL(15,3) NOT NULL, ship_date DATE NOT NULL, picking_batch_id VARCHAR(32) NULL,
    INDEX order_lines_product (product_code)) ENGINE=InnoDB`,
  `CREATE TABLE pre_picking_items (
    id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL, selected_qty DECIMAL(15,3) NOT NULL,
    edited_ship_date DATE NOT NULL, status VARCHAR(16) NOT NULL, INDEX pre_picking_items_product (product_code))
    ENGINE=InnoDB`,
  `CREATE TABLE picking_items (
    id BIGINT AUTO_INCREMENT PRIMARY KEY, picking_batch_id VARCHAR(32) NOT NULL, product_code VARCHAR(32) NOT NULL,
    qty DECIMAL(15,3) NOT NULL, ship_date DATE NOT NULL, INDEX picking_items_product (product_code),
    INDEX picking_items_batch (picking_batch_id)) ENGINE=InnoDB`,
  // 1..N, the row source of the seed and of the import (portable: MySQL 8 has no seq_1_to_N tables).
  'CREATE TABLE bench_numbers (n INT PRIMARY KEY) ENGINE=InnoDB',
]

/** Fill bench_numbers with 1..n (doubling). */
async function fillNumbers(db, n) {
  await db.execute('INSERT INTO bench_numbers (n) VALUES (1)')
  for (let have = 1; have < n; have *= 2) {
    await db.execute('INSERT INTO bench_numbers (n) SELECT n + ? FROM bench_numbers WHERE n + ? <= ?', [have, have, n])
  }
}

/** The demo's seed (examples/sql-demo/schema.mjs) in MySQL syntax: the same rows per product, set-based. */
async function seed(db, n) {
  const sku = `CONCAT('SKU-', LPAD(g.n, 5, '0'))`
  await db.execute(
    `INSERT INTO stock_movements (product_code, quantity)
     SELECT ${sku}, ROUND(RAND() * 500, 3) FROM bench_numbers g WHERE g.n <= ?`,
    [n],
  )
  await db.execute(
    `INSERT INTO order_lines (product_code, open_qty, ship_date)
     SELECT ${sku}, ROUND(RAND() * 80, 1), CURDATE() + INTERVAL (FLOOR(RAND() * 32) - 2) DAY
     FROM bench_numbers g CROSS JOIN (SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4) k
     WHERE g.n <= ?`,
    [n],
  )
  await db.execute(
    `INSERT INTO production_schedule (product_code, planned_qty, scheduled_for)
     SELECT ${sku}, ROUND(RAND() * 200), CURDATE() + INTERVAL FLOOR(RAND() * 20) DAY
     FROM bench_numbers g WHERE g.n <= ? AND RAND() < 0.6`,
    [n],
  )
  await db.execute(
    `INSERT INTO pre_picking_items (product_code, selected_qty, edited_ship_date, status)
     SELECT ${sku}, 10, CURDATE() + INTERVAL FLOOR(RAND() * 10) DAY,
            ELT(1 + FLOOR(RAND() * 3), 'CREATED', 'RECOMPOSED', 'CANCELLED')
     FROM bench_numbers g WHERE g.n <= ? AND RAND() < 0.3`,
    [n],
  )
  const batches = Math.max(1, Math.floor(n / 10))
  await db.execute(
    `INSERT INTO orders (picking_batch_id, status)
     SELECT CONCAT('B', g.n), ELT(1 + g.n % 3, 'OPEN', 'QUOTED', 'SHIPPED') FROM bench_numbers g WHERE g.n <= ?`,
    [batches],
  )
  await db.execute(
    `INSERT INTO picking_items (picking_batch_id, product_code, qty, ship_date)
     SELECT CONCAT('B', 1 + FLOOR(RAND() * ?)), ${sku}, 5, CURDATE() + INTERVAL FLOOR(RAND() * 7) DAY
     FROM bench_numbers g WHERE g.n <= ? AND RAND() < 0.5`,
    [batches, n],
  )
}

/** `host:port` of a connection URL (never its password). */
function where(url) {
  try {
    const u = new URL(url)
    return `${u.hostname}:${u.port || 3306}`
  } catch {
    return 'STOCKCAST_MYSQL_URL'
  }
}

export async function main({ products = 5000, bulk = 100_000, rounds = 3 } = {}) {
  let admin
  try {
    admin = mysql.createPool({ uri: URL_, connectionLimit: 2, connectTimeout: 3000 })
    await admin.query('SELECT 1')
  } catch (e) {
    await admin?.end().catch(() => {})
    console.log(`## sql-mariadb: skipped, MariaDB/MySQL unreachable at ${where(URL_)} (${e?.message ?? e})`)
    return
  }
  console.log('## sql-mariadb: @stockcast/sql bulk import on MariaDB/MySQL')
  const [[{ v: version }]] = await admin.query('SELECT VERSION() AS v')
  await admin.query(`DROP DATABASE IF EXISTS \`${DATABASE}\``)
  await admin.query(`CREATE DATABASE \`${DATABASE}\``)
  const url = new URL(URL_)
  url.pathname = `/${DATABASE}`
  const pool = mysql.createPool({
    uri: url.toString(),
    connectionLimit: 8,
    decimalNumbers: false,
    dateStrings: true,
    multipleStatements: false,
  })
  const db = fromMysql(pool)
  let cache
  let listener
  try {
    console.log(`${version}, ${products} products, database ${DATABASE}`)
    let t0 = now()
    for (const s of DDL) await db.execute(s)
    await fillNumbers(db, Math.max(products, bulk))
    await seed(db, products)
    await db.query(
      'ANALYZE TABLE stock_movements, production_schedule, orders, order_lines, pre_picking_items, picking_items',
    )
    const [{ m: seedMax }] = await db.query('SELECT CAST(MAX(id) AS CHAR) AS m FROM stock_movements')
    console.log(`seeded in ${fmt(now() - t0)}`)

    const capture = sqlChangeCapture(db, schema)
    const store = sqlStore(db, { table: 'stockcast_projections' })
    await store.install()
    // One instance: an hour's L1 ttl (longer than the run) only says so, instead of a bus.
    const memory = { max: 20_000, ttl: 3_600_000 }
    cache = createStockCache({ schema, reader: sqlReader(db, schema), store, memory })
    t0 = now()
    const rebuilt = await cache.rebuildAll()
    console.log(`rebuildAll of ${rebuilt.products} products in ${fmt(now() - t0)}`)

    // Which triggers stock_movements has: none, one empty row trigger, or the capture's (with a listener).
    let state = 'none'
    const setState = async (want) => {
      if (want === state) return
      if (state === 'capture') {
        await listener.stop()
        listener = undefined
        await capture.uninstall()
      }
      if (state === 'empty') await db.execute(`DROP TRIGGER IF EXISTS ${EMPTY_TRIGGER}`)
      if (want === 'empty') {
        await db.execute(`CREATE TRIGGER ${EMPTY_TRIGGER} AFTER INSERT ON stock_movements FOR EACH ROW BEGIN END`)
      }
      if (want === 'capture') {
        await capture.install()
        listener = await capture.listen(cache)
      }
      state = want
    }
    // Every measurement starts from the seeded table (the import grows it, and a bigger index costs more): the rows
    // above the seed are deleted after each one (through bulkImport while the capture is installed, so the cache
    // sees it), then InnoDB's purge of the deleted rows is awaited so that it does not run during the next one.
    let purgeTimeouts = 0
    const waitForPurge = async () => {
      const deadline = now() + 10_000
      try {
        for (;;) {
          const [row] = await db.query(
            "SELECT `COUNT` AS n FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'",
          )
          if (row === undefined || Number(row.n) === 0) return
          if (now() > deadline) {
            purgeTimeouts++
            return
          }
          await sleep(50)
        }
      } catch {
        await sleep(1000)
      }
    }
    const settle = async () => {
      if (state === 'capture') {
        await listener.drain(600_000)
        await cache.flush()
      }
      await waitForPurge()
    }
    const restore = async () => {
      const del = (s) => s.execute('DELETE FROM stock_movements WHERE id > CAST(? AS SIGNED)', [seedMax])
      if (state === 'capture') await capture.bulkImport(cache, del)
      else await db.session(del)
      await settle()
    }

    // The import: one INSERT .. SELECT of `bulk` movements spread over every product.
    let statementMs = 0
    const insertBulk = async (session) => {
      const s = now()
      await session.execute(
        `INSERT INTO stock_movements (product_code, quantity)
         SELECT CONCAT('SKU-', LPAD(1 + (n * 7919) % ?, 5, '0')), 1 FROM bench_numbers WHERE n <= ?`,
        [products, bulk],
      )
      statementMs = now() - s
    }

    const runs = {
      none: [],
      empty: [],
      outsideStmt: [],
      outsideAll: [],
      insideStmt: [],
      insideMoved: [],
      insideAll: [],
    }
    let recomputed = 0
    const configs = {
      async none() {
        await setState('none')
        await settle()
        await db.session(insertBulk)
        runs.none.push(statementMs)
        await restore()
      },
      async empty() {
        await setState('empty')
        await settle()
        await db.session(insertBulk)
        runs.empty.push(statementMs)
        await restore()
      },
      async outside() {
        await setState('capture')
        await settle()
        const t = now()
        await db.session(insertBulk)
        runs.outsideStmt.push(statementMs)
        await listener.drain(600_000)
        await cache.flush()
        runs.outsideAll.push(now() - t)
        await restore()
      },
      async inside() {
        await setState('capture')
        await settle()
        const before = cache.metrics().recomputes
        const t = now()
        await capture.bulkImport(cache, insertBulk)
        runs.insideMoved.push(now() - t)
        runs.insideStmt.push(statementMs)
        await listener.drain(600_000)
        await cache.flush()
        runs.insideAll.push(now() - t)
        recomputed = cache.metrics().recomputes - before
        await restore()
      },
    }

    console.log(`\n### bulk insert of ${bulk} movements (one INSERT .. SELECT over ${products} products)`)
    // A warm-up import (not measured), then each round runs every configuration, in a rotated order.
    await configs.none()
    runs.none.length = 0
    const order = ['none', 'empty', 'outside', 'inside']
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < order.length; i++) await configs[order[(i + round) % order.length]]()
    }
    await setState('capture')
    await settle()

    const best = (xs) => Math.min(...xs)
    const none = best(runs.none)
    const row = (name, xs, target = '') => [name, fmt(best(xs)), `${(best(xs) / none).toFixed(2)}x`, target]
    printTable(
      [`import`, `time (best of ${rounds})`, 'ratio vs no triggers', 'target'],
      [
        row('no triggers (the statement)', runs.none),
        row('an empty row trigger only (BEGIN END): the statement', runs.empty),
        row("capture's triggers, outside bulkImport: the statement", runs.outsideStmt),
        row("capture's triggers, outside bulkImport: until the listener has recomputed all", runs.outsideAll),
        row("capture's triggers, inside bulkImport: the statement", runs.insideStmt, '<= 1.3x'),
        row("capture's triggers, inside bulkImport: the statement and the final move", runs.insideMoved),
        row(`capture's triggers, inside bulkImport: until all ${products} products are recomputed`, runs.insideAll),
      ],
    )
    console.log(`products recomputed after the last bulkImport: ${recomputed} (of ${products} touched)`)
    if (purgeTimeouts > 0) console.log(`(InnoDB purge still busy after 10 s before ${purgeTimeouts} measurement(s))`)
    const v = await cache.validate({ sample: 300 })
    console.log(`validate after the imports (300 sampled): ${v.checked} checked, ${v.mismatches.length} mismatches`)
  } finally {
    await listener?.stop().catch(() => {})
    await cache?.close().catch(() => {})
    await pool.end().catch(() => {})
    await admin.query(`DROP DATABASE IF EXISTS \`${DATABASE}\``).catch(() => {})
    await admin.end().catch(() => {})
  }
}

if (isMain(import.meta.url)) await main()
