import { afterEach, describe, expect, it } from 'vitest'
import { createStockCache, memorySource, type PendingMarks, type StockCache } from '../src/index.js'
import { schema } from './helpers/fixtures.js'

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
    expect(await cache.flush()).toEqual({ recomputed: 2, failed: [], deferred: [] })
    fail = true
    cache.markDirty(['C'])
    expect(await cache.flush()).toEqual({ recomputed: 0, failed: ['C'], deferred: [] })
    expect(cache.status().dirty).toBe(1)
    fail = false
    expect(await cache.flush()).toEqual({ recomputed: 1, failed: [], deferred: [] })
    const c = cache
    await c.disableCacheTemporarily(async () => {
      c.markDirty(['D'])
      expect(await c.flush()).toEqual({ recomputed: 0, failed: [], deferred: ['D'] })
    })
    expect(c.status().dirty).toBe(0)
  })
})
