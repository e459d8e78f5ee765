import { afterEach, describe, expect, it } from 'vitest'
import { createStockCache, memorySource, type StockCache } from '../src/index.js'
import { ControlledReader, schema } from './helpers/fixtures.js'

let cache: StockCache
afterEach(async () => {
  await cache?.close()
})

function setup(rebuildThreshold?: number) {
  const db = memorySource(schema)
  const reader = new ControlledReader(db.reader)
  cache = createStockCache({ schema, reader, debounceMs: 0, ...(rebuildThreshold ? { rebuildThreshold } : {}) })
  db.attach(cache)
  return { db, reader, cache }
}

describe('disableCacheTemporarily', () => {
  it('collects marks without recomputing per row, reads touched products from the sources, recomputes in batches after', async () => {
    const { db, reader, cache } = setup()
    db.insert('stock_movements', { product_code: 'KEEP', quantity: '7' })
    await cache.get('KEEP')
    reader.calls = []
    const result = await cache.disableCacheTemporarily(async () => {
      for (let i = 0; i < 3000; i++) db.insert('stock_movements', { product_code: `P${i % 1000}`, quantity: '1' })
      await new Promise((r) => setTimeout(r, 5))
      expect(reader.calls.length).toBe(0) // no recompute per row
      expect(cache.status().dirty).toBe(1000)
      // a touched product is read straight from the sources and not cached
      expect((await cache.get('P1')).stockToday).toBe(3)
      expect(cache.peek('P1')).toBeUndefined()
      // untouched products are served as usual
      expect((await cache.get('KEEP')).stockToday).toBe(7)
      return 'done'
    })
    expect(result).toBe('done')
    expect(cache.status().dirty).toBe(0)
    const batchReads = reader.calls.filter((c) => c.products.length > 1)
    expect(batchReads.length).toBe(2) // 1000 products in batches of 500
    expect(cache.peek('P999')!.stockToday).toBe(3)
  })

  it('nests: only the outermost block settles', async () => {
    const { db, cache } = setup()
    await cache.disableCacheTemporarily(async () => {
      db.insert('stock_movements', { product_code: 'A', quantity: '1' })
      await cache.disableCacheTemporarily(async () => {
        db.insert('stock_movements', { product_code: 'B', quantity: '1' })
      })
      expect(cache.status().dirty).toBe(2)
      expect(cache.status().bulkDepth).toBe(1)
    })
    expect(cache.status().dirty).toBe(0)
    expect(cache.peek('A')!.stockToday).toBe(1)
  })

  it('recomputes the touched products also when fn throws', async () => {
    const { db, cache } = setup()
    await expect(
      cache.disableCacheTemporarily(async () => {
        db.insert('stock_movements', { product_code: 'A', quantity: '2' })
        throw new Error('import failed at row 2')
      }),
    ).rejects.toThrow('import failed at row 2')
    expect(cache.status().dirty).toBe(0)
    expect(cache.peek('A')!.stockToday).toBe(2)
  })

  it('rebuilds everything when that is cheaper (touched >= rebuildThreshold)', async () => {
    const { db, cache } = setup(50)
    await cache.disableCacheTemporarily(() => {
      for (let i = 0; i < 60; i++) db.insert('stock_movements', { product_code: `R${i}`, quantity: '1' })
    })
    expect(cache.metrics().bulkRebuilds).toBe(1)
    expect(cache.metrics().rebuilds).toBe(1)
    expect(cache.status().dirty).toBe(0)
    expect(cache.peek('R59')!.stockToday).toBe(1)
  })
})
