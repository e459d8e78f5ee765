import { afterEach, describe, expect, it } from 'vitest'
import {
  type BusState,
  createStockCache,
  type InvalidationBus,
  type InvalidationMessage,
  invalidationMessageOf,
  memorySource,
  type SourceReader,
  type StockCache,
} from '../src/index.js'
import { schema } from './helpers/fixtures.js'

/** An in-process bus whose connection the test breaks and restores (what a Redis bus reports). */
function controlledBus() {
  const handlers = new Set<(m: InvalidationMessage) => void>()
  const states = new Set<(s: BusState, cause?: Error) => void>()
  let subscribed: (() => void) | undefined
  let gate: Promise<void> = Promise.resolve()
  const bus: InvalidationBus & {
    down(): void
    up(): void
    holdSubscribe(): void
    releaseSubscribe(): void
  } = {
    async publish(m) {
      for (const h of handlers) queueMicrotask(() => h(structuredClone(m)))
    },
    async subscribe(h, onState) {
      await gate
      handlers.add(h)
      if (onState) states.add(onState)
      return async () => {
        handlers.delete(h)
      }
    },
    down() {
      for (const s of states) s('degraded', new Error('connection closed'))
    },
    up() {
      for (const s of states) s('recovered')
    },
    holdSubscribe() {
      gate = new Promise<void>((r) => {
        subscribed = r
      })
    },
    releaseSubscribe() {
      subscribed?.()
    },
  }
  return bus
}

/** A reader that counts calls and can be held mid-read. */
function countingReader(inner: SourceReader) {
  let hold: Promise<void> | undefined
  let release: (() => void) | undefined
  let entered: (() => void) | undefined
  const r = {
    reads: 0,
    entered: undefined as Promise<void> | undefined,
    hold() {
      hold = new Promise((res) => {
        release = res
      })
      r.entered = new Promise((res) => {
        entered = res
      })
    },
    release() {
      release?.()
      hold = undefined
    },
    reader: {
      async read(products, options) {
        r.reads++
        const h = hold
        entered?.()
        if (h) await h
        return inner.read(products, options)
      },
    } satisfies SourceReader,
  }
  return r
}

const tick = () => new Promise((r) => setImmediate(r))

describe('a bus that loses its connection', () => {
  const open: StockCache[] = []
  afterEach(async () => {
    for (const c of open.splice(0)) await c.close()
  })

  it('while degraded, L1 serves and keeps nothing; after recovery it works again; events and status say so', async () => {
    const db = memorySource(schema)
    db.insert('stock_movements', { product_code: 'A', quantity: '4' })
    const bus = controlledBus()
    const counting = countingReader(db.reader)
    const cache = createStockCache({ schema, reader: counting.reader, bus })
    open.push(cache)
    const events: string[] = []
    cache.on('degraded', (e) => events.push(`degraded ${e.tier}: ${e.error.message}`))
    cache.on('recovered', (e) => events.push(`recovered ${e.tier}`))
    await tick()
    expect((await cache.get('A')).stockToday).toBe(4)
    expect(cache.peek('A')?.stockToday).toBe(4)
    const before = counting.reads

    bus.down()
    expect(cache.status().busDegraded).toBe(true)
    expect(cache.peek('A')).toBeUndefined()
    // Every read goes to the sources while peers' invalidations may be lost.
    expect((await cache.get('A')).stockToday).toBe(4)
    expect((await cache.get('A')).stockToday).toBe(4)
    expect(counting.reads).toBe(before + 2)
    expect(cache.peek('A')).toBeUndefined()
    expect((await cache.getMany(['A'])).get('A')?.stockToday).toBe(4)
    expect(cache.peek('A')).toBeUndefined()

    bus.up()
    expect(cache.status().busDegraded).toBe(false)
    expect((await cache.get('A')).stockToday).toBe(4)
    expect(cache.peek('A')?.stockToday).toBe(4)
    expect(events).toEqual([
      'degraded bus: invalidation bus degraded: connection closed; L1 serves nothing until it recovers',
      'recovered bus',
    ])
    expect(cache.metrics()).toMatchObject({ degraded: 1, recovered: 1 })
  })

  it('a value read before or during an outage is not kept once the bus has recovered', async () => {
    const db = memorySource(schema)
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    const bus = controlledBus()
    const counting = countingReader(db.reader)
    const cache = createStockCache({ schema, reader: counting.reader, bus })
    open.push(cache)
    await tick()
    counting.hold()
    const pending = cache.get('A')
    await counting.entered
    bus.down()
    bus.up()
    counting.release()
    expect((await pending).stockToday).toBe(1)
    // Read before the recovery: a peer's invalidation may have been lost meanwhile, so L1 did not keep it.
    expect(cache.peek('A')).toBeUndefined()
    await cache.get('A')
    expect(cache.peek('A')?.stockToday).toBe(1)
  })

  it('until its subscription holds, L1 keeps nothing', async () => {
    const db = memorySource(schema)
    db.insert('stock_movements', { product_code: 'A', quantity: '2' })
    const bus = controlledBus()
    bus.holdSubscribe()
    const cache = createStockCache({ schema, reader: db.reader, bus })
    open.push(cache)
    expect((await cache.get('A')).stockToday).toBe(2)
    expect(cache.peek('A')).toBeUndefined()
    bus.releaseSubscribe()
    await tick()
    await cache.get('A')
    expect(cache.peek('A')?.stockToday).toBe(2)
  })

  it('a bus that cannot subscribe leaves L1 empty, reports the error and busDegraded', async () => {
    const db = memorySource(schema)
    db.insert('stock_movements', { product_code: 'A', quantity: '3' })
    const bus: InvalidationBus = {
      publish: async () => {},
      subscribe: async () => {
        throw new Error('no route to Redis')
      },
    }
    const errors: string[] = []
    const cache = createStockCache({ schema, reader: db.reader, bus })
    open.push(cache)
    cache.on('error', (e) => errors.push(e.error.message))
    await tick()
    expect((await cache.get('A')).stockToday).toBe(3)
    expect(cache.peek('A')).toBeUndefined()
    expect(cache.status().busDegraded).toBe(true)
    expect(errors.join()).toMatch(/subscribe failed: no route to Redis/)
  })
})

describe('invalidationMessageOf: what a bus accepts from the wire', () => {
  it.each([
    [
      { products: ['A'], version: 3, origin: 'x' },
      { products: ['A'], version: 3, origin: 'x' },
    ],
    [
      { products: [], version: 0, origin: '', extra: 1 },
      { products: [], version: 0, origin: '' },
    ],
    [{ products: ['A', 1], version: 3, origin: 'x' }, undefined],
    [{ products: 'A', version: 3, origin: 'x' }, undefined],
    [{ products: ['A'], version: '3', origin: 'x' }, undefined],
    [{ products: ['A'], version: Number.NaN, origin: 'x' }, undefined],
    [{ products: ['A'], version: 3 }, undefined],
    [null, undefined],
    ['text', undefined],
  ])('%j -> %j', (input, expected) => {
    expect(invalidationMessageOf(input)).toEqual(expected)
  })
})
