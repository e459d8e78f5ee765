// A cache process of the history checker: a stock cache as a user deploys it (sqlReader, the shared sqlStore table,
// the SQL change capture as pendingMarks, optionally an outbox listener), read in loops: default reads, strong reads
// and getMany. Every read is sent to the parent: product, value fingerprint, start and end (Date.now() right before
// the call and right after it resolved). Started by run.mjs with fork(); config in argv[2].
import { fromMysql, fromPg, sqlChangeCapture, sqlReader, sqlStore } from '@stockcast/sql'
import mysql from 'mysql2/promise'
import pg from 'pg'
import { createStockCache, defineStockSchema } from 'stockcast'
import { fingerprint } from './truth.mjs'
import { prng, schemaSpec, tableNames } from './workload.mjs'

const cfg = JSON.parse(process.argv[2])
const t = tableNames(cfg.prefix)
const send = (msg) => {
  if (process.connected) process.send(msg)
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
process.on('disconnect', () => process.exit(3))

// Connection errors of idle pooled connections (a terminated backend) must not end the process: the pool drops them.
let pool
let db
if (cfg.dialect === 'postgres') {
  pool = new pg.Pool({
    connectionString: cfg.conn.url,
    max: cfg.poolSize,
    application_name: cfg.appName,
    options: `-c search_path=${cfg.conn.schema}`,
  })
  pool.on('error', () => {})
  db = fromPg(pool)
} else {
  pool = mysql.createPool({
    uri: cfg.conn.url,
    connectionLimit: cfg.poolSize,
    decimalNumbers: false,
    dateStrings: true,
  })
  // Thread ids, so that the parent can KILL this process's connections.
  pool.on('connection', (c) => {
    c.on?.('error', () => {})
    send({ t: 'conn', id: c.threadId })
  })
  db = fromMysql(pool)
}

const schema = defineStockSchema(schemaSpec(cfg.prefix))
// A short lease: the rows a killed listener had claimed come back to the others after it (30 s by default), and the
// at-rest check waits for them.
const capture = sqlChangeCapture(db, schema, { prefix: cfg.prefix, leaseMs: cfg.leaseMs ?? 5000 })
// With a Redis URL: the Redis store, bus and lock (several instances as the Redis adapter's README sets them up).
let shared = { store: sqlStore(db, { table: t.store, create: false }) }
let redis
if (cfg.redisUrl) {
  const { default: Redis } = await import('ioredis')
  const { redisBus, redisLock, redisStore } = await import('@stockcast/redis')
  redis = new Redis(cfg.redisUrl, { maxRetriesPerRequest: 1 })
  redis.on('error', () => {})
  shared = {
    store: redisStore(redis, { prefix: `${cfg.prefix}:`, timeoutMs: 500 }),
    bus: redisBus(redis, { channel: `${cfg.prefix}:bus` }),
    lock: redisLock(redis, { prefix: `${cfg.prefix}:lock:`, timeoutMs: 500 }),
  }
}
const cache = createStockCache({
  schema,
  reader: sqlReader(db, schema),
  ...shared,
  pendingMarks: capture,
  memory: { ttl: cfg.ttlMs },
})
const cacheErrors = {}
const tierEvents = {}
for (const type of ['degraded', 'recovered']) {
  cache.on(type, (e) => {
    const k = `${type} ${e.tier}`
    tierEvents[k] = (tierEvents[k] ?? 0) + 1
  })
}
cache.on('error', (e) => {
  const code = String(e?.error?.code ?? e?.code ?? e?.error?.name ?? 'error')
  cacheErrors[code] = (cacheErrors[code] ?? 0) + 1
})

// Fingerprints are interned: each distinct value crosses the IPC channel once.
const fpIds = new Map()
let newFps = []
let reads = []
const KIND = { default: 'd', strong: 's', many: 'm' }
const idOf = (fp) => {
  let id = fpIds.get(fp)
  if (id === undefined) {
    id = fpIds.size
    fpIds.set(fp, id)
    newFps.push([id, fp])
  }
  return id
}
const readErrors = {}
const readErrorExamples = []
const record = (kind, product, value, start, end) => {
  reads.push([KIND[kind], product, idOf(fingerprint(value)), start, end])
}
const recordError = (kind, e) => {
  const code = String(e?.code ?? e?.cause?.code ?? e?.name ?? 'error')
  const key = `${kind}:${code}`
  readErrors[key] = (readErrors[key] ?? 0) + 1
  if (readErrorExamples.length < 5) readErrorExamples.push(`${key}: ${String(e?.message ?? e).slice(0, 200)}`)
}
const flushReads = () => {
  if (reads.length === 0 && newFps.length === 0) return
  send({ t: 'reads', fps: newFps, list: reads })
  newFps = []
  reads = []
}
const flusher = setInterval(flushReads, 100)

let reading = false
const rng = prng(cfg.seed)
const products = cfg.productList
const pickProduct = () => (rng.chance(0.5) ? products[rng.int(Math.max(1, products.length / 5))] : rng.pick(products))

async function loop(kind) {
  while (reading) {
    try {
      if (kind === 'many') {
        const list = [...new Set(Array.from({ length: 2 + rng.int(4) }, pickProduct))]
        const start = Date.now()
        const got = await cache.getMany(list)
        const end = Date.now()
        for (const [p, v] of got) record('many', p, v, start, end)
      } else {
        const p = pickProduct()
        const start = Date.now()
        const v = await cache.get(p, kind === 'strong' ? { consistency: 'strong' } : undefined)
        const end = Date.now()
        record(kind, p, v, start, end)
      }
    } catch (e) {
      recordError(kind, e)
      await sleep(5)
    }
    // An L1 hit resolves at once: a pause keeps the loop from starving the process (and the records bounded).
    await sleep(kind === 'default' ? rng.int(3) : rng.int(2))
  }
}

let listener
let loops = []
const handlers = {
  async read() {
    reading = true
    loops = [
      ...Array.from({ length: cfg.loops.default }, () => loop('default')),
      ...Array.from({ length: cfg.loops.strong }, () => loop('strong')),
      ...Array.from({ length: cfg.loops.many }, () => loop('many')),
    ]
  },
  async stopReads() {
    reading = false
    await Promise.all(loops)
    flushReads()
    return { readErrors, readErrorExamples }
  },
  async drain() {
    if (listener !== undefined) await listener.drain(30_000)
    return { report: await cache.flush() }
  },
  /** Every product: a default read, a strong read, and one getMany of them all. */
  async atRest() {
    const out = { default: {}, strong: {}, many: {}, errors: [] }
    for (const p of products) {
      try {
        out.default[p] = fingerprint(await cache.get(p))
      } catch (e) {
        out.errors.push(`default ${p}: ${e?.message ?? e}`)
      }
      try {
        out.strong[p] = fingerprint(await cache.get(p, { consistency: 'strong' }))
      } catch (e) {
        out.errors.push(`strong ${p}: ${e?.message ?? e}`)
      }
    }
    try {
      for (const [p, v] of await cache.getMany(products)) out.many[p] = fingerprint(v)
    } catch (e) {
      out.errors.push(`getMany: ${e?.message ?? e}`)
    }
    return out
  },
  async status() {
    const s = listener?.status()
    return {
      listener:
        s === undefined
          ? null
          : { ...s, lastError: s.lastError === null ? null : `${s.lastError.name}: ${s.lastError.message}` },
      metrics: cache.metrics(),
      cacheErrors,
      tierEvents,
      busDegraded: cache.status().busDegraded,
    }
  },
  async exit() {
    clearInterval(flusher)
    await listener?.stop().catch(() => {})
    await cache.close().catch(() => {})
    redis?.disconnect()
    await pool.end().catch(() => {})
    return {}
  },
}

process.on('message', (msg) => {
  const h = handlers[msg?.t]
  if (h === undefined) return
  h().then(
    (result) => {
      if (msg.t !== 'exit') send({ t: 'reply', id: msg.id, result })
      else if (!process.connected) process.exit(0)
      else process.send({ t: 'reply', id: msg.id, result }, () => process.exit(0))
    },
    (e) => send({ t: 'reply', id: msg.id, error: String(e?.stack ?? e) }),
  )
})

if (cfg.listen) listener = await capture.listen(cache)
// Warm: every product in L1 (and in the shared store).
await cache.getMany(products)
send({ t: 'ready' })
