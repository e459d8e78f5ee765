import type { Cluster, Redis } from 'ioredis'
import { ConfigError, InvalidInputError, type StoreEntry, StoreUnavailableError } from 'stockcast'
import { runStoreConformance, sampleProjection } from 'stockcast/conformance'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisStore } from '../src/index.js'
import {
  describeService,
  OwnCluster,
  OwnRedis,
  redisClient,
  redisDown,
  redisServerMissing,
  uniquePrefix,
} from './services.js'

const entry = (key: string, version: number, closing = 10): StoreEntry => {
  const value = sampleProjection(key, version, closing)
  return { value, version, computedAt: value.computedAt }
}

describeService(redisDown, 'redisStore on one Redis node', () => {
  let redis: Redis
  beforeAll(() => {
    redis = redisClient()
  })
  afterAll(async () => {
    await redis.quit()
  })

  runStoreConformance(({ prefix }) => redisStore(redis, { prefix }), { name: 'Store conformance', shared: true })

  describe('own cases', () => {
    it('keeps every product in a hash tag of its own, location entries with their product', async () => {
      const prefix = `${uniquePrefix('rs')}:`
      const s = redisStore(redis, { prefix })
      await s.setMany([
        ['P1', entry('P1', 1)],
        ['P1\u001fWH', entry('P1\u001fWH', 1)],
      ])
      const keys = (await redis.keys(`${prefix}*`)).sort()
      expect(keys).toEqual([`${prefix}{P1}`, `${prefix}{P1}\u001fWH`])
      await s.clear()
    })

    it('replaces an entry of the same version, never one of a higher version', async () => {
      const s = redisStore(redis, { prefix: `${uniquePrefix('rs')}:` })
      await s.setMany([['A', entry('A', 5, 1)]])
      await s.setMany([['A', entry('A', 5, 2)]])
      expect((await s.getMany(['A'])).get('A')?.value.stockToday).toBe(2)
      await s.setMany([['A', entry('A', 4, 3)]])
      expect((await s.getMany(['A'])).get('A')?.value.stockToday).toBe(2)
      // A key twice in one call: the higher version goes.
      await s.setMany([
        ['A', entry('A', 9, 9)],
        ['A', entry('A', 7, 7)],
      ])
      expect((await s.getMany(['A'])).get('A')?.version).toBe(9)
      await s.clear()
    })

    it('ttlMs and expiresAt make entries expire in Redis; an expired entry is a miss', async () => {
      const prefix = `${uniquePrefix('rs')}:`
      const s = redisStore(redis, { prefix, ttlMs: 60_000 })
      await s.setMany([
        ['T', entry('T', 1)],
        ['E', { ...entry('E', 1), expiresAt: Date.now() + 5_000 }],
        ['GONE', { ...entry('GONE', 1), expiresAt: Date.now() - 1 }],
      ])
      const ttl = await redis.pttl(`${prefix}{T}`)
      expect(ttl).toBeGreaterThan(55_000)
      expect(ttl).toBeLessThanOrEqual(60_000)
      const ttlE = await redis.pttl(`${prefix}{E}`)
      expect(ttlE).toBeGreaterThan(0)
      expect(ttlE).toBeLessThanOrEqual(5_000)
      expect(await redis.exists(`${prefix}{GONE}`)).toBe(0)
      const got = await s.getMany(['T', 'E', 'GONE'])
      expect([...got.keys()].sort()).toEqual(['E', 'T'])
      expect(got.get('E')?.expiresAt).toBeTypeOf('number')
      await s.clear()
    })

    it('a key with an unpaired surrogate is never stored and always a miss', async () => {
      const s = redisStore(redis, { prefix: `${uniquePrefix('rs')}:` })
      await s.setMany([['\ud800x', entry('\ud800x', 1)]])
      expect((await s.getMany(['\ud800x'])).size).toBe(0)
      await s.clear()
    })

    it('bad options are a ConfigError, bad entries an InvalidInputError that writes nothing', async () => {
      expect(() => redisStore({} as never)).toThrow(ConfigError)
      expect(() => redisStore(redis, { prefix: 'a{b}:' })).toThrow(/hash tag/)
      expect(() => redisStore(redis, { ttlMs: 0 })).toThrow(ConfigError)
      expect(() => redisStore(redis, { timeoutMs: -1 })).toThrow(ConfigError)
      const s = redisStore(redis, { prefix: `${uniquePrefix('rs')}:` })
      await expect(
        s.setMany([
          ['OK', entry('OK', 1)],
          ['BAD', { ...entry('BAD', 1), version: 1.5 }],
        ]),
      ).rejects.toThrow(InvalidInputError)
      expect((await s.getMany(['OK'])).size).toBe(0)
    })
  })
})

describeService(redisServerMissing, 'redisStore while its Redis is down', () => {
  let own: OwnRedis
  beforeAll(async () => {
    own = await OwnRedis.start()
  })
  afterAll(async () => {
    await own.close()
  })

  it('fails within timeoutMs with StoreUnavailableError, and works again once Redis is back', async () => {
    const { default: IORedis } = await import('ioredis')
    const redis = new IORedis(own.port, '127.0.0.1')
    redis.on('error', () => {})
    const s = redisStore(redis, { prefix: 'down:', timeoutMs: 300 })
    try {
      await s.setMany([['A', entry('A', 1, 1)]])
      await own.stop()
      const t0 = Date.now()
      const err = await s.getMany(['A']).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(StoreUnavailableError)
      expect(String((err as Error).message)).toMatch(/within 300 ms|failed/)
      expect(Date.now() - t0).toBeLessThan(5_000)
      await expect(s.setMany([['A', entry('A', 2, 2)]])).rejects.toThrow(StoreUnavailableError)
      await own.start()
      // Nothing is kept on disk: the restarted server is empty, and the store serves it again.
      for (let i = 0; ; i++) {
        try {
          await s.setMany([['A', entry('A', 3, 3)]])
          break
        } catch (e) {
          if (i > 50) throw e
          await new Promise((r) => setTimeout(r, 100))
        }
      }
      expect((await s.getMany(['A'])).get('A')?.value.stockToday).toBe(3)
    } finally {
      redis.disconnect()
    }
  })
})

describeService(redisServerMissing, 'redisStore on a 3-node Redis Cluster', () => {
  let cluster: OwnCluster
  let redis: Cluster
  beforeAll(async () => {
    cluster = await OwnCluster.start()
    redis = cluster.client()
  }, 60_000)
  afterAll(async () => {
    await redis?.quit().catch(() => {})
    await cluster?.close()
  })

  runStoreConformance(({ prefix }) => redisStore(redis, { prefix }), {
    name: 'Store conformance (cluster)',
    shared: true,
  })

  it('spreads products over the nodes and reads 300 of them in one call', async () => {
    const s = redisStore(redis, { prefix: 'spread:' })
    const keys = Array.from({ length: 300 }, (_, i) => `P${i}`)
    await s.setMany(keys.map((k, i) => [k, entry(k, i + 1, i)] as const))
    const got = await s.getMany(keys)
    expect(got.size).toBe(300)
    for (const [i, k] of keys.entries()) expect(got.get(k)?.value.stockToday).toBe(i)
    const perNode = await Promise.all(redis.nodes('master').map((n) => n.dbsize()))
    expect(perNode.filter((n) => n > 0).length).toBe(3)
    await s.clear()
    expect((await s.getMany(keys)).size).toBe(0)
  })
})
