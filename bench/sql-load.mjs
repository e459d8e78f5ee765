// @stockcast/sql on PostgreSQL: commit-to-fresh of a probe product while other writers keep committing. Four writer
// processes (load-writer.mjs) commit 300 transactions per second in all (1-3 movements each, on random products of
// 2 000, never the probe), paced against the clock; this process commits one movement of the probe every 50 ms and
// times it until `peek()` (L1, kept fresh by the listener) shows it. Idle first (no writers), then under the load,
// for debounce 0 and the default 500 ms. First the floor under the same load: a connection that LISTENs on the
// capture's channel and reads the probe's stock with one SELECT per wake-up (what no LISTEN-driven cache can beat).
// Needs PostgreSQL (STOCKCAST_PG_URL or
// postgres://postgres@127.0.0.1:5432/test); it works in its own schema `stockcast_bench_load` and drops it after.

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { fromPg, sqlChangeCapture, sqlReader, sqlStore } from '@stockcast/sql'
import pg from 'pg'
import { createStockCache } from 'stockcast'
import { DDL, schema, seed } from '../examples/sql-demo/schema.mjs'
import { fmtMs as fmt, isMain, pct, printTable } from './lib.mjs'

const URL_ = process.env.STOCKCAST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCHEMA = 'stockcast_bench_load'
const PROBE = 'SKU-00001'
const now = () => performance.now()
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function startWriters(n, totalRate, products, seconds) {
  const script = fileURLToPath(new URL('./load-writer.mjs', import.meta.url))
  return Array.from({ length: n }, (_, w) => {
    const child = spawn(
      process.execPath,
      [script, URL_, SCHEMA, String(totalRate / n), String(products), String(seconds), String(w + 1)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    let out = ''
    child.stdout.on('data', (d) => {
      out += d
    })
    const done = new Promise((resolve, reject) => {
      child.on('error', reject)
      child.on('exit', (code) =>
        code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`writer ${w} exited ${code}`)),
      )
    })
    return { child, done }
  })
}

/**
 * Commit one probe movement every `everyMs` for `ms`; each sample runs until `read()` (the probe's stock as the
 * reader under test sees it now) shows it. The first `warm` samples are not counted (the first statements and
 * recomputes of a run are slower: the steady state is measured).
 */
async function probe(db, read, ms, everyMs = 50, warm = 5) {
  const lags = []
  const afterCommit = []
  const end = now() + ms
  let expected = read()
  while (now() < end) {
    const s = now()
    await db.execute('INSERT INTO stock_movements (product_code, quantity) VALUES ($1, 1)', [PROBE])
    const committed = now()
    expected += 1
    for (;;) {
      const v = read()
      // Half a unit below: `expected` is a sum of doubles, not always the double nearest the decimal sum.
      if (v !== undefined && v > expected - 0.5) break
      if (now() - s > 10_000) throw new Error('the probe was not fresh within 10 s')
      await new Promise((r) => setImmediate(r))
    }
    if (warm > 0) warm--
    else {
      lags.push(now() - s)
      afterCommit.push(now() - committed)
    }
    const rest = everyMs - (now() - s)
    if (rest > 0) await sleep(rest)
  }
  return { lags, afterCommit }
}

/**
 * The floor: the least any LISTEN-driven cache can do. A connection of its own LISTENs on the capture's channel and,
 * at every wake-up, reads the probe's stock with one SELECT (one at a time; a wake-up during it reads again). No
 * outbox claim, no recompute of other products, no store write, no delete.
 */
async function floorReader(channel) {
  const client = new pg.Client({ connectionString: URL_, options: `-c search_path=${SCHEMA}` })
  await client.connect()
  let value
  let running = false
  let again = false
  const refresh = async () => {
    if (running) {
      again = true
      return
    }
    running = true
    do {
      again = false
      const r = await client.query(
        'SELECT COALESCE(sum(quantity), 0)::float8 AS s FROM stock_movements WHERE product_code = $1',
        [PROBE],
      )
      value = r.rows[0].s
    } while (again)
    running = false
  }
  client.on('notification', () => void refresh())
  await client.query(`LISTEN ${channel}`)
  await refresh()
  return { read: () => value, stop: () => client.end() }
}

export async function main({ products = 2000, seconds = 20, rate = 300, writers = 4 } = {}) {
  console.log('## sql-load: commit-to-fresh of a probe product under a paced write load (PostgreSQL, LISTEN/NOTIFY)')
  const admin = new pg.Client({ connectionString: URL_ })
  await admin.connect()
  const version = (await admin.query('SHOW server_version')).rows[0].server_version
  console.log(
    `PostgreSQL ${version}, ${products} products, ${writers} writer processes at ${rate} transactions/s in all, ${seconds} s per run`,
  )
  await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  await admin.query(`CREATE SCHEMA ${SCHEMA}`)
  const pool = new pg.Pool({ connectionString: URL_, max: 8, options: `-c search_path=${SCHEMA}` })
  const probePool = new pg.Pool({ connectionString: URL_, max: 1, options: `-c search_path=${SCHEMA}` })
  const db = fromPg(pool)
  const rows = []
  try {
    for (const s of DDL.split(';').filter((x) => x.trim())) await db.execute(s)
    await seed(db, products)
    await db.execute('ANALYZE')
    const capture = sqlChangeCapture(db, schema)
    await capture.install()
    const reader = sqlReader(db, schema)
    // One run: `read` is the probe's stock as the reader under test sees it; under load, writers commit meanwhile.
    const run = async (label, load, read, target) => {
      let ws = []
      if (load === 'load') {
        ws = startWriters(writers, rate, products, seconds + 5)
        await sleep(1500) // the writers connect and reach their pace
      }
      const t0 = now()
      const { lags, afterCommit } = await probe(
        fromPg(probePool),
        read,
        load === 'idle' ? Math.min(5, seconds) * 1000 : seconds * 1000,
      )
      const elapsed = (now() - t0) / 1000
      let commits = 0
      let late = 0
      for (const w of ws) w.child.kill('SIGTERM')
      for (const w of ws) {
        const r = await w.done
        commits += r.commits
        late = Math.max(late, r.maxLateMs)
      }
      rows.push([
        label,
        load === 'idle'
          ? 'idle'
          : `${writers} writers, ${Math.round(commits / (elapsed + 1.5))} tx/s (late <= ${late} ms)`,
        String(lags.length),
        fmt(pct(lags, 50)),
        fmt(pct(lags, 99)),
        fmt(Math.max(...lags)),
        fmt(pct(afterCommit, 50)),
        fmt(pct(afterCommit, 99)),
        target,
      ])
    }
    // The floor first, with the triggers in place (writers pay for them as in the runs after) and no consumer.
    const floor = await floorReader('stockcast_outbox')
    try {
      for (const load of ['idle', 'load']) await run('floor: LISTEN + 1 SELECT', load, floor.read, '-')
    } finally {
      await floor.stop()
    }
    await db.execute('DELETE FROM stockcast_outbox')
    for (const debounceMs of [0, 500]) {
      const store = sqlStore(db, { table: 'stockcast_projections' })
      const cache = createStockCache({ schema, reader, store, debounceMs, memory: { max: 20_000 } })
      await cache.rebuildAll()
      const listener = await capture.listen(cache)
      await cache.get(PROBE)
      for (const load of ['idle', 'load']) {
        await run(`debounce ${debounceMs} ms`, load, () => cache.peek(PROBE)?.stockToday, `<= ${debounceMs + 20} ms`)
        await listener.drain(60_000)
      }
      const report = await cache.validate({ sample: 300 })
      console.log(
        `debounce ${debounceMs}: validate() after the runs: ${report.checked} checked, ${report.mismatches.length} mismatches`,
      )
      await listener.stop()
      await cache.close()
    }
    printTable(
      ['config', 'load', 'samples', 'p50', 'p99', 'max', 'p50 after the commit returned', 'p99 after it', 'target p99'],
      rows,
    )
  } finally {
    await pool.end()
    await probePool.end()
    await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
    await admin.end()
  }
}

if (isMain(import.meta.url)) await main()
