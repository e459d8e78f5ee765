// createCache (the general-purpose cache of issue 14) on Redis: two instances sharing a redisStore tier and a redisBus,
// Redis killed and restarted under a read loop, and stale-if-error with an external API (a local HTTP stub) down.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import Redis from 'ioredis'
import { type Cache, type CacheOptions, type CacheResult, createCache, SourceUnavailableError } from 'stockcast'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { nextMs, sleep, until } from '../../../test-support/wait.js'
import { redisBus, redisLock, redisStore } from '../src/index.js'
import { describeService, OwnRedis, REDIS_URL, redisDown, redisServerMissing, uniquePrefix } from './services.js'

const SEP = '\u001f'

/**
 * Until the clock has moved past now: an invalidation's stamp outdates entries computed in its millisecond too, so a
 * value recomputed in that same millisecond is served but not cached.
 */

/** Until the cache's bus subscription holds: a value it computes is then kept in (and answered from) memory. */
async function subscribed(cache: Cache): Promise<void> {
  await until(
    async () => (await cache.getEntry('ready', () => 'ready', { ttl: 600_000 })).source === 'memory',
    5000,
    `${cache.name}'s bus subscription`,
  )
}

describeService(redisDown, 'createCache: two instances on one Redis (redisStore tier, redisBus)', () => {
  const clients: Redis[] = []
  const caches: Cache[] = []
  let admin: Redis
  beforeAll(() => {
    admin = new Redis(REDIS_URL)
  })
  /** The Redis tiers of the tests, emptied afterwards (tag stamps have no expiry). */
  const tiers: Array<{ clear(): Promise<void> }> = []
  afterEach(async () => {
    for (const c of caches.splice(0)) await c.close()
    for (const r of clients.splice(0)) await r.quit().catch(() => r.disconnect())
    for (const t of tiers.splice(0)) await t.clear()
  })
  afterAll(async () => {
    await admin.quit()
  })

  /** Two instances of one cache (one ioredis client each, as two processes), plus a reader of the Redis tier. */
  function pair(extra: Partial<CacheOptions> = {}) {
    const name = uniquePrefix('cached')
    const prefix = `${name}:`
    const channel = `${name}:bus`
    const instance = (withBus = true) => {
      const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
      clients.push(redis)
      const cache = createCache({
        name,
        tiers: [{ store: redisStore(redis, { prefix }) as never, ttl: 3_600_000 }],
        ...(withBus ? { bus: redisBus(redis, { channel }) } : {}),
        ...extra,
      })
      caches.push(cache)
      return cache
    }
    const a = instance()
    const b = instance()
    const tier = redisStore<unknown>(admin, { prefix })
    tiers.push(tier)
    /** The entry of `key` in the Redis tier, if any. */
    const inRedis = async (key: string) => (await tier.getMany([`${name}${SEP}${key}`])).get(`${name}${SEP}${key}`)
    return { name, a, b, instance, inRedis, admin }
  }

  /** A function of one instance that counts its calls and answers `${label}:${key}#${n}`. */
  function source(label: string) {
    const calls: string[] = []
    const fn = (key: string) => () => {
      calls.push(key)
      return `${label}:${key}#${calls.length}`
    }
    return { calls, fn }
  }

  it('a value computed on A is a Redis tier hit on B, then a memory hit', async () => {
    const { a, b, inRedis } = pair()
    const sa = source('A')
    const sb = source('B')
    await Promise.all([subscribed(a), subscribed(b)])
    const first = await a.getEntry('k1', sa.fn('k1'))
    expect(first).toMatchObject({ value: 'A:k1#1', source: 'fn', stale: false })
    expect((await inRedis('k1'))?.value).toMatchObject({ v: 'A:k1#1', at: first.computedAt })

    const tierHits = b.metrics().hits.tiers[0]!
    const onB = await b.getEntry('k1', sb.fn('k1'))
    expect(onB).toMatchObject({ value: 'A:k1#1', source: 'tier1', stale: false, computedAt: first.computedAt })
    expect(b.metrics().hits.tiers).toEqual([tierHits + 1])
    expect(await b.getEntry('k1', sb.fn('k1'))).toMatchObject({ value: 'A:k1#1', source: 'memory' })
    expect(sb.calls).toEqual([])
  })

  it('with a redisLock, concurrent reads of a key on both instances call the function once in all', async () => {
    const lockPrefix = `${uniquePrefix('cachedlock')}:`
    const { a, b } = pair({ lock: redisLock(admin, { prefix: lockPrefix }) })
    await Promise.all([subscribed(a), subscribed(b)])
    let calls = 0
    const slow = async () => {
      calls++
      await sleep(100) // long enough for the other instance to ask for the lock meanwhile
      return 'computed once'
    }
    const reads = [
      ...Array.from({ length: 50 }, () => a.getEntry('hot', slow)),
      ...Array.from({ length: 50 }, () => b.getEntry('hot', slow)),
    ]
    const results = await Promise.all(reads)
    expect(results.every((r) => r.value === 'computed once')).toBe(true)
    expect(calls).toBe(1)
    // One instance called it; the other read it from Redis once the lock was free.
    expect(results.filter((r) => r.source === 'fn').length).toBe(50)
    expect(results.filter((r) => r.source === 'tier1').length).toBe(50)
  })

  it('invalidate({ keys }) on A: B drops its memory copy through the bus and recomputes', async () => {
    const { a, b, inRedis } = pair()
    await Promise.all([subscribed(a), subscribed(b)])
    const sa = source('A')
    const sb = source('B')
    await a.get('k', sa.fn('k'))
    await a.get('other', sa.fn('other'))
    expect(await b.getEntry('k', sb.fn('k'))).toMatchObject({ value: 'A:k#1', source: 'tier1' })
    expect(await b.getEntry('k', sb.fn('k'))).toMatchObject({ value: 'A:k#1', source: 'memory' })
    expect(await b.getEntry('other', sb.fn('other'))).toMatchObject({ source: 'tier1' })

    await a.invalidate({ keys: ['k'] })
    expect(await inRedis('k')).toBeUndefined()
    // get() without a function answers from memory while B still holds its copy; the Redis key is gone already.
    await until(async () => (await b.get('k')) === undefined, 5000, 'B to drop k on the bus message')
    expect(await b.getEntry('k', sb.fn('k'))).toMatchObject({ value: 'B:k#1', source: 'fn' })
    expect(sb.calls).toEqual(['k'])
    // The other key was not touched: still a memory hit on B.
    expect(await b.getEntry('other', sb.fn('other'))).toMatchObject({ value: 'A:other#2', source: 'memory' })
    // B's new value went to Redis: A reads it from there.
    expect(await a.getEntry('k', sa.fn('k'))).toMatchObject({ value: 'B:k#1', source: 'tier1' })

    // delete() is the same: B recomputes.
    await b.delete('other')
    await until(async () => (await a.get('other')) === undefined, 5000, 'A to drop other on the bus message')
    expect(await a.getEntry('other', sa.fn('other'))).toMatchObject({ value: 'A:other#3', source: 'fn' })
  })

  it('invalidate({ tags }) on A: B drops tagged entries (bus), and an instance without a bus reads the stamp from Redis', async () => {
    const { a, b, instance, admin, name } = pair()
    await Promise.all([subscribed(a), subscribed(b)])
    const c = instance(false) // no bus: only the stamp in Redis tells it
    const sa = source('A')
    const sb = source('B')
    const sc = source('C')
    const opts = (tags: string[]) => ({ ttl: 600_000, tags })
    await a.get('r:1', sa.fn('r:1'), opts(['seller:1']))
    await a.get('r:2', sa.fn('r:2'), opts(['seller:1', 'region:eu']))
    await a.get('r:3', sa.fn('r:3'), opts(['seller:2']))
    for (const k of ['r:1', 'r:3']) {
      expect(await b.getEntry(k, sb.fn(k), opts([]))).toMatchObject({ source: 'tier1' })
      expect(await b.getEntry(k, sb.fn(k), opts([]))).toMatchObject({ source: 'memory' })
    }

    await a.invalidate({ tags: ['seller:1'] })
    await nextMs()
    // One stamp per tag in Redis, nothing scanned or deleted.
    expect(await admin.exists(`${name}:{${name}}${SEP}tag${SEP}seller:1`)).toBe(1)
    await until(async () => (await b.get('r:1')) === undefined, 5000, 'B to drop r:1 on the bus message')
    expect(await b.getEntry('r:1', sb.fn('r:1'), opts(['seller:1']))).toMatchObject({ value: 'B:r:1#1', source: 'fn' })
    expect(await b.getEntry('r:3', sb.fn('r:3'), opts(['seller:2']))).toMatchObject({
      value: 'A:r:3#3',
      source: 'memory',
    })

    // C never held r:2 in memory and has no bus: the Redis entry is there, but the stamp read from Redis outdates it.
    expect(await c.getEntry('r:2', sc.fn('r:2'), opts(['seller:1', 'region:eu']))).toMatchObject({
      value: 'C:r:2#1',
      source: 'fn',
    })
    // r:3 carries another tag: still a tier hit on C.
    expect(await c.getEntry('r:3', sc.fn('r:3'), opts(['seller:2']))).toMatchObject({
      value: 'A:r:3#3',
      source: 'tier1',
    })
    expect(sc.calls).toEqual(['r:2'])
    // A, the invalidating instance, reads the values recomputed after the stamp from Redis.
    expect(await a.getEntry('r:1', sa.fn('r:1'), opts(['seller:1']))).toMatchObject({
      value: 'B:r:1#1',
      source: 'tier1',
    })
  })

  it('invalidate({ events }) on A: B drops the entries of the tags the event maps to', async () => {
    const events = { 'order.created': ['dashboard', 'seller-report'] }
    const { a, b } = pair({ events })
    await Promise.all([subscribed(a), subscribed(b)])
    const sa = source('A')
    const sb = source('B')
    const dashboardA = a.cached(sa.fn('dash'), { key: 'dash', ttl: 600_000, tags: ['dashboard'] })
    const dashboardB = b.cached(sb.fn('dash'), { key: 'dash', ttl: 600_000, tags: ['dashboard'] })
    const reportB = b.cached(sb.fn('report'), { key: 'report', ttl: 600_000, tags: ['seller-report'] })
    const otherB = b.cached(sb.fn('other'), { key: 'other', ttl: 600_000, tags: ['catalog'] })
    expect(await dashboardA()).toBe('A:dash#1')
    expect(await dashboardB()).toBe('A:dash#1') // Redis
    expect(await reportB()).toBe('B:report#1')
    expect(await otherB()).toBe('B:other#2')
    const memoryHits = b.metrics().hits.memory
    expect(await dashboardB()).toBe('A:dash#1')
    expect(b.metrics().hits.memory).toBe(memoryHits + 1)

    await a.invalidate({ events: ['order.created'] })
    await until(async () => (await b.get('dash')) === undefined, 5000, 'B to drop dash on the bus message')
    expect(await b.get('report')).toBeUndefined()
    expect(await dashboardB()).toBe('B:dash#3')
    expect(await reportB()).toBe('B:report#4')
    expect(await otherB()).toBe('B:other#2')
    expect(sb.calls).toEqual(['report', 'other', 'dash', 'report'])
  })

  it('invalidate(..., { tx }) inside a.transaction(): nothing on rollback (B still hits), acts on commit', async () => {
    const { a, b, inRedis } = pair()
    await Promise.all([subscribed(a), subscribed(b)])
    const sa = source('A')
    const sb = source('B')
    const opts = { ttl: 600_000, tags: ['t'] }
    for (const k of ['k', 'tagged', 'sentinel']) {
      await a.get(k, sa.fn(k), k === 'tagged' ? opts : { ttl: 600_000 })
      await b.get(k, sb.fn(k), k === 'tagged' ? opts : { ttl: 600_000 })
    }
    expect(sb.calls).toEqual([])

    const tx = a.transaction()
    await a.invalidate({ keys: ['k'], tags: ['t'] }, { tx })
    expect(await inRedis('k')).toBeDefined() // held until commit
    tx.rollback()
    // A barrier: an invalidation published after the rollback; once B has it, anything sent before it has arrived.
    await a.invalidate({ keys: ['sentinel'] })
    await until(async () => (await b.get('sentinel')) === undefined, 5000, 'B to drop sentinel on the bus message')
    expect(await b.getEntry('k', sb.fn('k'))).toMatchObject({ value: 'A:k#1', source: 'memory' })
    expect(await b.getEntry('tagged', sb.fn('tagged'), opts)).toMatchObject({ value: 'A:tagged#2', source: 'memory' })
    expect(await a.getEntry('k', sa.fn('k'))).toMatchObject({ value: 'A:k#1', source: 'memory' })
    expect(await inRedis('k')).toBeDefined()
    expect(a.metrics().invalidations).toEqual({ keys: 1, tags: 0 })

    const tx2 = a.transaction()
    await a.invalidate({ keys: ['k'], tags: ['t'] }, { tx: tx2 })
    expect(await b.getEntry('k', sb.fn('k'))).toMatchObject({ source: 'memory' })
    tx2.commit()
    await until(async () => (await b.get('k')) === undefined, 5000, 'B to drop k after the commit')
    await until(async () => (await b.get('tagged')) === undefined, 5000, 'B to drop tagged after the commit')
    expect(await inRedis('k')).toBeUndefined()
    expect(await b.getEntry('tagged', sb.fn('tagged'), opts)).toMatchObject({ value: 'B:tagged#1', source: 'fn' })
    expect(a.metrics().invalidations).toEqual({ keys: 2, tags: 1 })
  })
})

describeService(redisServerMissing, 'createCache while its Redis is killed and restarted', () => {
  let own: OwnRedis
  const clients: Redis[] = []
  let cache: Cache | undefined
  beforeAll(async () => {
    own = await OwnRedis.start()
  })
  afterAll(async () => {
    await cache?.close().catch(() => {})
    for (const r of clients) r.disconnect()
    await own?.close()
  })

  it('a loop of reads of 50 keys keeps answering (0 errors reach the caller), tier errors are reported, Redis is written again after restart', async () => {
    const client = () => {
      const r = new Redis(own.port, '127.0.0.1', { maxRetriesPerRequest: 1, retryStrategy: () => 50 })
      r.on('error', () => {})
      clients.push(r)
      return r
    }
    const redis = client()
    const name = 'killed'
    const prefix = 'killed:'
    cache = createCache({
      name,
      tiers: [{ store: redisStore(redis, { prefix, timeoutMs: 300 }) as never, ttl: 3_600_000 }],
      bus: redisBus(redis, { channel: 'killed-bus' }),
      lock: redisLock(redis, { prefix: 'killed:lock:', timeoutMs: 300 }),
      lockTimeoutMs: 2000,
    })
    const c = cache
    const tierErrors: string[] = []
    const otherErrors: string[] = []
    c.on('error', (e) => (e.operation === 'tier1' ? tierErrors : otherErrors).push(e.operation))
    await subscribed(c)
    const tier = redisStore<unknown>(client(), { prefix, timeoutMs: 300 })
    /** How many of the keys the Redis tier holds (0 while it cannot be read). */
    const stored = async () => {
      try {
        return (await tier.getMany(keys.map((k) => `${name}${SEP}${k}`))).size
      } catch {
        return 0
      }
    }

    const keys = Array.from({ length: 50 }, (_, i) => `item:${i}`)
    const calls = new Map<string, number>()
    const fn = (k: string) => async () => {
      calls.set(k, (calls.get(k) ?? 0) + 1)
      return { key: k, price: k.length }
    }
    let rounds = 0
    let answers = 0
    let wrong = 0
    const callerErrors: unknown[] = []
    const sources = new Map<string, number>()
    const read = async (k: string) => {
      try {
        const r: CacheResult<{ key: string; price: number }> = await c.getEntry(k, fn(k), { ttl: 600_000 })
        answers++
        sources.set(r.source, (sources.get(r.source) ?? 0) + 1)
        if (r.value.key !== k || r.value.price !== k.length) wrong++
      } catch (error) {
        callerErrors.push(error)
      }
    }
    let stop = false
    const loop = (async () => {
      while (!stop) {
        // The 50 keys, and one new key per round (a miss: computed, then written to Redis when it can be).
        await Promise.all([...keys.map(read), read(`new:${rounds}`)])
        rounds++
        await sleep(5)
      }
    })()
    /** Whether the new key of some round since `round` is in Redis. */
    const newKeyStoredSince = async (round: number) => {
      const wanted = Array.from({ length: rounds - round }, (_, i) => `${name}${SEP}new:${round + i}`)
      try {
        return wanted.length > 0 && (await tier.getMany(wanted)).size > 0
      } catch {
        return false
      }
    }
    let afterRestart: number
    try {
      await until(() => rounds >= 3, 10_000, 'three rounds with Redis up')
      expect(await stored()).toBe(50)
      expect(keys.map((k) => calls.get(k))).toEqual(keys.map(() => 1)) // once per key, then memory
      const callsBefore = c.metrics().calls

      await own.stop()
      const killedAt = rounds
      await until(
        () => tierErrors.length > 0 && rounds >= killedAt + 5,
        20_000,
        'tier errors and 5 rounds without Redis',
      )
      // With the bus down, memory is not trusted: the answers came from the function.
      expect(c.metrics().calls).toBeGreaterThan(callsBefore + 50)
      expect(c.metrics().tierErrors).toBeGreaterThan(0)

      await own.start() // empty, as a lost cache node
      const restartedAt = rounds
      await until(() => newKeyStoredSince(restartedAt), 20_000, 'a new key written to Redis after the restart')
      afterRestart = rounds
      await until(() => rounds >= afterRestart + 3, 10_000, 'three rounds once Redis is written again')
    } finally {
      stop = true
      await loop
    }
    expect(callerErrors).toEqual([])
    expect(wrong).toBe(0)
    expect(answers).toBe(rounds * 51)
    expect(sources.get('fn')).toBeGreaterThan(2 * 50)
    expect(otherErrors).toEqual([])
    // Memory answers again once the bus is back.
    expect((await c.getEntry(`new:${afterRestart}`, fn('unused'))).source).toBe('memory')
    // The 50 keys are written to Redis again, whether memory holds them or not.
    await until(async () => (await stored()) === 50, 10_000, 'the 50 keys written to Redis again')
  }, 90_000)
})

/** An external API stub: GET /price/<key> answers the current price; it can be stopped, started, or made to hang. */
class PriceApi {
  readonly prices = new Map<string, number>()
  requests = 0
  hang = false
  readonly #held = new Set<http.ServerResponse>()
  readonly #server = http.createServer((req, res) => {
    this.requests++
    if (this.hang) {
      this.#held.add(res)
      return
    }
    const key = decodeURIComponent((req.url ?? '').replace(/^\/price\//, ''))
    const price = this.prices.get(key)
    res.writeHead(price === undefined ? 404 : 200, { 'content-type': 'application/json', connection: 'close' })
    res.end(JSON.stringify(price === undefined ? { error: 'unknown' } : { key, price }))
  })
  port = 0

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(this.port, '127.0.0.1', () => {
        this.#server.off('error', reject)
        this.port = (this.#server.address() as AddressInfo).port
        resolve()
      })
    })
  }

  async stop(): Promise<void> {
    for (const r of this.#held) r.destroy()
    this.#held.clear()
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    this.#server.closeAllConnections()
    await closed
  }

  /** The client side: what a cached function calls (no keep-alive: a stopped server is a refused connection). */
  fetchPrice(key: string): Promise<{ key: string; price: number }> {
    return new Promise((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port: this.port, path: `/price/${encodeURIComponent(key)}`, agent: false },
        (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (d: string) => (body += d))
          res.on('end', () => {
            if (res.statusCode !== 200) reject(new Error(`price API answered ${res.statusCode}`))
            else resolve(JSON.parse(body))
          })
          res.on('error', reject)
        },
      )
      req.on('error', reject)
    })
  }
}

describeService(redisDown, 'createCache: stale-if-error with the external API down, and recovery', () => {
  const api = new PriceApi()
  const clients: Redis[] = []
  const caches: Cache[] = []
  /** Real time plus an offset the test moves forward (entries expire without waiting). */
  let offset = 0
  const clock = { now: () => Date.now() + offset }
  beforeAll(async () => {
    await api.start()
  })
  afterAll(async () => {
    for (const c of caches) await c.close()
    const admin = new Redis(REDIS_URL)
    for (const name of names) await redisStore(admin, { prefix: `${name}:` }).clear()
    await admin.quit()
    for (const r of clients) await r.quit().catch(() => r.disconnect())
    await api.stop().catch(() => {})
  })
  const names = new Set<string>()

  const instance = (name: string) => {
    names.add(name)
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
    clients.push(redis)
    const cache = createCache({
      name,
      clock,
      tiers: [{ store: redisStore(redis, { prefix: `${name}:` }) as never }],
      bus: redisBus(redis, { channel: `${name}:bus` }),
    })
    caches.push(cache)
    return cache
  }

  it('serves the last value flagged stale while the API is down (on the instance that computed it and on another), fresh again once it is back', async () => {
    const name = uniquePrefix('sie')
    const a = instance(name)
    const b = instance(name)
    const errors: string[] = []
    a.on('error', (e) => errors.push(`${e.operation} ${e.key}`))
    const options = { ttl: 1000, staleIfErrorMs: 60_000 }
    const price = (key: string) => () => api.fetchPrice(key)
    api.prices.set('SKU-1', 100)

    const first = await a.getEntry('SKU-1', price('SKU-1'), options)
    expect(first).toMatchObject({ value: { key: 'SKU-1', price: 100 }, stale: false, source: 'fn' })
    expect(first.error).toBeUndefined()

    await api.stop()
    await expect(api.fetchPrice('SKU-1')).rejects.toThrow() // the stub is really down
    offset += 2000 // past ttl, within staleIfErrorMs
    const stale = await a.getEntry('SKU-1', price('SKU-1'), options)
    expect(stale).toMatchObject({ value: { key: 'SKU-1', price: 100 }, stale: true, computedAt: first.computedAt })
    expect(stale.error).toBeInstanceOf(SourceUnavailableError)
    expect(a.metrics().staleServed.error).toBe(1)
    expect(errors).toEqual(['call SKU-1'])
    // The cached() form answers the stale value too, without an error.
    const cachedPrice = a.cached((key: string) => api.fetchPrice(key), { key: (k) => k, ...options })
    expect(await cachedPrice('SKU-1')).toEqual({ key: 'SKU-1', price: 100 })

    // B never computed it: it finds the expired entry in Redis and serves it stale when the API fails.
    const onB = await b.getEntry('SKU-1', price('SKU-1'), options)
    expect(onB).toMatchObject({ value: { key: 'SKU-1', price: 100 }, stale: true })
    expect(onB.error).toBeInstanceOf(SourceUnavailableError)

    // A key never computed has nothing stale to serve: the error reaches the caller.
    await expect(a.getEntry('SKU-2', price('SKU-2'), options)).rejects.toThrow(SourceUnavailableError)

    // The API is back with a new price: a fresh value, cached again.
    api.prices.set('SKU-1', 101)
    await api.start()
    const back = await a.getEntry('SKU-1', price('SKU-1'), options)
    expect(back).toMatchObject({ value: { key: 'SKU-1', price: 101 }, stale: false, source: 'fn' })
    expect(back.error).toBeUndefined()
    const requests = api.requests
    expect(await a.getEntry('SKU-1', price('SKU-1'), options)).toMatchObject({
      value: { price: 101 },
      stale: false,
      source: 'memory',
    })
    expect(api.requests).toBe(requests)
    // B held the stale copy in memory: it answers the new price, fresh (where from: see the next test).
    expect(await b.getEntry('SKU-1', price('SKU-1'), options)).toMatchObject({ value: { price: 101 }, stale: false })
  })

  it('a stale memory copy does not hide the fresher value another instance wrote to Redis (no extra call)', async () => {
    const name = uniquePrefix('sie')
    const a = instance(name)
    const b = instance(name)
    await Promise.all([subscribed(a), subscribed(b)])
    const options = { ttl: 1000, staleIfErrorMs: 60_000 }
    let calls = 0
    const price = (who: string) => () => ({ who, n: ++calls })
    expect(await a.getEntry('SKU-4', price('A'), options)).toMatchObject({ value: { who: 'A', n: 1 }, source: 'fn' })
    expect(await b.getEntry('SKU-4', price('B'), options)).toMatchObject({ value: { who: 'A', n: 1 }, source: 'tier1' })
    offset += 2000 // both memory copies are past ttl (kept for stale-if-error)
    const refreshed = await a.getEntry('SKU-4', price('A'), options)
    expect(refreshed).toMatchObject({ value: { who: 'A', n: 2 }, source: 'fn', stale: false })
    // A's refresh is in Redis and fresh: B takes it from there instead of calling its function (with a lock, the
    // second call is what "the store is read again once it is held" promises to avoid).
    expect(await b.getEntry('SKU-4', price('B'), options)).toMatchObject({
      value: { who: 'A', n: 2 },
      source: 'tier1',
      stale: false,
    })
    expect(calls).toBe(2)
  })

  it('an API that stops answering: timeoutMs serves the stale value; past ttl + staleIfErrorMs the error reaches the caller', async () => {
    const name = uniquePrefix('sie')
    const a = instance(name)
    const options = { ttl: 1000, staleIfErrorMs: 10_000, timeoutMs: 200 }
    const price = () => api.fetchPrice('SKU-3')
    api.prices.set('SKU-3', 7)
    const first = await a.getEntry('SKU-3', price, options)
    expect(first).toMatchObject({ value: { price: 7 }, stale: false })

    api.hang = true
    try {
      offset += 2000
      const stale = await a.getEntry('SKU-3', price, options)
      expect(stale).toMatchObject({ value: { price: 7 }, stale: true, computedAt: first.computedAt })
      expect(stale.error).toBeInstanceOf(SourceUnavailableError)
      expect(stale.error?.message).toMatch(/timeoutMs=200/)

      offset += 10_000 // past the hard maximum age: nothing stale is served any more
      await expect(a.getEntry('SKU-3', price, options)).rejects.toThrow(SourceUnavailableError)
    } finally {
      api.hang = false
    }
    api.prices.set('SKU-3', 8)
    expect(await a.getEntry('SKU-3', price, options)).toMatchObject({ value: { price: 8 }, stale: false, source: 'fn' })
  })
})
