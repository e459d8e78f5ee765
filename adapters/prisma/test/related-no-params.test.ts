import { defineStockSchema, type StockCache } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { DATABASES, day, erpSources, HOLD_MARKS, stack, type TestDb } from './helpers/db.js'
import { describeService } from './services.js'

type Client = ReturnType<typeof stack>['prisma']

/** Tomorrow (UTC, the cache's default zone): D1 of a projection. */
const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)

// A `related` query without any :param (it finds its products from the table's state, not from the changed row):
// the extension needs no field of the row, and must still not send Prisma an empty `select` (a validation error).
const schema = defineStockSchema({
  ...erpSources(),
  related: [{ table: 'orders', products: 'SELECT product_code FROM picking_items' }],
})

for (const database of DATABASES) {
  describeService(database.down, `${database.name}: a related query without parameters`, () => {
    let db: TestDb
    let cache: StockCache
    let prisma: Client
    let n = 0
    const product = () => `RN-${process.pid}-${n++}`

    beforeAll(async () => {
      db = await database.open()
      ;({ cache, prisma } = stack(db, schema, HOLD_MARKS))
    })
    afterAll(async () => {
      await cache?.close()
      await db?.close()
    })

    const order = async (p: string) => {
      const code = `O-${p}`
      await prisma.order.create({
        data: { code, items: { create: [{ productCode: p, qty: 2, shipDate: day(tomorrow) }] } },
      })
      await cache.flush()
      await cache.get(p)
      expect(cache.peek(p)).toBeDefined()
      return code
    }

    it('update, updateMany, delete and deleteMany of orders run and mark what the query finds', async () => {
      const a = product()
      const code = await order(a)
      await prisma.order.update({ where: { code }, data: { status: 'HOLD' } })
      expect(cache.peek(a)).toBeUndefined()
      expect((await cache.validate({ products: [a] })).mismatches).toEqual([])

      await cache.get(a)
      await prisma.order.updateMany({ where: { code }, data: { status: 'OPEN' } })
      expect(cache.peek(a)).toBeUndefined()
      expect((await cache.get(a)).days[1]!.demand).toBe(2)

      const b = product()
      const codeB = await order(b)
      await prisma.order.delete({ where: { code: codeB } })
      expect(cache.peek(b)).toBeUndefined()
      expect((await cache.get(b)).days[1]!.demand).toBe(0)

      await cache.get(a)
      expect(await prisma.order.deleteMany({ where: { code } })).toEqual({ count: 1 })
      expect(cache.peek(a)).toBeUndefined()
      expect((await cache.get(a)).days[1]!.demand).toBe(0)
      expect((await cache.validate({ products: [a, b] })).mismatches).toEqual([])
    })
  })
}
