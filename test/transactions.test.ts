import { afterEach, describe, expect, it } from 'vitest'
import { createStockCache, memorySource, type StockCache } from '../src/index.js'
import { ControlledReader, schema } from './helpers/fixtures.js'

let cache: StockCache
afterEach(async () => {
  await cache?.close()
})

function setup() {
  const db = memorySource(schema)
  const reader = new ControlledReader(db.reader)
  cache = createStockCache({ schema, reader, debounceMs: 60_000, maxWaitMs: 60_000 })
  return { db, reader, cache }
}

/** Write straight to the tables (no capture), then mark by hand through scopes. */
function write(db: ReturnType<typeof memorySource>, qty: string) {
  db.insert('stock_movements', { product_code: 'A', quantity: qty })
}

describe('transaction scopes', () => {
  it('holds marks until commit; commit makes them pending', async () => {
    const { db, cache } = setup()
    write(db, '1')
    await cache.get('A')
    const tx = cache.transaction()
    cache.markDirty('A', { tx })
    expect(tx.size).toBe(1)
    expect(cache.status().dirty).toBe(0)
    expect(cache.peek('A')).toBeDefined()
    write(db, '1')
    tx.commit()
    expect(cache.status().dirty).toBe(1)
    expect(cache.peek('A')).toBeUndefined()
    expect((await cache.get('A')).stockToday).toBe(2)
  })

  it('rollback drops the held marks', async () => {
    const { db, cache } = setup()
    write(db, '1')
    await cache.get('A')
    const tx = cache.transaction()
    cache.markDirty(['A', 'B'], { tx })
    tx.rollback()
    expect(cache.status().dirty).toBe(0)
    expect(cache.metrics().marks).toBe(0)
    expect(() => tx.commit()).toThrow(/already rolled back/)
    expect(() => cache.markDirty('A', { tx })).toThrow(/already rolled back/)
  })

  it('savepoints: a rolled-back savepoint drops only its marks; a committed one hands them to the parent', async () => {
    const { cache } = setup()
    const tx = cache.transaction()
    const sp1 = tx.savepoint()
    cache.markDirty('A', { tx: sp1 })
    sp1.rollback()
    const sp2 = tx.savepoint()
    cache.markDirty('B', { tx: sp2 })
    sp2.commit()
    expect(cache.status().dirty).toBe(0)
    tx.commit()
    expect(cache.status().dirty).toBe(1)
    expect(cache.peek('B')).toBeUndefined()
    expect(cache.peek('A')).toBeUndefined() // never cached: nothing to serve either way
    expect(cache.metrics().marks).toBe(1) // only B
  })

  it('works with any transaction that has afterCommit (Sequelize style); no commit means no mark', async () => {
    const { db, cache } = setup()
    write(db, '5')
    await cache.get('A')
    const callbacks: Array<() => void> = []
    const ormTx = { afterCommit: (fn: () => void) => callbacks.push(fn) }
    cache.markDirty('A', { tx: ormTx })
    cache.markDirty('A', { tx: ormTx })
    expect(callbacks.length).toBe(1) // one hook per transaction, however many marks
    expect(cache.status().dirty).toBe(0)
    write(db, '5')
    for (const c of callbacks) c()
    expect((await cache.get('A')).stockToday).toBe(10)
    const abandoned = { afterCommit: (_fn: () => void) => {} } // rolled back: its hook never runs
    cache.markDirty('A', { tx: abandoned })
    expect(cache.status().dirty).toBe(0)
  })

  it('tokens: marks return increasing versions; a source version raises the counter', () => {
    const { cache } = setup()
    const a = cache.markDirty('A')
    const b = cache.markDirty('B')
    expect(b).toBeGreaterThan(a)
    expect(cache.markDirty('C', { version: 1000 })).toBe(1000) // a source's own version is the token
    const far = b + 1_000_000
    expect(cache.markDirty('E', { version: far })).toBe(far) // and raises the counter
    expect(cache.markDirty('D')).toBe(far + 1)
    expect(() => cache.markDirty('E', { version: -1 })).toThrow(/positive integer/)
  })
})
