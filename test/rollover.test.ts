import { afterEach, describe, expect, it } from 'vitest'
import {
  createStockCache,
  firstDifference,
  type MemorySource,
  memorySource,
  memoryStore,
  type StockCache,
  type StockCacheOptions,
  type TransitionEvent,
} from '../src/index.js'
import { FakeTimers, settle } from './helpers/fake-timers.js'
import { addDays, ControlledReader, FakeClock, schema } from './helpers/fixtures.js'

// 23:50 UTC on 2026-11-22: ten minutes before D0 moves to 2026-11-23.
const EVENING = Date.parse('2026-11-22T23:50:00Z')
const TODAY = '2026-11-22'
const TOMORROW = '2026-11-23'

const caches: StockCache[] = []
afterEach(async () => {
  for (const c of caches.splice(0)) await c.close()
})

function seedProducts(db: MemorySource, n: number): string[] {
  const products: string[] = []
  for (let i = 0; i < n; i++) {
    const p = `P${i}`
    products.push(p)
    db.insert('stock_movements', { product_code: p, quantity: String(10 + i) })
    db.insert('production_schedule', { product_code: p, planned_qty: '4', scheduled_for: addDays(TODAY, 1 + (i % 5)) })
    db.insert('order_lines', { product_code: p, open_qty: String(3 + (i % 7)), ship_date: addDays(TODAY, i % 30) })
    // Overdue demand, and demand just past the horizon: both move when the day does.
    db.insert('order_lines', { product_code: p, open_qty: '1', ship_date: addDays(TODAY, -1) })
    db.insert('order_lines', { product_code: p, open_qty: '2', ship_date: addDays(TODAY, 29) })
  }
  return products
}

function setup(n = 40, extra: Partial<StockCacheOptions> = {}) {
  const clock = new FakeClock(EVENING)
  const timers = new FakeTimers(clock)
  const db = memorySource(schema)
  const products = seedProducts(db, n)
  const reader = new ControlledReader(db.reader)
  const cache = createStockCache({ schema, reader, clock, timers, debounceMs: 0, ...extra })
  caches.push(cache)
  db.attach(cache)
  return { clock, timers, db, reader, cache, products }
}

/** What a cache that never saw yesterday computes for these products now (the truth). */
async function truthAt(db: MemorySource, clock: FakeClock, products: string[]) {
  const fresh = createStockCache({ schema, reader: db.reader, clock: { now: () => clock.ms } })
  caches.push(fresh)
  return fresh.getMany(products)
}

describe('day rollover (prepareRollover)', () => {
  it('swaps in the next day at midnight: no source read, every value equal to a fresh computation', async () => {
    const { clock, timers, db, reader, cache, products } = setup()
    await cache.getMany(products)
    const readsBefore = reader.calls.length
    const report = await cache.prepareRollover()
    expect(report).toMatchObject({ date: TOMORROW, prepared: products.length, read: 0, skipped: 0 })
    expect(report.startsAt).toBe(Date.parse(`${TOMORROW}T00:00:00Z`))
    // Before midnight nothing changes: today's values are served.
    expect(cache.peek('P1')!.today).toBe(TODAY)
    await timers.advance(10 * 60_000 + 1)
    expect(cache.status().today).toBe(TOMORROW)
    const m0 = cache.metrics()
    const got = await cache.getMany(products)
    const m1 = cache.metrics()
    expect(m1.l1Hits - m0.l1Hits).toBe(products.length)
    expect(m1.recomputes).toBe(m0.recomputes)
    expect(reader.calls.length).toBe(readsBefore)
    const truth = await truthAt(db, clock, products)
    for (const p of products) {
      expect(got.get(p)!.today).toBe(TOMORROW)
      expect(firstDifference(got.get(p)!, truth.get(p)!), p).toBeNull()
    }
  })

  it('does not swap a product marked after prepare: it is recomputed with the change', async () => {
    const { clock, timers, db, cache, products } = setup(10)
    await cache.getMany(products)
    const report = await cache.prepareRollover()
    expect(report.prepared).toBe(10)
    db.insert('stock_movements', { product_code: 'P3', quantity: '100' })
    await cache.flush()
    await timers.advance(10 * 60_000 + 1)
    const p3 = await cache.get('P3')
    const truth = await truthAt(db, clock, ['P3'])
    expect(p3.today).toBe(TOMORROW)
    expect(firstDifference(p3, truth.get('P3')!)).toBeNull()
    expect(p3.stockToday).toBe(113)
  })

  it('skips a product that is dirty at prepare, and one evicted before midnight', async () => {
    const { timers, db, cache, products } = setup(6, { debounceMs: 60_000, maxWaitMs: 60_000 })
    await cache.flush()
    await cache.getMany(products)
    db.insert('stock_movements', { product_code: 'P0', quantity: '1' }) // dirty, waiting for its debounce
    const report = await cache.prepareRollover()
    expect(report).toMatchObject({ prepared: 5, skipped: 1 })
    await timers.advance(10 * 60_000 + 1)
    // P0 was recomputed by its debounce (before midnight): today's value, so not fresh now.
    expect(cache.peek('P0')).toBeUndefined()
    expect(cache.peek('P1')!.today).toBe(TOMORROW)
    expect((await cache.get('P0')).today).toBe(TOMORROW)
  })

  it('reads the rows of values adopted from the store (one batched read), then swaps them too', async () => {
    const clock = new FakeClock(EVENING)
    const timers = new FakeTimers(clock)
    const db = memorySource(schema)
    const products = seedProducts(db, 12)
    const store = memoryStore()
    const first = createStockCache({ schema, reader: db.reader, store, clock, timers, debounceMs: 0 })
    caches.push(first)
    await first.getMany(products)
    const reader = new ControlledReader(db.reader)
    const second = createStockCache({ schema, reader, store, clock, timers, debounceMs: 0, batchSize: 5 })
    caches.push(second)
    await second.getMany(products)
    expect(reader.calls.length).toBe(0) // adopted from the store
    const report = await second.prepareRollover()
    expect(report).toMatchObject({ prepared: 12, read: 12, skipped: 0 })
    expect(reader.calls.length).toBe(3) // batches of 5
    await timers.advance(10 * 60_000 + 1)
    const got = await second.getMany(products)
    expect(reader.calls.length).toBe(3)
    const truth = await truthAt(db, clock, products)
    for (const p of products) expect(firstDifference(got.get(p)!, truth.get(p)!), p).toBeNull()
  })

  it('emits the transitions the new window brings (a stock-out moving into the horizon), after the swap', async () => {
    const clock = new FakeClock(EVENING)
    const timers = new FakeTimers(clock)
    const db = memorySource(schema)
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    // Demand on D29 today: outside the 29-day window (D0..D28) until midnight.
    db.insert('order_lines', { product_code: 'A', open_qty: '9', ship_date: addDays(TODAY, 29) })
    const cache = createStockCache({ schema, reader: db.reader, clock, timers, debounceMs: 0 })
    caches.push(cache)
    const a = await cache.get('A')
    expect(a.firstStockoutDate).toBeNull()
    const seen: TransitionEvent[] = []
    cache.on('transition', (e) => seen.push(e))
    await cache.prepareRollover()
    expect(seen).toEqual([])
    await timers.advance(10 * 60_000 + 1)
    await settle()
    expect(seen.map((e) => e.kind)).toContain('stockout')
    expect(seen[0]!.projection.today).toBe(TOMORROW)
    expect(cache.peek('A')!.firstStockoutDate).toBe(addDays(TODAY, 29))
  })

  it('drops what was prepared when the day that comes is not the one prepared for (the clock jumped)', async () => {
    // Exact mode (a clock and no timers): every read looks at the clock, nothing fires at midnight.
    const clock = new FakeClock(EVENING)
    const db = memorySource(schema)
    const products = seedProducts(db, 4)
    const cache = createStockCache({ schema, reader: db.reader, clock, debounceMs: 0 })
    caches.push(cache)
    await cache.getMany(products)
    expect((await cache.prepareRollover()).prepared).toBe(4)
    clock.advance(10 * 60_000 + 24 * 3600_000) // past the next midnight and the one after
    const m0 = cache.metrics()
    const got = await cache.get('P1')
    expect(got.today).toBe(addDays(TOMORROW, 1))
    expect(cache.metrics().recomputes - m0.recomputes).toBe(1)
    const truth = await truthAt(db, clock, ['P1'])
    expect(firstDifference(got, truth.get('P1')!)).toBeNull()
  })

  it('without prepareRollover, the first read after midnight recomputes (the control)', async () => {
    const { timers, cache, products, reader } = setup(8)
    await cache.getMany(products)
    await timers.advance(10 * 60_000 + 1)
    const m0 = cache.metrics()
    await cache.getMany(products)
    expect(cache.metrics().recomputes - m0.recomputes).toBe(8)
    expect(reader.calls.length).toBe(1) // reuses the rows (one instance), but still recomputes every product on read
  })
})
