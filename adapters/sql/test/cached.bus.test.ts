// createCache (the general-purpose cache of issue 14) across two instances on PostgreSQL: sqlBus (LISTEN/NOTIFY) as
// the bus and sqlStore as the shared tier, one pg Pool per instance (as two processes).
import type pg from 'pg'
import { type Cache, type CacheOptions, createCache } from 'stockcast'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { nextMs, until } from '../../../test-support/wait.js'
import { fromPg, sqlBus, sqlStore } from '../src/index.js'
import { describeService, pgDown, pgPool, uniquePrefix } from './services.js'

const SEP = '\u001f'

/** Until the cache's LISTEN holds: a value it computes is then kept in (and answered from) memory. */
async function subscribed(cache: Cache): Promise<void> {
  await until(
    async () => (await cache.getEntry('ready', () => 'ready', { ttl: 600_000 })).source === 'memory',
    5000,
    `${cache.name}'s LISTEN`,
  )
}

describeService(pgDown, 'createCache: two instances with sqlBus (LISTEN/NOTIFY) and an sqlStore tier', () => {
  const table = uniquePrefix('cached_tier')
  const pools: pg.Pool[] = []
  const caches: Cache[] = []
  let admin: pg.Pool
  beforeAll(async () => {
    admin = pgPool(2)
    await sqlStore(fromPg(admin), { table }).install()
  })
  afterEach(async () => {
    for (const c of caches.splice(0)) await c.close()
    for (const p of pools.splice(0)) await p.end()
  })
  afterAll(async () => {
    await sqlStore(fromPg(admin), { table })
      .drop()
      .catch(() => {})
    await admin.end()
  })

  /** Two instances of one cache, each on a pool of its own; `instance(false)` makes one without a bus. */
  function pair(extra: Partial<CacheOptions> = {}) {
    const name = uniquePrefix('cached')
    const prefix = `${name}:`
    const channel = uniquePrefix('cached_bus')
    const instance = (withBus = true) => {
      const pool = pgPool(4)
      pool.on('error', () => {})
      pools.push(pool)
      const db = fromPg(pool)
      const cache = createCache({
        name,
        tiers: [{ store: sqlStore(db, { table, prefix }) as never, ttl: 86_400_000 }],
        ...(withBus ? { bus: sqlBus(db, { channel }) } : {}),
        ...extra,
      })
      caches.push(cache)
      return cache
    }
    const tier = sqlStore(fromPg(admin), { table, prefix })
    const inTier = async (key: string) => (await tier.getMany([`${name}${SEP}${key}`])).get(`${name}${SEP}${key}`)
    return { a: instance(), b: instance(), instance, inTier, tier, name }
  }

  function source(label: string) {
    const calls: string[] = []
    const fn = (key: string) => () => {
      calls.push(key)
      return `${label}:${key}#${calls.length}`
    }
    return { calls, fn }
  }

  it('a value computed on A is a tier hit on B; invalidate({ keys }) on A makes B recompute (NOTIFY drops its copy)', async () => {
    const { a, b, inTier } = pair()
    await Promise.all([subscribed(a), subscribed(b)])
    const sa = source('A')
    const sb = source('B')
    const first = await a.getEntry('k', sa.fn('k'))
    expect(first).toMatchObject({ value: 'A:k#1', source: 'fn' })
    expect((await inTier('k'))?.value).toMatchObject({ v: 'A:k#1', at: first.computedAt })
    await a.get('other', sa.fn('other'))
    expect(await b.getEntry('k', sb.fn('k'))).toMatchObject({ value: 'A:k#1', source: 'tier1' })
    expect(await b.getEntry('k', sb.fn('k'))).toMatchObject({ value: 'A:k#1', source: 'memory' })
    expect(await b.getEntry('other', sb.fn('other'))).toMatchObject({ value: 'A:other#2', source: 'tier1' })

    await a.invalidate({ keys: ['k'] })
    expect(await inTier('k')).toBeUndefined()
    await until(async () => (await b.get('k')) === undefined, 5000, 'B to drop k on the notification')
    expect(await b.getEntry('k', sb.fn('k'))).toMatchObject({ value: 'B:k#1', source: 'fn' })
    expect(await b.getEntry('other', sb.fn('other'))).toMatchObject({ value: 'A:other#2', source: 'memory' })
    expect(await a.getEntry('k', sa.fn('k'))).toMatchObject({ value: 'B:k#1', source: 'tier1' })
    expect(sb.calls).toEqual(['k'])
  })

  it('invalidate({ tags }) and ({ events }) on A: B drops tagged entries; an instance without a bus reads the stamp from the table', async () => {
    const events = { 'order.created': ['dashboard'] }
    const { a, b, instance, tier, name } = pair({ events })
    await Promise.all([subscribed(a), subscribed(b)])
    const c = instance(false)
    const sa = source('A')
    const sb = source('B')
    const sc = source('C')
    const opts = (tags: string[]) => ({ ttl: 600_000, tags })
    await a.get('r:1', sa.fn('r:1'), opts(['seller:1']))
    await a.get('r:2', sa.fn('r:2'), opts(['seller:1']))
    await a.get('r:3', sa.fn('r:3'), opts(['seller:2']))
    await a.get('dash', sa.fn('dash'), opts(['dashboard']))
    for (const k of ['r:1', 'r:3', 'dash']) {
      expect(await b.getEntry(k, sb.fn(k), opts([]))).toMatchObject({ source: 'tier1' })
      expect(await b.getEntry(k, sb.fn(k), opts([]))).toMatchObject({ source: 'memory' })
    }

    await a.invalidate({ tags: ['seller:1'] })
    await nextMs()
    const stampKey = `${name}${SEP}tag${SEP}seller:1`
    expect((await tier.getMany([stampKey])).get(stampKey)?.value).toMatchObject({ stamp: expect.any(Number) })
    await until(async () => (await b.get('r:1')) === undefined, 5000, 'B to drop r:1 on the notification')
    expect(await b.getEntry('r:1', sb.fn('r:1'), opts(['seller:1']))).toMatchObject({ value: 'B:r:1#1', source: 'fn' })
    expect(await b.getEntry('r:3', sb.fn('r:3'), opts(['seller:2']))).toMatchObject({ source: 'memory' })
    expect(await b.getEntry('dash', sb.fn('dash'), opts(['dashboard']))).toMatchObject({ source: 'memory' })
    // C: no bus, r:2 never in its memory; the row is in the table, the stamp read from the table outdates it.
    expect(await c.getEntry('r:2', sc.fn('r:2'), opts(['seller:1']))).toMatchObject({ value: 'C:r:2#1', source: 'fn' })
    expect(await c.getEntry('r:3', sc.fn('r:3'), opts(['seller:2']))).toMatchObject({
      value: 'A:r:3#3',
      source: 'tier1',
    })
    expect(await a.getEntry('r:1', sa.fn('r:1'), opts(['seller:1']))).toMatchObject({
      value: 'B:r:1#1',
      source: 'tier1',
    })

    await a.invalidate({ events: ['order.created'] })
    await until(async () => (await b.get('dash')) === undefined, 5000, 'B to drop dash on the notification')
    expect(await b.getEntry('dash', sb.fn('dash'), opts(['dashboard']))).toMatchObject({
      value: 'B:dash#2',
      source: 'fn',
    })
    expect(await b.getEntry('r:3', sb.fn('r:3'), opts(['seller:2']))).toMatchObject({ source: 'memory' })
    expect(sb.calls).toEqual(['r:1', 'dash'])
    expect(sc.calls).toEqual(['r:2'])
  })

  it('invalidate(..., { tx }): nothing on rollback (B still hits), acts on commit', async () => {
    const { a, b, inTier } = pair()
    await Promise.all([subscribed(a), subscribed(b)])
    const sa = source('A')
    const sb = source('B')
    const opts = { ttl: 600_000, tags: ['t'] }
    for (const k of ['k', 'tagged', 'sentinel']) {
      await a.get(k, sa.fn(k), opts)
      await b.get(k, sb.fn(k), opts)
    }
    expect(sb.calls).toEqual([])

    const tx = a.transaction()
    await a.invalidate({ keys: ['k'], tags: ['t'] }, { tx })
    tx.rollback()
    // A barrier: once B has the notification sent after the rollback, anything sent before it has arrived.
    await a.invalidate({ keys: ['sentinel'] })
    await until(async () => (await b.get('sentinel')) === undefined, 5000, 'B to drop sentinel on the notification')
    expect(await b.getEntry('k', sb.fn('k'), opts)).toMatchObject({ value: 'A:k#1', source: 'memory' })
    expect(await b.getEntry('tagged', sb.fn('tagged'), opts)).toMatchObject({ value: 'A:tagged#2', source: 'memory' })
    expect(await inTier('k')).toBeDefined()

    const tx2 = a.transaction()
    await a.invalidate({ tags: ['t'] }, { tx: tx2 })
    expect(await b.getEntry('tagged', sb.fn('tagged'), opts)).toMatchObject({ source: 'memory' })
    tx2.commit()
    await until(async () => (await b.get('tagged')) === undefined, 5000, 'B to drop tagged after the commit')
    expect(await b.get('k')).toBeUndefined()
    expect(sb.calls).toEqual([])
  })
})
