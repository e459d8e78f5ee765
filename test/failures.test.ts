import { afterEach, describe, expect, it } from 'vitest'
import { createStockCache, memorySource, memoryStore, type StockCache, type StoreEntry } from '../src/index.js'
import { ChaosStore } from './helpers/chaos-store.js'
import { FakeTimers } from './helpers/fake-timers.js'
import { ControlledReader, FakeClock, schema } from './helpers/fixtures.js'

let cache: StockCache
afterEach(async () => {
  await cache?.close()
})

describe('stale-if-error (L3 down)', () => {
  it('serves the old value flagged stale within graceMs and keeps the product dirty', async () => {
    const clock = new FakeClock()
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    cache = createStockCache({ schema, reader, clock, graceMs: 60_000, debounceMs: 60_000, maxWaitMs: 60_000 })
    db.attach(cache)
    db.insert('stock_movements', { product_code: 'A', quantity: '3' })
    expect((await cache.get('A')).stockToday).toBe(3)
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    reader.failWith = new Error('database is down')
    const errors: string[] = []
    cache.on('error', (e) => errors.push(e.error.code))
    const s = await cache.get('A')
    expect(s.stale).toBe(true)
    expect(s.stockToday).toBe(3)
    expect(cache.status().dirty).toBe(1)
    expect(errors).toContain('E_SOURCE_UNAVAILABLE')
    expect(cache.metrics().staleIfError).toBe(1)
    clock.advance(61_000) // past graceMs: an error, not an old number
    await expect(cache.get('A')).rejects.toMatchObject({ code: 'E_SOURCE_UNAVAILABLE', tier: 'l3' })
    reader.failWith = undefined
    expect((await cache.get('A')).stockToday).toBe(4)
    expect(cache.status().dirty).toBe(0)
  })

  it('with nothing cached a source failure is a SourceUnavailableError', async () => {
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    reader.failWith = new Error('boom')
    cache = createStockCache({ schema, reader })
    await expect(cache.get('Z')).rejects.toMatchObject({ name: 'SourceUnavailableError', productId: 'Z' })
  })

  it('a failed background flush retries on its own', async () => {
    const clock = new FakeClock()
    const timers = new FakeTimers(clock)
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    cache = createStockCache({ schema, reader, clock, timers, debounceMs: 100, retryMs: 1000 })
    cache.on('error', () => {})
    db.attach(cache)
    reader.failWith = new Error('down')
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await timers.advance(100)
    expect(cache.status().dirty).toBe(1)
    reader.failWith = undefined
    await timers.advance(1000)
    expect(cache.status().dirty).toBe(0)
    expect(cache.peek('A')!.stockToday).toBe(1)
  })
})

describe('L2 failures fall through to L3, report degraded, and recover', () => {
  it('degrades, serves from the sources, then recovers in the background without resurrecting old entries', async () => {
    const clock = new FakeClock()
    const timers = new FakeTimers(clock)
    const shared = new Map<string, StoreEntry>()
    const chaos = new ChaosStore(memoryStore({ map: shared }))
    const db = memorySource(schema)
    cache = createStockCache({ schema, reader: db.reader, store: chaos, clock, timers, debounceMs: 0, retryMs: 500 })
    db.attach(cache)
    const events: string[] = []
    cache.on('degraded', () => events.push('degraded'))
    cache.on('recovered', () => events.push('recovered'))
    cache.on('error', (e) => events.push(e.error.code))
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    expect((await cache.get('A')).stockToday).toBe(1) // written to L2 (v1)
    chaos.down = true
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    expect((await cache.get('A')).stockToday).toBe(2) // L2 write fails: L3 answers, degraded
    expect(events).toContain('degraded')
    expect(cache.status().degraded).toBe(true)
    expect(cache.status().storeDebt).toBe(1)
    const callsWhileDown = chaos.calls
    await cache.get('B') // bypasses L2 entirely while degraded
    expect(chaos.calls).toBe(callsWhileDown)
    chaos.down = false
    await timers.advance(500)
    expect(events).toContain('recovered')
    expect(cache.status().degraded).toBe(false)
    // The L2 entry of A that missed its update was deleted on recovery: a fresh instance can't read the old "1".
    const other = createStockCache({ schema, reader: db.reader, store: memoryStore({ map: shared }) })
    expect((await other.get('A')).stockToday).toBe(2)
    await other.close()
  })
})
