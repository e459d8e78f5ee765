// An external API (here a local stub server) cached in three tiers: memory, Redis for 1 h, PostgreSQL for 24 h,
// then the API. While the API is down, the last answer is served flagged stale (stale-if-error); when it is back,
// answers refresh. Needs Redis (REDIS_URL, default redis://127.0.0.1:6379) and PostgreSQL (DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/test; it works in the schema stockcast_offline_api and drops it at the end).
import { once } from 'node:events'
import http from 'node:http'
import { redisBus, redisStore } from '@stockcast/redis'
import { fromPg, sqlStore } from '@stockcast/sql'
import { Redis } from 'ioredis'
import pg from 'pg'
import { createCache } from 'stockcast'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

// 1. The "external API": exchange rates, with a switch to take it down.
let version = 1
let up = true
const api = http.createServer((req, res) => {
  if (!up) {
    res.writeHead(503).end('maintenance')
    return
  }
  const currency = new URL(req.url, 'http://x').pathname.slice(1)
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ currency, rate: currency === 'USD' ? (510 + version) / 100 : 6.2, version }))
})
api.listen(0, '127.0.0.1')
await once(api, 'listening')
const apiUrl = `http://127.0.0.1:${api.address().port}`

// 2. The tiers.
const admin = new pg.Client({ connectionString: DATABASE_URL })
await admin.connect()
await admin.query('CREATE SCHEMA IF NOT EXISTS stockcast_offline_api')
const pool = new pg.Pool({ connectionString: DATABASE_URL, options: '-c search_path=stockcast_offline_api' })
const pgStore = sqlStore(fromPg(pool), { table: 'api_cache' })
await pgStore.install()
const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
const prefix = `offline-api:${process.pid}:`
const cache = createCache({
  name: 'rates',
  tiers: [
    { store: redisStore(redis, { prefix }), ttl: 60 * 60_000 },
    { store: pgStore, ttl: 24 * 60 * 60_000 },
  ],
  bus: redisBus(redis, { channel: `${prefix}bus` }),
  memory: { max: 1000, ttl: 5 * 60_000 },
})
cache.on('error', ({ operation, error }) => console.log(`  (cache ${operation}: ${error.message})`))

async function fetchRate(currency) {
  const res = await fetch(`${apiUrl}/${currency}`)
  if (!res.ok) throw new Error(`the rates API answered ${res.status}`)
  return res.json()
}
// Fresh for 200 ms here (minutes in real life); the last answer is served for 24 h while the API fails.
const options = { ttl: 200, staleIfErrorMs: 24 * 60 * 60_000, timeoutMs: 2000 }
// The app's call: `rate('USD')`. getEntry (same key, same options) also tells where the answer came from.
const rate = cache.cached(fetchRate, { key: (c) => `rate:${c}`, ...options })
const show = async (label) => {
  const r = await cache.getEntry('rate:USD', () => fetchRate('USD'), options)
  console.log(`${label}: USD ${r.value.rate} (v${r.value.version}) from ${r.source}${r.stale ? ', STALE' : ''}`)
  return r
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

let good = true
const check = (what, ok) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
  good &&= ok
}
await rate('USD')
const first = await show('API up')
check('a fresh answer, cached by the first call', first.source === 'memory' && !first.stale)
await sleep(250)
up = false
const down = await show('API down')
check('while the API is down: the last answer, flagged stale', down.stale && down.value.version === 1)
// A second instance (a restart): its memory is empty; the API is down; Redis or PostgreSQL still answer.
const restarted = createCache({
  name: 'rates',
  tiers: [
    { store: redisStore(redis, { prefix }), ttl: 60 * 60_000 },
    { store: sqlStore(fromPg(pool), { table: 'api_cache' }), ttl: 24 * 60 * 60_000 },
  ],
})
const fromTier = await restarted.getEntry(
  'rate:USD',
  async () => {
    throw new Error('the rates API answered 503')
  },
  options,
)
console.log(
  `restarted instance, API down: USD ${fromTier.value.rate} from ${fromTier.source}${fromTier.stale ? ', STALE' : ''}`,
)
check('a restarted instance answers from a shared tier while the API is down', fromTier.value.version === 1)
await restarted.close()
// Redis lost its copy (its 1 h passed, or it restarted empty): PostgreSQL still has it.
for (const k of await redis.keys(`${prefix}*`)) if (!k.endsWith('bus')) await redis.del(k)
const third = createCache({
  name: 'rates',
  tiers: [
    { store: redisStore(redis, { prefix }), ttl: 60 * 60_000 },
    { store: sqlStore(fromPg(pool), { table: 'api_cache' }), ttl: 24 * 60 * 60_000 },
  ],
})
const fromPgTier = await third.getEntry('rate:USD', () => fetchRate('USD'), options)
console.log(
  `Redis emptied, API down: USD ${fromPgTier.value.rate} from ${fromPgTier.source}${fromPgTier.stale ? ', STALE' : ''}`,
)
check('with Redis empty, PostgreSQL (tier2) answers', fromPgTier.source === 'tier2' && fromPgTier.value.version === 1)
await third.close()
version = 2
up = true
await sleep(10)
const back = await show('API back')
check('API back: the answer refreshes', !back.stale && back.value.version === 2)
console.log(`metrics: ${JSON.stringify(cache.metrics())}`)

await cache.close()
await redis.quit().catch(() => {})
await pool.end().catch(() => {})
await admin.query('DROP SCHEMA stockcast_offline_api CASCADE')
await admin.end()
await new Promise((r) => api.close(r))
process.exitCode = good ? 0 : 1
