import type { StockCache, StockcastError } from 'stockcast'
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest'
import { DATABASES, day, erpSchema, HOLD_MARKS, stack, type TestDb } from './helpers/db.js'
import { markProbes } from './helpers/marks.js'
import { describeService } from './services.js'

// Relations: nested writes, database cascades, and `related` tables (an order's status decides whether its picking
// items are demand, so a change to the order marks the products of its items).

type Client = ReturnType<typeof stack>['prisma']
const SHIP = day('2999-01-01')

for (const database of DATABASES) {
  describeService(database.down, `${database.name}: relations, nested writes and related tables`, () => {
    let db: TestDb
    let cache: StockCache
    let prisma: Client
    const errors: StockcastError[] = []
    let n = 0
    let p: (s: string) => string
    beforeAll(async () => {
      db = await database.open()
      ;({ cache, prisma } = stack(db, erpSchema, { ...HOLD_MARKS, extension: { onError: (e) => errors.push(e) } }))
    })
    afterAll(async () => {
      await cache?.close()
      await db?.close()
    })
    beforeEach(() => {
      const id = ++n
      p = (s) => `${s}-${id}`
      errors.length = 0
    })

    const { prime, markedOf, truthMatches } = markProbes(
      () => cache,
      () => errors,
    )
    /** An order with one item per product (written through the plain client: no marks). */
    const order = (products: readonly string[], status = 'OPEN') =>
      db.prisma.order.create({
        data: {
          code: p(`O${Math.random()}`),
          status,
          items: { create: products.map((productCode) => ({ productCode, qty: 2, shipDate: SHIP })) },
        },
        include: { items: true },
      })

    it('a nested create marks the products of the rows it creates', async () => {
      const all = [p('A'), p('B'), p('X')]
      await prime(all)
      await prisma.order.create({
        data: {
          code: p('O'),
          items: {
            create: [{ productCode: p('A'), qty: 1, shipDate: SHIP }],
            createMany: { data: [{ productCode: p('B'), qty: 3, shipDate: SHIP }] },
          },
        },
        select: { id: true },
      })
      expect(markedOf(all)).toEqual([p('A'), p('B')])
      await truthMatches(all)
      expect((await cache.get(p('B'))).days.at(-1)!.closing).toBe(0) // due after the horizon
    })

    it('a change to a related row (the order) marks the products its query finds', async () => {
      const o = await order([p('A'), p('B')])
      await order([p('C')])
      const all = [p('A'), p('B'), p('C')]
      await prime(all)
      await prisma.order.update({ where: { id: o.id }, data: { status: 'SHIPPED' }, select: { code: true } })
      expect(markedOf(all)).toEqual([p('A'), p('B')])
      await truthMatches(all)
    })

    it('related marks wait for the commit: held in an interactive transaction, dropped on rollback', async () => {
      const o = await order([p('A')])
      await prime([p('A')])
      await expect(
        prisma.$transaction(async (tx) => {
          await tx.order.update({ where: { id: o.id }, data: { status: 'SHIPPED' } })
          expect(markedOf([p('A')])).toEqual([])
          throw new Error('roll back')
        }),
      ).rejects.toThrow('roll back')
      expect(markedOf([p('A')])).toEqual([])
      await prisma.$transaction(async (tx) => {
        await tx.order.updateMany({ where: { id: o.id }, data: { status: 'SHIPPED' } })
        expect(markedOf([p('A')])).toEqual([])
      })
      expect(markedOf([p('A')])).toEqual([p('A')])
      await truthMatches([p('A')])
    })

    it('related marks of a batch transaction are resolved after it commits', async () => {
      const o = await order([p('A')])
      const other = await order([p('B')])
      await prime([p('A'), p('B')])
      await prisma.$transaction([
        prisma.order.update({ where: { id: o.id }, data: { status: 'CLOSED' } }),
        prisma.order.updateMany({ where: { id: other.id }, data: { status: 'CLOSED' } }),
      ])
      expect(markedOf([p('A'), p('B')])).toEqual([p('A'), p('B')])
      await truthMatches([p('A'), p('B')])
    })

    it('deleting an order marks the products of the items the database cascade deletes', async () => {
      const o1 = await order([p('A')])
      const o2 = await order([p('B'), p('C')])
      const o3 = await order([p('D')])
      const all = [p('A'), p('B'), p('C'), p('D')]
      await prime(all)
      await prisma.order.delete({ where: { id: o1.id } })
      expect(markedOf(all)).toEqual([p('A')])
      await prisma.order.deleteMany({ where: { id: { in: [o2.id, o3.id] } } })
      expect(markedOf(all)).toEqual(all)
      await truthMatches(all)
      expect(await db.prisma.pickingItem.count({ where: { productCode: { in: all } } })).toBe(0)
    })

    it('a nested update moving an item to another product marks both; nested deletes mark what they delete', async () => {
      const o = await order([p('A'), p('B')])
      const [a] = o.items
      const all = [p('A'), p('B'), p('C'), p('D')]
      await prime(all)
      await prisma.order.update({
        where: { id: o.id },
        data: { items: { update: { where: { id: a!.id }, data: { productCode: p('C') } } } },
      })
      // B too: the order is a related table, and any write to an order marks the products of its items.
      expect(markedOf(all)).toEqual([p('A'), p('B'), p('C')])
      await truthMatches(all)
      await prime(all)
      await prisma.order.update({
        where: { code: o.code },
        data: { items: { deleteMany: {}, create: { productCode: p('D'), qty: 1, shipDate: SHIP } } },
        include: { items: true },
      })
      expect(markedOf(all)).toEqual([p('B'), p('C'), p('D')])
      await truthMatches(all)
    })

    it('moving an item to another order (connect) marks its product', async () => {
      const open = await order([p('A')])
      const shipped = await order([], 'SHIPPED')
      await prime([p('A')])
      await prisma.pickingItem.update({
        where: { id: open.items[0]!.id },
        data: { order: { connect: { id: shipped.id } } },
      })
      expect(markedOf([p('A')])).toEqual([p('A')])
      await truthMatches([p('A')])
    })

    it('an item created with a nested order marks its product (and the order is related)', async () => {
      await prime([p('A')])
      await prisma.pickingItem.create({
        data: { productCode: p('A'), qty: 4, shipDate: SHIP, order: { create: { code: p('O') } } },
        select: { id: true },
      })
      expect(markedOf([p('A')])).toEqual([p('A')])
      await truthMatches([p('A')])
    })

    it('a nested write under a filtered include is read back whole', async () => {
      const o = await order([p('A')])
      const all = [p('A'), p('B')]
      await prime(all)
      const result = await prisma.order.update({
        where: { id: o.id },
        data: { items: { create: { productCode: p('B'), qty: 9, shipDate: SHIP } } },
        include: { items: { where: { productCode: p('A') } } },
      })
      expect(result.items.map((i) => i.productCode)).toEqual([p('A')])
      expect(markedOf(all)).toEqual(all)
      await truthMatches(all)
    })

    it('raw SQL writes are not seen (the SQL adapter triggers are for them)', async () => {
      await prime([p('A')])
      await prisma.$executeRaw`INSERT INTO stock_moves (product_code, quantity) VALUES (${p('A')}, 1)`
      expect(markedOf([p('A')])).toEqual([])
      await cache.refresh(p('A'))
    })
  })
}
