import { DataTypes, Model, type Sequelize } from 'sequelize'
import { ConfigError, createStockCache, defineStockSchema, type StockCache } from 'stockcast'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { attachSequelize, RAW_WRITE_WARNING, sequelizeReader, UNMAPPED_MODEL_WARNING } from '../src/index.js'
import { expectMarked, expectTruth, expectUnmarked, opsModels, opsSchema, skus, warm } from './fixtures.js'
import { HOLD_MARKS, type TestDb, testDb, warningsWithCode } from './helpers.js'
import { DIALECTS, describeService, downOf, labelOf } from './services.js'

for (const dialect of DIALECTS) {
  describeService(downOf(dialect), `attachSequelize setup on ${labelOf(dialect)}`, () => {
    let t: TestDb
    let sequelize: Sequelize
    const caches: StockCache[] = []
    const newCache = (schema = opsSchema, on: Sequelize = sequelize) => {
      const c = createStockCache({ schema, reader: sequelizeReader(on, schema), ...HOLD_MARKS })
      caches.push(c)
      return c
    }

    beforeAll(async () => {
      t = await testDb(dialect)
      sequelize = t.sequelize
    })
    afterEach(async () => {
      for (const c of caches.splice(0)) await c.close()
    })
    afterAll(async () => {
      await t?.close()
    })

    it('checks its arguments', () => {
      const cache = newCache()
      expect(() => attachSequelize({} as never, cache, opsSchema)).toThrow(ConfigError)
      expect(() => attachSequelize(sequelize, {} as never, opsSchema)).toThrow(ConfigError)
      expect(() => attachSequelize(sequelize, cache, {} as never)).toThrow(ConfigError)
      expect(() => attachSequelize(sequelize, cache, opsSchema, { warnRawWrites: 1 as never })).toThrow(ConfigError)
    })

    it('a model of a schema table without an attribute for a named column: ConfigError now, or warning + failing writes later', async () => {
      const schema = defineStockSchema({ onHand: [{ table: 'bad_movements', product: 'sku', quantity: 'qty' }] })
      const cache = newCache(schema)
      const detach = attachSequelize(sequelize, cache, schema)
      const warnings: string[] = []
      const onWarning = (w: Error & { code?: string }) => {
        if (w.code === UNMAPPED_MODEL_WARNING) warnings.push(w.message)
      }
      process.on('warning', onWarning)
      try {
        const Bad = sequelize.define(
          'BadMovement',
          { qty: DataTypes.DECIMAL(18, 3) },
          { tableName: 'bad_movements', timestamps: false },
        )
        await Bad.sync()
        await new Promise((r) => setImmediate(r))
        expect(warnings[0]).toMatch(/model BadMovement \(table bad_movements\) has no attribute for column "sku"/)
        // Its writes fail before they run, rather than go uncaptured.
        await expect(Bad.create({ qty: 1 })).rejects.toThrow(ConfigError)
        expect(await Bad.count()).toBe(0)
      } finally {
        process.off('warning', onWarning)
        detach()
      }
      expect(() => attachSequelize(sequelize, cache, schema)).toThrow(/has no attribute for column "sku"/)
      sequelize.modelManager.removeModel(sequelize.models.BadMovement!)
    })

    it('models defined after attach (define and class init) are captured; detach stops it', async () => {
      const schema = defineStockSchema({
        onHand: [{ table: 'late_movements', product: 'product_code', quantity: 'qty' }],
      })
      const cache = newCache(schema)
      const detach = attachSequelize(sequelize, cache, schema)
      class LateMovement extends Model {}
      LateMovement.init(
        {
          id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
          productCode: { type: DataTypes.STRING(64), field: 'product_code' },
          qty: DataTypes.DECIMAL(18, 3),
        },
        { sequelize, tableName: 'late_movements', timestamps: false },
      )
      await LateMovement.sync()
      const [a, b] = skus(2)
      await warm(cache, [a!, b!])
      await LateMovement.create({ productCode: a, qty: 1 })
      await LateMovement.increment('qty', { by: 1, where: { productCode: a } })
      expectMarked(cache, [a!])
      await expectTruth(cache, [a!])
      detach()
      detach() // idempotent
      expect(Object.hasOwn(LateMovement, 'increment')).toBe(false)
      await LateMovement.create({ productCode: b, qty: 1 })
      await LateMovement.increment('qty', { by: 1, where: { productCode: a } })
      expectUnmarked(cache, [a!, b!])
    })

    // MySQL/MariaDB: Sequelize's `schema` option prefixes the table name in the current database instead.
    it.runIf(dialect === 'postgres')('matches schema-qualified tables', async () => {
      const other = `${t.name}_inv`
      await t.sql(`CREATE SCHEMA "${other}"`)
      try {
        const schema = defineStockSchema({
          onHand: [{ table: `${other}.q_movements`, product: 'sku', quantity: 'qty' }],
        })
        const cache = newCache(schema)
        const detach = attachSequelize(sequelize, cache, schema)
        const Q = sequelize.define(
          'QMovement',
          {
            id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
            sku: DataTypes.STRING(64),
            qty: DataTypes.DECIMAL(18, 3),
          },
          { tableName: 'q_movements', schema: other, timestamps: false },
        )
        await Q.sync()
        const [a] = skus(1)
        await warm(cache, [a!])
        await Q.create({ sku: a, qty: 2 })
        expectMarked(cache, [a!])
        await expectTruth(cache, [a!])
        expect((await cache.get(a!)).stockToday).toBe(2)
        detach()
      } finally {
        await t.sql(`DROP SCHEMA "${other}" CASCADE`)
      }
    })

    it('related queries: all-NULL parameters need no query, unless the query is written to match NULLs', async () => {
      const log: string[] = []
      const t2 = await testDb(dialect, { logging: (sql: string) => log.push(sql) })
      try {
        const s2 = t2.sequelize
        const NLine = s2.define(
          'NLine',
          { sku: DataTypes.STRING(64), qty: DataTypes.DECIMAL(18, 3), batch: DataTypes.STRING(16) },
          { tableName: 'n_lines', timestamps: false },
        )
        const NOrder = s2.define(
          'NOrder',
          { batch: DataTypes.STRING(16) },
          { tableName: 'n_orders', timestamps: false },
        )
        await NLine.sync()
        await NOrder.sync()
        const nullSafe = dialect === 'postgres' ? 'batch IS NOT DISTINCT FROM :batch' : 'batch <=> :batch'
        for (const [where, queried] of [
          ['batch = :batch', false],
          [nullSafe, true],
        ] as const) {
          const schema = defineStockSchema({
            onHand: [{ table: 'n_lines', product: 'sku', quantity: 'qty' }],
            related: [{ table: 'n_orders', products: `SELECT sku FROM n_lines WHERE ${where}` }],
          })
          const cache = newCache(schema, s2)
          const detach = attachSequelize(s2, cache, schema)
          try {
            const [a, b] = skus(2)
            await NLine.bulkCreate([
              { sku: a, qty: 1, batch: null },
              { sku: b, qty: 1, batch: 'B1' },
            ])
            await warm(cache, [a!, b!])
            log.length = 0
            await NOrder.create({ batch: null })
            expect(log.filter((q) => q.includes('FROM n_lines')).length, where).toBe(queried ? 1 : 0)
            if (queried) expectMarked(cache, [a!])
            else expectUnmarked(cache, [a!])
            expectUnmarked(cache, [b!])
            await NOrder.create({ batch: 'B1' })
            expectMarked(cache, [b!])
          } finally {
            detach()
          }
        }
      } finally {
        await t2.close()
      }
    })

    describe('raw writes', () => {
      it('warns once per table about writes no hook sees, never about model writes or its own queries', async () => {
        const m = await opsModels(sequelize)
        const cache = newCache()
        const detach = attachSequelize(sequelize, cache, opsSchema)
        try {
          const [a] = skus(1)
          const quiet = await warningsWithCode(RAW_WRITE_WARNING, async () => {
            const row = await m.Movement.create({ product: a, qty: 1 })
            await row.update({ qty: 2 })
            await m.Movement.update({ qty: 3 }, { where: { product: a } })
            await row.destroy()
            await m.Movement.bulkCreate([{ product: a, qty: 1 }])
            await m.Movement.destroy({ where: { product: a } })
            await m.Movement.update({ qty: 5 }, { where: { product: a }, individualHooks: true })
            await m.Movement.increment('qty', { where: { product: a } })
            const l = await m.Line.create({ productCode: a, openQty: 1, shipDate: '2030-01-01', batchCode: 'B' })
            await l.destroy()
            await l.restore()
            await m.Line.destroy({ where: { productCode: a } })
            await m.Line.restore({ where: { productCode: a } })
            await cache.get(a!)
            await sequelize.query('SELECT * FROM ops_movements')
          })
          expect(quiet).toEqual([])
          const loud = await warningsWithCode(RAW_WRITE_WARNING, async () => {
            await sequelize.query(`INSERT INTO ops_movements (sku, qty) VALUES ('${a}', 1)`)
            await sequelize.query(
              `/* why */ UPDATE "ops_movements" SET qty = 2 WHERE sku = '${a}'`.replaceAll(
                '"',
                dialect === 'postgres' ? '"' : '`',
              ),
            )
            const row = await m.Movement.findOne({ where: { product: a } })
            await sequelize.getQueryInterface().bulkInsert('ops_lines', [
              {
                product_code: a,
                open_qty: 1,
                ship_date: '2030-01-01',
                batch_code: 'B',
                created_at: new Date(),
                updated_at: new Date(),
              },
            ])
            await row!.destroy({ hooks: false })
          })
          expect(loud).toHaveLength(2) // once for ops_movements, once for ops_lines
          expect(loud[0]).toMatch(/a write to ops_movements went through raw SQL/)
          expect(loud[1]).toMatch(/a write to ops_lines went through raw SQL/)
          const t2 = await testDb(dialect)
          const m2 = await opsModels(t2.sequelize)
          const cache2 = newCache(opsSchema, t2.sequelize)
          const detach2 = attachSequelize(t2.sequelize, cache2, opsSchema)
          try {
            const hooksOff = await warningsWithCode(RAW_WRITE_WARNING, async () => {
              await m2.Movement.update({ qty: 5 }, { where: { product: a }, hooks: false })
              await m2.Movement.bulkCreate([{ product: a, qty: 1 }], { hooks: false })
            })
            expect(hooksOff).toHaveLength(1)
            expect(hooksOff[0]).toMatch(/a write to ops_movements ran with hooks: false/)
          } finally {
            detach2()
            await t2.close()
          }
        } finally {
          detach()
        }
        expect(Object.hasOwn(sequelize, 'query')).toBe(false)
      })

      it('warnRawWrites: false warns of nothing; sequelize.query is wrapped only on PostgreSQL (RETURNING)', async () => {
        await opsModels(sequelize)
        const cache = newCache()
        const detach = attachSequelize(sequelize, cache, opsSchema, { warnRawWrites: false })
        const [a] = skus(1)
        try {
          expect(Object.hasOwn(sequelize, 'query')).toBe(dialect === 'postgres')
          const quiet = await warningsWithCode(RAW_WRITE_WARNING, async () => {
            await sequelize.query(`INSERT INTO ops_movements (sku, qty) VALUES ('${a}', 1)`)
          })
          expect(quiet).toEqual([])
        } finally {
          detach()
        }
        expect(Object.hasOwn(sequelize, 'query')).toBe(false)
      })
    })
  })
}
