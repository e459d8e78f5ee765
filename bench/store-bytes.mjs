// Bytes per entry: the SQL store's row on PostgreSQL and the L1 heap per cached product, with the compact codec
// (today) and with the JSON rows older versions wrote (before; still read). 10 000 products of the example schema
// are computed once; their entries are written to two tables of the same layout, one with the codec's text and one
// with the JSON text, and each is read into a fresh cache. The L1 figures are heap growth (after a full GC) divided
// by the products held. Needs PostgreSQL (STOCKCAST_PG_URL or postgres://postgres@127.0.0.1:5432/test); it works in
// its own schema `stockcast_bench_bytes` and drops it after. Runs itself again with --expose-gc when needed.

import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { fromPg, sqlReader, sqlStore } from '@stockcast/sql'
import pg from 'pg'
import { createStockCache, projectionCodec } from 'stockcast'
import { DDL, schema, seed } from '../examples/sql-demo/schema.mjs'
import { isMain, printTable } from './lib.mjs'

const URL_ = process.env.STOCKCAST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCHEMA = 'stockcast_bench_bytes'
const kb = (b) => (b >= 1024 ? `${(b / 1024).toFixed(2)} kB` : `${Math.round(b)} B`)

async function heap() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc()
    await new Promise((r) => setImmediate(r))
  }
  return process.memoryUsage().heapUsed
}

/** Heap growth per product of a cache holding `ids` (read through `fill`), with the cache and its values alive. */
async function l1PerProduct(make, ids, fill) {
  const before = await heap()
  const cache = make()
  const held = await fill(cache)
  const after = await heap()
  if (cache.metrics().l1Size < ids.length) throw new Error(`L1 holds ${cache.metrics().l1Size} of ${ids.length}`)
  const per = (after - before) / ids.length
  await cache.close()
  return { per, held }
}

export async function main({ products = 10_000 } = {}) {
  if (typeof globalThis.gc !== 'function') {
    const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url)], { stdio: 'inherit' })
    if (r.status !== 0) throw new Error(`store-bytes exited ${r.status}`)
    return
  }
  console.log('## store-bytes: bytes per entry in the SQL store (PostgreSQL) and L1 heap per cached product')
  const admin = new pg.Client({ connectionString: URL_ })
  await admin.connect()
  await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  await admin.query(`CREATE SCHEMA ${SCHEMA}`)
  const pool = new pg.Pool({ connectionString: URL_, max: 4, options: `-c search_path=${SCHEMA}` })
  const db = fromPg(pool)
  try {
    for (const s of DDL.split(';').filter((x) => x.trim())) await db.execute(s)
    await seed(db, products)
    const reader = sqlReader(db, schema)
    const ids = (await db.query('SELECT DISTINCT product_code AS p FROM stock_movements ORDER BY 1')).map((r) => r.p)
    const codecStore = () => sqlStore(db, { table: 'entries_codec' })
    const jsonStore = () => sqlStore(db, { table: 'entries_json' })
    await codecStore().install()
    await jsonStore().install()
    const writer = createStockCache({ schema, reader, store: codecStore(), memory: { max: products * 2 } })
    await writer.rebuildAll()
    await writer.close()
    // The same rows with the value as the JSON of the decoded projection (what versions before the codec wrote).
    await db.execute('INSERT INTO entries_json SELECT * FROM entries_codec')
    const rows = await db.query('SELECT key_hash, value FROM entries_json')
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500)
      await db.execute(
        "UPDATE entries_json AS t SET value = x.v FROM (SELECT decode(h, 'hex') AS h, v FROM json_to_recordset($1::json) AS r(h text, v text)) AS x WHERE t.key_hash = x.h",
        [
          JSON.stringify(
            chunk.map((r) => ({ h: r.key_hash.toString('hex'), v: JSON.stringify(projectionCodec.decode(r.value)) })),
          ),
        ],
      )
    }
    await db.execute('VACUUM FULL entries_codec')
    await db.execute('VACUUM FULL entries_json')
    const size = async (table) => {
      const [r] = await db.query(
        `SELECT count(*)::int AS n, avg(octet_length(value))::float8 AS text_bytes, avg(pg_column_size(value))::float8 AS stored_bytes,
                pg_total_relation_size('${table}')::float8 AS total FROM ${table}`,
      )
      return r
    }
    const c = await size('entries_codec')
    const j = await size('entries_json')
    printTable(
      ['L2 row (PostgreSQL, 10 000 products)', 'value text', 'value as stored', 'table + indexes + TOAST per row'],
      [
        ['before: JSON value', kb(j.text_bytes), kb(j.stored_bytes), kb(j.total / j.n)],
        ['now: compact codec', kb(c.text_bytes), kb(c.stored_bytes), kb(c.total / c.n)],
        [
          'ratio before / now',
          `${(j.text_bytes / c.text_bytes).toFixed(1)}x`,
          `${(j.stored_bytes / c.stored_bytes).toFixed(1)}x`,
          `${(j.total / c.total).toFixed(1)}x`,
        ],
      ],
    )

    // L1: a fresh cache per case, filled by getMany of every product (L1 big enough for all).
    const make = (store) => () => createStockCache({ schema, reader, store, memory: { max: products * 2 } })
    const all = (cache) => cache.getMany(ids)
    const computed = await l1PerProduct(make(undefined), ids, all)
    const fromJson = await l1PerProduct(make(jsonStore()), ids, all)
    const fromCodec = await l1PerProduct(make(codecStore()), ids, all)
    const fromCodecDays = await l1PerProduct(make(codecStore()), ids, async (cache) => {
      const got = await cache.getMany(ids)
      let n = 0
      for (const p of got.values()) n += p.days.length
      return n
    })
    printTable(
      ['L1 heap per cached product', 'bytes', 'vs before'],
      [
        ['computed here (no store): projection + source rows', kb(computed.per), ''],
        ['before: read from a JSON store row', kb(fromJson.per), '1.00x'],
        [
          'now: read from a codec row (days not read)',
          kb(fromCodec.per),
          `${(fromCodec.per / fromJson.per).toFixed(2)}x`,
        ],
        [
          'now: read from a codec row, every day read',
          kb(fromCodecDays.per),
          `${(fromCodecDays.per / fromJson.per).toFixed(2)}x`,
        ],
      ],
    )
  } finally {
    await pool.end()
    await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
    await admin.end()
  }
}

if (isMain(import.meta.url)) await main()
