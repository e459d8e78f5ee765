import type { Redis } from 'ioredis'
import { ConfigError } from 'stockcast'
import { runBusConformance, runLockConformance } from 'stockcast/conformance'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { redisBus, redisLock } from '../src/index.js'
import { describeService, OwnCluster, OwnRedis, redisClient, redisDown, redisServerMissing } from './services.js'

describeService(redisDown, 'redisLock and redisBus on one Redis node', () => {
  let redis: Redis
  beforeAll(() => {
    redis = redisClient()
  })
  afterAll(async () => {
    await redis.quit()
  })

  runLockConformance(({ namespace, ttlMs }) => redisLock(redis, { prefix: namespace, ttlMs }))
  runBusConformance(({ channel }) => redisBus(redis, { channel }))

  it('bad options are a ConfigError', () => {
    expect(() => redisLock(redis, { ttlMs: 0 })).toThrow(ConfigError)
    expect(() => redisLock(redis, { prefix: 'x{' })).toThrow(ConfigError)
    expect(() => redisBus(redis, { channel: '' })).toThrow(ConfigError)
    expect(() => redisBus(null as never)).toThrow(ConfigError)
  })

  it('drops a message that is not one of its own, and tells onInvalid', async () => {
    const invalid: string[] = []
    const bus = redisBus(redis, { channel: 'stray-test', onInvalid: (t) => invalid.push(t) })
    const got: unknown[] = []
    const stop = await bus.subscribe((m) => got.push(m))
    await redis.publish('stray-test', 'not json')
    await redis.publish('stray-test', JSON.stringify({ products: [1], version: 1, origin: 'x' }))
    await bus.publish({ products: ['OK'], version: 1, origin: 'x' })
    for (let i = 0; i < 200 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    expect(got).toEqual([{ products: ['OK'], version: 1, origin: 'x' }])
    expect(invalid).toHaveLength(2)
    await stop()
  })
})

describeService(redisServerMissing, 'redisLock and redisBus on a 3-node Redis Cluster', () => {
  let cluster: OwnCluster
  let redis: ReturnType<OwnCluster['client']>
  beforeAll(async () => {
    cluster = await OwnCluster.start()
    redis = cluster.client()
  }, 60_000)
  afterAll(async () => {
    await redis?.quit().catch(() => {})
    await cluster?.close()
  })

  runLockConformance(({ namespace, ttlMs }) => redisLock(redis, { prefix: namespace, ttlMs }), {
    name: 'Lock conformance (cluster)',
  })
  runBusConformance(({ channel }) => redisBus(redis, { channel }), { name: 'Bus conformance (cluster)' })
})

describeService(redisServerMissing, 'redisLock while Redis is down', () => {
  it('resolves at once without the lock and says so through onUnavailable; locks again once Redis is back', async () => {
    const own = await OwnRedis.start()
    const { default: IORedis } = await import('ioredis')
    const redis = new IORedis(own.port, '127.0.0.1', { maxRetriesPerRequest: 1 })
    redis.on('error', () => {})
    const skipped: string[] = []
    const lock = redisLock(redis, { timeoutMs: 300, onUnavailable: (_e, key) => skipped.push(key) })
    try {
      const r1 = await lock.acquire('A', 1000)
      await own.stop()
      const t0 = Date.now()
      const r2 = await lock.acquire('A', 5000)
      expect(Date.now() - t0).toBeLessThan(3000)
      expect(skipped).toEqual(['A'])
      await r2()
      await r1() // its release fails quietly: the lock ends with its ttl
      await own.start()
      let r3: (() => Promise<void>) | undefined
      for (let i = 0; i < 50 && r3 === undefined; i++) {
        const before = skipped.length
        const r = await lock.acquire('B', 1000)
        if (skipped.length === before) r3 = r
        else await new Promise((res) => setTimeout(res, 100))
      }
      expect(r3).toBeDefined()
      expect(await redis.exists('stockcast:lock:{B}')).toBe(1)
      await r3!()
      expect(await redis.exists('stockcast:lock:{B}')).toBe(0)
    } finally {
      redis.disconnect()
      await own.close()
    }
  })
})
