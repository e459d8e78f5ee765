import Redis from 'ioredis'
import { createStockCache, defineStockSchema, memorySource, type StockCache } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { redisBus, redisLock, redisStore } from '../src/index.js'
import { describeService, OwnRedis, redisServerMissing } from './services.js'

const schema = defineStockSchema({
  onHand: [{ table: 'stock_movements', product: 'product_code', quantity: 'quantity' }],
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(10)
  }
}

describeService(redisServerMissing, 'two instances on one Redis (store, bus, lock), Redis killed and restarted', () => {
  let own: OwnRedis
  const clients: Redis[] = []
  const caches: StockCache[] = []
  beforeAll(async () => {
    own = await OwnRedis.start()
  })
  afterAll(async () => {
    for (const c of caches) await c.close().catch(() => {})
    for (const r of clients) r.disconnect()
    await own.close()
  })

  const instance = (db: ReturnType<typeof memorySource>) => {
    // One client per instance, as each process has its own; fail fast while Redis is down.
    const redis = new Redis(own.port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 50 })
    redis.on('error', () => {})
    clients.push(redis)
    const cache = createStockCache({
      schema,
      reader: db.reader,
      store: redisStore(redis, { prefix: 'inst:', timeoutMs: 300 }),
      bus: redisBus(redis, { channel: 'inst' }),
      lock: redisLock(redis, { prefix: 'inst:lock:' }),
      debounceMs: 0,
      lockTimeoutMs: 2000,
    })
    caches.push(cache)
    const events: string[] = []
    cache.on('degraded', (e) => events.push(`degraded ${e.tier}`))
    cache.on('recovered', (e) => events.push(`recovered ${e.tier}`))
    return { cache, events }
  }

  it('a peer drops its L1 entry on a recompute elsewhere; reads keep coming while Redis is down; all recover', async () => {
    const db = memorySource(schema)
    const a = instance(db)
    const b = instance(db)
    db.attach(a.cache) // only A sees the writes (one outbox consumer)
    db.insert('stock_movements', { product_code: 'P', quantity: '5' })
    await until(async () => (await a.cache.get('P')).stockToday === 5, 2000, 'A to compute P')
    await until(() => !b.cache.status().busDegraded, 2000, "B's subscription")
    expect((await b.cache.get('P')).stockToday).toBe(5)
    expect(b.cache.peek('P')?.stockToday).toBe(5)

    // A change seen by A only: B learns it through the bus.
    db.insert('stock_movements', { product_code: 'P', quantity: '1' })
    await a.cache.flush()
    await until(() => b.cache.peek('P') === undefined, 2000, 'B to drop P on the bus message')
    expect((await b.cache.get('P')).stockToday).toBe(6)

    // Redis dies: no error reaches get(); both report the bus (and, on first use, the store) degraded.
    await own.stop()
    await until(() => a.cache.status().busDegraded && b.cache.status().busDegraded, 5000, 'both to see the bus down')
    expect(b.cache.peek('P')).toBeUndefined()
    db.insert('stock_movements', { product_code: 'P', quantity: '1' })
    await a.cache.flush() // recomputed; its store write and its bus message are lost
    expect((await a.cache.get('P')).stockToday).toBe(7)
    expect((await b.cache.get('P')).stockToday).toBe(7) // from the sources: B's L1 is not trusted
    expect(b.cache.status().degraded || b.cache.status().busDegraded).toBe(true)

    // Redis comes back (empty: it keeps nothing on disk). Both recover; nothing older than the outage is served.
    await own.start()
    await until(() => !a.cache.status().busDegraded && !b.cache.status().busDegraded, 10_000, 'both buses to recover')
    expect((await b.cache.get('P')).stockToday).toBe(7)
    db.insert('stock_movements', { product_code: 'P', quantity: '1' })
    await a.cache.flush()
    await until(async () => (await b.cache.get('P')).stockToday === 8, 3000, 'B to see the change after recovery')
    expect(a.events).toContain('degraded bus')
    expect(a.events).toContain('recovered bus')
    expect(b.events).toContain('degraded bus')
    expect(b.events).toContain('recovered bus')
  })
})
