import { defineStockSchema } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type CaptureSetup, outboxCount, pgTestDb, startCapture, type TestDb } from './capture-helpers.js'
import { describeService, pgDown, uniquePrefix } from './services.js'

// Figures only (printed, no timed assertion): a 100 000-row INSERT .. SELECT over 1 000 products without triggers,
// with the statement triggers outside bulkImport, and inside it; the listener runs throughout.
const ROWS = 100_000
const PRODUCTS = 1000
const ROUNDS = 5

const schema = defineStockSchema({ onHand: [{ table: 'bk_movements', product: 'sku', quantity: 'qty' }] })
const insertInto = (table: string) =>
  `INSERT INTO ${table} (sku, qty, moved_at) SELECT 'B' || (i % ${PRODUCTS}), (i % 7) - 3, now() FROM generate_series(1, ${ROWS}) AS i`

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

describeService(pgDown, 'sqlChangeCapture bulk import cost (PostgreSQL)', () => {
  let t: TestDb
  let s: CaptureSetup
  const prefix = uniquePrefix('sc')
  beforeAll(async () => {
    t = await pgTestDb(10)
    for (const table of ['bk_plain', 'bk_movements']) {
      await t.sql(
        `CREATE TABLE ${table} (id bigserial PRIMARY KEY, sku text NOT NULL, qty numeric(18,3) NOT NULL, moved_at timestamptz)`,
      )
      await t.sql(`CREATE INDEX ON ${table} (sku)`)
    }
    s = await startCapture(t, schema, { capture: { prefix } })
  })
  afterAll(async () => {
    await s?.close()
    await s?.capture.uninstall()
    await t?.close()
  })

  it('prints the cost of a 100 000-row INSERT .. SELECT: no triggers, triggers outside and inside bulkImport', async () => {
    const products = Array.from({ length: PRODUCTS }, (_, i) => `B${i}`)
    await s.cache.getMany(products)
    const timed = async (fn: () => Promise<unknown>) => {
      const t0 = performance.now()
      await fn()
      return performance.now() - t0
    }
    const plain: number[] = []
    const outside: number[] = []
    const outsideFresh: number[] = []
    const inside: number[] = []
    const insideBlock: number[] = []
    const insideFresh: number[] = []
    for (let round = 0; round < ROUNDS; round++) {
      await t.sql('TRUNCATE bk_plain')
      await t.sql('TRUNCATE bk_movements') // marks every product: drained before timing
      await s.listener.drain()
      await t.sql('VACUUM ANALYZE bk_plain')
      await t.sql('VACUUM ANALYZE bk_movements')

      const runs: Array<() => Promise<void>> = [
        async () => {
          plain.push(await timed(() => t.sql(insertInto('bk_plain'))))
        },
        async () => {
          // Outside: the statement, then until the listener has made the cache fresh.
          const t0 = performance.now()
          outside.push(await timed(() => t.sql(insertInto('bk_movements'))))
          await s.listener.drain()
          outsideFresh.push(performance.now() - t0)
        },
        async () => {
          const t1 = performance.now()
          insideBlock.push(
            await timed(() =>
              s.capture.bulkImport(s.cache, async (session) => {
                inside.push(await timed(() => session.execute(insertInto('bk_movements'))))
              }),
            ),
          )
          const before = s.cache.metrics().recomputes
          await s.listener.drain()
          // The block's settling recompute covered the import's marks: the listener only deletes their rows.
          expect(s.cache.metrics().recomputes).toBe(before)
          insideFresh.push(performance.now() - t1)
        },
      ]
      // Rotate the order each round: no variant always runs first (cold) or last.
      for (let k = 0; k < runs.length; k++) await runs[(k + round) % runs.length]!()
    }
    const base = median(plain)
    const fmt = (xs: number[]) => `${median(xs).toFixed(0)} ms (${(median(xs) / base).toFixed(2)} x)`
    console.info(
      `[capture bulk] ${ROWS} rows, ${PRODUCTS} products, median of ${ROUNDS}: no triggers ${base.toFixed(0)} ms; ` +
        `triggers outside bulkImport ${fmt(outside)}, until fresh ${fmt(outsideFresh)}; ` +
        `inside bulkImport: the statement ${fmt(inside)}, the whole block (recompute included) ${fmt(insideBlock)}, until fresh ${fmt(insideFresh)}`,
    )
    expect(await outboxCount(t, prefix)).toBe(0)
    const report = await s.cache.validate({ products })
    expect(report.mismatches).toEqual([])
    expect(report.checked).toBe(PRODUCTS)
    expect(s.listener.status().lastError).toBeNull()
  })
})
