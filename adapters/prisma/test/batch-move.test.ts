import type { StockCache } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { erpSchema, pgTestDb, stack, type TestDb } from './helpers/db.js'
import { describeService, pgDown } from './services.js'

type Client = ReturnType<typeof stack>['prisma']

// Found by the concurrency test: in a batch transaction, an updateMany that moves rows created by an earlier
// statement of the same batch must mark the product it moves them to (its pre-read runs before the batch).
describeService(pgDown, 'PostgreSQL: a batch that creates rows and moves them to another product', () => {
  let db: TestDb
  let cache: StockCache
  let prisma: Client
  const x = `BX-${process.pid}`
  const y = `BY-${process.pid}`

  beforeAll(async () => {
    db = await pgTestDb(4)
    ;({ cache, prisma } = stack(db, erpSchema, { debounceMs: 0, withStore: false }))
  })
  afterAll(async () => {
    await cache?.close()
    await db?.close()
  })

  it('marks the new product of rows created earlier in the same batch', async () => {
    expect((await cache.get(y)).stockToday).toBe(0)
    expect((await cache.get(x)).stockToday).toBe(0)
    await prisma.$transaction([
      prisma.stockMove.createMany({
        data: [
          { productCode: x, quantity: 1, note: 'batch-move' },
          { productCode: x, quantity: 2, note: 'batch-move' },
        ],
      }),
      prisma.stockMove.updateMany({ where: { note: 'batch-move' }, data: { productCode: y } }),
    ])
    await cache.flush()
    expect((await cache.get(y)).stockToday).toBe(3)
    expect((await cache.get(x)).stockToday).toBe(0)
    expect((await cache.validate({ products: [x, y] })).mismatches).toEqual([])
  })
})
