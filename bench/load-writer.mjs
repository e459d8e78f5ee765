// A writer process for sql-load.mjs: commits transactions of 1-3 stock movements on random products (never the
// probe) at a fixed rate, paced against the clock (a late transaction does not shift the ones after it), until it
// gets SIGTERM or its duration ends. Prints one JSON line: commits made and how late the latest one started.
//   node load-writer.mjs <postgres url> <schema> <tx per second> <products> <seconds> <seed>

import pg from 'pg'
import { rng } from './lib.mjs'

const [url, schema, rateArg, productsArg, secondsArg, seedArg] = process.argv.slice(2)
const rate = Number(rateArg)
const products = Number(productsArg)
const seconds = Number(secondsArg)
const rnd = rng(Number(seedArg))
const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` })
await client.connect()
let stop = false
process.on('SIGTERM', () => {
  stop = true
})
const start = performance.now()
let commits = 0
let maxLateMs = 0
for (let i = 0; !stop; i++) {
  const due = start + (i * 1000) / rate
  if (due - start > seconds * 1000) break
  const wait = due - performance.now()
  if (wait > 0) await new Promise((r) => setTimeout(r, wait))
  else maxLateMs = Math.max(maxLateMs, -wait)
  const n = 1 + Math.floor(rnd() * 3)
  const ids = Array.from({ length: n }, () => `SKU-${String(2 + Math.floor(rnd() * (products - 1))).padStart(5, '0')}`)
  await client.query('BEGIN')
  await client.query('INSERT INTO stock_movements (product_code, quantity) SELECT p, 1 FROM unnest($1::text[]) AS p', [
    ids,
  ])
  await client.query('COMMIT')
  commits++
}
await client.end()
console.log(JSON.stringify({ commits, maxLateMs: Math.round(maxLateMs) }))
