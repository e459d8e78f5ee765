import { afterEach, describe, expect, it } from 'vitest'
import { createStockCache, memorySource, memoryStore, type StockCache } from '../src/index.js'
import { FakeTimers } from './helpers/fake-timers.js'
import { addDays, ControlledReader, FakeClock, schema } from './helpers/fixtures.js'

const TODAY = '2026-11-22'
let cache: StockCache | undefined
afterEach(async () => {
  await cache?.close()
  cache = undefined
})

function setup(opts: { store?: boolean; memoryMax?: number } = {}) {
  const clock = new FakeClock()
  const db = memorySource(schema)
  const reader = new ControlledReader(db.reader)
  const store = opts.store ? memoryStore() : undefined
  cache = createStockCache({
    schema,
    reader,
    clock,
    debounceMs: 0,
    ...(store ? { store } : {}),
    ...(opts.memoryMax === undefined ? {} : { memory: { max: opts.memoryMax } }),
  })
  db.attach(cache)
  return { clock, db, reader, cache, store }
}

describe('read path', () => {
  it('computes from the sources on a miss, then serves L1 without reading again', async () => {
    const { db, reader, cache } = setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '10.5' })
    db.insert('order_lines', { product_code: 'A', open_qty: '4', ship_date: addDays(TODAY, 2) })
    const p = await cache.get('A')
    expect(p.today).toBe(TODAY)
    expect(p.stockToday).toBe(10.5)
    expect(p.days[2]!.closing).toBe(6.5)
    expect(p.product).toBe('A')
    expect(p.stale).toBe(false)
    const calls = reader.calls.length
    expect(await cache.get('A')).toBe(p)
    expect(cache.peek('A')).toBe(p)
    expect(reader.calls.length).toBe(calls)
    expect(Object.isFrozen(p)).toBe(true)
    expect(Object.isFrozen(p.days)).toBe(true)
    expect(Object.isFrozen(p.days[0])).toBe(true)
    expect(() => {
      ;(p.days[0] as { closing: number }).closing = 99
    }).toThrow(TypeError)
  })

  it('memory.max 0 turns L1 off: every read is an L2 hit or a recompute, and a write is seen at once', async () => {
    const { db, reader, cache } = setup({ store: true, memoryMax: 0 })
    db.insert('stock_movements', { product_code: 'A', quantity: '2' })
    const p = await cache.get('A')
    expect(p.stockToday).toBe(2)
    expect(Object.isFrozen(p)).toBe(true)
    const calls = reader.calls.length
    const q = await cache.get('A')
    expect(q).toEqual(p)
    expect(cache.peek('A')).toBeUndefined()
    expect(reader.calls.length).toBe(calls)
    expect((await cache.getMany(['A'])).get('A')).toEqual(p)
    let m = cache.metrics()
    expect(m.l1Hits).toBe(0)
    expect(m.l2Hits).toBe(2)
    db.insert('stock_movements', { product_code: 'A', quantity: '3' })
    expect((await cache.get('A')).stockToday).toBe(5)
    m = cache.metrics()
    expect(m.l1Hits).toBe(0)
    expect(cache.status().l1Size).toBe(0)
  })

  it('a committed write makes the next read recompute (never serves the old value)', async () => {
    const { db, cache } = setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    expect((await cache.get('A')).stockToday).toBe(1)
    db.insert('stock_movements', { product_code: 'A', quantity: '2' })
    expect(cache.peek('A')).toBeUndefined()
    expect((await cache.get('A')).stockToday).toBe(3)
  })

  it('a projection whose D0 is not today is not fresh: the calendar moves the window', async () => {
    const { db, clock, cache, reader } = setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    db.insert('order_lines', { product_code: 'A', open_qty: '5', ship_date: addDays(TODAY, 1) })
    const p = await cache.get('A')
    expect(p.days[0]!.closing).toBe(5)
    clock.advance(24 * 3600_000)
    expect(cache.peek('A')).toBeUndefined()
    const q = await cache.get('A')
    expect(q.today).toBe(addDays(TODAY, 1))
    expect(q.days[0]!.closing).toBe(0)
    // A day rollover of a clean product reuses its cached source rows: no new read.
    expect(reader.calls.length).toBe(1)
  })

  it('with timers, the day rolls over at the zone midnight without a clock read per hit', async () => {
    const clock = new FakeClock(Date.parse('2026-11-22T23:59:00-03:00'))
    const timers = new FakeTimers(clock)
    const db = memorySource(schema)
    cache = createStockCache({ schema, reader: db.reader, clock, timers, timeZone: 'America/Sao_Paulo' })
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const p = await cache.get('A')
    expect(p.today).toBe('2026-11-22')
    expect(cache.peek('A')).toBe(p)
    await timers.advance(59_000)
    expect(cache.peek('A')).toBe(p) // 23:59:59 in São Paulo: still D0
    await timers.advance(2_000) // past midnight: the rollover timer fired
    expect(cache.peek('A')).toBeUndefined()
    expect((await cache.get('A')).today).toBe('2026-11-23')
  })

  it('allowStale answers at once from an out-of-date value and flags it', async () => {
    const { db, cache } = setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await cache.get('A')
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    const s = await cache.get('A', { allowStale: true })
    expect(s.stale).toBe(true)
    expect(s.stockToday).toBe(1)
    await cache.flush()
    const f = await cache.get('A', { allowStale: true })
    expect(f.stale).toBe(false)
    expect(f.stockToday).toBe(2)
  })

  it('L2 serves a second instance without reading the sources; getMany batches the misses', async () => {
    const { db, store } = setup({ store: true })
    for (let i = 0; i < 5; i++) db.insert('stock_movements', { product_code: `P${i}`, quantity: String(i) })
    const first = createStockCache({ schema, reader: db.reader, store: store!, clock: new FakeClock() })
    const all = await first.getMany(['P0', 'P1', 'P2', 'P3', 'P4'])
    expect([...all.values()].map((p) => p.stockToday)).toEqual([0, 1, 2, 3, 4])
    const reader2 = new ControlledReader(db.reader)
    const second = createStockCache({ schema, reader: reader2, store: store!, clock: new FakeClock() })
    const got = await second.getMany(['P4', 'P0', 'P9'])
    expect([...got.keys()]).toEqual(['P4', 'P0', 'P9'])
    expect(got.get('P4')!.stockToday).toBe(4)
    expect(Object.isFrozen(got.get('P4')!.days[0])).toBe(true) // values loaded from L2 are frozen too
    expect(reader2.calls).toEqual([{ products: ['P9'] }])
    expect(second.metrics().l2Hits).toBe(2)
    await first.close()
    await second.close()
  })

  it('reads of one tick share one reader call', async () => {
    const { db, reader, cache } = setup()
    for (let i = 0; i < 10; i++) db.insert('stock_movements', { product_code: `P${i}`, quantity: '1' })
    reader.calls = []
    const got = await Promise.all(Array.from({ length: 10 }, (_, i) => cache.get(`P${i}`)))
    expect(got.every((p) => p.stockToday === 1)).toBe(true)
    expect(reader.calls.length).toBe(1)
    expect(reader.calls[0]!.products.length).toBe(10)
  })

  it('a read-your-writes token is honoured, and a token from the future waits then times out', async () => {
    const { db, cache } = setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    const token = cache.markDirty('A')
    expect((await cache.get('A', { atLeast: token })).stockToday).toBe(1)
    const c2 = createStockCache({ schema, reader: db.reader, waitTimeoutMs: 30 })
    const future = c2.markDirty('Z') + 1_000_000_000
    await expect(c2.get('A', { atLeast: future })).rejects.toMatchObject({ code: 'E_WAIT_TIMEOUT' })
    const waiting = c2.get('A', { atLeast: future + 5 })
    c2.markDirty('A', { version: future + 5 })
    expect((await waiting).stockToday).toBe(1)
    await c2.close()
  })
})
