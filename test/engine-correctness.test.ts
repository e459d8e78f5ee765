// Regression tests of the engine's correctness rules (issue 10, part 2), on the in-memory source.
import { afterEach, describe, expect, it } from 'vitest'
import {
  createStockCache,
  InvalidInputError,
  memorySource,
  memoryStore,
  type PendingMarks,
  type SourceReader,
  type StockCache,
  type Store,
  type StoreEntry,
  type TransitionEvent,
  type UpdatedEvent,
} from '../src/index.js'
import { FakeTimers, settle } from './helpers/fake-timers.js'
import { addDays, ControlledReader, FakeClock, schema } from './helpers/fixtures.js'

const caches: StockCache[] = []
afterEach(async () => {
  for (const c of caches.splice(0)) await c.close()
})
const track = (c: StockCache) => {
  caches.push(c)
  return c
}
const quiet = { debounceMs: 60_000, maxWaitMs: 60_000 }

describe('two consumers of one outbox never merge stale inputs (item 1)', () => {
  it('instance B re-reads every source, so A’s order-line change is not lost in the shared store', async () => {
    const db = memorySource(schema)
    const map = new Map<string, StoreEntry>()
    const shared = (): Store => ({ ...memoryStore({ map }), capabilities: { shared: true } })
    let now = Date.UTC(2030, 0, 15, 12)
    const clock = { now: () => now }
    const today = '2030-01-15'
    const opts = { schema, reader: db.reader, memory: { ttl: 600_000 }, clock, ...quiet }
    const a = track(createStockCache({ ...opts, store: shared() }))
    const b = track(createStockCache({ ...opts, store: shared() }))
    db.insert('stock_movements', { product_code: 'P', quantity: '100' })
    db.insert('order_lines', { product_code: 'P', open_qty: '11', ship_date: addDays(today, 1) })
    await a.get('P')
    await b.get('P')
    // A consumes an order-line row, B a movement row of the same product (a different table each).
    now += 10
    db.insert('order_lines', { product_code: 'P', open_qty: '50', ship_date: addDays(today, 1) })
    a.markDirty('P', { reason: { tables: ['order_lines'] } })
    await a.flush()
    now += 10
    db.insert('stock_movements', { product_code: 'P', quantity: '-50' })
    b.markDirty('P', { reason: { tables: ['stock_movements'] } })
    await b.flush()
    // Truth: 100 - 50 - 11 - 50 = -11 on D1. B's merge of its cached order lines (only 11) would say 39.
    expect((await b.get('P')).days[1]!.closing).toBe(-11)
    expect(map.get('stockcast:P')!.value.days[1]!.closing).toBe(-11)
    const fresh = track(createStockCache({ ...opts, store: shared() }))
    expect((await fresh.get('P')).days[1]!.closing).toBe(-11)
  })

  it('by default a mark with a reason re-reads every source; selectiveReads is refused with a shared store or a bus', async () => {
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    const c = track(createStockCache({ schema, reader, ...quiet }))
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await c.get('A')
    reader.calls = []
    c.markDirty('A', { reason: { tables: ['order_lines'] } })
    await c.get('A')
    expect(reader.calls).toEqual([{ products: ['A'] }])
    expect(c.metrics().selectiveReads).toBe(0)
    const shared: Store = { ...memoryStore(), capabilities: { shared: true } }
    expect(() => createStockCache({ schema, reader, store: shared, selectiveReads: true })).toThrow(/selectiveReads/)
    const bus = { publish: async () => {}, subscribe: async () => async () => {} }
    expect(() => createStockCache({ schema, reader, bus, selectiveReads: true })).toThrow(/selectiveReads/)
  })
})

describe('strong reads (item 8)', () => {
  class Outbox implements PendingMarks {
    rows = new Map<string, number>()
    async pending(products: readonly string[]) {
      return new Map([...this.rows].filter(([p]) => products.includes(p)))
    }
  }

  it('an L1 miss is recomputed from the sources, not served from the store unchecked', async () => {
    const db = memorySource(schema)
    const map = new Map<string, StoreEntry>()
    const shared = (): Store => ({ ...memoryStore({ map }), capabilities: { shared: true } })
    const outbox = new Outbox()
    const a = track(createStockCache({ schema, reader: db.reader, store: shared(), pendingMarks: outbox, ...quiet }))
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await a.get('A') // the store now holds 1
    db.insert('stock_movements', { product_code: 'A', quantity: '4' }) // a write whose marks went nowhere
    const b = track(createStockCache({ schema, reader: db.reader, store: shared(), pendingMarks: outbox, ...quiet }))
    expect((await b.get('A')).stockToday).toBe(1) // default read: the store's entry
    const c = track(createStockCache({ schema, reader: db.reader, store: shared(), pendingMarks: outbox, ...quiet }))
    expect((await c.get('A', { consistency: 'strong' })).stockToday).toBe(5)
  })

  it.each([
    ['names the keys it wrote', true],
    ['does not name them', false],
  ])(
    'getMany(products, { consistency: "strong" }) checks the mark source once and the store once (a store that %s)',
    async (_, names) => {
      const db = memorySource(schema)
      const map = new Map<string, StoreEntry>()
      let storeReads = 0
      const shared = (): Store => {
        const inner = memoryStore({ map })
        return {
          ...inner,
          capabilities: { shared: true },
          getMany: (k) => {
            storeReads++
            return inner.getMany(k)
          },
          setMany: async (entries) => {
            const written = await inner.setMany(entries)
            return names ? written : undefined
          },
        }
      }
      const outbox = new Outbox()
      let asked = 0
      const counting: PendingMarks = {
        pending: (p) => {
          asked++
          return outbox.pending(p)
        },
      }
      const c = track(
        createStockCache({ schema, reader: db.reader, store: shared(), pendingMarks: counting, ...quiet }),
      )
      for (const p of ['A', 'B', 'C']) db.insert('stock_movements', { product_code: p, quantity: '1' })
      await c.getMany(['A', 'B', 'C'])
      db.insert('stock_movements', { product_code: 'B', quantity: '9' })
      outbox.rows.set('B', 7)
      storeReads = 0
      const got = await c.getMany(['A', 'B', 'C'], { consistency: 'strong' })
      expect([...got.values()].map((p) => p.stockToday)).toEqual([1, 10, 1])
      expect(asked).toBe(1)
      // One read to check the L1 hits; one more to verify that the store took B's recomputed value, unless the store
      // said it wrote it.
      expect(storeReads).toBe(names ? 1 : 2)
    },
  )
})

describe('strong reads never fall back to an old value', () => {
  it('when the sources fail, a strong read rejects where a default read serves stale-if-error', async () => {
    const db = memorySource(schema)
    let down = false
    const reader: SourceReader = {
      read: (p, o) => (down ? Promise.reject(new Error('connection terminated')) : db.reader.read(p, o)),
    }
    const pendingMarks: PendingMarks = { pending: async () => new Map([['A', 9]]) }
    const c = track(createStockCache({ schema, reader, pendingMarks, graceMs: 60_000, ...quiet }))
    c.on('error', () => {})
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    await c.get('A')
    down = true
    await expect(c.get('A', { consistency: 'strong' })).rejects.toMatchObject({ code: 'E_SOURCE_UNAVAILABLE' })
    await expect(c.getMany(['A'], { consistency: 'strong' })).rejects.toMatchObject({ code: 'E_SOURCE_UNAVAILABLE' })
    expect(await c.get('A')).toMatchObject({ stale: true, stockToday: 1 })
  })
})

describe('a marked unit counts as stored only when the shared store holds its value', () => {
  it('another instance’s write that wins in the store leaves the unit unstored (its marks are kept)', async () => {
    const db = memorySource(schema)
    const map = new Map<string, StoreEntry>()
    const inner = memoryStore({ map })
    // A store where, right after each write of this instance, another instance's entry with a higher version lands.
    const racing: Store = {
      ...inner,
      capabilities: { shared: true },
      async setMany(entries) {
        await inner.setMany(entries)
        for (const [k, e] of entries) {
          const other = { ...e.value, version: e.version + 5, days: e.value.days.map((d) => ({ ...d, closing: -1 })) }
          map.set(`stockcast:${k}`, { value: other, version: e.version + 5, computedAt: e.computedAt })
        }
      },
    }
    const c = track(createStockCache({ schema, reader: db.reader, store: racing, memory: { ttl: 60_000 }, ...quiet }))
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    c.markDirty('A')
    const report = await c.flush({ units: ['A'] })
    expect(report).toMatchObject({ unstored: ['A'], settled: [] })
    expect(c.metrics().storeOverwritten).toBe(1)
    // A plain store that keeps what it is given: settled.
    const d = track(
      createStockCache({
        schema,
        reader: db.reader,
        store: { ...memoryStore(), capabilities: { shared: true } },
        memory: { ttl: 60_000 },
        ...quiet,
      }),
    )
    d.markDirty('A')
    expect(await d.flush({ units: ['A'] })).toMatchObject({ unstored: [], settled: ['A'] })
  })
})

describe('bad input and slow readers (item 10)', () => {
  it('readTimeoutMs: a reader that never answers fails get() with ReadTimeoutError, stale-if-error applies', async () => {
    const db = memorySource(schema)
    const clock = new FakeClock()
    const timers = new FakeTimers(clock)
    let hang = false
    const reader: SourceReader = {
      read: (p, o) => (hang ? new Promise(() => {}) : db.reader.read(p, o)),
    }
    const c = track(createStockCache({ schema, reader, clock, timers, readTimeoutMs: 1000, graceMs: 0, ...quiet }))
    c.on('error', () => {})
    hang = true
    const pending = c.get('A')
    const failed = expect(pending).rejects.toMatchObject({ code: 'E_READ_TIMEOUT', option: 'readTimeoutMs' })
    await settle() // the batch reaches the reader
    await timers.advance(1000)
    await failed
    expect(c.metrics().readTimeouts).toBe(1)
    // A marked product stays dirty when its read times out; an old value is served flagged within graceMs.
    hang = false
    const v = await c.get('A')
    const c2 = track(
      createStockCache({ schema, reader, clock, timers, readTimeoutMs: 1000, graceMs: 60_000, ...quiet }),
    )
    c2.on('error', () => {})
    await c2.get('A')
    hang = true
    c2.markDirty('A')
    const stale = c2.get('A')
    await settle()
    await timers.advance(1000)
    expect(await stale).toMatchObject({ stale: true, stockToday: v.stockToday })
    expect(c2.status().dirty).toBe(1)
    hang = false
    expect(() => createStockCache({ schema, reader, readTimeoutMs: -1 })).toThrow(/readTimeoutMs/)
  })

  it('products the reader rejects fail alone with InvalidInputError; the rest of the batch is served and nothing is cached for them', async () => {
    const db = memorySource(schema)
    for (const p of ['1', '2']) db.insert('stock_movements', { product_code: p, quantity: '3' })
    const reader: SourceReader = {
      async read(products, options) {
        const bad = products.filter((p) => !/^(0|[1-9][0-9]*)$/.test(p))
        if (bad.length > 0)
          throw new InvalidInputError(`not an integer id: ${bad.join(', ')}`, { products: bad, productId: bad[0]! })
        return db.reader.read(products, options)
      },
    }
    const c = track(createStockCache({ schema, reader, ...quiet }))
    const errors: string[] = []
    c.on('error', (e) => errors.push(`${e.operation}:${e.product}`))
    const [one, zeroOne, two] = await Promise.allSettled([c.get('1'), c.get('01'), c.get('2')])
    expect(one).toMatchObject({ status: 'fulfilled', value: { stockToday: 3 } })
    expect(two).toMatchObject({ status: 'fulfilled', value: { stockToday: 3 } })
    expect(zeroOne).toMatchObject({ status: 'rejected', reason: { code: 'E_INVALID_INPUT' } })
    expect(c.peek('01')).toBeUndefined()
    expect(errors).toEqual(['read:01'])
    await expect(c.getMany(['2', 'x'])).rejects.toMatchObject({ code: 'E_INVALID_INPUT', productId: 'x' })
  })
})

describe('events on change and on transitions (item 11)', () => {
  it('updated fires only when the value changed; transitions fire once, not after a restart or at midnight', async () => {
    const db = memorySource(schema)
    const clock = new FakeClock(Date.parse('2030-01-15T12:00:00Z'))
    const today = '2030-01-15'
    const map = new Map<string, StoreEntry>()
    const opts = { schema, reader: db.reader, clock, store: memoryStore({ map }), ...quiet }
    const c = track(createStockCache(opts))
    db.attach(c)
    const updated: UpdatedEvent[] = []
    const transitions: TransitionEvent[] = []
    let stockouts = 0
    c.on('updated', (e) => updated.push(e))
    c.on('transition', (e) => transitions.push(e))
    c.on('stockout', () => stockouts++)
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    await c.get('A')
    expect(updated.length).toBe(1) // the first value counts as a change
    c.markDirty('A')
    await c.flush()
    expect(updated.length).toBe(1) // nothing changed: no event
    db.insert('order_lines', { product_code: 'A', open_qty: '8', ship_date: addDays(today, 2) })
    await c.flush()
    expect(transitions.map((t) => t.kind)).toEqual(['stockout', 'critical'])
    expect(stockouts).toBe(1)
    // Midnight: the window moves, the product is still out of stock: no repeated transition.
    clock.advance(24 * 3600_000)
    await c.get('A')
    expect(transitions.length).toBe(2)
    // A restarted instance computes its first value: no transition for a product already out of stock.
    const d = track(createStockCache({ ...opts, store: memoryStore() }))
    const dt: TransitionEvent[] = []
    d.on('transition', (e) => dt.push(e))
    await d.get('A')
    expect(dt).toEqual([])
    db.insert('stock_movements', { product_code: 'A', quantity: '100' })
    await c.flush()
    expect(transitions.slice(2).map((t) => t.kind)).toEqual(['stockout-cleared', 'critical-cleared'])
    expect(c.metrics().transitions).toBe(4)
    expect(c.metrics().unchanged).toBeGreaterThanOrEqual(1)
  })
})

describe('flush never recomputes a unit twice for one mark', () => {
  it('the debounced flush waits for a running batch that covers the newest mark instead of starting another', async () => {
    const db = memorySource(schema)
    const reader = new ControlledReader(db.reader)
    const clock = new FakeClock()
    const timers = new FakeTimers(clock)
    const c = track(createStockCache({ schema, reader, clock, timers, debounceMs: 5, maxWaitMs: 50 }))
    for (let i = 0; i < 20; i++) db.insert('stock_movements', { product_code: `P${i}`, quantity: '1' })
    const products = Array.from({ length: 20 }, (_, i) => `P${i}`)
    c.markDirty(products)
    reader.hold()
    const reading = c.getMany(products) // a batch starts and covers every mark
    await reader.gate!.entered
    await timers.advance(10) // the debounced flush fires while that batch reads
    reader.release()
    await reading
    await c.flush()
    expect(c.metrics().recomputes).toBe(20)
    expect(reader.calls.length).toBe(1)
    expect(c.status().dirty).toBe(0)
  })
})
