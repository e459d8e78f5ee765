// @stockcast/sql reader: a read of 1 000 products over 4 sources, the reader's one statement (every source in one
// snapshot) against the previous approach (one query per source, up to 4 at once on the pool's connections, each
// in its own snapshot), measured in the same run. PostgreSQL (STOCKCAST_PG_URL or
// postgres://postgres@127.0.0.1:5432/test, in its own schema `stockcast_bench_reader`, dropped after) and, when
// reachable, MariaDB (STOCKCAST_MYSQL_URL, in its own database `stockcast_bench_reader`, dropped after).

import { fromMysql, fromPg, sqlReader } from '@stockcast/sql'
import mysql from 'mysql2/promise'
import pg from 'pg'
import { defineStockSchema } from 'stockcast'
import { isMain, printTable } from './lib.mjs'

const PG_URL = process.env.STOCKCAST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const MYSQL_URL = process.env.STOCKCAST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test'
const NAME = 'stockcast_bench_reader'
const ZONE = 'America/Sao_Paulo'
const now = () => performance.now()
const fmt = (ms) => (ms < 1 ? `${(ms * 1000).toFixed(0)} us` : `${ms.toFixed(2)} ms`)
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Four sources: balance, supply on a date, firm demand on a date (with a where), pending demand on an instant. */
const schema = defineStockSchema({
  onHand: [{ table: 'stock_movements', product: 'product_code', quantity: 'quantity', id: 'stock' }],
  supply: [
    {
      table: 'production_schedule',
      product: 'product_code',
      quantity: 'planned_qty',
      date: 'scheduled_for',
      id: 'plan',
    },
  ],
  demand: [
    {
      table: 'order_lines',
      product: 'product_code',
      quantity: 'open_qty',
      date: 'ship_date',
      where: 'picking_batch_id IS NULL',
      id: 'lines',
    },
    {
      table: 'pre_picking_items',
      product: 'product_code',
      quantity: 'selected_qty',
      date: 'edited_at',
      where: "status IN ('CREATED', 'RECOMPOSED')",
      pending: true,
      id: 'prepick',
    },
  ],
})

/**
 * The previous reader, kept here as the baseline: one aggregate per source (days cut by `::date` / DATE_FORMAT in the
 * session's zone), up to 4 queries at once, each on whatever pool connection is free.
 */
function previousReader(dialect, query) {
  const pgsql = dialect === 'postgres'
  const q = (x) => (pgsql ? `"${x}"` : `\`${x}\``)
  const plans = schema.sources.map((s) => {
    const product = q(s.product)
    const date = s.date === undefined ? undefined : q(s.date)
    const day = (c) => (pgsql ? `to_char(${c}::date, 'YYYY-MM-DD')` : `DATE_FORMAT(${c}, '%Y-%m-%d')`)
    const select = [pgsql ? `${product}::text AS sc_product` : `MIN(${product}) AS sc_product`]
    const group = [pgsql ? product : `CAST(${product} AS BINARY)`]
    if (date !== undefined) {
      select.push(`${day(date)} AS sc_date`)
      group.push(day(date))
    }
    select.push(
      pgsql ? `SUM(${q(s.quantity)}::numeric)::text AS sc_qty` : `CAST(SUM(${q(s.quantity)}) AS CHAR) AS sc_qty`,
    )
    const cond = [date !== undefined ? ` AND ${date} IS NOT NULL` : '', s.where ? ` AND (${s.where})` : ''].join('')
    const sql = (n) =>
      `SELECT ${select.join(', ')} FROM ${q(s.table)} WHERE ${product} ${pgsql ? '= ANY($1)' : `IN (${Array(n).fill('?').join(', ')})`}${cond} GROUP BY ${group.join(', ')}`
    return { s, sql }
  })
  return async (products) => {
    const out = new Map()
    const tasks = plans.map((p) => async () => {
      const rows = await query(p.sql(products.length), pgsql ? [products] : products)
      for (const r of rows) {
        let b = out.get(r.sc_product)
        if (b === undefined) {
          b = { onHand: [], supply: [], demand: [] }
          out.set(r.sc_product, b)
        }
        const row = { quantity: r.sc_qty, source: p.s.id }
        if (p.s.date !== undefined) row.date = r.sc_date
        if (p.s.pending) row.pending = true
        b[p.s.kind].push(row)
      }
    })
    let next = 0
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < tasks.length) await tasks[next++]()
      }),
    )
    return out
  }
}

/** Median time per call of each task, over rounds that rotate the tasks' order; `parallel` calls at once per sample. */
async function measure(tasks, { rounds = 25, parallel = 1 } = {}) {
  const times = tasks.map(() => [])
  for (const t of tasks) for (let i = 0; i < 3; i++) await Promise.all(Array.from({ length: parallel }, t.fn))
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < tasks.length; k++) {
      const i = (k + r) % tasks.length
      const t0 = now()
      await Promise.all(Array.from({ length: parallel }, tasks[i].fn))
      times[i].push(now() - t0)
    }
  }
  return times.map(median)
}

function report(title, tasks, medians, parallel) {
  console.log(`\n### ${title}`)
  const base = medians[0]
  printTable(
    ['read', parallel > 1 ? `time for ${parallel} at once` : 'time', 'vs previous', 'speed-up'],
    tasks.map((t, i) => [
      t.name,
      fmt(medians[i]),
      `${(medians[i] / base).toFixed(2)}x`,
      `${(base / medians[i]).toFixed(2)}x`,
    ]),
  )
}

async function run(label, dialect, db, query, ids) {
  const previous = previousReader(dialect, query)
  const reader = sqlReader(db, schema)
  const batched = sqlReader(db, schema, { batchSize: 250 })
  // Same rows from both (days of the instant column aside, which the previous reader cut in the session's zone).
  const a = await previous(ids)
  const b = await reader.read(ids, { timeZone: 'UTC' })
  const count = (m) => [...m.values()].reduce((n, x) => n + x.onHand.length + x.supply.length + x.demand.length, 0)
  if (a.size !== b.size) throw new Error(`${label}: the readers disagree (${a.size} vs ${b.size} products)`)
  console.log(`${label}: ${ids.length} products read, ${count(b)} aggregated rows (previous reader: ${count(a)})`)
  const tasks = [
    { name: 'previous: 4 queries, up to 4 connections, 4 snapshots', fn: () => previous(ids) },
    { name: 'sqlReader: one UNION ALL statement, one snapshot', fn: () => reader.read(ids, { timeZone: ZONE }) },
    {
      name: 'sqlReader, batchSize 250: 4 statements in one snapshot transaction',
      fn: () => batched.read(ids, { timeZone: ZONE }),
    },
  ]
  report(`${label}: one read at a time (medians)`, tasks, await measure(tasks), 1)
  report(`${label}: 8 reads at once on an 8-connection pool (medians)`, tasks, await measure(tasks, { parallel: 8 }), 8)
}

async function postgres({ products, sample }) {
  const admin = new pg.Client({ connectionString: PG_URL })
  await admin.connect()
  const version = (await admin.query('SHOW server_version')).rows[0].server_version
  await admin.query(`DROP SCHEMA IF EXISTS ${NAME} CASCADE`)
  await admin.query(`CREATE SCHEMA ${NAME}`)
  const pool = new pg.Pool({ connectionString: PG_URL, max: 8, options: `-c search_path=${NAME}` })
  try {
    const x = (sql) => pool.query(sql)
    const sku = `'SKU-' || lpad(g::text, 5, '0')`
    await x(
      `CREATE TABLE stock_movements (id bigserial PRIMARY KEY, product_code text NOT NULL, quantity numeric(15,3) NOT NULL)`,
    )
    await x(
      `CREATE TABLE production_schedule (id bigserial PRIMARY KEY, product_code text NOT NULL, planned_qty numeric(15,3) NOT NULL, scheduled_for date NOT NULL)`,
    )
    await x(
      `CREATE TABLE order_lines (id bigserial PRIMARY KEY, product_code text NOT NULL, open_qty numeric(15,3) NOT NULL, ship_date date NOT NULL, picking_batch_id text)`,
    )
    await x(
      `CREATE TABLE pre_picking_items (id bigserial PRIMARY KEY, product_code text NOT NULL, selected_qty numeric(15,3) NOT NULL, edited_at timestamptz NOT NULL, status text NOT NULL)`,
    )
    await x(
      `INSERT INTO stock_movements (product_code, quantity) SELECT ${sku}, round((random() * 100)::numeric, 3) FROM generate_series(1, ${products}) g, generate_series(1, 3)`,
    )
    await x(
      `INSERT INTO production_schedule (product_code, planned_qty, scheduled_for) SELECT ${sku}, round((random() * 50)::numeric, 3), current_date + (random() * 35)::int FROM generate_series(1, ${products}) g, generate_series(1, 3)`,
    )
    await x(
      `INSERT INTO order_lines (product_code, open_qty, ship_date, picking_batch_id) SELECT ${sku}, round((random() * 20)::numeric, 3), current_date + (random() * 35)::int - 3, CASE WHEN random() < 0.2 THEN 'B1' END FROM generate_series(1, ${products}) g, generate_series(1, 5)`,
    )
    await x(
      `INSERT INTO pre_picking_items (product_code, selected_qty, edited_at, status) SELECT ${sku}, round((random() * 10)::numeric, 3), now() + (random() * 30) * interval '1 day', CASE WHEN random() < 0.7 THEN 'CREATED' ELSE 'DONE' END FROM generate_series(1, ${products}) g, generate_series(1, 2)`,
    )
    for (const t of ['stock_movements', 'production_schedule', 'order_lines', 'pre_picking_items']) {
      await x(`CREATE INDEX ON ${t} (product_code)`)
    }
    await x('ANALYZE')
    const ids = Array.from(
      { length: sample },
      (_, i) => `SKU-${String(i * Math.floor(products / sample) + 1).padStart(5, '0')}`,
    )
    console.log(`PostgreSQL ${version}, ${products} products, 13 rows each over 4 tables`)
    await run(
      'PostgreSQL (pg Pool)',
      'postgres',
      fromPg(pool),
      async (sql, params) => (await pool.query(sql, params)).rows,
      ids,
    )
  } finally {
    await pool.end()
    await admin.query(`DROP SCHEMA IF EXISTS ${NAME} CASCADE`)
    await admin.end()
  }
}

async function mariadb({ products, sample }) {
  let admin
  try {
    admin = await mysql.createConnection(MYSQL_URL)
  } catch (e) {
    console.log(`\nMariaDB unreachable (${e.message}): skipped`)
    return
  }
  const [[{ v }]] = await admin.query('SELECT VERSION() AS v')
  await admin.query(`DROP DATABASE IF EXISTS ${NAME}`)
  await admin.query(`CREATE DATABASE ${NAME}`)
  const url = new URL(MYSQL_URL)
  url.pathname = `/${NAME}`
  const pool = mysql.createPool({ uri: url.toString(), connectionLimit: 8, decimalNumbers: false, dateStrings: true })
  try {
    const x = (sql) => pool.query(sql)
    await x('CREATE TABLE n (n INT PRIMARY KEY)')
    await x('INSERT INTO n VALUES (1)')
    for (let have = 1; have < products; have *= 2)
      await x(`INSERT INTO n SELECT n + ${have} FROM n WHERE n + ${have} <= ${products}`)
    const rep = (k) => `(SELECT n AS r FROM n WHERE n <= ${k}) r`
    const sku = `CONCAT('SKU-', LPAD(g.n, 5, '0'))`
    await x(
      'CREATE TABLE stock_movements (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL, quantity DECIMAL(15,3) NOT NULL, INDEX (product_code))',
    )
    await x(
      'CREATE TABLE production_schedule (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL, planned_qty DECIMAL(15,3) NOT NULL, scheduled_for DATE NOT NULL, INDEX (product_code))',
    )
    await x(
      'CREATE TABLE order_lines (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL, open_qty DECIMAL(15,3) NOT NULL, ship_date DATE NOT NULL, picking_batch_id VARCHAR(32) NULL, INDEX (product_code))',
    )
    await x(
      'CREATE TABLE pre_picking_items (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL, selected_qty DECIMAL(15,3) NOT NULL, edited_at TIMESTAMP NOT NULL, status VARCHAR(16) NOT NULL, INDEX (product_code))',
    )
    await x(
      `INSERT INTO stock_movements (product_code, quantity) SELECT ${sku}, ROUND(RAND() * 100, 3) FROM n g, ${rep(3)} WHERE g.n <= ${products}`,
    )
    await x(
      `INSERT INTO production_schedule (product_code, planned_qty, scheduled_for) SELECT ${sku}, ROUND(RAND() * 50, 3), CURRENT_DATE + INTERVAL FLOOR(RAND() * 35) DAY FROM n g, ${rep(3)} WHERE g.n <= ${products}`,
    )
    await x(
      `INSERT INTO order_lines (product_code, open_qty, ship_date, picking_batch_id) SELECT ${sku}, ROUND(RAND() * 20, 3), CURRENT_DATE + INTERVAL FLOOR(RAND() * 35) - 3 DAY, IF(RAND() < 0.2, 'B1', NULL) FROM n g, ${rep(5)} WHERE g.n <= ${products}`,
    )
    await x(
      `INSERT INTO pre_picking_items (product_code, selected_qty, edited_at, status) SELECT ${sku}, ROUND(RAND() * 10, 3), NOW() + INTERVAL FLOOR(RAND() * 43200) MINUTE, IF(RAND() < 0.7, 'CREATED', 'DONE') FROM n g, ${rep(2)} WHERE g.n <= ${products}`,
    )
    await x('ANALYZE TABLE stock_movements, production_schedule, order_lines, pre_picking_items')
    const ids = Array.from(
      { length: sample },
      (_, i) => `SKU-${String(i * Math.floor(products / sample) + 1).padStart(5, '0')}`,
    )
    console.log(`\nMariaDB ${v}, ${products} products, 13 rows each over 4 tables`)
    await run(
      'MariaDB (mysql2 pool)',
      'mysql',
      fromMysql(pool),
      async (sql, params) => (await pool.query(sql, params))[0],
      ids,
    )
  } finally {
    await pool.end()
    await admin.query(`DROP DATABASE IF EXISTS ${NAME}`)
    await admin.end()
  }
}

export async function main({ products = 10_000, sample = 1000 } = {}) {
  console.log('## sql-reader: one read of 1 000 products over 4 sources')
  await postgres({ products, sample })
  await mariadb({ products, sample })
}

if (isMain(import.meta.url)) {
  main().catch((e) => {
    console.error(e)
    process.exitCode = 1
  })
}
