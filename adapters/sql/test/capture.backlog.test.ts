import { createStockCache, type SourceReader, type StockCache, type StockCacheOptions } from 'stockcast'
import { changeCaptureSchema, dayFromToday } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import type { OutboxListener, SqlChangeCapture, SqlChangeCaptureOptions } from '../src/capture/types.js'
import { sqlChangeCapture, sqlReader } from '../src/index.js'
import { capturePrefix, DIALECTS, type DialectDb } from './capture-dialects.js'
import { sleep } from './capture-helpers.js'
import { describeService } from './services.js'

// A backlog in the outbox (issue 10 items 2b, 3 and 7), on PostgreSQL, PGlite and MariaDB: the marks of one product
// made by many statements and transactions settle with one recompute; a transaction whose rows a claim would split is
// never served half-applied; the cache's status reports the age of the oldest unprocessed row while it drains.

const schema = changeCaptureSchema

interface Setup {
  capture: SqlChangeCapture
  cache: StockCache
  listener: OutboxListener
  close(): Promise<void>
}

async function start(
  t: DialectDb,
  capture: SqlChangeCaptureOptions,
  options: { cache?: Partial<StockCacheOptions>; reader?: (r: SourceReader) => SourceReader } = {},
): Promise<Setup> {
  const c = sqlChangeCapture(t.db, schema, { pollMs: 20, ...capture })
  await c.install()
  const base = sqlReader(t.db, schema)
  const cache = createStockCache({
    schema,
    reader: options.reader ? options.reader(base) : base,
    pendingMarks: c,
    debounceMs: 5,
    ...options.cache,
  })
  const listener = await c.listen(cache)
  return {
    capture: c,
    cache,
    listener,
    async close() {
      await listener.stop()
      await cache.close()
    },
  }
}

/**
 * For the tests that count recomputes: the listener's `flush({ units })` alone recomputes. (The engine's debounced
 * flush, firing while the listener's recompute of the same products is still running, recomputes them a second time:
 * an engine matter, reported; a 5 ms debounce makes it happen on every batch.)
 */
const QUIET: Partial<StockCacheOptions> = { debounceMs: 60_000, maxWaitMs: 60_000 }

/** One multi-row INSERT of `rows` ([sku, qty]) into cc_movements. */
const insertMovements = (rows: Array<[string, number]>) => ({
  text: `INSERT INTO cc_movements (sku, qty) VALUES ${rows.map(() => '(?, ?)').join(', ')}`,
  params: rows.flat(),
})

/** `?` placeholders as the dialect of `t` wants them (SqlDb takes the dialect's own). */
const forDb = (t: DialectDb, text: string): string => {
  if (t.kind === 'mysql') return text
  let n = 0
  return text.replace(/\?/g, () => `$${++n}`)
}

for (const d of DIALECTS) {
  describeService(d.down, `outbox backlog on ${d.name}`, () => {
    let t: DialectDb
    let prefix: string
    beforeEach(async () => {
      t = await d.make()
      prefix = capturePrefix()
    })
    afterEach(async () => {
      await t.close()
    })

    it('a bulk import by many statements in one transaction recomputes each product once, not once per statement', async () => {
      const PRODUCTS = 60
      const STATEMENTS = 20
      // 50 products per claim: the old claim (the oldest 50 rows) recomputed every product once per 50 rows.
      const s = await start(t, { prefix, batchSize: 50 }, { cache: QUIET })
      try {
        const products = Array.from({ length: PRODUCTS }, (_, i) => `MS${i}`)
        await s.cache.getMany(products)
        const before = s.cache.metrics().recomputes
        await t.db.transaction(async (tx) => {
          for (let k = 0; k < STATEMENTS; k++) {
            const q = insertMovements(products.map((p) => [p, 1]))
            await tx.execute(forDb(t, q.text), q.params)
          }
        })
        await s.listener.drain(30_000)
        const recomputes = s.cache.metrics().recomputes - before
        // 20 statements x 60 products: 1 200 outbox rows; one recompute per product (a few more if a claim ran
        // between the commit and the last notification).
        expect(recomputes).toBeLessThanOrEqual(PRODUCTS + 5)
        expect(recomputes).toBeGreaterThanOrEqual(PRODUCTS)
        for (const p of products.slice(0, 5)) expect((await s.cache.get(p)).stockToday).toBe(STATEMENTS)
        expect((await s.cache.validate({ products })).mismatches).toEqual([])
        expect(await t.outboxCount(prefix)).toBe(0)
      } finally {
        await s.close()
      }
    })

    it('the same over many transactions: marks of one product coalesce across them', async () => {
      const PRODUCTS = 30
      const s = await start(t, { prefix, batchSize: 10 }, { cache: QUIET })
      try {
        const products = Array.from({ length: PRODUCTS }, (_, i) => `MT${i}`)
        await s.cache.getMany(products)
        await s.listener.stop() // the backlog builds up while nobody listens
        for (let k = 0; k < 10; k++) {
          const q = insertMovements(products.map((p) => [p, 2]))
          await t.db.execute(forDb(t, q.text), q.params)
        }
        const before = s.cache.metrics().recomputes
        const listener = await s.capture.listen(s.cache)
        await listener.drain(30_000)
        expect(s.cache.metrics().recomputes - before).toBe(PRODUCTS)
        expect((await s.cache.get('MT3')).stockToday).toBe(20)
        await listener.stop()
      } finally {
        await s.close()
      }
    })

    it('a transaction whose rows a claim would split is never served half-applied', async () => {
      // One product per claim: the old claim took the oldest row only, marked SPLIT for cc_movements, re-read that
      // table and merged it with SPLIT's cached supply: stock 10 without the supply of the same transaction.
      // Here every claim takes all of a product's rows and re-reads every source. (The reader reads the sources one
      // after the other; nothing else writes meanwhile, so this test does not depend on a one-snapshot reader.)
      const s = await start(t, { prefix, batchSize: 1 })
      try {
        expect((await s.cache.get('SPLIT')).stockToday).toBe(0)
        const seen: Array<{ stock: number; day1: number }> = []
        s.cache.on('updated', (ev) => {
          if (ev.product === 'SPLIT')
            seen.push({ stock: ev.projection.stockToday, day1: ev.projection.days[1]!.closing })
        })
        await s.listener.stop() // a backlog: the transaction's rows wait behind others
        await t.sql('INSERT INTO cc_movements (sku, qty) VALUES (?, 1), (?, 1)', ['F0', 'F1'])
        await t.db.transaction(async (tx) => {
          await tx.execute(forDb(t, 'INSERT INTO cc_movements (sku, qty) VALUES (?, 10)'), ['SPLIT'])
          await tx.execute(forDb(t, 'INSERT INTO cc_movements (sku, qty) VALUES (?, 1)'), ['F2'])
          await tx.execute(forDb(t, 'INSERT INTO cc_supply (sku, qty, due) VALUES (?, 5, ?)'), [
            'SPLIT',
            dayFromToday(1),
          ])
        })
        const listener = await s.capture.listen(s.cache)
        await listener.drain(30_000)
        await listener.stop()
        const p = await s.cache.get('SPLIT')
        expect([p.stockToday, p.days[1]!.closing]).toEqual([10, 15])
        expect(seen.length).toBeGreaterThan(0)
        expect(seen.filter((v) => v.stock !== 10 || v.day1 !== 15)).toEqual([])
      } finally {
        await s.close()
      }
    })

    it('status().oldestUnprocessedMs reports the oldest row while a backlog drains with a slow reader, then 0', async () => {
      const PRODUCTS = 48
      const slow = (base: SourceReader): SourceReader => ({
        read: async (products, options) => {
          await sleep(200)
          return base.read(products, options)
        },
      })
      const s = await start(t, { prefix, batchSize: 4 }, { reader: slow })
      try {
        await s.listener.drain()
        const q = insertMovements(Array.from({ length: PRODUCTS }, (_, i) => [`OU${i}`, 1] as [string, number]))
        const written = Date.now()
        await t.db.execute(forDb(t, q.text), q.params)
        // 12 claims of 4 products, 200 ms each: the backlog lasts 2.4 s at least.
        const samples: Array<{ elapsed: number; reported: number; processed: number }> = []
        for (let i = 0; i < 8; i++) {
          await sleep(150)
          samples.push({
            elapsed: Date.now() - written,
            reported: s.cache.status().oldestUnprocessedMs,
            processed: s.listener.status().processed,
          })
        }
        const during = samples.filter((x) => x.processed < PRODUCTS && x.elapsed > 400)
        expect(during.length).toBeGreaterThanOrEqual(3)
        // The rows of the first statement stay the oldest until the last of them is processed: the reported age
        // follows the clock (not the age of the cache's own pending marks, which is reset at every batch).
        for (const x of during) expect(x.reported).toBeGreaterThanOrEqual(x.elapsed - 300)
        for (let i = 1; i < during.length; i++) expect(during[i]!.reported).toBeGreaterThan(during[i - 1]!.reported)
        await s.listener.drain(30_000)
        expect(s.listener.status().oldestUnprocessedMs).toBe(0)
        expect(s.cache.status().oldestUnprocessedMs).toBe(0)
      } finally {
        await s.close()
      }
    })
  })
}
