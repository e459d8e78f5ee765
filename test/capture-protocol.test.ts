// The protocol a change capture speaks with the engine: mark, then flush({ units }) and delete only what is
// settled; attachSource for the backlog age and for bulk blocks.
import { afterEach, describe, expect, it } from 'vitest'
import {
  createStockCache,
  type MarkSource,
  memorySource,
  memoryStore,
  type StockCache,
  type Store,
} from '../src/index.js'
import { schema } from './helpers/fixtures.js'

let cache: StockCache | undefined
afterEach(async () => {
  await cache?.close()
  cache = undefined
})

const quiet = { debounceMs: 60_000, maxWaitMs: 60_000 }

describe('flush({ units })', () => {
  it('recomputes only the given units and names them settled', async () => {
    const db = memorySource(schema)
    cache = createStockCache({ schema, reader: db.reader, ...quiet })
    cache.markDirty(['A', 'B', 'C'])
    const report = await cache.flush({ units: ['A', 'B'] })
    expect(report.settled).toEqual(['A', 'B'])
    expect(report.recomputed).toBe(2)
    expect(cache.status().dirty).toBe(1) // C is left to the scheduler
  })

  it('a clean unit is settled without a recompute; a failed one is not', async () => {
    const db = memorySource(schema)
    let fail = false
    const reader = {
      read: async (products: readonly string[]) => {
        if (fail) throw new Error('down')
        return db.reader.read(products)
      },
    }
    cache = createStockCache({ schema, reader, ...quiet })
    cache.on('error', () => {})
    expect(await cache.flush({ units: ['A'] })).toMatchObject({ recomputed: 0, settled: ['A'] })
    fail = true
    cache.markDirty(['B'])
    expect(await cache.flush({ units: ['A', 'B'] })).toMatchObject({ failed: ['B'], settled: ['A'] })
  })

  it('a unit whose recompute the shared store did not take is unstored, not settled', async () => {
    const db = memorySource(schema)
    const inner = memoryStore()
    const shared: Store = { ...inner, capabilities: { shared: true }, setMany: () => Promise.reject(new Error('no')) }
    cache = createStockCache({ schema, reader: db.reader, store: shared, memory: { ttl: 60_000 }, ...quiet })
    cache.on('error', () => {})
    cache.markDirty(['A'])
    expect(await cache.flush({ units: ['A'] })).toMatchObject({ unstored: ['A'], settled: [] })
  })

  it('inside a bulk block the units are deferred, not settled', async () => {
    const db = memorySource(schema)
    const c = createStockCache({ schema, reader: db.reader, ...quiet })
    cache = c
    await c.disableCacheTemporarily(async () => {
      c.markDirty(['A'])
      expect(await c.flush({ units: ['A'] })).toMatchObject({ deferred: ['A'], settled: [] })
    })
    expect(await c.flush({ units: ['A'] })).toMatchObject({ settled: ['A'] })
  })

  it('rejects bad units with InvalidInputError', async () => {
    const db = memorySource(schema)
    cache = createStockCache({ schema, reader: db.reader, ...quiet })
    await expect(cache.flush({ units: [''] })).rejects.toMatchObject({ code: 'E_INVALID_INPUT' })
    await expect(cache.flush({ units: 'A' as unknown as string[] })).rejects.toMatchObject({ code: 'E_INVALID_INPUT' })
  })
})

describe('attachSource', () => {
  it('status() reports the oldest unprocessed change of a source; bulk blocks ask it to catch up in bulk mode', async () => {
    const db = memorySource(schema)
    const c = createStockCache({ schema, reader: db.reader, ...quiet })
    cache = c
    const calls: string[] = []
    const source: MarkSource = {
      name: 'test outbox',
      oldestUnprocessedMs: () => 15_000,
      catchUp: async () => {
        calls.push(`catchUp depth=${c.status().bulkDepth}`)
        c.markDirty(['X'])
      },
      afterBulk: () => calls.push(`afterBulk dirty=${c.status().dirty}`),
    }
    const detach = c.attachSource(source)
    expect(c.status().oldestUnprocessedMs).toBe(15_000)
    await c.disableCacheTemporarily(async () => {})
    expect(calls).toEqual(['catchUp depth=1', 'afterBulk dirty=0'])
    detach()
    expect(c.status().oldestUnprocessedMs).toBe(0)
    expect(() => c.attachSource({} as MarkSource)).toThrow(/attachSource/)
  })
})
