import { col, fn, Op, type Sequelize } from 'sequelize'
import type { StockCache } from 'stockcast'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DetachSequelize } from '../src/index.js'
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

// Every write operation, outside transactions (marks at once). Transactions: transactions.test.ts.
for (const dialect of DIALECTS) {
  describeService(downOf(dialect), `model operations on ${labelOf(dialect)}`, () => {
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

    const move = (product: string, qty: string | number, ref?: string) =>
      m.Movement.create({ product, qty, ...(ref === undefined ? {} : { ref }) })

    describe('instances', () => {
      it('create marks its product', async () => {
        const [a, b] = skus(2)
        await warm(cache, [a!, b!])
        await move(a!, '2.5')
        expectMarked(cache, [a!])
        expectUnmarked(cache, [b!])
        await expectTruth(cache, [a!, b!])
        expect((await cache.get(a!)).stockToday).toBe(2.5)
      })

      it('update marks its product; a key change marks the old and the new one', async () => {
        const [a, b, c] = skus(3)
        const row = await move(a!, 5)
        await warm(cache, [a!, b!, c!])
        await row.update({ qty: 7 })
        expectMarked(cache, [a!])
        expectUnmarked(cache, [b!, c!])
        await expectTruth(cache, [a!])
        await row.update({ product: b })
        expectMarked(cache, [a!, b!])
        expectUnmarked(cache, [c!])
        await expectTruth(cache, [a!, b!, c!])
        expect((await cache.get(b!)).stockToday).toBe(7)
        expect((await cache.get(a!)).stockToday).toBe(0)
      })

      it('save() after setting the key marks both products', async () => {
        const [a, b] = skus(2)
        const row = await move(a!, 3)
        await warm(cache, [a!, b!])
        row.set('product', b)
        await row.save()
        expectMarked(cache, [a!, b!])
        await expectTruth(cache, [a!, b!])
      })

      it('an instance loaded without the product column still marks it (read by primary key)', async () => {
        const [a] = skus(1)
        const { id } = (await move(a!, 4)).get() as { id: number }
        await warm(cache, [a!])
        const partial = await m.Movement.findByPk(id, { attributes: ['id', 'qty'] })
        await partial!.update({ qty: 9 })
        expectMarked(cache, [a!])
        await expectTruth(cache, [a!])
      })

      it('a computed product (fn) marks the old product and the product the row now holds', async () => {
        const [a] = skus(1)
        const row = await move(a!, 4)
        await warm(cache, [a!, `${a}-X`])
        await row.update({ product: fn('concat', col('sku'), '-X') })
        expectMarked(cache, [a!, `${a}-X`])
        await expectTruth(cache, [a!, `${a}-X`])
      })

      it('destroy marks its product', async () => {
        const [a] = skus(1)
        const row = await move(a!, 4)
        await warm(cache, [a!])
        await row.destroy()
        expectMarked(cache, [a!])
        await expectTruth(cache, [a!])
        expect((await cache.get(a!)).stockToday).toBe(0)
      })

      it('increment and decrement (instance and static) mark the product', async () => {
        const [a, b] = skus(2)
        const row = await move(a!, 1)
        await warm(cache, [a!, b!])
        await row.increment('qty', { by: 2 })
        expectMarked(cache, [a!])
        expectUnmarked(cache, [b!])
        await expectTruth(cache, [a!])
        await m.Movement.decrement({ qty: 1 }, { where: { product: a } })
        expectMarked(cache, [a!])
        await expectTruth(cache, [a!])
        expect((await cache.get(a!)).stockToday).toBe(2)
      })
    })

    describe('upsert and bulkCreate', () => {
      it('upsert of a new row marks its product', async () => {
        const [a] = skus(1)
        await warm(cache, [a!])
        await m.Movement.upsert({ product: a, qty: 3, ref: `${a}-r` })
        expectMarked(cache, [a!])
        await expectTruth(cache, [a!])
      })

      it('upsert over an existing row (by primary key or unique key) marks the old and the new product', async () => {
        const [a, b, c] = skus(3)
        const row = await move(a!, 3, `${a}-r`)
        await warm(cache, [a!, b!, c!])
        await m.Movement.upsert({ id: row.get('id'), product: b, qty: 4, ref: `${a}-r` })
        expectMarked(cache, [a!, b!])
        expectUnmarked(cache, [c!])
        await expectTruth(cache, [a!, b!, c!])
        await m.Movement.upsert({ product: c, qty: 5, ref: `${a}-r` }, { conflictFields: ['ref'] })
        expectMarked(cache, [b!, c!])
        await expectTruth(cache, [a!, b!, c!])
      })

      it('bulkCreate marks every product, without individual hooks', async () => {
        const ps = skus(5)
        await warm(cache, ps)
        await m.Movement.bulkCreate(
          ps.flatMap((p) => [
            { product: p, qty: 1 },
            { product: p, qty: 2 },
          ]),
        )
        expectMarked(cache, ps)
        await expectTruth(cache, ps)
        expect((await cache.get(ps[0]!)).stockToday).toBe(3)
      })

      it('bulkCreate with updateOnDuplicate marks the product an updated row held before', async () => {
        const [a, b, c] = skus(3)
        const row = await move(a!, 3, `${a}-u`)
        await warm(cache, [a!, b!, c!])
        await m.Movement.bulkCreate(
          [
            { id: row.get('id'), product: b, qty: 6, ref: `${a}-u` },
            { product: c, qty: 1 },
          ],
          { updateOnDuplicate: ['product', 'qty'] },
        )
        expectMarked(cache, [a!, b!, c!])
        await expectTruth(cache, [a!, b!, c!])
      })
    })

    describe('Model.update / Model.destroy with a where', () => {
      for (const individualHooks of [false, true]) {
        it(`update (individualHooks: ${individualHooks}) marks the rows' products; a new key marks both`, async () => {
          const [a, b, c, d] = skus(4)
          await m.Movement.bulkCreate([
            { product: a, qty: 1, ref: `${a}-1` },
            { product: a, qty: 2, ref: `${a}-2` },
            { product: b, qty: 3, ref: `${b}-1` },
          ])
          await warm(cache, [a!, b!, c!, d!])
          await m.Movement.update({ qty: 10 }, { where: { ref: `${a}-1` }, individualHooks })
          expectMarked(cache, [a!])
          expectUnmarked(cache, [b!, c!, d!])
          await expectTruth(cache, [a!])
          await m.Movement.update({ product: c }, { where: { product: [a, b] }, individualHooks })
          expectMarked(cache, [a!, b!, c!])
          expectUnmarked(cache, [d!])
          await expectTruth(cache, [a!, b!, c!, d!])
          expect((await cache.get(c!)).stockToday).toBe(15)
        })

        it(`destroy (individualHooks: ${individualHooks}) marks the rows' products`, async () => {
          const [a, b] = skus(2)
          await m.Movement.bulkCreate([
            { product: a, qty: 1 },
            { product: b, qty: 2 },
          ])
          await warm(cache, [a!, b!])
          await m.Movement.destroy({ where: { product: a }, individualHooks })
          expectMarked(cache, [a!])
          expectUnmarked(cache, [b!])
          await expectTruth(cache, [a!, b!])
        })
      }

      it('update with a computed key (fn) marks the old products and the new ones', async () => {
        const [a, b] = skus(2)
        await m.Movement.bulkCreate([
          { product: a, qty: 1 },
          { product: b, qty: 2 },
        ])
        await warm(cache, [a!, b!, `${a}-Z`, `${b}-Z`])
        await m.Movement.update({ product: fn('concat', col('sku'), '-Z') }, { where: { product: [a, b] } })
        expectMarked(cache, [a!, b!, `${a}-Z`, `${b}-Z`])
        await expectTruth(cache, [a!, b!, `${a}-Z`, `${b}-Z`])
      })

      it('a scoped model (Model.scope) is captured like its model; the scope limits the rows', async () => {
        const [a, b, c] = skus(3)
        await m.Movement.bulkCreate([
          { product: a, qty: 1 },
          { product: a, qty: 20 },
          { product: c, qty: 1 },
        ])
        if (!m.Movement.options.scopes?.big) m.Movement.addScope('big', { where: { qty: { [Op.gte]: 10 } } })
        await warm(cache, [a!, b!, c!])
        await m.Movement.scope('big').update({ product: b }, { where: { product: [a, c] } })
        expectMarked(cache, [a!, b!])
        expectUnmarked(cache, [c!])
        await expectTruth(cache, [a!, b!, c!])
        expect((await cache.get(b!)).stockToday).toBe(20)
      })

      it('truncate marks every product of the table', async () => {
        const t2 = await testDb(dialect)
        try {
          const m2 = await opsModels(t2.sequelize)
          const { cache: c2, detach: d2 } = sequelizeCache(t2.sequelize, opsSchema, HOLD_MARKS)
          const ps = skus(3)
          await m2.Movement.bulkCreate(ps.map((p) => ({ product: p, qty: 1 })))
          await warm(c2, ps)
          await m2.Movement.truncate()
          expectMarked(c2, ps)
          await expectTruth(c2, ps)
          d2()
          await c2.close()
        } finally {
          await t2.close()
        }
      })
    })

    describe('paranoid models and related tables', () => {
      const line = (productCode: string, batchCode: string, openQty = 2) =>
        m.Line.create({ productCode, openQty, shipDate: day(1), batchCode })

      it('soft delete and restore (instance and bulk) mark the product', async () => {
        const [a, b] = skus(2)
        const batch = `B${a}`
        await m.Batch.create({ code: batch })
        const l = await line(a!, batch)
        await line(b!, batch)
        await warm(cache, [a!, b!])
        expect((await cache.get(a!)).days[1]!.closing).toBe(-2)
        await l.destroy()
        expectMarked(cache, [a!])
        expectUnmarked(cache, [b!])
        expect((await cache.get(a!)).days[1]!.closing).toBe(0)
        await l.restore()
        expectMarked(cache, [a!])
        expect((await cache.get(a!)).days[1]!.closing).toBe(-2)
        await m.Line.destroy({ where: { batchCode: batch } })
        expectMarked(cache, [a!, b!])
        await expectTruth(cache, [a!, b!])
        await m.Line.restore({ where: { productCode: b } })
        expectMarked(cache, [b!])
        expectUnmarked(cache, [a!])
        await expectTruth(cache, [a!, b!])
        await m.Line.destroy({ where: { productCode: b }, force: true })
        expectMarked(cache, [b!])
        await expectTruth(cache, [a!, b!])
      })

      it('a change to a related table marks the products its query finds (old and new parameters)', async () => {
        const [a, b, c] = skus(3)
        const [b1, b2] = [`B1${a}`, `B2${a}`]
        const batch = await m.Batch.create({ code: b1 })
        await m.Batch.create({ code: b2 })
        await line(a!, b1)
        await line(b!, b1)
        await line(c!, b2)
        await warm(cache, [a!, b!, c!])
        await batch.update({ status: 'SHIPPED' })
        expectMarked(cache, [a!, b!])
        expectUnmarked(cache, [c!])
        expect((await cache.get(a!)).days[1]!.closing).toBe(0)
        await expectTruth(cache, [a!, b!, c!])
        // A renamed batch: lines of the old code and of the new code.
        await batch.update({ code: b2, status: 'OPEN' })
        expectMarked(cache, [a!, b!, c!])
        await expectTruth(cache, [a!, b!, c!])
        // Both batches are coded b2 now: lines of b1 (a, b) belong to no batch.
        await m.Batch.update({ status: 'CLOSED' }, { where: { code: [b1, b2] } })
        expectMarked(cache, [c!])
        expectUnmarked(cache, [a!, b!])
        await expectTruth(cache, [a!, b!, c!])
        await m.Batch.update({ code: b1 }, { where: { code: b2 } })
        expectMarked(cache, [a!, b!, c!])
        await expectTruth(cache, [a!, b!, c!])
        await m.Batch.destroy({ where: { code: b1 } })
        expectMarked(cache, [a!, b!])
        expectUnmarked(cache, [c!])
        await expectTruth(cache, [a!, b!, c!])
      })
    })

    describe('failures', () => {
      it('a failed write (constraint violation) marks nothing', async () => {
        const [a, b] = skus(2)
        await move(a!, 1, `${a}-dup`)
        await warm(cache, [a!, b!])
        await expect(move(b!, 1, `${a}-dup`)).rejects.toThrow()
        await expect(m.Movement.bulkCreate([{ product: b, qty: 1, ref: `${a}-dup` }])).rejects.toThrow()
        await expect(m.Movement.update({ qty: null }, { where: { product: a }, validate: false })).rejects.toThrow()
        await expect(m.Movement.update({ ref: `${a}-dup` }, { where: { product: b } })).resolves.toEqual([0])
        expectUnmarked(cache, [a!, b!])
        await expectTruth(cache, [a!, b!])
      })
    })
  })
}
