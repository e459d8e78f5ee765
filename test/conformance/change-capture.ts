import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { defineStockSchema, type StockCache, type StockSchema, todayIn } from '../../src/index.js'

/** Writes through the change-capture mechanism under test (an ORM, SQL triggers, the in-memory source). */
export interface CaptureWriter {
  insert(table: string, row: Record<string, unknown>): Promise<number>
  update(table: string, id: number, patch: Record<string, unknown>): Promise<void>
  delete(table: string, id: number): Promise<void>
}

export interface ChangeCaptureHarness extends CaptureWriter {
  /** A cache whose reader reads the same tables and that the capture marks. */
  cache: StockCache
  /** One transaction: commit when `fn` resolves, roll back when it throws (the error is rethrown). */
  transaction(fn: (tx: CaptureWriter) => Promise<void>): Promise<void>
  /** Resolve once every committed write so far has reached the cache as a mark (a listener caught up). */
  settle(): Promise<void>
  /** Drop the tables and close the cache and connections. */
  close(): Promise<void>
}

export interface ChangeCaptureOptions {
  /** Suite title. @default 'ChangeCapture conformance' */
  name?: string
}

/**
 * The schema every change-capture harness must create (empty tables, `id` integer primary key generated):
 * - `cc_movements (id, sku text, qty numeric(18,3), moved_on date null)`
 * - `cc_supply (id, sku text, qty numeric(18,3), due date)`
 * - `cc_demand (id, sku text, qty numeric(18,3), ship date)`
 */
export const changeCaptureSchema: StockSchema = defineStockSchema({
  onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty', date: 'moved_on' }],
  supply: [{ table: 'cc_supply', product: 'sku', quantity: 'qty', date: 'due' }],
  demand: [{ table: 'cc_demand', product: 'sku', quantity: 'qty', date: 'ship' }],
})

/** `YYYY-MM-DD` of D0 + n in UTC (the harness cache must use the default time zone). */
export function dayFromToday(n: number): string {
  const t = todayIn('UTC', Date.now())
  const d = new Date(`${t.date}T00:00:00Z`)
  d.setUTCDate(d.getUTCDate() + n)
  return d.toISOString().slice(0, 10)
}

/**
 * What every change capture must guarantee: committed writes reach the cache (old and new product on key
 * changes), rolled-back ones never do, and after the capture settles every read reflects the sources.
 */
export function runChangeCaptureConformance(
  makeHarness: (schema: StockSchema) => Promise<ChangeCaptureHarness>,
  options: ChangeCaptureOptions = {},
): void {
  describe(options.name ?? 'ChangeCapture conformance', () => {
    let h: ChangeCaptureHarness
    let n = 0
    const sku = (s: string) => `${s}-${process.pid}-${n}`
    beforeEach(async () => {
      n++
      h = await makeHarness(changeCaptureSchema)
    })
    afterEach(async () => {
      await h?.close()
    })

    const stock = async (p: string) => (await h.cache.get(p)).stockToday

    it('a committed insert outside a transaction reaches the cache', async () => {
      const a = sku('A')
      expect(await stock(a)).toBe(0)
      await h.insert('cc_movements', { sku: a, qty: '12.5' })
      await h.settle()
      expect(await stock(a)).toBe(12.5)
    })

    it('a committed transaction reaches the cache, all writes together', async () => {
      const a = sku('A')
      expect(await stock(a)).toBe(0)
      await h.transaction(async (tx) => {
        await tx.insert('cc_movements', { sku: a, qty: '10' })
        await tx.insert('cc_movements', { sku: a, qty: '-3.25' })
        await tx.insert('cc_demand', { sku: a, qty: '2', ship: dayFromToday(1) })
      })
      await h.settle()
      const p = await h.cache.get(a)
      expect(p.stockToday).toBe(6.75)
      expect(p.days[1]!.closing).toBe(4.75)
    })

    it('a rolled-back transaction changes nothing', async () => {
      const a = sku('A')
      await h.insert('cc_movements', { sku: a, qty: '5' })
      await h.settle()
      expect(await stock(a)).toBe(5)
      await expect(
        h.transaction(async (tx) => {
          await tx.insert('cc_movements', { sku: a, qty: '100' })
          throw new Error('rollback please')
        }),
      ).rejects.toThrow('rollback please')
      await h.settle()
      expect(await stock(a)).toBe(5)
      expect((await h.cache.validate({ products: [a] })).mismatches).toEqual([])
    })

    it('updates and deletes reach the cache', async () => {
      const a = sku('A')
      const id = await h.insert('cc_movements', { sku: a, qty: '8' })
      await h.settle()
      expect(await stock(a)).toBe(8)
      await h.update('cc_movements', id, { qty: '3' })
      await h.settle()
      expect(await stock(a)).toBe(3)
      await h.delete('cc_movements', id)
      await h.settle()
      expect(await stock(a)).toBe(0)
    })

    it('a key change marks the old and the new product', async () => {
      const a = sku('A')
      const b = sku('B')
      const id = await h.insert('cc_movements', { sku: a, qty: '7' })
      await h.settle()
      expect(await stock(a)).toBe(7)
      expect(await stock(b)).toBe(0)
      await h.update('cc_movements', id, { sku: b })
      await h.settle()
      expect(await stock(a)).toBe(0)
      expect(await stock(b)).toBe(7)
    })

    it('supply and demand land on their days; overdue counts on D0', async () => {
      const a = sku('A')
      await h.insert('cc_movements', { sku: a, qty: '10' })
      await h.settle()
      expect((await h.cache.get(a)).days[3]!.closing).toBe(10)
      await h.transaction(async (tx) => {
        await tx.insert('cc_supply', { sku: a, qty: '4', due: dayFromToday(2) })
        await tx.insert('cc_demand', { sku: a, qty: '15', ship: dayFromToday(3) })
        await tx.insert('cc_demand', { sku: a, qty: '1', ship: dayFromToday(-2) })
      })
      await h.settle()
      const p = await h.cache.get(a)
      expect(p.overdueDemand).toBe(1)
      expect(p.days[0]!.closing).toBe(9)
      expect(p.days[2]!.closing).toBe(13)
      expect(p.days[3]!.closing).toBe(-2)
      expect(p.firstStockoutDate).toBe(dayFromToday(3))
      expect(p.status).toBe('CRITICAL')
    })

    it('a write inside a transaction is not visible before commit, and is after', async () => {
      const a = sku('A')
      await h.insert('cc_movements', { sku: a, qty: '1' })
      await h.settle()
      expect(await stock(a)).toBe(1)
      await h.transaction(async (tx) => {
        await tx.insert('cc_movements', { sku: a, qty: '1' })
        expect(await stock(a)).toBe(1)
      })
      await h.settle()
      expect(await stock(a)).toBe(2)
    })

    it('many writes to many products: validate() finds no mismatch once settled', async () => {
      const products = Array.from({ length: 12 }, (_, i) => sku(`M${i}`))
      for (const p of products) await h.cache.get(p)
      const ids: number[] = []
      for (let i = 0; i < 60; i++) {
        const p = products[i % products.length]!
        if (i % 3 === 0) ids.push(await h.insert('cc_movements', { sku: p, qty: String(i) }))
        else if (i % 3 === 1) await h.insert('cc_demand', { sku: p, qty: '1.5', ship: dayFromToday(i % 10) })
        else
          await h.update('cc_movements', ids[ids.length - 1]!, {
            qty: String(-i),
            sku: products[(i + 1) % products.length]!,
          })
      }
      await h.settle()
      await h.cache.flush()
      const report = await h.cache.validate({ products })
      expect(report.mismatches).toEqual([])
      expect(report.checked).toBeGreaterThanOrEqual(products.length)
    })
  })
}
