// The stores' value codec: a projection as JSON (what the SQL and Redis stores wrote) against the compact form of
// `projectionCodec` (day series as integers of 10^-scale units, dates from D0), on 1 000 projections of the bench's
// seeded source: bytes per entry, encode and decode µs per entry. Medians of alternating rounds; nothing asserted.
import { performance } from 'node:perf_hooks'
import { createStockCache, projectionCodec } from 'stockcast'
import { fmtRatio, isMain, printTable, productIds, schema, seededSource } from './lib.mjs'

const N = 1000
const ROUNDS = 9

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function perEntry(fn, texts) {
  const t0 = performance.now()
  for (const t of texts) fn(t)
  return ((performance.now() - t0) * 1000) / texts.length
}

export async function main() {
  console.log('## codec: a projection as JSON against projectionCodec (1 000 projections)')
  const keys = productIds('C', N)
  const db = seededSource(keys)
  const cache = createStockCache({ schema, reader: db.reader })
  const values = [...(await cache.getMany(keys)).values()]
  await cache.close()
  const json = values.map((v) => JSON.stringify(v))
  const compact = values.map((v) => projectionCodec.encode(v))
  if (!compact.every((t) => t.startsWith('p1'))) throw new Error('a projection fell back to JSON')
  const bytes = (ts) => ts.reduce((n, t) => n + Buffer.byteLength(t), 0) / ts.length
  const r = { jsonEnc: [], jsonDec: [], enc: [], dec: [], decDays: [] }
  let sink = 0
  for (let i = 0; i < 2; i++) {
    perEntry((t) => JSON.parse(t), json)
    perEntry((t) => projectionCodec.decode(t), compact)
  }
  for (let round = 0; round < ROUNDS; round++) {
    r.jsonEnc.push(perEntry((v) => JSON.stringify(v), values))
    r.enc.push(perEntry((v) => projectionCodec.encode(v), values))
    r.jsonDec.push(perEntry((t) => JSON.parse(t), json))
    r.dec.push(perEntry((t) => projectionCodec.decode(t), compact))
    r.decDays.push(
      perEntry((t) => {
        sink += projectionCodec.decode(t).days.length
      }, compact),
    )
  }
  const m = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)]))
  printTable(
    ['per entry', 'JSON', 'projectionCodec', 'ratio'],
    [
      [
        'bytes',
        bytes(json).toFixed(0),
        bytes(compact).toFixed(0),
        `${fmtRatio(bytes(json) / bytes(compact))} x smaller`,
      ],
      ['encode µs', m.jsonEnc.toFixed(2), m.enc.toFixed(2), `${fmtRatio(m.jsonEnc / m.enc)} x`],
      [
        'decode µs (to a frozen projection)',
        m.jsonDec.toFixed(2),
        m.dec.toFixed(2),
        `${fmtRatio(m.jsonDec / m.dec)} x faster`,
      ],
      [
        'decode µs, then read days (built on first read)',
        m.jsonDec.toFixed(2),
        m.decDays.toFixed(2),
        `${fmtRatio(m.jsonDec / m.decDays)} x faster`,
      ],
    ],
  )
  console.log('(JSON decode is JSON.parse alone: no freezing; the codec returns frozen projections)')
  if (sink === 0) throw new Error('no day was read')
}

if (isMain(import.meta.url)) await main()
