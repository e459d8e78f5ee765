import { afterEach, describe, expect, it } from 'vitest'
import {
  ConfigError,
  createStockCache,
  InvalidInputError,
  type ListQuery,
  memorySource,
  memoryStore,
  type StockCache,
  type StockProjection,
} from '../src/index.js'
import { compareKeys } from '../src/stock/list.js'
import { addDays, FakeClock, locationSchema, mulberry32, schema } from './helpers/fixtures.js'

const TODAY = '2026-11-22'
let cache: StockCache | undefined
afterEach(async () => {
  await cache?.close()
  cache = undefined
})

/** 60 products with random stock and demand: some fine, some at risk, some out of stock. */
function seeded(n = 60) {
  const db = memorySource(schema)
  const rnd = mulberry32(7)
  const products = Array.from({ length: n }, (_, i) => `P${String(i).padStart(2, '0')}${i % 7 === 0 ? 'ü' : ''}`)
  for (const p of products) {
    db.insert('stock_movements', { product_code: p, quantity: String(Math.floor(rnd() * 40) - 5) })
    for (let k = 0; k < 3; k++) {
      db.insert('order_lines', {
        product_code: p,
        open_qty: String(Math.floor(rnd() * 15)),
        ship_date: addDays(TODAY, Math.floor(rnd() * 10)),
      })
    }
  }
  return { db, products }
}

/** The expected listing, by brute force over every product's projection. */
function expected(all: StockProjection[], q: { status?: string[]; minClosingBelow?: number; stockoutBefore?: string }) {
  return all
    .filter((p) => (q.status === undefined || q.status.includes(p.status)) && p.location === null)
    .filter((p) => q.minClosingBelow === undefined || p.minClosing7d < q.minClosingBelow)
    .filter(
      (p) => q.stockoutBefore === undefined || (p.firstStockoutDate !== null && p.firstStockoutDate < q.stockoutBefore),
    )
    .sort((a, b) => (a.minClosing7d !== b.minClosing7d ? a.minClosing7d - b.minClosing7d : compareKeys(a.key, b.key)))
    .map((p) => p.product)
}

async function pages(c: StockCache, q: ListQuery): Promise<{ products: string[]; sources: string[] }> {
  const products: string[] = []
  const sources: string[] = []
  let cursor: string | undefined
  for (;;) {
    const page = await c.list({ ...q, ...(cursor === undefined ? {} : { cursor }) })
    products.push(...page.items.map((p) => p.product))
    sources.push(page.source)
    if (page.cursor === null) return { products, sources }
    cursor = page.cursor
  }
}

describe('list()', () => {
  it('without every product in L1 and without a store that lists, is a ConfigError (it never scans)', async () => {
    const { db } = seeded()
    cache = createStockCache({ schema, reader: db.reader, clock: new FakeClock(), debounceMs: 0, store: memoryStore() })
    await expect(cache.list({ status: 'CRITICAL' })).rejects.toBeInstanceOf(ConfigError)
  })

  it('after rebuildAll(), answers from L1: the statuses asked, in order, page by page', async () => {
    const { db, products } = seeded()
    cache = createStockCache({ schema, reader: db.reader, clock: new FakeClock(), debounceMs: 0 })
    db.attach(cache)
    await cache.rebuildAll()
    const all = [...(await cache.getMany(products)).values()]
    const risk = expected(all, { status: ['CRITICAL', 'ATTENTION'] })
    expect(risk.length).toBeGreaterThan(5)
    expect(risk.length).toBeLessThan(products.length)
    const first = await cache.list({ status: ['CRITICAL', 'ATTENTION'] })
    expect(first.source).toBe('l1')
    expect(first.items.map((p) => p.product)).toEqual(risk)
    expect(first.cursor).toBeNull()
    const paged = await pages(cache, { status: ['CRITICAL', 'ATTENTION'], limit: 4 })
    expect(paged.products).toEqual(risk)
    expect(new Set(paged.sources)).toEqual(new Set(['l1']))
    // Other filters and orders.
    expect((await cache.list({ minClosingBelow: 0, limit: 1000 })).items.map((p) => p.product)).toEqual(
      expected(all, { minClosingBelow: 0 }),
    )
    const before = addDays(TODAY, 3)
    expect((await cache.list({ stockoutBefore: before, limit: 1000 })).items.map((p) => p.product)).toEqual(
      expected(all, { stockoutBefore: before }),
    )
    const byDate = (await cache.list({ orderBy: 'firstStockoutDate', limit: 1000 })).items
    expect(byDate.every((p) => p.firstStockoutDate !== null)).toBe(true)
    for (let i = 1; i < byDate.length; i++) {
      const a = byDate[i - 1]!
      const b = byDate[i]!
      expect(
        a.firstStockoutDate! < b.firstStockoutDate! ||
          (a.firstStockoutDate === b.firstStockoutDate && compareKeys(a.key, b.key) < 0),
      ).toBe(true)
    }
  })

  it('is as fresh as getMany: a committed, marked change is listed at once', async () => {
    const { db, products } = seeded()
    cache = createStockCache({ schema, reader: db.reader, clock: new FakeClock(), debounceMs: 60_000 })
    db.attach(cache)
    await cache.rebuildAll()
    const ok = (await cache.list({ status: 'OK', limit: 1000 })).items[0]!
    // A big order makes it run out today; the debounce would wait a minute: list() recomputes it first.
    db.insert('order_lines', { product_code: ok.product, open_qty: '100000', ship_date: TODAY })
    const critical = await cache.list({ status: 'CRITICAL', limit: 1000 })
    expect(critical.items.map((p) => p.product)).toContain(ok.product)
    expect(critical.items.find((p) => p.product === ok.product)!.stockToday).toBe(ok.stockToday)
    expect((await cache.list({ status: 'OK', limit: 1000 })).items.map((p) => p.product)).not.toContain(ok.product)
    expect(products).toContain(ok.product)
  })

  it('an eviction voids "every product in L1" until the next rebuildAll', async () => {
    const { db, products } = seeded(20)
    cache = createStockCache({ schema, reader: db.reader, clock: new FakeClock(), debounceMs: 0, memory: { max: 25 } })
    db.attach(cache)
    await cache.rebuildAll()
    expect((await cache.list()).source).toBe('l1')
    // More keys than L1 holds: evictions.
    await cache.getMany(Array.from({ length: 10 }, (_, i) => `EXTRA${i}`))
    await expect(cache.list()).rejects.toBeInstanceOf(ConfigError)
    expect(products.length).toBe(20)
  })

  it('a location listing lists that location keys only', async () => {
    const db = memorySource(locationSchema)
    cache = createStockCache({ schema: locationSchema, reader: db.reader, clock: new FakeClock(), debounceMs: 0 })
    db.attach(cache)
    db.insert('stock_movements', { product_code: 'A', quantity: '5', warehouse: 'WH1' })
    db.insert('stock_movements', { product_code: 'B', quantity: '5', warehouse: 'WH2' })
    db.insert('order_lines', { product_code: 'A', open_qty: '9', ship_date: TODAY, warehouse: 'WH1' })
    await cache.rebuildAll()
    const wh1 = await cache.list({ location: 'WH1' })
    expect(wh1.items.map((p) => [p.product, p.location, p.status])).toEqual([['A', 'WH1', 'CRITICAL']])
    expect((await cache.list({ location: 'WH2' })).items.map((p) => p.product)).toEqual(['B'])
    expect((await cache.list()).items.map((p) => p.location)).toEqual([null, null])
  })

  it('bad queries are an InvalidInputError', async () => {
    const { db } = seeded(5)
    cache = createStockCache({ schema, reader: db.reader, clock: new FakeClock(), debounceMs: 0 })
    await cache.rebuildAll()
    const bad: unknown[] = [
      { status: 'BAD' },
      { status: [] },
      { limit: 0 },
      { limit: 1.5 },
      { orderBy: 'name' },
      { stockoutBefore: '2026-13-01' },
      { minClosingBelow: Number.NaN },
      { location: '' },
      { cursor: 'not-a-cursor' },
      null,
    ]
    for (const q of bad)
      await expect(cache.list(q as ListQuery), JSON.stringify(q)).rejects.toBeInstanceOf(InvalidInputError)
    const page = await cache.list({ limit: 1 })
    expect(page.cursor).not.toBeNull()
    // A cursor of another order is refused.
    await expect(cache.list({ orderBy: 'computedAt', cursor: page.cursor! })).rejects.toBeInstanceOf(InvalidInputError)
  })
})
