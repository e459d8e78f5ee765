import { QueryTypes, type Sequelize } from 'sequelize'
import { type StockCache, StockcastError } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { DetachSequelize } from '../src/index.js'
import { RETURNING_ROWS, ReturningRows, returnRowsOfBulkWrites } from '../src/returning.js'
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

/** The SQL statements `fn` sends through Sequelize (its `logging` option sees each one). */
async function statementsOf(sequelize: Sequelize, fn: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = []
  const options = (sequelize as unknown as { options: { logging?: unknown } }).options
  const before = options.logging
  options.logging = (sql: string) => seen.push(sql.replace(/^Executing \([^)]*\): /, ''))
  try {
    await fn()
  } finally {
    options.logging = before
  }
  return seen
}

// Bulk UPDATE/DELETE by a `where`: on PostgreSQL the statement returns its rows (one statement, no SELECT before it);
// on MariaDB the affected products are read first (two statements). Both mark the same products.
for (const dialect of DIALECTS) {
  describeService(downOf(dialect), `bulk statements by where on ${labelOf(dialect)}`, () => {
    let t: TestDb
    let sequelize: Sequelize
    let m: OpsModels
    let cache: StockCache
    let detach: DetachSequelize
    const pg = dialect === 'postgres'

    beforeAll(async () => {
      t = await testDb(dialect)
      sequelize = t.sequelize
      m = await opsModels(sequelize)
      ;({ cache, detach } = sequelizeCache(sequelize, opsSchema, HOLD_MARKS, { warnRawWrites: false }))
    })
    afterAll(async () => {
      detach?.()
      await cache?.close()
      await t?.close()
    })

    it(`Model.update by a where on other columns marks every product it touched, in ${pg ? 'one statement' : 'a SELECT and the UPDATE'}`, async () => {
      const [a, b, c] = skus(3)
      const qty = 900_000 + Math.floor(Math.random() * 1000)
      await m.Movement.bulkCreate([
        { product: a, qty },
        { product: b, qty },
        { product: c, qty: 1 },
      ])
      await warm(cache, [a!, b!, c!])
      let result: unknown
      const sql = await statementsOf(sequelize, async () => {
        result = await m.Movement.update({ qty: qty + 0.5 }, { where: { qty } })
      })
      expect(result).toEqual([2]) // what Sequelize returns without stockcast: the row count, no rows
      expect(sql.filter((s) => /^\s*SELECT/i.test(s))).toHaveLength(pg ? 0 : 1)
      expect(sql).toHaveLength(pg ? 1 : 2)
      if (pg) expect(sql[0]).toMatch(/^UPDATE .* RETURNING "sku" AS "product"$/)
      expectMarked(cache, [a!, b!])
      expectUnmarked(cache, [c!])
      await expectTruth(cache, [a!, b!, c!])
    })

    it('Model.destroy by a where marks the deleted rows’ products; the result is the row count', async () => {
      const [a, b, c] = skus(3)
      const qty = 800_000 + Math.floor(Math.random() * 1000)
      await m.Movement.bulkCreate([
        { product: a, qty },
        { product: b, qty },
        { product: c, qty: 2 },
      ])
      await warm(cache, [a!, b!, c!])
      let result: unknown
      const sql = await statementsOf(sequelize, async () => {
        result = await m.Movement.destroy({ where: { qty } })
      })
      expect(result).toBe(2)
      expect(sql).toHaveLength(pg ? 1 : 2)
      if (pg) expect(sql[0]).toMatch(/^DELETE FROM .* RETURNING "sku" AS "product"$/)
      expectMarked(cache, [a!, b!])
      expectUnmarked(cache, [c!])
      await expectTruth(cache, [a!, b!, c!])
      expect((await cache.get(a!)).stockToday).toBe(0)
    })

    it('a paranoid destroy (an UPDATE of deleted_at) returns its rows too; restore still reads first', async () => {
      const [a, b] = skus(2)
      const [batch] = skus(1, 'B')
      await m.Batch.create({ code: batch })
      await m.Line.bulkCreate([
        { productCode: a, openQty: 3, shipDate: day(1), batchCode: batch },
        { productCode: b, openQty: 4, shipDate: day(2), batchCode: batch },
      ])
      await warm(cache, [a!, b!])
      let result: unknown
      const sql = await statementsOf(sequelize, async () => {
        result = await m.Line.destroy({ where: { batchCode: batch } })
      })
      expect(result).toBe(2)
      expect(sql).toHaveLength(pg ? 1 : 2)
      expectMarked(cache, [a!, b!])
      await expectTruth(cache, [a!, b!])
      expect((await cache.get(a!)).days[1]!.closing).toBe(0)
      await warm(cache, [a!, b!])
      const restore = await statementsOf(sequelize, () => m.Line.restore({ where: { batchCode: batch } }))
      expect(restore).toHaveLength(2) // Model.restore rebuilds its options: the SELECT stays
      expectMarked(cache, [a!, b!])
      await expectTruth(cache, [a!, b!])
      expect((await cache.get(a!)).days[1]!.closing).toBe(-3)
    })

    it('in a transaction: marks wait for the commit and vanish on rollback', async () => {
      const [a, b] = skus(2)
      const qa = 700_000 + Math.floor(Math.random() * 1000)
      const qb = qa + 1
      await m.Movement.bulkCreate([
        { product: a, qty: qa },
        { product: b, qty: qb },
      ])
      await warm(cache, [a!, b!])
      await sequelize.transaction(async (transaction) => {
        await m.Movement.update({ qty: qa + 0.5 }, { where: { qty: qa }, transaction })
        expectUnmarked(cache, [a!])
      })
      expectMarked(cache, [a!])
      await expectTruth(cache, [a!])
      await warm(cache, [a!, b!])
      const rollback = new Error('roll back')
      await expect(
        sequelize.transaction(async (transaction) => {
          await m.Movement.destroy({ where: { qty: qb }, transaction })
          throw rollback
        }),
      ).rejects.toBe(rollback)
      expectUnmarked(cache, [a!, b!])
      await expectTruth(cache, [a!, b!])
      expect((await cache.get(b!)).stockToday).toBe(qb)
    })

    it('returning: true asked by the caller is left as Sequelize answers it (rows), the products still marked', async () => {
      const [a] = skus(1)
      const qty = 600_000 + Math.floor(Math.random() * 1000)
      await m.Movement.create({ product: a, qty })
      await warm(cache, [a!])
      const result = (await m.Movement.update({ qty: qty + 1 }, { where: { qty }, returning: true })) as unknown[]
      if (pg) {
        expect(result[0]).toBe(1)
        expect((result[1] as Array<{ product: string }>)[0]!.product).toBe(a)
      }
      expectMarked(cache, [a!])
      await expectTruth(cache, [a!])
    })

    if (pg) {
      it('a statement that does not reach sequelize.query with its options fails loudly, not silently', async () => {
        const [a] = skus(1)
        const qty = 500_000 + Math.floor(Math.random() * 1000)
        await m.Movement.create({ product: a, qty })
        // Another layer over sequelize.query that drops the symbol keys of the options.
        const inner = sequelize.query
        const stripping = function (this: unknown, sql: unknown, options?: Record<string, unknown>) {
          return (inner as (...args: unknown[]) => unknown).call(
            this,
            sql,
            options === undefined ? options : { ...Object.fromEntries(Object.entries(options)) },
          )
        }
        Object.defineProperty(sequelize, 'query', { value: stripping, configurable: true, writable: true })
        try {
          const failure = await m.Movement.update({ ref: null }, { where: { qty } }).catch((e: unknown) => e)
          expect(failure).toBeInstanceOf(StockcastError)
          expect(String((failure as Error).message)).toMatch(/the products it changed are unknown/)
        } finally {
          Object.defineProperty(sequelize, 'query', { value: inner, configurable: true, writable: true })
        }
      })
    }
  })
}

describeService(downOf('postgres'), 'returnRowsOfBulkWrites on PostgreSQL', () => {
  let t: TestDb
  beforeAll(async () => {
    t = await testDb('postgres')
    await t.sequelize.query('CREATE TABLE r_rows (id int PRIMARY KEY, sku text)')
    await t.sequelize.query("INSERT INTO r_rows VALUES (1, 'A'), (2, 'B'), (3, 'C')")
  })
  afterAll(async () => {
    await t?.close()
  })

  it('adds RETURNING to a bulk UPDATE, fills the box and answers the row count', async () => {
    const undo = returnRowsOfBulkWrites(t.sequelize)
    try {
      const box = new ReturningRows(['sku'], ['product'], async () => {
        throw new Error('no fallback expected')
      })
      const n = await t.sequelize.query(
        { query: 'UPDATE r_rows SET sku = sku WHERE id <= $1', bind: [2] } as never,
        { type: QueryTypes.BULKUPDATE, [RETURNING_ROWS]: box } as never,
      )
      expect(n).toBe(2)
      expect(box.rows?.map((r) => r.product).sort()).toEqual(['A', 'B'])
    } finally {
      undo()
    }
    expect(Object.hasOwn(t.sequelize, 'query')).toBe(false)
  })

  it('a statement of another shape runs as it is, after the fallback read', async () => {
    const undo = returnRowsOfBulkWrites(t.sequelize)
    try {
      let fallback = 0
      const box = new ReturningRows(['sku'], ['sku'], async () => {
        fallback++
        return [{ sku: 'C' }]
      })
      await t.sequelize.query('WITH x AS (SELECT 3 AS id) DELETE FROM r_rows USING x WHERE r_rows.id = x.id', {
        type: QueryTypes.BULKDELETE,
        [RETURNING_ROWS]: box,
      } as never)
      expect(fallback).toBe(1)
      expect(box.rows).toEqual([{ sku: 'C' }])
      expect(await t.sequelize.query('SELECT id FROM r_rows ORDER BY id', { type: QueryTypes.SELECT })).toEqual([
        { id: 1 },
        { id: 2 },
      ])
    } finally {
      undo()
    }
  })
})
