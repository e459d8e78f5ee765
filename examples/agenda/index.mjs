// Per-user agendas by date, cached in memory and Redis: the active users' agendas for today are warmed on a timer
// (every 5 minutes in real life, every 300 ms here), so their first read of the day is a hit; when Redis is down the
// answers keep coming from memory and the function. Needs Redis (REDIS_URL, default redis://127.0.0.1:6379).
import { redisStore } from '@stockcast/redis'
import { Redis } from 'ioredis'
import { createCache } from 'stockcast'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const today = new Date().toISOString().slice(0, 10)

// The "database": appointments per user, and a counter of queries.
let queries = 0
const appointments = new Map([
  ['ana', [{ at: '09:00', what: 'visit ACME' }]],
  ['bruno', [{ at: '14:00', what: 'call supplier' }]],
  ['carla', []],
])
async function loadAgenda(user, date) {
  queries++
  await new Promise((r) => setTimeout(r, 20)) // a slow query
  return { user, date, items: appointments.get(user) ?? [] }
}

function agendaCache(redis, name = 'agenda') {
  const prefix = `agenda-example:${process.pid}:`
  const cache = createCache({
    name,
    tiers: [{ store: redisStore(redis, { prefix }), ttl: 24 * 60 * 60_000 }],
    memory: { max: 10_000, ttl: 5 * 60_000 },
  })
  const agenda = cache.cached(loadAgenda, {
    key: (user, date) => `agenda:${user}:${date}`,
    ttl: 10 * 60_000,
    tags: (user) => [`user:${user}`],
  })
  return { cache, agenda, prefix }
}

let good = true
const check = (what, ok) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`)
  good &&= ok
}

// 1. Warming: the active users' agendas for today, now and on a timer.
const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
const { cache, agenda, prefix } = agendaCache(redis)
const activeUsers = () => ['ana', 'bruno']
const report = await cache.warm(() => activeUsers().map((u) => () => agenda(u, today)), { every: 300, concurrency: 4 })
console.log(`warmed ${report.warmed} agendas (${queries} queries)`)
const before = queries
const a = await agenda('ana', today)
check(`ana's agenda is a hit after warming: ${JSON.stringify(a.items)}`, queries === before)
await agenda('carla', today)
check('an inactive user is computed on first read', queries === before + 1)

// 2. A change: invalidate the user's tag; the next warm run computes it again before anyone asks.
appointments.get('ana').push({ at: '16:00', what: 'review orders' })
await cache.invalidate({ tags: ['user:ana'] })
await new Promise((r) => setTimeout(r, 400))
const q = queries
const a2 = await agenda('ana', today)
check(
  `after the change and a warm run, ana has ${a2.items.length} items without a query`,
  a2.items.length === 2 && queries === q,
)

// 3. Redis down: a cache whose Redis does not answer still answers (memory, then the function).
const deadRedis = new Redis('redis://127.0.0.1:1', {
  maxRetriesPerRequest: 0,
  enableOfflineQueue: false,
  retryStrategy: () => null,
  lazyConnect: true,
})
deadRedis.on('error', () => {})
const offline = agendaCache(deadRedis, 'agenda-offline')
let tierErrors = 0
offline.cache.on('error', () => tierErrors++)
const b1 = await offline.agenda('bruno', today)
const b2 = await offline.agenda('bruno', today)
check(
  `Redis down: answers keep coming (${b1.items.length} item), the second from memory`,
  b1.items.length === 1 && b2 === b1,
)
check(`the tier's failure is reported (${tierErrors} error event(s)), not thrown`, tierErrors > 0)
console.log(`metrics: ${JSON.stringify(offline.cache.metrics())}`)

await offline.cache.close()
await cache.close()
for (const k of await redis.keys(`${prefix}*`)) await redis.del(k)
await redis.quit()
deadRedis.disconnect()
process.exitCode = good ? 0 : 1
