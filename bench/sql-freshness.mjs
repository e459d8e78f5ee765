// @stockcast/sql: how fresh a default read is. A writer commits one movement by plain SQL (another connection, as
// any service would); the clock runs from the commit until the first default `get()` that shows it. PostgreSQL wakes
// the listener with LISTEN/NOTIFY, MariaDB polls (pollMs 100, the default). Measured idle and under a write load
// (writers on other products), with how often the first read right after the commit was still stale, and whether a
// strong read (`consistency: 'strong'`) right after a commit ever missed it (it must not). Needs PostgreSQL
// (STOCKCAST_PG_URL; schema `stockcast_bench_fresh`) and/or MariaDB (STOCKCAST_MYSQL_URL; database
// `stockcast_bench_fresh`); a database that is unreachable is skipped with one line.

import { fromMysql, fromPg, sqlChangeCapture, sqlReader } from '@stockcast/sql'
import mysql from 'mysql2/promise'
import pg from 'pg'
import { createStockCache } from 'stockcast'
import { fmtMs as fmt, isMain, pct, printTable, schema } from './lib.mjs'

const PG_URL = process.env.STOCKCAST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const MYSQL_URL = process.env.STOCKCAST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test'
const NAME = 'stockcast_bench_fresh'
const now = () => performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const turn = () => new Promise((r) => setImmediate(r))

const DIALECTS = {
  postgres: {
    label: 'PostgreSQL (LISTEN/NOTIFY)',
    ddl: [
      'CREATE TABLE stock_movements (id bigserial PRIMARY KEY, product_code text NOT NULL, quantity numeric(15,3) NOT NULL)',
      'CREATE INDEX ON stock_movements (product_code)',
      'CREATE TABLE production_schedule (id bigserial PRIMARY KEY, product_code text NOT NULL, planned_qty numeric(15,3) NOT NULL, scheduled_for date NOT NULL)',
      'CREATE TABLE order_lines (id bigserial PRIMARY KEY, product_code text NOT NULL, open_qty numeric(15,3) NOT NULL, ship_date date NOT NULL)',
    ],
    insert: 'INSERT INTO stock_movements (product_code, quantity) VALUES ($1, 1)',
    async open() {
      const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 })
      await admin.connect()
      const version = (await admin.query('SHOW server_version')).rows[0].server_version
      await admin.query(`DROP SCHEMA IF EXISTS ${NAME} CASCADE`)
      await admin.query(`CREATE SCHEMA ${NAME}`)
      const pool = new pg.Pool({ connectionString: PG_URL, max: 8, options: `-c search_path=${NAME}` })
      const writers = new pg.Pool({ connectionString: PG_URL, max: 6, options: `-c search_path=${NAME}` })
      return {
        version: `PostgreSQL ${version}`,
        db: fromPg(pool),
        writer: fromPg(writers),
        async close() {
          await pool.end()
          await writers.end()
          await admin.query(`DROP SCHEMA IF EXISTS ${NAME} CASCADE`)
          await admin.end()
        },
      }
    },
  },
  mysql: {
    label: 'MariaDB (polling, 100 ms)',
    ddl: [
      `CREATE TABLE stock_movements (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL,
         quantity DECIMAL(15,3) NOT NULL, INDEX (product_code)) ENGINE=InnoDB`,
      `CREATE TABLE production_schedule (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL,
         planned_qty DECIMAL(15,3) NOT NULL, scheduled_for DATE NOT NULL) ENGINE=InnoDB`,
      `CREATE TABLE order_lines (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_code VARCHAR(32) NOT NULL,
         open_qty DECIMAL(15,3) NOT NULL, ship_date DATE NOT NULL) ENGINE=InnoDB`,
    ],
    insert: 'INSERT INTO stock_movements (product_code, quantity) VALUES (?, 1)',
    async open() {
      const admin = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2, connectTimeout: 3000 })
      try {
        const [[{ v }]] = await admin.query('SELECT VERSION() AS v')
        await admin.query(`DROP DATABASE IF EXISTS \`${NAME}\``)
        await admin.query(`CREATE DATABASE \`${NAME}\``)
        const url = new URL(MYSQL_URL)
        url.pathname = `/${NAME}`
        const pool = mysql.createPool({ uri: url.toString(), connectionLimit: 8, decimalNumbers: false })
        const writers = mysql.createPool({ uri: url.toString(), connectionLimit: 6, decimalNumbers: false })
        return {
          version: `MariaDB/MySQL ${v}`,
          db: fromMysql(pool),
          writer: fromMysql(writers),
          async close() {
            await pool.end()
            await writers.end()
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

/** Commit one movement of `product`, then read it by default until it shows: the lag, and whether read 1 was stale. */
async function sample(d, conn, cache, product, expected) {
  await conn.writer.execute(d.insert, [product])
  const committed = now()
  let reads = 0
  for (;;) {
    const p = await cache.get(product)
    reads++
    if (p.stockToday >= expected) return { lag: now() - committed, staleFirst: reads > 1 }
    if (now() - committed > 10_000) throw new Error(`${product}: no fresh default read within 10 s`)
    // An L1 hit resolves at once: give the listener's I/O a turn.
    await turn()
  }
}

async function runDialect(kind, { products, samples, loadWriters }) {
  const d = DIALECTS[kind]
  let conn
  try {
    conn = await d.open()
  } catch (e) {
    console.log(`${d.label}: skipped, unreachable (${e?.message ?? e})`)
    return null
  }
  try {
    for (const s of d.ddl) await conn.db.execute(s)
    const capture = sqlChangeCapture(conn.db, schema, { prefix: 'bench_fresh' })
    await capture.install()
    const cache = createStockCache({ schema, reader: sqlReader(conn.db, schema), pendingMarks: capture })
    const listener = await capture.listen(cache)
    const ids = Array.from({ length: products }, (_, i) => `F${String(i).padStart(4, '0')}`)
    await cache.getMany(ids)
    const stock = new Map(ids.map((p) => [p, 0]))
    const rows = []
    for (const load of ['idle', `${loadWriters} writers`]) {
      let writing = load !== 'idle'
      let written = 0
      // The load: writers committing movements of other products (L...), as fast as they can.
      const writers = writing
        ? Array.from({ length: loadWriters }, async (_, w) => {
            while (writing) {
              await conn.writer.execute(d.insert, [`L${w}-${written % 50}`])
              written++
            }
          })
        : []
      const lags = []
      let staleFirst = 0
      let strongMisses = 0
      const strongLags = []
      for (let i = 0; i < samples; i++) {
        const p = ids[i % ids.length]
        stock.set(p, stock.get(p) + 1)
        const r = await sample(d, conn, cache, p, stock.get(p))
        lags.push(r.lag)
        if (r.staleFirst) staleFirst++
        // A strong read right after a commit must show it, whatever the listener did so far.
        const q = ids[(i + 7) % ids.length]
        stock.set(q, stock.get(q) + 1)
        await conn.writer.execute(d.insert, [q])
        const t0 = now()
        const strong = await cache.get(q, { consistency: 'strong' })
        strongLags.push(now() - t0)
        if (strong.stockToday < stock.get(q)) strongMisses++
        await sleep(10)
      }
      writing = false
      await Promise.all(writers)
      await listener.drain(60_000)
      rows.push([
        d.label,
        load === 'idle' ? 'idle' : `${load} (${written} commits)`,
        String(samples),
        fmt(pct(lags, 50)),
        fmt(pct(lags, 99)),
        `${((staleFirst / samples) * 100).toFixed(0)} %`,
        fmt(pct(strongLags, 50)),
        String(strongMisses),
      ])
    }
    const report = await cache.validate({ products: ids })
    await listener.stop()
    await cache.close()
    await capture.uninstall()
    return { version: conn.version, rows, mismatches: report.mismatches.length }
  } finally {
    await conn.close()
  }
}

export async function main({ products = 200, samples = 60, loadWriters = 4 } = {}) {
  console.log('## sql-freshness: commit by another connection until the first default get() that shows it')
  const rows = []
  for (const kind of ['postgres', 'mysql']) {
    const out = await runDialect(kind, { products, samples, loadWriters })
    if (out === null) continue
    console.log(`${out.version}: validate() afterwards: ${out.mismatches} mismatches`)
    rows.push(...out.rows)
  }
  if (rows.length > 0) {
    printTable(
      ['db', 'load', 'samples', 'lag p50', 'lag p99', 'first read stale', 'strong read p50', 'strong misses'],
      rows,
    )
  }
}

if (isMain(import.meta.url)) await main()
