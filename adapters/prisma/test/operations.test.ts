import type { StockCache } from 'stockcast'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stockcastExtension } from '../src/index.js'
import { type Prisma, PrismaClient } from './generated/client/client'
import { DATABASES, erpSchema, HOLD_MARKS, stack, type TestDb } from './helpers/db.js'
import { markProbes } from './helpers/marks.js'
import { describeService } from './services.js'

// Every write operation of a model delegate, outside a transaction and inside both kinds of transaction, committed
// and rolled back. Marks stay pending (HOLD_MARKS), so `peek()` tells exactly which products were marked.

type Client = ReturnType<typeof stack>['prisma']
/** One operation, as built on the extended client (or on an interactive transaction client). */
type Op = (c: Client) => Prisma.PrismaPromise<unknown>

interface Case {
  name: string
  /** Writes the rows the operation needs (through the plain client: no marks), returns the operation. */
  setup(p: (name: string) => string, db: TestDb): Promise<{ op: Op; marks: string[]; quiet?: string[] }>
}

const move = (db: TestDb, productCode: string, quantity: number, note: string | null = null) =>
  db.prisma.stockMove.create({ data: { productCode, quantity, note } })

const CASES: Case[] = [
  {
    name: 'create',
    async setup(p) {
      return { op: (c) => c.stockMove.create({ data: { productCode: p('A'), quantity: 5 } }), marks: [p('A')] }
    },
  },
  {
    name: 'create selecting only the id',
    async setup(p) {
      return {
        op: (c) => c.stockMove.create({ data: { productCode: p('A'), quantity: 5 }, select: { id: true } }),
        marks: [p('A')],
      }
    },
  },
  {
    name: 'createMany',
    async setup(p) {
      return {
        op: (c) =>
          c.stockMove.createMany({
            data: [
              { productCode: p('A'), quantity: 1 },
              { productCode: p('B'), quantity: 2 },
            ],
          }),
        marks: [p('A'), p('B')],
      }
    },
  },
  {
    name: 'createManyAndReturn',
    async setup(p) {
      return {
        op: (c) =>
          c.stockMove.createManyAndReturn({
            data: [
              { productCode: p('A'), quantity: 1 },
              { productCode: p('B'), quantity: 2 },
            ],
            select: { id: true },
          }),
        marks: [p('A'), p('B')],
      }
    },
  },
  {
    name: 'update',
    async setup(p, db) {
      const row = await move(db, p('A'), 4)
      await move(db, p('B'), 4)
      return {
        op: (c) => c.stockMove.update({ where: { id: row.id }, data: { quantity: 9 } }),
        marks: [p('A')],
        quiet: [p('B')],
      }
    },
  },
  {
    name: 'update moving the row to another product (key change)',
    async setup(p, db) {
      const row = await move(db, p('A'), 4)
      return {
        op: (c) => c.stockMove.update({ where: { id: row.id }, data: { productCode: p('B') }, select: { id: true } }),
        marks: [p('A'), p('B')],
      }
    },
  },
  {
    name: 'updateMany',
    async setup(p, db) {
      const tag = p('tag')
      await move(db, p('A'), 1, tag)
      await move(db, p('B'), 2, tag)
      await move(db, p('C'), 3, 'other')
      return {
        op: (c) => c.stockMove.updateMany({ where: { note: tag }, data: { quantity: { increment: 10 } } }),
        marks: [p('A'), p('B')],
        quiet: [p('C')],
      }
    },
  },
  {
    name: 'updateMany moving rows to another product (key change)',
    async setup(p, db) {
      const tag = p('tag')
      await move(db, p('A'), 1, tag)
      await move(db, p('B'), 2, tag)
      return {
        op: (c) => c.stockMove.updateMany({ where: { note: tag }, data: { productCode: { set: p('C') } } }),
        marks: [p('A'), p('B'), p('C')],
      }
    },
  },
  {
    name: 'updateManyAndReturn',
    async setup(p, db) {
      const tag = p('tag')
      await move(db, p('A'), 1, tag)
      await move(db, p('B'), 2, tag)
      await move(db, p('C'), 3)
      return {
        op: (c) =>
          c.stockMove.updateManyAndReturn({ where: { note: tag }, data: { quantity: 7 }, select: { id: true } }),
        marks: [p('A'), p('B')],
        quiet: [p('C')],
      }
    },
  },
  {
    name: 'updateManyAndReturn moving rows to another product (key change)',
    async setup(p, db) {
      const tag = p('tag')
      await move(db, p('A'), 1, tag)
      await move(db, p('B'), 2, tag)
      return {
        op: (c) => c.stockMove.updateManyAndReturn({ where: { note: tag }, data: { productCode: p('C') } }),
        marks: [p('A'), p('B'), p('C')],
      }
    },
  },
  {
    name: 'upsert that creates',
    async setup(p) {
      return {
        op: (c) =>
          c.stockMove.upsert({
            where: { id: -1 },
            create: { productCode: p('A'), quantity: 3 },
            update: { quantity: 4 },
          }),
        marks: [p('A')],
      }
    },
  },
  {
    name: 'upsert that updates, moving the row to another product (key change)',
    async setup(p, db) {
      const row = await move(db, p('A'), 4)
      return {
        op: (c) =>
          c.stockMove.upsert({
            where: { id: row.id },
            create: { productCode: p('C'), quantity: 3 },
            update: { productCode: p('B') },
            omit: { productCode: true },
          }),
        marks: [p('A'), p('B')],
        quiet: [p('C')],
      }
    },
  },
  {
    name: 'delete',
    async setup(p, db) {
      const row = await move(db, p('A'), 4)
      await move(db, p('B'), 4)
      return { op: (c) => c.stockMove.delete({ where: { id: row.id } }), marks: [p('A')], quiet: [p('B')] }
    },
  },
  {
    name: 'deleteMany',
    async setup(p, db) {
      const tag = p('tag')
      await move(db, p('A'), 1, tag)
      await move(db, p('B'), 2, tag)
      await move(db, p('C'), 3)
      return {
        op: (c) => c.stockMove.deleteMany({ where: { note: tag } }),
        marks: [p('A'), p('B')],
        quiet: [p('C')],
      }
    },
  },
]

const MODES = [
  'outside a transaction',
  'interactive, committed',
  'interactive, rolled back',
  'batch, committed',
  'batch, rolled back',
] as const

for (const database of DATABASES) {
  describeService(database.down, `${database.name}: every write operation marks its products`, () => {
    let db: TestDb
    let cache: StockCache
    let prisma: Client
    let n = 0
    beforeAll(async () => {
      db = await database.open()
      ;({ cache, prisma } = stack(db, erpSchema, HOLD_MARKS))
    })
    afterAll(async () => {
      await cache?.close()
      await db?.close()
    })

    const { prime, markedOf, truthMatches } = markProbes(() => cache)

    for (const c of CASES) {
      describe(c.name, () => {
        for (const mode of MODES) {
          it(mode, async () => {
            const id = ++n
            const p = (s: string) => `${s}-${id}`
            const { op, marks, quiet = [] } = await c.setup(p, db)
            const all = [...marks, ...quiet, p('bystander')]
            await prime(all)
            const rolledBack = mode.endsWith('rolled back')
            if (mode === 'outside a transaction') await op(prisma)
            else if (mode.startsWith('interactive')) {
              const run = prisma.$transaction(async (tx) => {
                await op(tx as unknown as Client)
                // Held until commit: nothing is marked yet.
                expect(markedOf(all)).toEqual([])
                if (rolledBack) throw new Error('roll back')
              })
              if (rolledBack) await expect(run).rejects.toThrow('roll back')
              else await run
            } else {
              // A batch fails as a whole when one of its operations fails (no row has id -1).
              const failing = prisma.stockMove.update({ where: { id: -1 }, data: { quantity: 0 } })
              const batch: Prisma.PrismaPromise<unknown>[] = rolledBack ? [op(prisma), failing] : [op(prisma)]
              const run = prisma.$transaction(batch)
              if (rolledBack) await expect(run).rejects.toThrow()
              else await run
            }
            expect(markedOf(all).sort()).toEqual(rolledBack ? [] : [...marks].sort())
            await truthMatches(all)
          })
        }
      })
    }

    it('a failed write marks nothing', async () => {
      const p = `F-${++n}`
      const row = await move(db, p, 1)
      await prime([p])
      await expect(prisma.stockMove.update({ where: { id: -1 }, data: { productCode: p } })).rejects.toThrow()
      // A foreign key violation after the product was read: the update fails, no mark.
      await expect(
        prisma.pickingItem.create({
          data: { orderId: -1, productCode: p, qty: 1, shipDate: new Date() },
        }),
      ).rejects.toThrow()
      await expect(
        prisma.stockMove.update({ where: { id: row.id }, data: { productCode: null as unknown as string } }),
      ).rejects.toThrow()
      expect(markedOf([p])).toEqual([])
    })

    it('results look as the caller asked: fields the extension needed are not added', async () => {
      const p = `R-${++n}`
      const a = await prisma.stockMove.create({ data: { productCode: p, quantity: 1 }, select: { id: true } })
      expect(Object.keys(a)).toEqual(['id'])
      const b = await prisma.stockMove.create({ data: { productCode: p, quantity: 1 }, omit: { productCode: true } })
      expect(Object.keys(b).sort()).toEqual(['id', 'note', 'quantity'])
      const c = await prisma.stockMove.update({
        where: { id: a.id },
        data: { productCode: `${p}x` },
        select: { note: true },
      })
      expect(c).toEqual({ note: null })
      const d = await prisma.stockMove.createManyAndReturn({
        data: [{ productCode: p, quantity: 2 }],
        select: { quantity: true },
      })
      expect(d.map((r) => Object.keys(r))).toEqual([['quantity']])
      const e = await prisma.stockMove.delete({ where: { id: b.id }, select: { id: true } })
      expect(e).toEqual({ id: b.id })
    })

    it('an operation on the base client inside a transaction callback is marked at once, even when the transaction rolls back', async () => {
      const p = `B-${++n}`
      const q = `Q-${n}`
      await prime([p, q])
      await expect(
        prisma.$transaction(async (tx) => {
          await tx.stockMove.create({ data: { productCode: q, quantity: 1 } })
          if (db.kind === 'postgres') {
            // PGlite is one session: a second connection's write would wait for this transaction.
            await prisma.stockMove.create({ data: { productCode: p, quantity: 1 } })
            expect(markedOf([p, q])).toEqual([p])
          }
          throw new Error('roll back')
        }),
      ).rejects.toThrow('roll back')
      expect(markedOf([p, q])).toEqual(db.kind === 'postgres' ? [p] : [])
      await truthMatches([p, q])
    })

    it('a nested transaction is a savepoint: its marks go when it rolls back, and wait for the outer commit', async () => {
      if (db.kind === 'pglite') return // pglite-prisma-adapter has no savepoints (Prisma refuses nested transactions)
      const [a, b, c] = [`S1-${++n}`, `S2-${n}`, `S3-${n}`]
      await prime([a, b, c])
      await prisma.$transaction(async (tx) => {
        await tx.stockMove.create({ data: { productCode: a, quantity: 1 } })
        await expect(
          tx.$transaction(async (inner) => {
            await inner.stockMove.create({ data: { productCode: b, quantity: 1 } })
            throw new Error('inner')
          }),
        ).rejects.toThrow('inner')
        await tx.$transaction(async (inner) => {
          await inner.stockMove.create({ data: { productCode: c, quantity: 1 } })
        })
        expect(markedOf([a, b, c])).toEqual([])
      })
      expect(markedOf([a, b, c])).toEqual([a, c])
      await truthMatches([a, b, c])
    })

    it('an updateMany computing the product column is refused before it runs', async () => {
      const p = `C-${++n}`
      await expect(
        prisma.pickingItem.updateMany({ where: { productCode: p }, data: { productCode: { set: p } } }),
      ).resolves.toEqual({ count: 0 })
      // String columns cannot be incremented; the refusal is for computed values in general (a numeric product id).
      await expect(
        prisma.stockMove.updateMany({ where: { productCode: p }, data: { productCode: { unknownOp: 1 } as never } }),
      ).rejects.toThrow(/cannot be known/)
      // In a batch too: the batch fails as a whole, nothing waits for the refused operation.
      await expect(
        prisma.$transaction([
          prisma.stockMove.create({ data: { productCode: p, quantity: 1 } }),
          prisma.stockMove.updateMany({ where: { productCode: p }, data: { productCode: { unknownOp: 1 } as never } }),
        ]),
      ).rejects.toThrow(/cannot be known/)
      expect(await db.prisma.stockMove.count({ where: { productCode: p } })).toBe(0)
    })

    it('the explicit models mapping alone is enough (no metadata at all)', async () => {
      const p = `M-${++n}`
      const q = `M2-${n}`
      const explicit = db.prisma.$extends(
        stockcastExtension({
          cache,
          schema: erpSchema,
          dmmf: { datamodel: { models: [] } },
          models: {
            StockMove: { table: 'stock_moves', columns: { productCode: 'product_code' } },
            PickingItem: { table: 'picking_items', columns: { productCode: 'product_code', shipDate: 'ship_date' } },
            Order: { table: 'orders' },
          },
        }),
      )
      const row = await move(db, p, 1)
      await prime([p, q])
      await explicit.stockMove.update({ where: { id: row.id }, data: { productCode: q }, select: { id: true } })
      expect(markedOf([p, q])).toEqual([p, q])
      await truthMatches([p, q])
    })

    it("a client's global omit of the product column: products still marked, results still without it", async () => {
      const p = `G-${++n}`
      const q = `G2-${n}`
      const omitting = new PrismaClient({
        adapter: db.adapter(),
        omit: { stockMove: { productCode: true } },
      }).$extends(stockcastExtension({ cache, schema: erpSchema }))
      try {
        await prime([p, q])
        const created = await omitting.stockMove.create({ data: { productCode: p, quantity: 1 } })
        expect('productCode' in created).toBe(false)
        const asked = await omitting.stockMove.create({
          data: { productCode: q, quantity: 1 },
          omit: { productCode: false },
        })
        expect(asked.productCode).toBe(q)
        expect(markedOf([p, q])).toEqual([p, q])
        await truthMatches([p, q])
      } finally {
        await omitting.$disconnect()
      }
    })

    it('writes to models outside the stock schema mark nothing', async () => {
      const p = `N-${++n}`
      await prime([p])
      await prisma.auditLog.create({ data: { message: p } })
      await prisma.auditLog.updateMany({ where: { message: p }, data: { message: `${p}!` } })
      await prisma.auditLog.deleteMany({ where: { message: `${p}!` } })
      expect(cache.status().dirty).toBe(0)
    })
  })
}
