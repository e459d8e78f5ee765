import type { StockCache, StockcastError } from 'stockcast'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { stockcastExtension } from '../src/index.js'
import { pinnedProducts } from '../src/pinned.js'
import { type Prisma, PrismaClient } from './generated/client/client'
import { DATABASES, day, erpSchema, HOLD_MARKS, stack, type TestDb } from './helpers/db.js'
import { markProbes } from './helpers/marks.js'
import { describeService } from './services.js'

// updateMany and deleteMany without the read of the affected rows: a `where` that pins the product needs no read
// (the products are the pinned values), and an updateMany that moves no row to another product runs as one
// updateManyAndReturn on PostgreSQL. Each case checks the marks (outside a transaction, interactive committed and
// rolled back, batch) and the SQL statements the write issues, counted from Prisma's own query log.

type Client = ReturnType<typeof stack>['prisma']
const SHIP = day('2999-01-01')

/** Statements that read or write rows (transaction control left out: it depends on the driver adapter). */
const isRowStatement = (q: string) => /^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b/i.test(q)
const verbOf = (q: string) => q.trim().split(/\s+/)[0]!.toUpperCase()

describe('pinnedProducts: the where pins every product field, or nothing is trusted', () => {
  it('a literal, { equals }, { in } pin; other keys of the where only narrow', () => {
    expect(pinnedProducts({ productCode: 'A' }, ['productCode'])).toEqual(['A'])
    expect(pinnedProducts({ productCode: { equals: 'A' }, note: 'x', OR: [{}] }, ['productCode'])).toEqual(['A'])
    expect(pinnedProducts({ productCode: { in: ['A', 'B'] } }, ['productCode'])).toEqual(['A', 'B'])
    expect(pinnedProducts({ productCode: { in: [] } }, ['productCode'])).toEqual([])
    expect(pinnedProducts({ sku: 7, code: { in: [8n] } }, ['sku', 'code'])).toEqual([7, 8n])
  })

  it('anything else is not pinned', () => {
    const not = [
      undefined,
      null,
      'A',
      {},
      { note: 'x' },
      { productCode: undefined },
      { productCode: null },
      { productCode: { equals: 'A', mode: 'insensitive' } },
      { productCode: { equals: 'A', in: ['A'] } },
      { productCode: { equals: undefined } },
      { productCode: { equals: null } },
      { productCode: { equals: { name: 'note' } } },
      { productCode: { in: 'A' } },
      { productCode: { in: ['A', null] } },
      { productCode: { in: ['A', undefined] } },
      { productCode: { not: 'A' } },
      { productCode: { notIn: ['A'] } },
      { productCode: { startsWith: 'A' } },
      { productCode: { gte: 'A' } },
      { productCode: new Date() },
      { AND: [{ productCode: 'A' }] },
      { OR: [{ productCode: 'A' }] },
      { NOT: { productCode: 'A' } },
      { order: { is: { id: 1 } } },
    ]
    for (const where of not) expect(pinnedProducts(where, ['productCode']), JSON.stringify(where)).toBeNull()
    // Every product field must be pinned; a model without product fields pins nothing.
    expect(pinnedProducts({ sku: 'A' }, ['sku', 'code'])).toBeNull()
    expect(pinnedProducts({ id: 1 }, [])).toBeNull()
  })
})

for (const database of DATABASES) {
  describeService(database.down, `${database.name}: updateMany and deleteMany without a read of the rows`, () => {
    let db: TestDb
    let cache: StockCache
    /** The plain client whose statements are logged; the extension is applied over it. */
    let logged: { $disconnect(): Promise<void> }
    let prisma: Client
    const statements: string[] = []
    /** Every markDirty the extension made: [products, in a transaction scope?]. */
    const markCalls: Array<[string[], boolean]> = []
    const errors: StockcastError[] = []
    let n = 0
    let p: (s: string) => string

    beforeAll(async () => {
      db = await database.open()
      // The cache reads through the test database's own client: its reads are not in the log.
      ;({ cache } = stack(db, erpSchema, HOLD_MARKS))
      const client = new PrismaClient({ adapter: db.adapter(), log: [{ emit: 'event', level: 'query' }] })
      client.$on('query', (e) => statements.push(e.query))
      logged = client
      prisma = client.$extends(
        stockcastExtension({
          cache: {
            markDirty: (products, options) => {
              markCalls.push([[...products], options?.tx !== undefined])
              return cache.markDirty(products, options)
            },
            transaction: () => cache.transaction(),
          },
          schema: erpSchema,
          onError: (e) => errors.push(e),
        }),
      ) as unknown as Client
    })
    afterAll(async () => {
      await cache?.close()
      await logged?.$disconnect()
      await db?.close()
    })
    beforeEach(() => {
      const id = ++n
      p = (s) => `${s}-${id}`
      errors.length = 0
    })

    const move = (productCode: string, quantity: number, note: string | null = null) =>
      db.prisma.stockMove.create({ data: { productCode, quantity, note } })
    const { prime, markedOf, truthMatches } = markProbes(
      () => cache,
      () => errors,
    )
    /** The row statements `fn` issues, by verb (`SELECT`, `UPDATE`...), in order. */
    const statementsOf = async <T>(fn: () => Promise<T>): Promise<{ result: T; verbs: string[]; sql: string[] }> => {
      statements.length = 0
      markCalls.length = 0
      const result = await fn()
      const sql = statements.filter(isRowStatement)
      return { result, verbs: sql.map(verbOf), sql }
    }

    type Mode = 'outside' | 'interactive' | 'interactive, rolled back' | 'batch'
    /** Run one operation in a mode; inside an interactive transaction nothing is marked before the commit. */
    const runIn = async (mode: Mode, op: (c: Client) => Prisma.PrismaPromise<unknown>, watch: string[]) => {
      if (mode === 'outside') return op(prisma)
      if (mode === 'batch') return (await prisma.$transaction([op(prisma)]))[0]
      let result: unknown
      const run = prisma.$transaction(async (tx) => {
        result = await op(tx as unknown as Client)
        expect(markedOf(watch)).toEqual([])
        if (mode === 'interactive, rolled back') throw new Error('roll back')
      })
      if (mode === 'interactive, rolled back') await expect(run).rejects.toThrow('roll back')
      else await run
      return result
    }
    const MODES: Mode[] = ['outside', 'interactive', 'interactive, rolled back', 'batch']

    describe('updateMany whose where pins the product: no read', () => {
      for (const mode of MODES) {
        it(`${mode}: marks the pinned products, and the product the data moves rows to`, async () => {
          const tag = p('tag')
          await move(p('A'), 1, tag)
          await move(p('A'), 2, tag)
          await move(p('A'), 4, 'other')
          await move(p('B'), 8, tag)
          const all = [p('A'), p('B'), p('C'), p('D'), p('Z'), p('bystander')]
          await prime(all)
          const { result, verbs } = await statementsOf(() =>
            runIn(
              mode,
              (c) =>
                c.stockMove.updateMany({
                  where: { productCode: { in: [p('A'), p('B'), p('Z')] }, note: tag },
                  data: { productCode: p('C') },
                }),
              all,
            ),
          )
          expect(verbs).toEqual(['UPDATE'])
          const rolledBack = mode === 'interactive, rolled back'
          if (!rolledBack) expect(result).toEqual({ count: 3 })
          // Z matches no row: marked all the same (over-marking is harmless).
          expect(markedOf(all)).toEqual(rolledBack ? [] : [p('A'), p('B'), p('C'), p('Z')])
          const moved = await db.prisma.stockMove.count({ where: { productCode: p('C') } })
          expect(moved).toBe(rolledBack ? 0 : 3)
          await truthMatches(all)
        })
      }

      it('a plain value and { equals } pin too; a write that keeps the product marks only the pinned one', async () => {
        await move(p('A'), 1)
        await move(p('B'), 1)
        const all = [p('A'), p('B'), p('bystander')]
        await prime(all)
        const plain = await statementsOf(() =>
          prisma.stockMove.updateMany({ where: { productCode: p('A') }, data: { quantity: 5, note: 'x' } }),
        )
        expect(plain.verbs).toEqual(['UPDATE'])
        expect(plain.result).toEqual({ count: 1 })
        expect(markedOf(all)).toEqual([p('A')])
        const equals = await statementsOf(() =>
          prisma.stockMove.updateMany({ where: { productCode: { equals: p('B') } }, data: { quantity: 6 } }),
        )
        expect(equals.verbs).toEqual(['UPDATE'])
        expect(markedOf(all)).toEqual([p('A'), p('B')])
        await truthMatches(all)
      })

      it('a where that does not pin the product keeps the read', async () => {
        await move(p('A'), 1, p('n'))
        await move(p('a'), 1, p('n'))
        const all = [p('A'), p('a')]
        const wheres: Prisma.StockMoveWhereInput[] = [
          { productCode: { equals: p('A'), mode: 'insensitive' } },
          { productCode: { not: p('B') }, note: p('n') },
          { OR: [{ productCode: p('A') }, { productCode: p('a') }] },
          { AND: [{ productCode: p('A') }] },
          { productCode: { startsWith: p('A') } },
        ]
        for (const where of wheres) {
          await prime(all)
          // The data changes the product column: not the updateManyAndReturn path either.
          const { verbs } = await statementsOf(() =>
            prisma.stockMove.updateMany({ where, data: { productCode: { set: p('A') } } }),
          )
          expect(verbs, JSON.stringify(where)).toEqual(['SELECT', 'UPDATE'])
          await cache.flush()
        }
        await truthMatches(all)
      })
    })

    describe('deleteMany whose where pins the product: no read', () => {
      for (const mode of MODES) {
        it(`${mode}: marks the pinned products`, async () => {
          await move(p('A'), 1, 'del')
          await move(p('A'), 2)
          await move(p('B'), 3, 'del')
          const all = [p('A'), p('B'), p('bystander')]
          await prime(all)
          const { result, verbs } = await statementsOf(() =>
            runIn(mode, (c) => c.stockMove.deleteMany({ where: { productCode: { in: [p('A'), p('B')] } } }), all),
          )
          expect(verbs).toEqual(['DELETE'])
          const rolledBack = mode === 'interactive, rolled back'
          if (!rolledBack) expect(result).toEqual({ count: 3 })
          expect(markedOf(all)).toEqual(rolledBack ? [] : [p('A'), p('B')])
          await truthMatches(all)
        })
      }

      it('a model a delete cascades from keeps the read; so does a where that does not pin the product', async () => {
        const o = await db.prisma.order.create({
          data: { code: p('O'), items: { create: [{ productCode: p('A'), qty: 2, shipDate: SHIP }] } },
        })
        await move(p('B'), 1, p('tag'))
        await prime([p('A'), p('B')])
        const cascade = await statementsOf(() => prisma.order.deleteMany({ where: { id: o.id } }))
        expect(cascade.verbs.at(-1)).toBe('DELETE')
        expect(cascade.verbs.filter((v) => v === 'SELECT').length).toBeGreaterThanOrEqual(1)
        const unpinned = await statementsOf(() => prisma.stockMove.deleteMany({ where: { note: p('tag') } }))
        expect(unpinned.verbs).toEqual(['SELECT', 'DELETE'])
        expect(markedOf([p('A'), p('B')])).toEqual([p('A'), p('B')])
        await truthMatches([p('A'), p('B')])
      })
    })

    describe('updateMany that moves no row to another product: one updateManyAndReturn', () => {
      for (const mode of MODES) {
        it(`${mode}: marks the products of the rows it wrote`, async () => {
          const a = await move(p('A'), 1)
          const b = await move(p('B'), 2)
          await move(p('A'), 4)
          const c = await move(p('C'), 8)
          const all = [p('A'), p('B'), p('C'), p('bystander')]
          await prime(all)
          const ids = [a.id, b.id, -1]
          const { result, verbs, sql } = await statementsOf(() =>
            runIn(mode, (cl) => cl.stockMove.updateMany({ where: { id: { in: ids } }, data: { quantity: 7 } }), all),
          )
          const rolledBack = mode === 'interactive, rolled back'
          if (mode === 'batch') {
            // A batch is one statement list: it cannot run another operation, the read stays (before the batch).
            expect(verbs).toEqual(['SELECT', 'UPDATE'])
          } else {
            expect(verbs).toEqual(['UPDATE'])
            expect(sql[0]).toMatch(/RETURNING/i)
          }
          if (!rolledBack) expect(result).toEqual({ count: 2 })
          expect(markedOf(all)).toEqual(rolledBack ? [] : [p('A'), p('B')])
          expect(Number((await db.prisma.stockMove.findUniqueOrThrow({ where: { id: c.id } })).quantity)).toBe(8)
          await truthMatches(all)
        })
      }

      it('inside an interactive transaction the marks are made once, held in the transaction', async () => {
        const a = await move(p('A'), 1)
        await prime([p('A')])
        const { verbs } = await statementsOf(() =>
          prisma.$transaction(async (tx) => {
            await tx.stockMove.updateMany({ where: { id: a.id }, data: { note: 'held' } })
          }),
        )
        expect(verbs).toEqual(['UPDATE'])
        // One mark, inside the transaction's scope: the updateManyAndReturn it ran through the transaction client
        // was not marked a second time by the extension it re-entered.
        expect(markCalls).toEqual([[[p('A')], true]])
        expect(markedOf([p('A')])).toEqual([p('A')])
      })

      it('honours limit, and returns { count } as updateMany does', async () => {
        await move(p('A'), 1, p('tag'))
        await move(p('B'), 1, p('tag'))
        await move(p('C'), 1, p('tag'))
        const all = [p('A'), p('B'), p('C')]
        await prime(all)
        const { result, verbs } = await statementsOf(() =>
          prisma.stockMove.updateMany({ where: { note: p('tag') }, data: { quantity: 3 }, limit: 2 }),
        )
        expect(verbs).toEqual(['UPDATE'])
        expect(result).toEqual({ count: 2 })
        expect(await db.prisma.stockMove.count({ where: { note: p('tag'), quantity: 3 } })).toBe(2)
        expect(markedOf(all)).toHaveLength(2) // exactly the two rows written
        await truthMatches(all)
      })

      it('an updateMany that changes the product keeps the read (old and new marked)', async () => {
        const a = await move(p('A'), 1)
        await prime([p('A'), p('B')])
        const { verbs } = await statementsOf(() =>
          prisma.stockMove.updateMany({ where: { id: { in: [a.id] } }, data: { productCode: p('B') } }),
        )
        expect(verbs).toEqual(['SELECT', 'UPDATE'])
        expect(markedOf([p('A'), p('B')])).toEqual([p('A'), p('B')])
        await truthMatches([p('A'), p('B')])
      })

      it('a related table: the related query runs once, on the rows written, after the write', async () => {
        const o = await db.prisma.order.create({
          data: { code: p('O'), items: { create: [{ productCode: p('A'), qty: 2, shipDate: SHIP }] } },
        })
        await db.prisma.order.create({
          data: { code: p('P'), items: { create: [{ productCode: p('B'), qty: 2, shipDate: SHIP }] } },
        })
        const all = [p('A'), p('B')]
        await prime(all)
        const outside = await statementsOf(() =>
          prisma.order.updateMany({ where: { code: { in: [p('O')] } }, data: { status: 'SHIPPED' } }),
        )
        expect(outside.verbs).toEqual(['UPDATE', 'SELECT'])
        expect(outside.result).toEqual({ count: 1 })
        expect(markedOf(all)).toEqual([p('A')])
        await truthMatches(all)
        await prime(all)
        const inside = await statementsOf(() =>
          prisma.$transaction(async (tx) => {
            await tx.order.updateMany({ where: { id: o.id }, data: { status: 'OPEN' } })
            expect(markedOf(all)).toEqual([])
          }),
        )
        expect(inside.verbs).toEqual(['UPDATE', 'SELECT'])
        expect(markCalls).toEqual([[[p('A')], true]])
        expect(markedOf(all)).toEqual([p('A')])
        await truthMatches(all)
      })
    })

    it('a nested transaction (savepoint): its marks go when it rolls back, and wait for the outer commit', async () => {
      if (db.kind === 'pglite') return // pglite-prisma-adapter has no savepoints (Prisma refuses nested transactions)
      const a = await move(p('A'), 1)
      const b = await move(p('B'), 1)
      await prime([p('A'), p('B')])
      await prisma.$transaction(async (tx) => {
        await expect(
          tx.$transaction(async (inner) => {
            await inner.stockMove.updateMany({ where: { id: { in: [a.id] } }, data: { quantity: 5 } })
            throw new Error('inner')
          }),
        ).rejects.toThrow('inner')
        const { verbs } = await statementsOf(() =>
          tx.$transaction(async (inner) => {
            await inner.stockMove.updateMany({ where: { id: { in: [b.id] } }, data: { quantity: 6 } })
          }),
        )
        expect(verbs).toEqual(['UPDATE'])
        expect(markedOf([p('A'), p('B')])).toEqual([])
      })
      expect(markedOf([p('A'), p('B')])).toEqual([p('B')])
      await truthMatches([p('A'), p('B')])
    })

    it('a client whose provider cannot be read keeps the read (unknown: no updateManyAndReturn, no pinned where)', async () => {
      // The same client with Prisma's provider field hidden, as a Prisma release that moved it would look.
      const hidden = new Proxy(logged, {
        get: (target, key) => (key === '_activeProvider' ? undefined : Reflect.get(target, key)),
      }) as unknown as PrismaClient
      const unknown = hidden.$extends(stockcastExtension({ cache, schema: erpSchema }))
      const a = await move(p('A'), 1)
      await prime([p('A'), p('B')])
      const byId = await statementsOf(() =>
        unknown.stockMove.updateMany({ where: { id: { in: [a.id] } }, data: { quantity: 2 } }),
      )
      expect(byId.verbs).toEqual(['SELECT', 'UPDATE'])
      const pinned = await statementsOf(() =>
        unknown.stockMove.updateMany({ where: { productCode: p('A') }, data: { productCode: p('B') } }),
      )
      expect(pinned.verbs).toEqual(['SELECT', 'UPDATE'])
      expect(markedOf([p('A'), p('B')])).toEqual([p('A'), p('B')])
      await truthMatches([p('A'), p('B')])
    })

    it('validate() finds no mismatch after a mixed sequence', async () => {
      const products = ['A', 'B', 'C', 'D', 'E'].map(p)
      const rows: Array<{ id: number }> = []
      for (const [i, x] of products.entries()) rows.push(await move(x, 10 + i, i % 2 === 0 ? 'even' : 'odd'))
      const o = await db.prisma.order.create({
        data: { code: p('O'), items: { create: [{ productCode: p('E'), qty: 3, shipDate: day('2000-01-01') }] } },
      })
      await cache.getMany(products)
      await prisma.stockMove.createMany({ data: products.map((x) => ({ productCode: x, quantity: 1, note: 'even' })) })
      await prisma.stockMove.updateMany({ where: { productCode: p('A') }, data: { productCode: p('B') } })
      await prisma.stockMove.updateMany({ where: { id: { in: [rows[2]!.id, rows[3]!.id] } }, data: { quantity: 100 } })
      await prisma.$transaction(async (tx) => {
        await tx.stockMove.updateMany({ where: { productCode: { in: [p('B'), p('C')] } }, data: { quantity: 2 } })
        await tx.stockMove.updateMany({ where: { note: 'odd', productCode: { in: products } }, data: { quantity: 5 } })
        await tx.order.updateMany({ where: { id: o.id }, data: { status: 'SHIPPED' } })
      })
      await expect(
        prisma.$transaction(async (tx) => {
          await tx.stockMove.updateMany({ where: { id: rows[4]!.id }, data: { quantity: 1000 } })
          await tx.stockMove.deleteMany({ where: { productCode: p('D') } })
          throw new Error('roll back')
        }),
      ).rejects.toThrow('roll back')
      await prisma.$transaction([
        prisma.stockMove.updateMany({ where: { id: { in: [rows[1]!.id] } }, data: { quantity: 0 } }),
        prisma.stockMove.deleteMany({ where: { productCode: { equals: p('C') } } }),
      ])
      await prisma.stockMove.deleteMany({ where: { productCode: p('D'), note: 'even' } })
      await prisma.stockMove.deleteMany({ where: { note: 'odd', productCode: { in: products } } })
      await truthMatches(products)
    })
  })
}
