import { afterEach, describe, expect, it } from 'vitest'
import {
  createStockCache,
  memorySource,
  memoryStore,
  type PendingMarks,
  type StockCache,
  type Store,
  type StoreEntry,
} from '../src/index.js'
import { FakeTimers } from './helpers/fake-timers.js'
import { FakeClock, schema } from './helpers/fixtures.js'

let cache: StockCache | undefined
afterEach(async () => {
  await cache?.close()
  cache = undefined
})

/** An outbox kept in memory: writers append (product, id); a listener would delete after recomputing. */
class MemoryOutbox implements PendingMarks {
  rows: Array<{ id: number; product: string }> = []
  next = 1
  asked = 0
  down = false
  add(product: string): number {
    const id = this.next++
    this.rows.push({ id, product })
    return id
  }
  async pending(products: readonly string[]): Promise<Map<string, number>> {
    this.asked++
    if (this.down) throw new Error('outbox unreachable')
    const out = new Map<string, number>()
    for (const r of this.rows)
      if (products.includes(r.product)) out.set(r.product, Math.max(out.get(r.product) ?? 0, r.id))
    return out
  }
}

describe("get(p, { consistency: 'strong' })", () => {
  it('recomputes first when the mark source holds unprocessed marks for the product', async () => {
    const db = memorySource(schema) // not attached: only the outbox knows about the write
    const outbox = new MemoryOutbox()
    cache = createStockCache({ schema, reader: db.reader, pendingMarks: outbox, debounceMs: 60_000, maxWaitMs: 60_000 })
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    expect((await cache.get('A')).stockToday).toBe(1)
    db.insert('stock_movements', { product_code: 'A', quantity: '4' })
    outbox.add('A')
    expect((await cache.get('A')).stockToday).toBe(1) // default mode: the listener has not run yet
    const strong = await cache.get('A', { consistency: 'strong' })
    expect(strong.stockToday).toBe(5)
    expect(strong.version).toBeGreaterThanOrEqual(1)
    expect(cache.metrics().strongMarks).toBe(1)
    outbox.rows = [] // the listener processed and deleted it
    expect((await cache.get('A', { consistency: 'strong' })).stockToday).toBe(5)
    expect(cache.metrics().strongChecks).toBe(2)
    expect(cache.metrics().strongMarks).toBe(1)
  })

  it('with a shared store, an L1 value another instance has since recomputed is not served', async () => {
    const db = memorySource(schema)
    const outbox = new MemoryOutbox()
    const map = new Map<string, StoreEntry>()
    let storeDown = false
    /** One store shared by both instances (as the SQL table store is). */
    const shared = (): Store => {
      const inner = memoryStore({ map })
      return {
        ...inner,
        capabilities: { shared: true },
        getMany: (keys) => (storeDown ? Promise.reject(new Error('store down')) : inner.getMany(keys)),
      }
    }
    // One clock for both, moved on between steps: versions follow the clock, and the store keeps the higher one
    // (instances in one millisecond could stamp the same version; real instances are milliseconds apart).
    let now = Date.UTC(2030, 0, 15, 12)
    const clock = { now: () => now }
    const options = { schema, reader: db.reader, pendingMarks: outbox, memory: { ttl: 60_000 }, clock }
    const a = createStockCache({ ...options, store: shared() })
    const b = createStockCache({ ...options, store: shared() })
    b.on('error', () => {})
    try {
      db.insert('stock_movements', { product_code: 'A', quantity: '1' })
      expect((await b.get('A', { consistency: 'strong' })).stockToday).toBe(1)
      now += 10
      db.insert('stock_movements', { product_code: 'A', quantity: '4' })
      // Instance A consumed the write: recomputed (the store holds its value), the outbox row is gone.
      a.markDirty('A')
      await a.flush()
      expect(await outbox.pending(['A'])).toEqual(new Map())
      expect((await b.get('A')).stockToday).toBe(1) // default read: B's own L1 (no bus here)
      const strong = await b.get('A', { consistency: 'strong' })
      expect(strong.stockToday).toBe(5)
      expect(b.metrics().strongStoreMismatches).toBe(1)
      // In step again: the strong read answers from L1 (no second mismatch, no second recompute).
      await b.flush()
      const recomputes = b.metrics().recomputes
      expect((await b.get('A', { consistency: 'strong' })).stockToday).toBe(5)
      expect(b.metrics().strongStoreMismatches).toBe(1)
      expect(b.metrics().recomputes).toBe(recomputes)
      // A store that does not answer cannot confirm L1: the strong read goes to the sources.
      storeDown = true
      now += 10
      db.insert('stock_movements', { product_code: 'A', quantity: '2' })
      expect((await b.get('A', { consistency: 'strong' })).stockToday).toBe(7)
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('fails loudly without a mark source, or when the mark source is down', async () => {
    const db = memorySource(schema)
    cache = createStockCache({ schema, reader: db.reader })
    await expect(cache.get('A', { consistency: 'strong' })).rejects.toMatchObject({
      code: 'E_CONFIG',
      option: 'pendingMarks',
    })
    await expect(cache.get('A', { consistency: 'eventual' as 'strong' })).rejects.toMatchObject({
      code: 'E_INVALID_INPUT',
    })
    const outbox = new MemoryOutbox()
    outbox.down = true
    const c2 = createStockCache({ schema, reader: db.reader, pendingMarks: outbox })
    await expect(c2.get('A', { consistency: 'strong' })).rejects.toMatchObject({ code: 'E_SOURCE_UNAVAILABLE' })
    await c2.close()
  })
})

describe('flush() report', () => {
  it('says what it recomputed and what failed (and stays dirty)', async () => {
    const db = memorySource(schema)
    let fail = false
    const reader = {
      read: async (products: readonly string[]) => {
        if (fail) throw new Error('down')
        return db.reader.read(products)
      },
    }
    cache = createStockCache({ schema, reader, debounceMs: 60_000, maxWaitMs: 60_000 })
    cache.on('error', () => {})
    cache.markDirty(['A', 'B'])
    expect(await cache.flush()).toEqual({ recomputed: 2, failed: [], deferred: [], unstored: [] })
    fail = true
    cache.markDirty(['C'])
    expect(await cache.flush()).toEqual({ recomputed: 0, failed: ['C'], deferred: [], unstored: [] })
    expect(cache.status().dirty).toBe(1)
    fail = false
    expect(await cache.flush()).toEqual({ recomputed: 1, failed: [], deferred: [], unstored: [] })
    const c = cache
    await c.disableCacheTemporarily(async () => {
      c.markDirty(['D'])
      expect(await c.flush()).toEqual({ recomputed: 0, failed: [], deferred: ['D'], unstored: [] })
    })
    expect(c.status().dirty).toBe(0)
  })
})

describe('flush() report: unstored', () => {
  it('names the products a shared store did not take, until a later recompute stores them', async () => {
    const db = memorySource(schema)
    let down = false
    const inner = memoryStore()
    const shared: Store = {
      ...inner,
      capabilities: { shared: true },
      setMany: (entries) => (down ? Promise.reject(new Error('store down')) : inner.setMany(entries)),
      getMany: (keys) => (down ? Promise.reject(new Error('store down')) : inner.getMany(keys)),
    }
    cache = createStockCache({ schema, reader: db.reader, store: shared, memory: { ttl: 60_000 } })
    cache.on('error', () => {})
    cache.markDirty(['A', 'B'])
    expect(await cache.flush()).toEqual({ recomputed: 2, failed: [], deferred: [], unstored: [] })
    down = true
    cache.markDirty(['A'])
    expect(await cache.flush()).toEqual({ recomputed: 1, failed: [], deferred: [], unstored: ['A'] })
    // While the store is degraded its writes are skipped (they become debt): still unstored until it recovers.
    cache.markDirty(['A'])
    expect((await cache.flush()).unstored).toEqual(['A'])
    const recovered = new Promise((r) => cache!.on('recovered', r))
    down = false
    await recovered
    cache.markDirty(['A'])
    expect(await cache.flush()).toEqual({ recomputed: 1, failed: [], deferred: [], unstored: [] })
  })

  it('is empty when the store is not shared (no other reader can see an older value)', async () => {
    const db = memorySource(schema)
    const inner = memoryStore()
    const local: Store = { ...inner, setMany: () => Promise.reject(new Error('store down')) }
    cache = createStockCache({ schema, reader: db.reader, store: local })
    cache.on('error', () => {})
    cache.markDirty(['A'])
    expect(await cache.flush()).toEqual({ recomputed: 1, failed: [], deferred: [], unstored: [] })
  })
})

describe('get(p, { atLeast }) with a token from another instance', () => {
  const shared = (l2: Map<string, StoreEntry>): Store => ({
    ...memoryStore({ map: l2 }),
    capabilities: { shared: true },
  })

  it('is served as a strong read: the write behind the token is in the value, whichever instance recomputed it', async () => {
    const db = memorySource(schema)
    const outbox = new MemoryOutbox()
    const l2 = new Map<string, StoreEntry>()
    const a = createStockCache({
      schema,
      reader: db.reader,
      store: shared(l2),
      pendingMarks: outbox,
      memory: { ttl: 60_000 },
    })
    const b = createStockCache({
      schema,
      reader: db.reader,
      store: shared(l2),
      pendingMarks: outbox,
      memory: { ttl: 60_000 },
    })
    try {
      db.insert('stock_movements', { product_code: 'A', quantity: '1' })
      expect((await b.get('A')).stockToday).toBe(1)
      // A writes and marks (an ORM hook after commit): the token goes to the client, which then reads through B.
      db.insert('stock_movements', { product_code: 'A', quantity: '4' })
      const token = a.markDirty('A')
      await a.flush()
      expect((await b.get('A')).stockToday).toBe(1) // B never saw the mark: a default read serves its L1
      const checks = b.metrics().strongChecks
      expect((await b.get('A', { atLeast: token })).stockToday).toBe(5)
      expect(b.metrics().strongChecks).toBe(checks + 1)
    } finally {
      await a.close()
      await b.close()
    }
  })

  it("waits for this instance's clock to reach a token from a clock that runs ahead, instead of timing out", async () => {
    const db = memorySource(schema)
    db.insert('stock_movements', { product_code: 'A', quantity: '2' })
    const clock = new FakeClock()
    const timers = new FakeTimers(clock)
    const b = createStockCache({ schema, reader: db.reader, clock, timers, waitTimeoutMs: 1000 })
    try {
      // Another instance's token, taken 40 ms ahead of this clock.
      const token = (clock.ms + 40) * 1000 + 3
      let done = false
      const read = b.get('A', { atLeast: token }).then((v) => {
        done = true
        return v
      })
      await timers.advance(30)
      expect(done).toBe(false)
      await timers.advance(15)
      expect(done).toBe(true)
      expect((await read).stockToday).toBe(2)
    } finally {
      await b.close()
    }
  })
})
