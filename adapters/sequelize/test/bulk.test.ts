import type { Sequelize } from 'sequelize'
import type { StockCache } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { DetachSequelize } from '../src/index.js'
import { expectMarked, type OpsModels, opsModels, opsSchema, skus, warm } from './fixtures.js'
import { sequelizeCache, type TestDb, testDb } from './helpers.js'
import { DIALECTS, describeService, downOf, labelOf } from './services.js'

const ROWS = 100_000
const PRODUCTS = 2_000

for (const dialect of DIALECTS) {
  describeService(downOf(dialect), `bulkCreate of ${ROWS} rows on ${labelOf(dialect)}`, () => {
    let t: TestDb
    let sequelize: Sequelize
    let m: OpsModels
    let cache: StockCache
    let detach: DetachSequelize
    let hookMs = 0

    beforeAll(async () => {
      t = await testDb(dialect)
      sequelize = t.sequelize
      m = await opsModels(sequelize)
      // Universal hooks run in the order they were added: these two bracket the adapter's afterBulkCreate.
      let started = 0
      sequelize.addHook('afterBulkCreate', 'test-before', () => {
        started = performance.now()
      })
      ;({ cache, detach } = sequelizeCache(sequelize, opsSchema, { debounceMs: 5 }))
      sequelize.addHook('afterBulkCreate', 'test-after', () => {
        hookMs += performance.now() - started
      })
    })
    afterAll(async () => {
      detach?.()
      await cache?.close()
      await t?.close()
    })

    it('inside disableCacheTemporarily: one mark per distinct product, no recompute until the block settles', async () => {
      const products = skus(PRODUCTS, 'BULK')
      await warm(cache, products.slice(0, 50))
      const rows = Array.from({ length: ROWS }, (_, i) => ({ product: products[i % PRODUCTS]!, qty: 1 }))
      const before = cache.metrics()
      let during: ReturnType<StockCache['metrics']> | undefined
      const t0 = performance.now()
      await cache.disableCacheTemporarily(async () => {
        await m.Movement.bulkCreate(rows)
        during = cache.metrics()
        expectMarked(cache, products.slice(0, 50))
      })
      const total = performance.now() - t0
      const after = cache.metrics()
      console.log(
        `[${dialect}] bulkCreate ${ROWS} rows inside disableCacheTemporarily: ${total.toFixed(0)} ms ` +
          `(adapter's afterBulkCreate hook: ${hookMs.toFixed(1)} ms), ${PRODUCTS} products recomputed after`,
      )
      // One markDirty call carrying the distinct products; nothing recomputed or read while the block ran.
      expect(during!.marks - before.marks).toBe(PRODUCTS)
      expect(during!.recomputes).toBe(before.recomputes)
      expect(during!.reads).toBe(before.reads)
      // Recomputed in batches when the block settled (batchSize 500: a handful of reads, not one per row).
      expect(after.reads - during!.reads).toBeLessThanOrEqual(10)
      expect(hookMs).toBeLessThan(1000)
      const p = await cache.get(products[0]!)
      expect(p.stockToday).toBe(ROWS / PRODUCTS)
      const report = await cache.validate({ products: products.slice(0, 200) })
      expect(report.mismatches).toEqual([])
    })
  })
}
