import { afterEach, describe, expect, it } from 'vitest'
import { createStockCache, keyOf, memorySource, type StockCache } from '../src/index.js'
import { addDays, FakeClock, locationSchema } from './helpers/fixtures.js'

let cache: StockCache
afterEach(async () => {
  await cache?.close()
})

describe('locations', () => {
  it('keys are (product, location) plus the all-locations roll-up', async () => {
    const db = memorySource(locationSchema)
    cache = createStockCache({ schema: locationSchema, reader: db.reader, clock: new FakeClock(), debounceMs: 0 })
    db.attach(cache)
    db.insert('stock_movements', { product_code: 'A', quantity: '10', warehouse: 'WH1' })
    db.insert('stock_movements', { product_code: 'A', quantity: '4', warehouse: 'WH2' })
    const id = db.insert('order_lines', {
      product_code: 'A',
      open_qty: '6',
      ship_date: addDays('2026-11-22', 1),
      warehouse: 'WH2',
    })
    const all = await cache.get('A')
    const wh1 = await cache.get('A', { location: 'WH1' })
    const wh2 = await cache.get('A', { location: 'WH2' })
    expect(all.location).toBeNull()
    expect(all.days[1]!.closing).toBe(8)
    expect(wh1.days[1]!.closing).toBe(10)
    expect(wh2.days[1]!.closing).toBe(-2)
    expect(wh2.status).toBe('CRITICAL')
    expect(wh2.key).toBe(keyOf('A', 'WH2'))
    expect(cache.peek('A', 'WH2')).toBe(wh2)
    // a location with no rows is an empty projection, not an error
    expect((await cache.get('A', { location: 'WH9' })).stockToday).toBe(0)
    // moving the order to WH1 updates both locations and the roll-up stays the same
    db.update('order_lines', id, { warehouse: 'WH1' })
    expect((await cache.get('A', { location: 'WH2' })).days[1]!.closing).toBe(4)
    expect((await cache.get('A', { location: 'WH1' })).days[1]!.closing).toBe(4)
    expect((await cache.get('A')).days[1]!.closing).toBe(8)
  })

  it('a location whose rows all vanish is overwritten, never served from the old value', async () => {
    const db = memorySource(locationSchema)
    cache = createStockCache({ schema: locationSchema, reader: db.reader, debounceMs: 0 })
    db.attach(cache)
    const id = db.insert('stock_movements', { product_code: 'B', quantity: '5', warehouse: 'OLD' })
    expect((await cache.get('B', { location: 'OLD' })).stockToday).toBe(5)
    db.delete('stock_movements', id)
    await cache.flush()
    expect(cache.peek('B', 'OLD')?.stockToday).toBe(0)
    expect((await cache.get('B', { location: 'OLD' })).stockToday).toBe(0)
  })
})
