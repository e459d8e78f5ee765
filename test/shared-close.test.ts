import { describe, expect, it } from 'vitest'
import { createStockCache, memorySource, memoryStore } from '../src/index.js'
import { schema } from './helpers/fixtures.js'

/** A memory store that counts its close() calls. */
function countingStore() {
  const store = memoryStore()
  const counts = { closes: 0 }
  const close = store.close.bind(store)
  store.close = async () => {
    counts.closes++
    await close()
  }
  return { store, counts }
}

describe('a store and a reader shared by two caches', () => {
  it('stay open until the last cache using them closes, and are closed once', async () => {
    const db = memorySource(schema)
    db.insert('stock_movements', { product_code: 'A', quantity: '3' })
    const { store, counts } = countingStore()
    let readerCloses = 0
    const reader = { read: db.reader.read.bind(db.reader), close: async () => void readerCloses++ }
    const a = createStockCache({ schema, reader, store })
    const b = createStockCache({ schema, reader, store, memory: { max: 0 } })
    expect((await a.get('A')).stockToday).toBe(3)
    await a.close()
    await a.close() // twice: still one release
    expect(counts.closes).toBe(0)
    expect(readerCloses).toBe(0)
    // b still reads L2 (a wrote it) and recomputes through the reader.
    expect((await b.get('A')).stockToday).toBe(3)
    expect(b.metrics().l2Hits).toBe(1)
    db.insert('stock_movements', { product_code: 'B', quantity: '5' })
    expect((await b.get('B')).stockToday).toBe(5)
    expect(b.status().degraded).toBe(false)
    // b's write reached the store the first cache had closed its hold on.
    expect((await store.getMany(['B'])).get('B')?.value.stockToday).toBe(5)
    await Promise.all([b.close(), b.close()])
    expect(counts.closes).toBe(1)
    expect(readerCloses).toBe(1)
  })

  it('a store of its own is closed with its cache', async () => {
    const db = memorySource(schema)
    const { store, counts } = countingStore()
    const c = createStockCache({ schema, reader: db.reader, store })
    await c.close()
    expect(counts.closes).toBe(1)
  })
})
