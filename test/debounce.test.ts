import { afterEach, describe, expect, it } from 'vitest'
import { createStockCache, memorySource, type StockCache } from '../src/index.js'
import { FakeTimers, settle } from './helpers/fake-timers.js'
import { ControlledReader, FakeClock, schema } from './helpers/fixtures.js'

let cache: StockCache | undefined
afterEach(async () => {
  await cache?.close()
  cache = undefined
})

function setup(debounceMs = 500, maxWaitMs = 2000) {
  const clock = new FakeClock()
  const timers = new FakeTimers(clock)
  const db = memorySource(schema)
  const reader = new ControlledReader(db.reader)
  cache = createStockCache({ schema, reader, clock, timers, debounceMs, maxWaitMs })
  db.attach(cache)
  return { clock, timers, db, reader, cache }
}

describe('debounce and maxWait (fake time)', () => {
  it('recomputes once after debounceMs of quiet, not before', async () => {
    const { timers, db, reader, cache } = setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await timers.advance(499)
    expect(reader.calls.length).toBe(0)
    expect(cache.status().dirty).toBe(1)
    await timers.advance(1)
    expect(reader.calls.length).toBe(1)
    expect(cache.status().dirty).toBe(0)
    expect(cache.peek('A')!.stockToday).toBe(1)
  })

  it('1 000 marks of one product inside one debounce window cause at most 2 recomputes', async () => {
    const { timers, db, reader, cache } = setup()
    for (let i = 0; i < 1000; i++) db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await timers.advance(600)
    expect(reader.calls.length).toBeLessThanOrEqual(2)
    expect(cache.metrics().recomputes).toBeLessThanOrEqual(2)
    expect(cache.metrics().marksCoalesced).toBe(999)
    expect((await cache.get('A')).stockToday).toBe(1000)
  })

  it('a constant stream of marks is flushed at maxWaitMs', async () => {
    const { timers, db, reader } = setup(500, 2000)
    for (let t = 0; t < 1900; t += 100) {
      db.insert('stock_movements', { product_code: 'A', quantity: '1' })
      await timers.advance(100)
    }
    expect(reader.calls.length).toBe(0)
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await timers.advance(100)
    expect(reader.calls.length).toBe(1)
  })

  it('marks of many products in one window make one batched read', async () => {
    const { timers, db, reader } = setup()
    for (let i = 0; i < 200; i++) db.insert('stock_movements', { product_code: `P${i}`, quantity: '1' })
    await timers.advance(500)
    expect(reader.calls.length).toBe(1)
    expect(reader.calls[0]!.products.length).toBe(200)
  })

  it('a read of a dirty product recomputes now, bypassing the debounce', async () => {
    const { timers, db, reader, cache } = setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '4' })
    expect((await cache.get('A')).stockToday).toBe(4)
    expect(reader.calls.length).toBe(1)
    await timers.advance(1000)
    expect(reader.calls.length).toBe(1) // the flush found nothing left to do
  })

  it('close() flushes pending marks, then leaves no timer behind', async () => {
    const { timers, db, reader, cache: c } = setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    expect(timers.pending).toBeGreaterThan(0)
    await c.close()
    cache = undefined
    expect(reader.calls.length).toBe(1)
    expect(timers.pending).toBe(0)
    expect(() => c.markDirty('A')).toThrow(/closed/)
    await settle()
  })
})
