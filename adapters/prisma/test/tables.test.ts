import { type Cache, ConfigError, createCache } from 'stockcast'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { stockcastTables } from '../src/index.js'
import { DATABASES, day, erpSchema, HOLD_MARKS, stack, type TestDb } from './helpers/db.js'
import { describeService } from './services.js'

const SHIP = day('2999-01-01')

function tablesStack(db: TestDb, cache: Cache, seen: string[][]) {
  const recorder = {
    invalidate(target: { tables: string[] }) {
      seen.push([...target.tables].sort())
      return cache.invalidate(target)
    },
  }
  return db.prisma.$extends(stockcastTables(recorder))
}

for (const database of DATABASES) {
  describeService(database.down, `${database.name}: stockcastTables`, () => {
    let db: TestDb
    let cache: Cache
    let prisma: ReturnType<typeof tablesStack>
    const seen: string[][] = []
    let calls = 0
    let ordersCount: () => Promise<number>
    let n = 0
    const code = () => `T${process.pid}-${++n}`

    beforeAll(async () => {
      db = await database.open()
      // A clock that moves on every reading: an entry computed in the same millisecond as an invalidation counts as
      // outdated (the stamp wins ties), which would make "served from memory" depend on timing.
      let ms = Date.now()
      cache = createCache({ name: `prisma-tables-${db.kind}`, clock: { now: () => ++ms } })
      ordersCount = cache.cached(
        async () => {
          calls++
          return Number((await db.sql('SELECT COUNT(*) AS n FROM orders'))[0]!.n)
        },
        { key: 'orders-count', tables: ['orders'] },
      )
      prisma = tablesStack(db, cache, seen)
    })
    afterAll(async () => {
      await cache?.close()
      await db?.close()
    })
    beforeEach(async () => {
      await ordersCount()
      seen.length = 0
    })

    /** The cached count answers from memory: nothing invalidated orders. */
    const expectCached = async () => {
      const before = calls
      await ordersCount()
      expect(calls).toBe(before)
    }

    it('every write operation invalidates its table (the @@map name) at once', async () => {
      const o = await db.prisma.order.create({ data: { code: code() } })
      const m = await db.prisma.stockMove.create({ data: { productCode: 'X', quantity: 1 } })
      const writes: Array<[string, () => Promise<unknown>, string[]]> = [
        ['create', () => prisma.order.create({ data: { code: code() } }), ['orders']],
        [
          'createMany',
          () => prisma.stockMove.createMany({ data: [{ productCode: 'X', quantity: 1 }] }),
          ['stock_moves'],
        ],
        [
          'createManyAndReturn',
          () => prisma.stockMove.createManyAndReturn({ data: [{ productCode: 'X', quantity: 2 }] }),
          ['stock_moves'],
        ],
        ['update', () => prisma.stockMove.update({ where: { id: m.id }, data: { quantity: 3 } }), ['stock_moves']],
        [
          'updateMany',
          () => prisma.stockMove.updateMany({ where: { id: m.id }, data: { note: 'a' } }),
          ['stock_moves'],
        ],
        [
          'updateManyAndReturn',
          () => prisma.stockMove.updateManyAndReturn({ where: { id: m.id }, data: { note: 'b' } }),
          ['stock_moves'],
        ],
        [
          'upsert',
          () => prisma.auditLog.upsert({ where: { id: -1 }, create: { message: 'm' }, update: { message: 'n' } }),
          ['audit_log'],
        ],
        ['delete', () => prisma.stockMove.delete({ where: { id: m.id } }), ['stock_moves']],
        ['deleteMany', () => prisma.auditLog.deleteMany({ where: { message: 'm' } }), ['audit_log']],
        // A database cascade may delete picking items: their table too.
        ['delete with relations', () => prisma.order.delete({ where: { id: o.id } }), ['orders', 'picking_items']],
      ]
      for (const [name, write, tables] of writes) {
        seen.length = 0
        await write()
        expect(seen, name).toEqual([tables])
      }
    })

    it('nested writes invalidate the related table too; the cached value is recomputed', async () => {
      const before = await ordersCount()
      const o = await prisma.order.create({
        data: { code: code(), items: { create: [{ productCode: 'X', qty: 1, shipDate: SHIP }] } },
      })
      expect(seen).toEqual([['orders', 'picking_items']])
      expect(await ordersCount()).toBe(before + 1)
      seen.length = 0
      await prisma.order.update({
        where: { id: o.id },
        data: { status: 'SHIPPED', items: { updateMany: { where: {}, data: { qty: 2 } } } },
      })
      expect(seen).toEqual([['orders', 'picking_items']])
      seen.length = 0
      await prisma.pickingItem.create({
        data: { order: { create: { code: code() } }, productCode: 'Y', qty: 1, shipDate: SHIP },
      })
      expect(seen).toEqual([['orders', 'picking_items']])
    })

    describe('transactions', () => {
      it('interactive: nothing before commit (served from memory), one call once $transaction resolved', async () => {
        const before = await ordersCount()
        await prisma.$transaction(async (tx) => {
          await tx.order.create({ data: { code: code() } })
          await tx.stockMove.create({ data: { productCode: 'X', quantity: 1 } })
          await tx.order.updateMany({ where: { code: 'none' }, data: { status: 'X' } })
          expect(seen).toEqual([])
          await expectCached()
        })
        expect(seen).toEqual([['orders', 'stock_moves']])
        expect(await ordersCount()).toBe(before + 1)
      })

      it('interactive rollback invalidates nothing', async () => {
        await expect(
          prisma.$transaction(async (tx) => {
            await tx.order.create({ data: { code: code() } })
            await tx.auditLog.create({ data: { message: 'x' } })
            throw new Error('roll back')
          }),
        ).rejects.toThrow('roll back')
        expect(seen).toEqual([])
        await expectCached()
      })

      it('batch: invalidated after commit; a failed batch invalidates nothing', async () => {
        const taken = code()
        await prisma.$transaction([
          prisma.order.create({ data: { code: taken } }),
          prisma.auditLog.create({ data: { message: 'b' } }),
        ])
        expect(seen).toEqual([['audit_log', 'orders']])
        seen.length = 0
        await ordersCount()
        await expect(
          prisma.$transaction([
            prisma.auditLog.create({ data: { message: 'c' } }),
            prisma.order.create({ data: { code: taken } }), // unique violation: the batch rolls back
          ]),
        ).rejects.toThrow()
        expect(seen).toEqual([])
        await expectCached()
      })

      it('a nested transaction (savepoint): dropped on its rollback, held for the outer commit', async () => {
        if (db.kind === 'pglite') return // pglite-prisma-adapter has no savepoints (Prisma refuses nested transactions)
        let inside: string[][] = []
        await prisma.$transaction(async (tx) => {
          await expect(
            tx.$transaction(async (inner) => {
              await inner.auditLog.create({ data: { message: 'sp' } })
              throw new Error('inner')
            }),
          ).rejects.toThrow('inner')
          await tx.$transaction(async (inner) => {
            await inner.order.create({ data: { code: code() } })
          })
          inside = [...seen]
        })
        expect(inside).toEqual([])
        expect(seen).toEqual([['orders']])
      })
    })

    it('raw SQL is not seen (sqlTableChanges of @stockcast/sql captures it)', async () => {
      await prisma.$executeRawUnsafe(`INSERT INTO orders (code) VALUES ('${code()}')`)
      expect(seen).toEqual([])
      await expectCached()
    })

    it('composes with stockcastExtension: both act after the commit', async () => {
      const { cache: stock, prisma: marking } = stack(db, erpSchema, HOLD_MARKS)
      const both = marking.$extends(stockcastTables({ invalidate: async (x) => void seen.push(x.tables) }))
      const product = code()
      await stock.get(product)
      await both.$transaction(async (tx) => {
        await tx.stockMove.create({ data: { productCode: product, quantity: 1 } })
        expect(seen).toEqual([])
        expect(stock.peek(product)).toBeDefined()
      })
      expect(seen).toEqual([['stock_moves']])
      expect(stock.peek(product)).toBeUndefined() // marked by stockcastExtension
      await stock.close()
    })

    describe('options', () => {
      it('tables: only the listed tables; models: a table name over the metadata', async () => {
        const got: string[][] = []
        const only = db.prisma.$extends(
          stockcastTables([{ invalidate: async (x) => void got.push(x.tables) }], {
            tables: ['movements_v2'],
            models: { StockMove: { table: 'movements_v2' } },
          }),
        )
        await only.order.create({ data: { code: code() } })
        await only.stockMove.create({ data: { productCode: 'X', quantity: 1 } })
        expect(got).toEqual([['movements_v2']])
      })

      it('a failing invalidate never fails the write: onError is told; a closed cache is skipped', async () => {
        const errors: Error[] = []
        const failing = db.prisma.$extends(
          stockcastTables(
            {
              invalidate: async () => {
                throw new Error('store down')
              },
            },
            { onError: (e) => errors.push(e) },
          ),
        )
        await failing.auditLog.create({ data: { message: 'f' } })
        await failing.$transaction(async (tx) => tx.auditLog.create({ data: { message: 'g' } }))
        expect(errors.map((e) => e.message)).toEqual(['store down', 'store down'])
        const closed = createCache({ name: 'closed' })
        await closed.close()
        const onClosed = db.prisma.$extends(stockcastTables(closed, { onError: (e) => errors.push(e) }))
        await onClosed.auditLog.create({ data: { message: 'h' } })
        expect(errors).toHaveLength(2)
      })

      it('checks its arguments', () => {
        expect(() => stockcastTables({} as never)).toThrow(ConfigError)
        expect(() => stockcastTables([])).toThrow(ConfigError)
        expect(() => stockcastTables(cache, { tables: [''] })).toThrow(ConfigError)
        expect(() => stockcastTables(cache, { onError: 1 as never })).toThrow(ConfigError)
      })
    })
  })
}
