import { afterEach, describe, expect, it } from 'vitest'
import { createStockCache, memorySource, type StockCache } from '../src/index.js'
import { addDays, ControlledReader, FakeClock, schema } from './helpers/fixtures.js'

let cache: StockCache
afterEach(async () => {
  await cache?.close()
})

describe('selective recompute by reason (selectiveReads: true)', () => {
  it('a demand change re-reads only that source and reuses the cached components', async () => {
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    cache = createStockCache({ schema, reader, clock: new FakeClock(), debounceMs: 0, selectiveReads: true })
    db.attach(cache)
    const today = '2026-11-22'
    db.insert('stock_movements', { product_code: 'A', quantity: '10' })
    db.insert('production_schedule', { product_code: 'A', planned_qty: '5', scheduled_for: addDays(today, 3) })
    await cache.get('A')
    reader.calls = []
    db.insert('order_lines', { product_code: 'A', open_qty: '4', ship_date: addDays(today, 1) })
    const p = await cache.get('A')
    expect(reader.calls).toEqual([{ products: ['A'], sources: ['order_lines'] }])
    expect(p.days[1]!.closing).toBe(6)
    expect(p.days[3]!.closing).toBe(11) // the supply row came from the cached components
    expect(cache.metrics().selectiveReads).toBe(1)
    // an on-hand change re-reads only the balance
    reader.calls = []
    db.insert('stock_movements', { product_code: 'A', quantity: '-1' })
    expect((await cache.get('A')).days[3]!.closing).toBe(10)
    expect(reader.calls[0]!.sources).toEqual(['stock_movements'])
    // the result equals a full recomputation
    expect((await cache.validate({ products: ['A'] })).mismatches).toEqual([])
  })

  it('a free-text reason or an unknown table re-reads everything', async () => {
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    cache = createStockCache({ schema, reader, debounceMs: 0, selectiveReads: true })
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await cache.get('A')
    reader.calls = []
    cache.markDirty('A', { reason: 'manual fix' })
    await cache.get('A')
    cache.markDirty('A', { reason: { tables: ['some_other_table'] } })
    await cache.get('A')
    expect(reader.calls.map((c) => c.sources)).toEqual([undefined, undefined])
  })
})
