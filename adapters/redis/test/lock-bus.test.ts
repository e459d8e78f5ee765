import type { Redis } from 'ioredis'
import { ConfigError } from 'stockcast'
import { runBusConformance, runLockConformance } from 'stockcast/conformance'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { redisBus, redisLock } from '../src/index.js'
import { describeService, OwnCluster, redisClient, redisDown, redisServerMissing } from './services.js'

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
