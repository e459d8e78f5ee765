import type { StockCache } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { Prisma } from './generated/client/client'
import { day, erpSchema, pgTestDb, stack, type TestDb } from './helpers/db.js'
import { describeService, pgDown } from './services.js'

// Many Prisma transactions at once (interactive and batch, some rolled back), writers outside transactions, and
// readers hammering the cache while the recomputes run: once settled, the cache agrees with the tables.

type Client = ReturnType<typeof stack>['prisma']

describeService(pgDown, 'PostgreSQL: parallel Prisma transactions with reads', () => {
  let db: TestDb
  let cache: StockCache
  let prisma: Client
  const products = Array.from({ length: 40 }, (_, i) => `P${i}-${process.pid}`)
  const pick = () => products[Math.floor(Math.random() * products.length)]!
  const ship = (d: number) => day(new Date(Date.now() + d * 86_400_000).toISOString().slice(0, 10))

  beforeAll(async () => {
    db = await pgTestDb(16)
    // Short debounce: recomputes run in the middle of the writes.
    ;({ cache, prisma } = stack(db, erpSchema, { debounceMs: 5, maxWaitMs: 40, withStore: true }))
    for (const p of products) await db.prisma.stockMove.create({ data: { productCode: p, quantity: 100 } })
  })
  afterAll(async () => {
    await cache?.close()
    await db?.close()
  })

  const step = async (worker: number, i: number): Promise<void> => {
    const roll = Math.random()
    const fail = Math.random() < 0.25
    const tag = `w${worker}-${i % 3}`
    if (roll < 0.35) {
      await prisma
        .$transaction(async (tx) => {
          const m = await tx.stockMove.create({ data: { productCode: pick(), quantity: 5, note: tag } })
          await tx.stockMove.update({ where: { id: m.id }, data: { productCode: pick(), quantity: -2 } })
          await tx.stockMove.updateMany({ where: { note: tag }, data: { quantity: { increment: 1 } } })
          const o = await tx.order.create({
            data: {
              code: `o-${worker}-${i}-${Math.random()}`,
              items: { create: [{ productCode: pick(), qty: 3, shipDate: ship(i % 9) }] },
            },
          })
          if (Math.random() < 0.5) await tx.order.update({ where: { id: o.id }, data: { status: 'SHIPPED' } })
          if (fail) throw new Error('roll back')
        })
        .catch((e: Error) => {
          if (e.message !== 'roll back') throw e
        })
    } else if (roll < 0.6) {
      const batch: Prisma.PrismaPromise<unknown>[] = [
        prisma.stockMove.createMany({
          data: [
            { productCode: pick(), quantity: 1, note: tag },
            { productCode: pick(), quantity: 2, note: tag },
          ],
        }),
        prisma.stockMove.updateMany({ where: { note: tag }, data: { productCode: pick() } }),
        prisma.pickingItem.deleteMany({
          where: { productCode: pick(), order: { code: { startsWith: `o-${worker}-` } } },
        }),
      ]
      if (fail) batch.push(prisma.stockMove.update({ where: { id: -1 }, data: { quantity: 0 } }))
      await prisma.$transaction(batch).catch((e: Error) => {
        if (!fail) throw e
      })
    } else if (roll < 0.8) {
      await prisma.stockMove.create({ data: { productCode: pick(), quantity: 3, note: tag } })
      await prisma.stockMove.deleteMany({ where: { note: tag, quantity: { lt: 2 } } })
    } else {
      await prisma.order.updateMany({
        where: { code: { startsWith: `o-${worker}-` } },
        data: { status: Math.random() < 0.5 ? 'OPEN' : 'SHIPPED' },
      })
    }
  }

  it('validate() reports no mismatch once every transaction settled', async () => {
    let writing = true
    let reads = 0
    const readers = Array.from({ length: 3 }, async () => {
      while (writing) {
        const p = await cache.get(pick())
        expect(p.days).toHaveLength(29)
        reads++
        // An L1 hit resolves at once: without a turn of the event loop the readers would starve the writers.
        await new Promise((resolve) => setImmediate(resolve))
      }
    })
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 12; i++) await step(w, i)
    })
    try {
      await Promise.all(writers)
    } finally {
      writing = false
      await Promise.all(readers)
    }
    await cache.flush()
    const report = await cache.validate({ products })
    expect(report.mismatches).toEqual([])
    expect(report.skipped).toBe(0)
    expect(report.checked + report.uncached).toBe(products.length)
    expect(reads).toBeGreaterThan(0)
  })
})
