import { afterEach, describe, expect, it } from 'vitest'
import {
  createStockCache,
  type InvalidationBus,
  type InvalidationMessage,
  memorySource,
  memoryStore,
  type StockCache,
  type StoreEntry,
} from '../src/index.js'
import { addDays, FakeClock, schema } from './helpers/fixtures.js'

const caches: StockCache[] = []
afterEach(async () => {
  for (const c of caches.splice(0)) await c.close()
})
const track = (c: StockCache) => {
  caches.push(c)
  return c
}

describe('validate', () => {
  it('finds a value the cache holds but the sources no longer back (an uncaptured write), and repairs it', async () => {
    const db = memorySource(schema)
    const cache = track(createStockCache({ schema, reader: db.reader, debounceMs: 0 }))
    db.attach(cache)
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    db.insert('stock_movements', { product_code: 'B', quantity: '5' })
    await cache.getMany(['A', 'B'])
    // A write no capture sees: a second source over the same tables, not attached.
    const id = [...db.rows('stock_movements')][0]!.id as number
    const sneaky = db.get('stock_movements', id)!
    sneaky.quantity = '6' // mutate the stored row behind the capture's back
    const report = await cache.validate()
    expect(report.checked).toBe(2)
    expect(report.mismatches).toEqual([
      { key: 'A', product: 'A', location: null, field: 'stockToday', cached: 5, truth: 6 },
    ])
    expect(report.rate).toBe(0.5)
    const repaired = await cache.validate({ repair: true })
    expect(repaired.mismatches.length).toBe(1)
    await cache.flush()
    expect((await cache.validate()).mismatches).toEqual([])
    expect(cache.peek('A')!.stockToday).toBe(6)
  })

  it('samples, counts uncached keys, and rejects a bad sample size', async () => {
    const db = memorySource(schema)
    for (let i = 0; i < 20; i++) db.insert('stock_movements', { product_code: `P${i}`, quantity: '1' })
    const cache = track(createStockCache({ schema, reader: db.reader }))
    await cache.getMany(['P0', 'P1', 'P2'])
    const all = await cache.validate()
    expect(all.checked).toBe(3)
    expect(all.uncached).toBe(17)
    const some = await cache.validate({ sample: 5 })
    expect(some.checked + some.uncached).toBe(5)
    await expect(cache.validate({ sample: -1 })).rejects.toMatchObject({ code: 'E_INVALID_INPUT' })
  })

  it('reports products with invalid source rows and checks the others', async () => {
    const db = memorySource(schema)
    db.insert('stock_movements', { product_code: 'GOOD', quantity: '1' })
    db.insert('stock_movements', { product_code: 'BAD', quantity: 'not a number' })
    const cache = track(createStockCache({ schema, reader: db.reader }))
    cache.on('error', () => {})
    await cache.get('GOOD')
    const r = await cache.validate()
    expect(r.checked).toBe(1)
    expect(r.invalid).toEqual([{ product: 'BAD', message: expect.stringContaining('not a number') }])
  })
})

describe('rebuildAll, status, metrics, events', () => {
  it('rebuildAll reports progress in batches and fills L1 and L2', async () => {
    const db = memorySource(schema)
    for (let i = 0; i < 1200; i++) db.insert('stock_movements', { product_code: `P${i}`, quantity: String(i) })
    const l2 = new Map<string, StoreEntry>()
    const cache = track(
      createStockCache({ schema, reader: db.reader, store: memoryStore({ map: l2 }), batchSize: 500 }),
    )
    const progress: number[] = []
    const r = await cache.rebuildAll({ onProgress: (p) => progress.push(p.done) })
    expect(progress).toEqual([500, 1000, 1200])
    expect(r).toMatchObject({ products: 1200, keys: 1200, failed: 0 })
    expect(l2.size).toBe(1200)
    expect(cache.peek('P1199')!.stockToday).toBe(1199)
    const m = cache.metrics()
    expect(m.recomputes).toBe(1200)
    expect(m.reads).toBe(3)
    expect(m.rebuilds).toBe(1)
  })

  it('rebuildAll without a products() reader is a ConfigError', async () => {
    const db = memorySource(schema)
    const cache = track(createStockCache({ schema, reader: { read: (p) => db.reader.read(p) } }))
    await expect(cache.rebuildAll()).rejects.toMatchObject({ code: 'E_CONFIG', option: 'reader' })
  })

  it('status reports dirty products and the age of the oldest mark', async () => {
    const clock = new FakeClock()
    const db = memorySource(schema)
    const cache = track(createStockCache({ schema, reader: db.reader, clock, debounceMs: 60_000, maxWaitMs: 60_000 }))
    db.attach(cache)
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    clock.advance(1500)
    db.insert('stock_movements', { product_code: 'B', quantity: '1' })
    const s = cache.status()
    expect(s).toMatchObject({
      dirty: 2,
      oldestDirtyMs: 1500,
      degraded: false,
      bulkDepth: 0,
      closed: false,
      today: '2026-11-22',
    })
    await cache.flush()
    expect(cache.status()).toMatchObject({ dirty: 0, oldestDirtyMs: 0, inFlight: 0, locks: 0 })
  })

  it('emits updated for every recomputed key and stockout when a stock-out appears', async () => {
    const db = memorySource(schema)
    const cache = track(createStockCache({ schema, reader: db.reader, clock: new FakeClock(), debounceMs: 0 }))
    db.attach(cache)
    const updated: string[] = []
    const stockouts: string[] = []
    cache.on('updated', (e) => updated.push(`${e.key}:${e.projection.stockToday}:${e.previous?.stockToday ?? '-'}`))
    cache.on('stockout', (e) => stockouts.push(`${e.product}@${e.date}`))
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    await cache.get('A')
    db.insert('order_lines', { product_code: 'A', open_qty: '8', ship_date: addDays('2026-11-22', 2) })
    await cache.get('A')
    db.insert('order_lines', { product_code: 'A', open_qty: '1', ship_date: addDays('2026-11-22', 9) })
    await cache.get('A') // same stock-out day: no second stockout event
    expect(updated).toEqual(['A:5:-', 'A:5:5', 'A:5:5'])
    expect(stockouts).toEqual(['A@2026-11-24'])
    const handler = () => updated.push('x')
    cache.on('updated', handler)
    cache.off('updated', handler)
    await cache.refresh('A')
    expect(updated.at(-1)).toBe('A:5:5')
  })

  it('close() flushes, then leaves no timer behind (real timers, counted)', async () => {
    // Real setTimeout/clearTimeout, wrapped only to count the live handles (the cache's own are unref'd and so
    // do not show in process.getActiveResourcesInfo()).
    const live = new Set<ReturnType<typeof setTimeout>>()
    const timers = {
      setTimeout(fn: () => void, ms: number) {
        const t = setTimeout(() => {
          live.delete(t)
          fn()
        }, ms)
        live.add(t)
        return t
      },
      clearTimeout(h: unknown) {
        live.delete(h as ReturnType<typeof setTimeout>)
        clearTimeout(h as ReturnType<typeof setTimeout>)
      },
    }
    const db = memorySource(schema)
    const cache = createStockCache({ schema, reader: db.reader, debounceMs: 10_000, timers })
    db.attach(cache)
    await cache.get('B') // schedules the day-rollover timer
    db.insert('stock_movements', { product_code: 'A', quantity: '1' }) // debounce + maxWait timers
    expect(live.size).toBe(3)
    await cache.close()
    expect(live.size).toBe(0)
    expect(cache.metrics().recomputes).toBe(2) // B, then A flushed by close()
    expect(cache.status().closed).toBe(true)
    await expect(cache.get('A')).rejects.toMatchObject({ code: 'E_CLOSED' })
  })
})

describe('several instances: bus and shared L2', () => {
  /** An in-process pub/sub that implements the InvalidationBus contract (Redis does the same across processes). */
  function localBus(): InvalidationBus {
    const handlers = new Set<(m: InvalidationMessage) => void>()
    return {
      async publish(m) {
        for (const h of handlers) queueMicrotask(() => h(structuredClone(m)))
      },
      async subscribe(h) {
        handlers.add(h)
        return async () => {
          handlers.delete(h)
        }
      },
    }
  }

  it('a peer drops its older L1 entry when another instance announces a newer version', async () => {
    const db = memorySource(schema)
    const l2 = new Map<string, StoreEntry>()
    const bus = localBus()
    const a = track(
      createStockCache({ schema, reader: db.reader, store: memoryStore({ map: l2 }), bus, debounceMs: 0 }),
    )
    const b = track(
      createStockCache({ schema, reader: db.reader, store: memoryStore({ map: l2 }), bus, debounceMs: 0 }),
    )
    db.attach(a) // only instance A sees the writes (as with a single outbox consumer)
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    expect((await b.get('A')).stockToday).toBe(1)
    a.markDirty('A')
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await a.get('A') // recomputed (a later stamp, or the same millisecond's), written to L2 and announced
    await new Promise((r) => setImmediate(r))
    expect(b.peek('A')).toBeUndefined()
    expect((await b.get('A')).stockToday).toBe(2) // from the shared L2
    expect(b.metrics().l2Hits).toBe(1)
  })
})

describe('risky but legal setup', () => {
  it('warns once, with a code, for a shared store without a bus or ttl', async () => {
    const warnings: Array<{ name: string; code?: string }> = []
    const onWarning = (w: Error & { code?: string }) => warnings.push({ name: w.name, code: w.code })
    process.on('warning', onWarning)
    const db = memorySource(schema)
    const shared = { ...memoryStore(), capabilities: { shared: true } }
    track(createStockCache({ schema, reader: db.reader, store: shared }))
    track(createStockCache({ schema, reader: db.reader, store: shared }))
    await new Promise((r) => setImmediate(r))
    process.off('warning', onWarning)
    expect(warnings).toEqual([{ name: 'StockcastWarning', code: 'STOCKCAST_SHARED_STORE_WITHOUT_BUS' }])
  })
})

describe('versions across restarts', () => {
  it("a new instance's recompute replaces the L2 entry an earlier process left (versions start from the clock)", async () => {
    const db = memorySource(schema)
    const l2 = new Map<string, StoreEntry>()
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    const clock = new FakeClock()
    const first = track(createStockCache({ schema, reader: db.reader, store: memoryStore({ map: l2 }), clock }))
    for (let i = 0; i < 50; i++) first.markDirty('A')
    await first.get('A')
    await first.close()
    // Writes while no cache (and no capture) was running; then a new process starts a bit later and rebuilds.
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    clock.advance(1000)
    const second = track(createStockCache({ schema, reader: db.reader, store: memoryStore({ map: l2 }), clock }))
    await second.rebuildAll()
    const third = track(createStockCache({ schema, reader: db.reader, store: memoryStore({ map: l2 }), clock }))
    expect((await third.get('A')).stockToday).toBe(2) // from L2, written by the second instance
    expect(third.metrics().l2Hits).toBe(1)
  })
})
