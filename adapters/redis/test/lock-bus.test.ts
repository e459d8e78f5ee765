import Redis from 'ioredis'
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

describeService(redisServerMissing, 'redisBus on a Cluster whose subscription node dies', () => {
  let cluster: OwnCluster
  let redis: ReturnType<OwnCluster['client']>
  beforeAll(async () => {
    // Full coverage not required: the two nodes left keep serving after one dies (there are no replicas).
    cluster = await OwnCluster.start(['--cluster-require-full-coverage', 'no'])
    redis = cluster.client()
  }, 60_000)
  afterAll(async () => {
    redis?.disconnect()
    await cluster?.close()
  })

  /** The index of the node holding a connection subscribed to `channel`, found with PUBSUB NUMSUB on each (node-local on a cluster). */
  async function subscribedNode(channel: string): Promise<number[]> {
    const found: number[] = []
    for (const [i, n] of cluster.nodes.entries()) {
      const c = new Redis(n.port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null })
      c.on('error', () => {})
      try {
        await c.connect()
        const [, n] = (await c.pubsub('NUMSUB', channel)) as [string, number]
        if (Number(n) > 0) found.push(i)
      } catch {
        // a dead node holds nothing
      } finally {
        c.disconnect()
      }
    }
    return found
  }

  it('reports degraded when that node dies, recovers on another node, and receives again', async () => {
    const bus = redisBus(redis, { channel: 'failover-test' })
    const states: string[] = []
    const got: unknown[] = []
    const stop = await bus.subscribe(
      (m) => got.push(m),
      (s) => states.push(s),
    )
    const before = await subscribedNode('failover-test')
    expect(before).toHaveLength(1)
    const victim = before[0]!
    await cluster.nodes[victim]!.stop()
    for (let i = 0; i < 500 && !states.includes('recovered'); i++) await new Promise((r) => setTimeout(r, 10))
    expect(states).toEqual(['degraded', 'recovered'])
    const after = await subscribedNode('failover-test')
    expect(after).toHaveLength(1)
    expect(after[0]).not.toBe(victim)
    // A PUBLISH on any live node reaches the subscription.
    const other = cluster.nodes.find((_, i) => i !== victim && i !== after[0]) ?? cluster.nodes[after[0]!]!
    const pub = new Redis(other.port, '127.0.0.1')
    await pub.publish('failover-test', JSON.stringify({ products: ['P'], version: 7, origin: 'x' }))
    for (let i = 0; i < 200 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    expect(got).toEqual([{ products: ['P'], version: 7, origin: 'x' }])
    await pub.quit()
    await stop()
    expect(await subscribedNode('failover-test')).toEqual([])
  }, 30_000)
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
