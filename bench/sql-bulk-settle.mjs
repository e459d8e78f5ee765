// @stockcast/sql: how long the outbox listener takes to settle a bulk import made of many statements, against the
// same rows inserted by one statement, on PostgreSQL and MariaDB in one run. Each import inserts 100 000 movements
// over 2 000 products outside bulkImport (a plain writer); the clock runs from the commit (of the last transaction)
// until the listener has drained the outbox (every touched product recomputed, its rows deleted). Target: 100
// statements in one transaction <= 1.5x one statement. 100 transactions of 1 000 rows are printed too (no target).
// Needs PostgreSQL (STOCKCAST_PG_URL; schema `stockcast_bench_settle`) and/or MariaDB (STOCKCAST_MYSQL_URL;
// database `stockcast_bench_settle`); a database that is unreachable is skipped with one line.

import { fromMysql, fromPg, sqlChangeCapture, sqlReader } from '@stockcast/sql'
import mysql from 'mysql2/promise'
import pg from 'pg'
import { createStockCache } from 'stockcast'
import { isMain, printTable, schema } from './lib.mjs'

const PG_URL = process.env.STOCKCAST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const MYSQL_URL = process.env.STOCKCAST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test'
const NAME = 'stockcast_bench_settle'
const now = () => performance.now()
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const fmt = (ms) => `${ms.toFixed(0)} ms`

/** The two imports of `rows` rows over `products` products: one statement, or `statements` in one transaction. */
const DIALECTS = {
  postgres: {
    label: 'PostgreSQL',
    ddl: [
      'CREATE TABLE stock_movements (id bigserial PRIMARY KEY, product_code text NOT NULL, quantity numeric(15,3) NOT NULL)',
      'CREATE INDEX ON stock_movements (product_code)',
      'CREATE TABLE production_schedule (id bigserial PRIMARY KEY, product_code text NOT NULL, planned_qty numeric(15,3) NOT NULL, scheduled_for date NOT NULL)',
      'CREATE TABLE order_lines (id bigserial PRIMARY KEY, product_code text NOT NULL, open_qty numeric(15,3) NOT NULL, ship_date date NOT NULL)',
    ],
    insert: (from, to, products) =>
      `INSERT INTO stock_movements (product_code, quantity)
       SELECT 'P' || lpad((i % ${products})::text, 4, '0'), (i % 7) - 3 FROM generate_series(${from}, ${to}) AS i`,
    async open() {
      const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 })
      await admin.connect()
      const version = (await admin.query('SHOW server_version')).rows[0].server_version
      await admin.query(`DROP SCHEMA IF EXISTS ${NAME} CASCADE`)
      await admin.query(`CREATE SCHEMA ${NAME}`)
      const pool = new pg.Pool({ connectionString: PG_URL, max: 8, options: `-c search_path=${NAME}` })
      return {
        version: `PostgreSQL ${version}`,
        db: fromPg(pool),
        async close() {
          await pool.end()
          await admin.query(`DROP SCHEMA IF EXISTS ${NAME} CASCADE`)
          await admin.end()
        },
      }
    },
  },
  mysql: {
    label: 'MariaDB',
    ddl: [
      `CREATE TABLE stock_movements (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL,
         quantity DECIMAL(15,3) NOT NULL, INDEX (product_code)) ENGINE=InnoDB`,
      `CREATE TABLE production_schedule (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL,
         planned_qty DECIMAL(15,3) NOT NULL, scheduled_for DATE NOT NULL) ENGINE=InnoDB`,
      `CREATE TABLE order_lines (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL,
         open_qty DECIMAL(15,3) NOT NULL, ship_date DATE NOT NULL) ENGINE=InnoDB`,
      'CREATE TABLE bench_numbers (n INT PRIMARY KEY) ENGINE=InnoDB',
    ],
    insert: (from, to, products) =>
      `INSERT INTO stock_movements (product_code, quantity)
       SELECT CONCAT('P', LPAD(n % ${products}, 4, '0')), (n % 7) - 3 FROM bench_numbers WHERE n BETWEEN ${from} AND ${to}`,
    async open(rows) {
      const admin = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2, connectTimeout: 3000 })
      try {
        const [[{ v }]] = await admin.query('SELECT VERSION() AS v')
        await admin.query(`DROP DATABASE IF EXISTS \`${NAME}\``)
        await admin.query(`CREATE DATABASE \`${NAME}\``)
        const url = new URL(MYSQL_URL)
        url.pathname = `/${NAME}`
        const pool = mysql.createPool({ uri: url.toString(), connectionLimit: 8, decimalNumbers: false })
        const db = fromMysql(pool)
        return {
          version: `MariaDB/MySQL ${v}`,
          db,
          async prepare() {
            await db.execute('INSERT INTO bench_numbers (n) VALUES (1)')
            for (let have = 1; have < rows; have *= 2) {
              await db.execute('INSERT INTO bench_numbers (n) SELECT n + ? FROM bench_numbers WHERE n + ? <= ?', [
                have,
                have,
                rows,
              ])
            }
          },
          async close() {
            await pool.end()
            await admin.query(`DROP DATABASE IF EXISTS \`${NAME}\``)
            await admin.end()
          },
        }
      } catch (e) {
        await admin.end().catch(() => {})
        throw e
      }
    },
  },
}

async function runDialect(kind, { rows, products, statements, rounds }) {
  const d = DIALECTS[kind]
  let conn
  try {
    conn = await d.open(rows)
  } catch (e) {
    console.log(`${d.label}: skipped, unreachable (${e?.message ?? e})`)
    return null
  }
  const { db } = conn
  try {
    for (const s of d.ddl) await db.execute(s)
    await conn.prepare?.()
    const capture = sqlChangeCapture(db, schema, { prefix: 'bench_settle' })
    await capture.install()
    const cache = createStockCache({ schema, reader: sqlReader(db, schema) })
    const listener = await capture.listen(cache)
    const ids = Array.from({ length: products }, (_, i) => `P${String(i).padStart(4, '0')}`)
    await cache.getMany(ids)
    const per = rows / statements
    const variants = {
      'one statement': async () => {
        await db.execute(d.insert(1, rows, products))
      },
      [`${statements} statements, one transaction`]: async () => {
        await db.transaction(async (tx) => {
          for (let k = 0; k < statements; k++) await tx.execute(d.insert(k * per + 1, (k + 1) * per, products))
        })
      },
      // No target: the marks coalesce in the claims (one recompute per product), but every transaction has rows of
      // its own in the outbox (leased, then deleted).
      [`${statements} transactions`]: async () => {
        for (let k = 0; k < statements; k++) await db.execute(d.insert(k * per + 1, (k + 1) * per, products))
      },
    }
    const results = Object.fromEntries(
      Object.keys(variants).map((k) => [k, { write: [], settle: [], recomputes: [], rows: [] }]),
    )
    // Outbox rows written: the id sequence's progress (the listener deletes rows meanwhile).
    const outboxMax = async () =>
      Number(
        (
          await db.query(
            kind === 'postgres'
              ? 'SELECT last_value AS m FROM bench_settle_outbox_id_seq'
              : `SELECT AUTO_INCREMENT AS m FROM information_schema.TABLES WHERE TABLE_SCHEMA = '${NAME}' AND TABLE_NAME = 'bench_settle_outbox'`,
          )
        )[0].m,
      )
    const [{ floor }] = await db.query('SELECT COALESCE(MAX(id), 0) AS floor FROM stock_movements')
    for (let round = 0; round < rounds; round++) {
      const names = Object.keys(variants)
      // Alternate which import runs first.
      if (round % 2 === 1) names.reverse()
      for (const name of names) {
        const before = cache.metrics().recomputes
        const firstId = await outboxMax()
        const t0 = now()
        await variants[name]()
        const committed = now()
        const lastId = await outboxMax()
        await listener.drain(600_000)
        const settled = now()
        results[name].write.push(committed - t0)
        results[name].settle.push(settled - committed)
        results[name].recomputes.push(cache.metrics().recomputes - before)
        results[name].rows.push(lastId - firstId)
        // Back to the seeded table (the delete is captured too: drained before the next measurement).
        await db.execute('DELETE FROM stock_movements WHERE id > ?'.replace('?', kind === 'postgres' ? '$1' : '?'), [
          floor,
        ])
        await listener.drain(600_000)
      }
    }
    const report = await cache.validate({ products: ids.slice(0, 200) })
    await listener.stop()
    await cache.close()
    await capture.uninstall()
    return { label: d.label, version: conn.version, results, mismatches: report.mismatches.length }
  } finally {
    await conn.close()
  }
}

export async function main({ rows = 100_000, products = 2000, statements = 100, rounds = 3 } = {}) {
  console.log('## sql-bulk-settle: outbox settle time of a bulk import by many statements against one statement')
  console.log(
    `${rows} rows over ${products} products, outside bulkImport; median of ${rounds} rounds; settle = commit until the outbox is drained`,
  )
  const table = []
  for (const kind of ['postgres', 'mysql']) {
    const out = await runDialect(kind, { rows, products, statements, rounds })
    if (out === null) continue
    console.log(`${out.label}: ${out.version}; validate() on 200 products: ${out.mismatches} mismatches`)
    const [single, many] = Object.values(out.results)
    const base = median(single.settle)
    for (const [name, r] of Object.entries(out.results)) {
      const ratio = median(r.settle) / base
      const isMany = r === many
      table.push([
        out.label,
        name,
        fmt(median(r.write)),
        String(median(r.rows)),
        fmt(median(r.settle)),
        String(median(r.recomputes)),
        `${ratio.toFixed(2)}x`,
        isMany ? `<= 1.5x ${ratio <= 1.5 ? 'PASS' : 'BELOW'}` : '',
      ])
    }
  }
  if (table.length > 0)
    printTable(['db', 'import', 'statement(s)', 'outbox rows', 'settle', 'recomputes', 'ratio', 'target'], table)
}

if (isMain(import.meta.url)) await main()
