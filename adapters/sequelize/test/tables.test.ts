import { DataTypes, type Model, type ModelStatic, Sequelize } from 'sequelize'
import { type Cache, ConfigError, createCache } from 'stockcast'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { attachSequelizeTables, type DetachSequelizeTables, TABLES_FAILED_WARNING } from '../src/index.js'
import { AlsNamespace } from './cls.js'
import { type TestDb, testDb, warningsWithCode } from './helpers.js'
import { DIALECTS, describeService, downOf, labelOf } from './services.js'

type AnyModel = ModelStatic<Model<any, any>>

for (const dialect of DIALECTS) {
  describeService(downOf(dialect), `attachSequelizeTables on ${labelOf(dialect)}`, () => {
    let t: TestDb
    let sequelize: Sequelize
    let Order: AnyModel
    let Payment: AnyModel
    let cache: Cache
    /** Every `invalidate` the hooks made, in order (the tables of each call). */
    const seen: string[][] = []
    let detach: DetachSequelizeTables
    /** Calls of each cached function: a call that did not run is a value served from memory. */
    const calls = { orders: 0, payments: 0 }
    /** Committed row counts, read on a connection of their own (what another process would see). */
    let ordersCount: () => Promise<number>
    let paymentsCount: () => Promise<number>

    const count = async (table: string) => Number((await t.sql(`SELECT COUNT(*) AS n FROM ${table}`))[0]!.n)

    beforeAll(async () => {
      t = await testDb(dialect)
      sequelize = t.sequelize
      Order = sequelize.define(
        'Order',
        {
          id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
          code: { type: DataTypes.STRING(64), allowNull: false, unique: true },
          total: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
        },
        { tableName: 'orders', timestamps: false },
      )
      Payment = sequelize.define(
        'Payment',
        {
          id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
          amount: { type: DataTypes.INTEGER, allowNull: false },
        },
        { tableName: 'payments', paranoid: true, timestamps: true },
      )
      await Order.sync()
      await Payment.sync()
      // A clock that moves on every reading: an entry computed in the same millisecond as an invalidation counts as
      // outdated (the stamp wins ties), which would make "served from memory" depend on timing.
      let ms = Date.now()
      cache = createCache({ name: `tables-${dialect}`, clock: { now: () => ++ms } })
      ordersCount = cache.cached(
        async () => {
          calls.orders++
          return count('orders')
        },
        { key: 'orders-count', tables: ['orders'] },
      )
      paymentsCount = cache.cached(
        async () => {
          calls.payments++
          return count('payments')
        },
        { key: 'payments-count', tables: ['payments'] },
      )
      const recorder = {
        invalidate(target: { tables: string[] }) {
          seen.push([...target.tables].sort())
          return cache.invalidate(target)
        },
      }
      detach = attachSequelizeTables(sequelize, recorder)
    })
    afterAll(async () => {
      detach?.()
      await cache?.close()
      await t?.close()
    })
    beforeEach(async () => {
      // Both values cached, nothing recorded yet.
      await ordersCount()
      await paymentsCount()
      seen.length = 0
    })

    /** Both cached functions answer from memory: nothing was invalidated. */
    const expectCached = async () => {
      const before = { ...calls }
      await ordersCount()
      await paymentsCount()
      expect(calls).toEqual(before)
    }

    let n = 0
    const code = () => `${dialect}-${process.pid}-${++n}`

    it('every kind of model write invalidates its table at once, and only its table', async () => {
      const a = await Order.create({ code: code() })
      const writes: Array<[string, () => Promise<unknown>, string]> = [
        ['create', () => Order.create({ code: code() }), 'orders'],
        ['instance update', () => a.update({ total: 5 }), 'orders'],
        ['save', () => a.set({ total: 6 }).save(), 'orders'],
        ['Model.update', () => Order.update({ total: 7 }, { where: { id: a.get('id') } }), 'orders'],
        ['bulkCreate', () => Order.bulkCreate([{ code: code() }, { code: code() }]), 'orders'],
        ['upsert', () => Order.upsert({ code: code(), total: 1 }), 'orders'],
        ['Model.increment', () => Order.increment('total', { by: 2, where: { id: a.get('id') } }), 'orders'],
        ['instance decrement', () => a.decrement('total'), 'orders'],
        ['payment create', () => Payment.create({ amount: 3 }), 'payments'],
        ['payment destroy (soft)', () => Payment.destroy({ where: { amount: 3 } }), 'payments'],
        ['payment restore', () => Payment.restore({ where: { amount: 3 } }), 'payments'],
        ['instance destroy', () => a.destroy(), 'orders'],
        ['Model.destroy', () => Order.destroy({ where: { total: 1 } }), 'orders'],
        ['truncate', () => Payment.truncate({ force: true }), 'payments'],
      ]
      for (const [name, write, table] of writes) {
        seen.length = 0
        await write()
        expect(seen, name).toEqual([[table]])
      }
      // The values read again are the committed ones.
      expect(await ordersCount()).toBe(await count('orders'))
      expect(await paymentsCount()).toBe(0)
    })

    it('the cached value is recomputed after a write outside a transaction', async () => {
      const before = await ordersCount()
      await Order.create({ code: code() })
      expect(await ordersCount()).toBe(before + 1)
    })

    it('individualHooks: one invalidation for the statement, not one per row', async () => {
      await Order.bulkCreate([
        { code: code(), total: 40 },
        { code: code(), total: 40 },
        { code: code(), total: 40 },
      ])
      seen.length = 0
      await Order.update({ total: 41 }, { where: { total: 40 }, individualHooks: true })
      expect(seen).toEqual([['orders']])
      seen.length = 0
      await Order.destroy({ where: { total: 41 }, individualHooks: true })
      expect(seen).toEqual([['orders']])
    })

    describe('transactions', () => {
      it('unmanaged: nothing before commit (the values stay cached), both tables in one call after it', async () => {
        const o = await Order.create({ code: code() })
        seen.length = 0
        const before = await ordersCount()
        const tx = await sequelize.transaction()
        try {
          await Order.create({ code: code() }, { transaction: tx })
          await o.update({ total: 9 }, { transaction: tx })
          await Order.update({ total: 10 }, { where: { id: o.get('id') }, transaction: tx })
          await Payment.create({ amount: 1 }, { transaction: tx })
          await o.destroy({ transaction: tx })
          expect(seen).toEqual([])
          await expectCached()
          expect(await ordersCount()).toBe(before)
        } catch (e) {
          await tx.rollback() // an open transaction would hold its locks for the next tests
          throw e
        }
        await tx.commit()
        // commit() awaits afterCommit callbacks: the caches were told when it resolved.
        expect(seen).toEqual([['orders', 'payments']])
        expect(await ordersCount()).toBe(before) // +1 created, -1 destroyed
        expect(calls.orders).toBeGreaterThan(0)
        expect(await paymentsCount()).toBe(await count('payments'))
      })

      it('managed: the write is not seen before commit, and is right after', async () => {
        const before = await ordersCount()
        const runs = calls.orders
        await sequelize.transaction(async (tx) => {
          await Order.create({ code: code() }, { transaction: tx })
          expect(seen).toEqual([])
          await expectCached()
        })
        expect(seen).toEqual([['orders']])
        expect(await ordersCount()).toBe(before + 1)
        expect(calls.orders).toBeGreaterThan(runs)
      })

      it('a rolled-back transaction invalidates nothing (managed and unmanaged)', async () => {
        const o = await Order.create({ code: code() })
        await ordersCount()
        seen.length = 0
        await expect(
          sequelize.transaction(async (tx) => {
            await Order.create({ code: code() }, { transaction: tx })
            await Order.update({ total: 3 }, { where: { id: o.get('id') }, transaction: tx })
            await Payment.create({ amount: 2 }, { transaction: tx })
            throw new Error('roll back')
          }),
        ).rejects.toThrow('roll back')
        const tx = await sequelize.transaction()
        await o.destroy({ transaction: tx })
        await Order.bulkCreate([{ code: code() }], { transaction: tx })
        await tx.rollback()
        expect(seen).toEqual([])
        await expectCached()
      })

      it('savepoints: a rolled-back one drops its tables, a committed one waits for the outer commit', async () => {
        let inside: string[][] = []
        await sequelize.transaction(async (tx) => {
          await sequelize
            .transaction({ transaction: tx }, async (sp) => {
              await Payment.create({ amount: 4 }, { transaction: sp })
              throw new Error('inner')
            })
            .catch(() => {})
          await sequelize.transaction({ transaction: tx }, async (sp) => {
            await Order.create({ code: code() }, { transaction: sp })
          })
          inside = [...seen]
        })
        expect(inside).toEqual([])
        expect(seen).toEqual([['orders']])
      })

      it('a committed savepoint of a rolled-back transaction invalidates nothing', async () => {
        const tx = await sequelize.transaction()
        await sequelize.transaction({ transaction: tx }, async (sp) => {
          await Order.create({ code: code() }, { transaction: sp })
        })
        await tx.rollback()
        expect(seen).toEqual([])
        await expectCached()
      })

      it('a savepoint left open goes with the outer commit', async () => {
        const tx = await sequelize.transaction()
        const sp = await sequelize.transaction({ transaction: tx })
        await Payment.create({ amount: 5 }, { transaction: sp })
        await tx.commit()
        expect(seen).toEqual([['payments']])
      })
    })

    describe('CLS (Sequelize.useCLS with an AsyncLocalStorage namespace)', () => {
      beforeAll(() => {
        Sequelize.useCLS(new AlsNamespace())
      })
      afterAll(() => {
        ;(Sequelize as unknown as { _cls?: unknown })._cls = undefined
      })

      it('writes without a transaction option wait for the CLS transaction to commit', async () => {
        const before = await ordersCount()
        await sequelize.transaction(async () => {
          await Order.create({ code: code() })
          await Order.increment('total', { by: 1, where: { total: -1 } })
          expect(seen).toEqual([])
          await expectCached()
        })
        expect(seen).toEqual([['orders']])
        expect(await ordersCount()).toBe(before + 1)
      })

      it('a rolled-back CLS transaction invalidates nothing', async () => {
        await expect(
          sequelize.transaction(async () => {
            await Order.create({ code: code() })
            throw new Error('roll back')
          }),
        ).rejects.toThrow('roll back')
        expect(seen).toEqual([])
        await expectCached()
      })
    })

    describe('what the hooks do not see', () => {
      it('raw sequelize.query writes and hooks: false (sqlTableChanges of @stockcast/sql captures those)', async () => {
        await sequelize.query(`INSERT INTO orders (code, total) VALUES ('${code()}', 0)`)
        await Order.update({ total: 2 }, { where: { total: -5 }, hooks: false })
        expect(seen).toEqual([])
        await expectCached()
      })
    })

    describe('options and lifecycle', () => {
      const extra: Array<() => void> = []
      afterEach(() => {
        for (const d of extra.splice(0)) d()
      })

      it('tables: only the listed tables are watched; a createCache cache is taken as it is, one or an array', async () => {
        const other = createCache({ name: `tables-other-${dialect}` })
        let runs = 0
        const payments = other.cached(async () => ++runs, { key: 'p', tables: ['payments'] })
        const orders = other.cached(async () => ++runs, { key: 'o', tables: ['orders'] })
        extra.push(attachSequelizeTables(sequelize, [other], { tables: ['payments'] }))
        const p0 = await payments()
        const o0 = await orders()
        await Order.create({ code: code() })
        expect(await orders()).toBe(o0) // orders is not watched by this attachment
        await Payment.create({ amount: 6 })
        expect(await payments()).not.toBe(p0)
        await other.close()
      })

      it('detach removes the hooks and the increment wrapper (idempotent)', async () => {
        const recorded: string[][] = []
        const d = attachSequelizeTables(sequelize, {
          invalidate: async (x) => {
            recorded.push(x.tables)
          },
        })
        await Order.create({ code: code() })
        expect(recorded).toEqual([['orders']])
        d()
        d()
        await Order.create({ code: code() })
        await Order.increment('total', { where: { total: -1 } })
        expect(recorded).toEqual([['orders']])
        expect(seen.length).toBe(3) // the main attachment still works
      })

      it('a failing invalidate never fails the write: onError is told, else a process warning', async () => {
        const errors: Error[] = []
        const failing = {
          invalidate: async () => {
            throw new Error('store down')
          },
        }
        extra.push(attachSequelizeTables(sequelize, failing, { onError: (e) => errors.push(e) }))
        await Order.create({ code: code() })
        await sequelize.transaction(async (tx) => {
          await Order.create({ code: code() }, { transaction: tx })
        })
        expect(errors.map((e) => e.message)).toEqual(['store down', 'store down'])
        for (const d of extra.splice(0)) d()
        extra.push(attachSequelizeTables(sequelize, failing))
        const warnings = await warningsWithCode(TABLES_FAILED_WARNING, () => Order.create({ code: code() }))
        expect(warnings).toHaveLength(1)
        expect(warnings[0]).toContain('orders')
      })

      it('a closed cache is skipped silently', async () => {
        const closed = createCache({ name: `tables-closed-${dialect}` })
        await closed.close()
        await expect(closed.invalidate({ tables: ['orders'] })).rejects.toThrow()
        extra.push(attachSequelizeTables(sequelize, closed))
        const warnings = await warningsWithCode(TABLES_FAILED_WARNING, () => Order.create({ code: code() }))
        expect(warnings).toEqual([])
        expect(seen).toEqual([['orders']])
      })

      it('checks its arguments', () => {
        expect(() => attachSequelizeTables({} as never, cache)).toThrow(ConfigError)
        expect(() => attachSequelizeTables(sequelize, {} as never)).toThrow(ConfigError)
        expect(() => attachSequelizeTables(sequelize, [])).toThrow(ConfigError)
        expect(() => attachSequelizeTables(sequelize, cache, { tables: [''] })).toThrow(ConfigError)
        expect(() => attachSequelizeTables(sequelize, cache, { onError: 1 as never })).toThrow(ConfigError)
      })
    })
  })
}
