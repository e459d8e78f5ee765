import { Sequelize, type Transaction } from 'sequelize'
import type { StockCache } from 'stockcast'
import { afterAll, beforeAll, describe, it } from 'vitest'
import type { DetachSequelize } from '../src/index.js'
import { AlsNamespace } from './cls.js'
import {
  day,
  expectMarked,
  expectTruth,
  expectUnmarked,
  type OpsModels,
  opsModels,
  opsSchema,
  skus,
  warm,
} from './fixtures.js'
import { HOLD_MARKS, sequelizeCache, type TestDb, testDb } from './helpers.js'
import { DIALECTS, describeService, downOf, labelOf } from './services.js'

/**
 * Every write operation inside a transaction: nothing marked before the commit, its products marked after it, and
 * nothing marked when the transaction rolls back. Explicit (`{ transaction }`) and CLS (no option passed).
 */
type Write = (tx: Transaction | undefined) => Promise<unknown>
interface Case {
  name: string
  /** Committed setup (outside the transaction); returns the write and the products it must mark. */
  setup(m: OpsModels, p: string[]): Promise<{ write: Write; marks: string[] }>
}

const cases: Case[] = [
  {
    name: 'create',
    setup: async (m, [a]) => ({
      write: (tx) => m.Movement.create({ product: a, qty: 1 }, { transaction: tx }),
      marks: [a!],
    }),
  },
  {
    name: 'instance update with a key change',
    setup: async (m, [a, b]) => {
      const row = await m.Movement.create({ product: a, qty: 1 })
      return { write: (tx) => row.update({ product: b, qty: 2 }, { transaction: tx }), marks: [a!, b!] }
    },
  },
  {
    name: 'instance destroy',
    setup: async (m, [a]) => {
      const row = await m.Movement.create({ product: a, qty: 1 })
      return { write: (tx) => row.destroy({ transaction: tx }), marks: [a!] }
    },
  },
  {
    name: 'upsert over a row of another product',
    setup: async (m, [a, b]) => {
      const row = await m.Movement.create({ product: a, qty: 1, ref: `${a}-u` })
      return {
        write: (tx) => m.Movement.upsert({ id: row.get('id'), product: b, qty: 3, ref: `${a}-u` }, { transaction: tx }),
        marks: [a!, b!],
      }
    },
  },
  {
    name: 'bulkCreate',
    setup: async (m, [a, b]) => ({
      write: (tx) =>
        m.Movement.bulkCreate(
          [
            { product: a, qty: 1 },
            { product: b, qty: 2 },
          ],
          { transaction: tx },
        ),
      marks: [a!, b!],
    }),
  },
  {
    name: 'bulkCreate with updateOnDuplicate',
    setup: async (m, [a, b]) => {
      const row = await m.Movement.create({ product: a, qty: 1, ref: `${a}-d` })
      return {
        write: (tx) =>
          m.Movement.bulkCreate([{ id: row.get('id'), product: b, qty: 5, ref: `${a}-d` }], {
            updateOnDuplicate: ['product', 'qty'],
            transaction: tx,
          }),
        marks: [a!, b!],
      }
    },
  },
  ...[false, true].flatMap((individualHooks): Case[] => [
    {
      name: `Model.update with a where${individualHooks ? ' (individualHooks)' : ''}`,
      setup: async (m, [a, b]) => {
        await m.Movement.create({ product: a, qty: 1 })
        return {
          write: (tx) => m.Movement.update({ product: b }, { where: { product: a }, individualHooks, transaction: tx }),
          marks: [a!, b!],
        }
      },
    },
    {
      name: `Model.destroy with a where${individualHooks ? ' (individualHooks)' : ''}`,
      setup: async (m, [a]) => {
        await m.Movement.create({ product: a, qty: 1 })
        return {
          write: (tx) => m.Movement.destroy({ where: { product: a }, individualHooks, transaction: tx }),
          marks: [a!],
        }
      },
    },
  ]),
  {
    name: 'increment (static) and decrement (instance)',
    setup: async (m, [a, b]) => {
      await m.Movement.create({ product: a, qty: 1 })
      const row = await m.Movement.create({ product: b, qty: 5 })
      return {
        write: async (tx) => {
          await m.Movement.increment('qty', { by: 2, where: { product: a }, transaction: tx })
          await row.decrement('qty', { by: 1, transaction: tx })
        },
        marks: [a!, b!],
      }
    },
  },
  {
    name: 'paranoid: soft delete and restore (instance and Model)',
    setup: async (m, [a, b]) => {
      await m.Batch.create({ code: `B${a}` })
      const la = await m.Line.create({ productCode: a, openQty: 1, shipDate: day(1), batchCode: `B${a}` })
      const lb = await m.Line.create({ productCode: b, openQty: 1, shipDate: day(1), batchCode: `B${a}` })
      await lb.destroy()
      return {
        write: async (tx) => {
          await la.destroy({ transaction: tx })
          await m.Line.restore({ where: { productCode: b }, transaction: tx })
        },
        marks: [a!, b!],
      }
    },
  },
  {
    name: 'related table (a batch status change)',
    setup: async (m, [a, b]) => {
      const batch = await m.Batch.create({ code: `R${a}` })
      await m.Line.create({ productCode: a, openQty: 1, shipDate: day(1), batchCode: `R${a}` })
      await m.Line.create({ productCode: b, openQty: 1, shipDate: day(2), batchCode: `R${a}` })
      return { write: (tx) => batch.update({ status: 'SHIPPED' }, { transaction: tx }), marks: [a!, b!] }
    },
  },
]

for (const dialect of DIALECTS) {
  describeService(downOf(dialect), `every operation in a transaction on ${labelOf(dialect)}`, () => {
    let t: TestDb
    let sequelize: Sequelize
    let m: OpsModels
    let cache: StockCache
    let detach: DetachSequelize

    beforeAll(async () => {
      t = await testDb(dialect)
      sequelize = t.sequelize
      m = await opsModels(sequelize)
      ;({ cache, detach } = sequelizeCache(sequelize, opsSchema, HOLD_MARKS))
    })
    afterAll(async () => {
      detach?.()
      await cache?.close()
      await t?.close()
    })

    const run = async (c: Case, mode: 'explicit' | 'cls', outcome: 'commit' | 'rollback') => {
      const products = skus(3)
      const { write, marks } = await c.setup(m, products)
      await warm(cache, products)
      const body = async (tx: Transaction) => {
        await write(mode === 'explicit' ? tx : undefined)
        expectUnmarked(cache, products)
        if (outcome === 'rollback') throw new Error('roll back')
      }
      await sequelize.transaction(body).catch((e: Error) => {
        if (e.message !== 'roll back') throw e
      })
      if (outcome === 'commit') {
        expectMarked(cache, marks)
        expectUnmarked(
          cache,
          products.filter((p) => !marks.includes(p)),
        )
      } else expectUnmarked(cache, products)
      await expectTruth(cache, products)
    }

    describe('explicit transaction', () => {
      for (const c of cases) {
        it(`${c.name}: marked after commit`, () => run(c, 'explicit', 'commit'))
        it(`${c.name}: nothing after rollback`, () => run(c, 'explicit', 'rollback'))
      }
    })

    describe('CLS transaction', () => {
      beforeAll(() => {
        Sequelize.useCLS(new AlsNamespace())
      })
      afterAll(() => {
        ;(Sequelize as unknown as { _cls?: unknown })._cls = undefined
      })
      for (const c of cases) {
        it(`${c.name}: marked after commit`, () => run(c, 'cls', 'commit'))
        it(`${c.name}: nothing after rollback`, () => run(c, 'cls', 'rollback'))
      }
    })
  })
}
