import { afterEach, describe, expect, it } from 'vitest'
import { createStockCache, memorySource, type StockCache } from '../src/index.js'
import { settle } from './helpers/fake-timers.js'
import { ControlledReader, FakeClock, schema } from './helpers/fixtures.js'

let cache: StockCache | undefined
afterEach(async () => {
  await cache?.close()
  cache = undefined
})

describe('the slow-fill race', () => {
  it('a mark that lands while the recompute reads leaves the product dirty; the next read serves the newer value', async () => {
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    cache = createStockCache({ schema, reader, clock: new FakeClock(), debounceMs: 60_000, maxWaitMs: 60_000 })
    db.attach(cache)
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    reader.hold()
    const slow = cache.get('A') // reads the sources: stock 1
    await reader.gate!.entered // the read has its snapshot (stock 1) and is "in the database"
    db.insert('stock_movements', { product_code: 'A', quantity: '10' }) // commit + mark while it reads
    reader.release()
    expect((await slow).stockToday).toBe(1) // that read began before the commit
    expect(cache.peek('A')).toBeUndefined() // the old fill did not clear the newer mark
    expect(cache.status().dirty).toBe(1)
    expect(cache.metrics().racesKeptDirty).toBe(1)
    expect((await cache.get('A')).stockToday).toBe(11)
    expect(cache.peek('A')!.stockToday).toBe(11)
  })

  it('the same race in a background flush', async () => {
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    cache = createStockCache({ schema, reader, clock: new FakeClock(), debounceMs: 0 })
    db.attach(cache)
    db.insert('stock_movements', { product_code: 'B', quantity: '1' })
    reader.hold()
    const flushing = cache.flush()
    await reader.gate!.entered
    db.insert('stock_movements', { product_code: 'B', quantity: '1' })
    reader.release()
    await flushing
    await settle()
    await cache.flush()
    expect(cache.peek('B')!.stockToday).toBe(2)
    expect(cache.status().dirty).toBe(0)
  })
})

describe('per-product locks', () => {
  it('two recomputes of one product never overlap', async () => {
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    cache = createStockCache({ schema, reader, debounceMs: 0 })
    db.attach(cache)
    const c = cache
    const work: Promise<unknown>[] = []
    for (let i = 0; i < 200; i++) {
      db.insert('stock_movements', { product_code: 'A', quantity: '1' })
      work.push(c.get('A'), c.refresh('A'))
      if (i % 10 === 0) work.push(c.flush())
      if (i % 7 === 0) await new Promise((r) => setImmediate(r))
    }
    await Promise.all(work)
    expect(reader.overlaps).toBe(0)
    expect((await c.get('A')).stockToday).toBe(200)
    expect(c.status().locks).toBe(0) // idle lock entries are dropped
  })

  it('a lock held past lockTimeoutMs gives LockTimeoutError and the product stays dirty', async () => {
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    cache = createStockCache({ schema, reader, debounceMs: 60_000, maxWaitMs: 60_000, lockTimeoutMs: 40, graceMs: 0 })
    db.attach(cache)
    const c = cache
    const errors: string[] = []
    c.on('error', (e) => errors.push(e.error.code))
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    reader.hold()
    const slow = c.refresh('A') // holds A's lock while its read waits at the gate
    await reader.gate!.entered
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await expect(c.get('A')).rejects.toMatchObject({ name: 'LockTimeoutError', code: 'E_LOCK_TIMEOUT', productId: 'A' })
    expect(c.status().dirty).toBe(1)
    expect(c.metrics().lockTimeouts).toBe(1)
    expect(errors).toContain('E_LOCK_TIMEOUT')
    reader.release()
    await slow
    expect((await c.get('A')).stockToday).toBe(2)
  })

  it('a lock timeout serves the old value flagged stale within graceMs', async () => {
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    cache = createStockCache({ schema, reader, debounceMs: 60_000, maxWaitMs: 60_000, lockTimeoutMs: 40 })
    db.attach(cache)
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await cache.get('A')
    reader.hold()
    const slow = cache.refresh('A')
    await reader.gate!.entered
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    const s = await cache.get('A')
    expect(s.stale).toBe(true)
    expect(s.stockToday).toBe(1)
    reader.release()
    await slow
    expect((await cache.get('A')).stockToday).toBe(2)
  })
})
