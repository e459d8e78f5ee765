import { Sequelize, type Transaction } from 'sequelize'
import type { StockCache } from 'stockcast'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DetachSequelize } from '../src/index.js'
import { AlsNamespace } from './cls.js'
import {
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

for (const dialect of DIALECTS) {
  describeService(downOf(dialect), `transactions on ${labelOf(dialect)}`, () => {
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

    const move = (product: string, qty: number, transaction?: Transaction | null, ref?: string) =>
      m.Movement.create({ product, qty, ...(ref === undefined ? {} : { ref }) }, { transaction })
    /** A raw insert (no hook sees it) in a transaction: only a lookup in that transaction can find the row. */
    const rawMove = (product: string, qty: number, ref: string, transaction: Transaction | undefined) =>
      sequelize.query(
        dialect === 'postgres'
          ? 'INSERT INTO ops_movements (sku, qty, ref) VALUES ($1, $2, $3)'
          : 'INSERT INTO ops_movements (sku, qty, ref) VALUES (?, ?, ?)',
        dialect === 'postgres'
          ? { bind: [product, qty, ref], transaction }
          : { replacements: [product, qty, ref], transaction },
      )

    describe('explicit transactions', () => {
      it('marks are held until commit (managed), and reads meanwhile do not see the write', async () => {
        const [a] = skus(1)
        await move(a!, 1)
        await warm(cache, [a!])
        await sequelize.transaction(async (tx) => {
          await move(a!, 2, tx)
          await m.Movement.update({ qty: 5 }, { where: { product: a }, transaction: tx })
          expectUnmarked(cache, [a!])
          expect((await cache.get(a!)).stockToday).toBe(1)
        })
        expectMarked(cache, [a!])
        expect((await cache.get(a!)).stockToday).toBe(10)
        await expectTruth(cache, [a!])
      })

      it('a rolled-back transaction marks nothing (managed and unmanaged)', async () => {
        const [a, b] = skus(2)
        const row = await move(a!, 1)
        await warm(cache, [a!, b!])
        await expect(
          sequelize.transaction(async (tx) => {
            await move(b!, 2, tx)
            await row.update({ product: b }, { transaction: tx })
            await m.Movement.destroy({ where: { product: a }, transaction: tx })
            throw new Error('roll back')
          }),
        ).rejects.toThrow('roll back')
        const tx = await sequelize.transaction()
        await move(a!, 3, tx)
        await m.Movement.increment('qty', { by: 1, where: { product: a }, transaction: tx })
        await tx.rollback()
        expectUnmarked(cache, [a!, b!])
        await expectTruth(cache, [a!, b!])
      })

      it('an unmanaged commit applies the marks', async () => {
        const [a] = skus(1)
        await warm(cache, [a!])
        const tx = await sequelize.transaction()
        await move(a!, 3, tx)
        expectUnmarked(cache, [a!])
        await tx.commit()
        expectMarked(cache, [a!])
        await expectTruth(cache, [a!])
      })

      it('bulk lookups run in the write transaction (they see its uncommitted rows)', async () => {
        const [a, b] = skus(2)
        await warm(cache, [a!, b!])
        await sequelize.transaction(async (tx) => {
          await rawMove(a!, 1, `${a}-raw`, tx)
          await rawMove(b!, 1, `${b}-raw`, tx)
          await m.Movement.update({ qty: 4 }, { where: { ref: `${a}-raw` }, transaction: tx })
          await m.Movement.destroy({ where: { ref: `${b}-raw` }, transaction: tx })
        })
        expectMarked(cache, [a!, b!])
        await expectTruth(cache, [a!, b!])
      })

      it('a failed write in a transaction marks nothing, the writes that succeeded do', async () => {
        const [a, b] = skus(2)
        await move(a!, 1, undefined, `${a}-dup`)
        await warm(cache, [a!, b!])
        await sequelize.transaction(async (tx) => {
          await move(a!, 1, tx)
          // In a savepoint: PostgreSQL aborts the whole transaction on an error otherwise.
          await expect(
            sequelize.transaction({ transaction: tx }, async (sp) => {
              await move(b!, 1, sp, `${a}-dup`)
            }),
          ).rejects.toThrow()
        })
        expectMarked(cache, [a!])
        expectUnmarked(cache, [b!])
        await expectTruth(cache, [a!, b!])
      })
    })

    describe('savepoints', () => {
      it('a rolled-back savepoint drops its marks; the outer commit applies the rest', async () => {
        const [a, b] = skus(2)
        await warm(cache, [a!, b!])
        await sequelize.transaction(async (tx) => {
          await move(a!, 1, tx)
          await sequelize
            .transaction({ transaction: tx }, async (sp) => {
              await move(b!, 1, sp)
              throw new Error('inner')
            })
            .catch(() => {})
        })
        expectMarked(cache, [a!])
        expectUnmarked(cache, [b!])
        await expectTruth(cache, [a!, b!])
      })

      it('a committed savepoint waits for the outer commit, and vanishes with its rollback', async () => {
        const [a, b] = skus(2)
        await warm(cache, [a!, b!])
        await expect(
          sequelize.transaction(async (tx) => {
            await sequelize.transaction({ transaction: tx }, async (sp) => {
              await move(a!, 1, sp)
            })
            // Sequelize ran the savepoint's afterCommit already: the mark must still wait for the outer commit.
            expectUnmarked(cache, [a!])
            throw new Error('outer')
          }),
        ).rejects.toThrow('outer')
        expectUnmarked(cache, [a!])
        await sequelize.transaction(async (tx) => {
          await sequelize.transaction({ transaction: tx }, async (sp) => {
            await move(b!, 1, sp)
          })
          expectUnmarked(cache, [b!])
        })
        expectMarked(cache, [b!])
        await expectTruth(cache, [a!, b!])
      })

      it('sibling savepoints: the rolled-back one marks nothing, the committed one waits for the outer commit', async () => {
        const [a, b, c] = skus(3)
        await warm(cache, [a!, b!, c!])
        await sequelize.transaction(async (tx) => {
          await move(a!, 1, tx)
          await sequelize
            .transaction({ transaction: tx }, async (sp) => {
              await move(b!, 1, sp)
              throw new Error('first')
            })
            .catch(() => {})
          await sequelize.transaction({ transaction: tx }, async (sp) => {
            await move(c!, 1, sp)
          })
        })
        expectMarked(cache, [a!, c!])
        expectUnmarked(cache, [b!])
        await expectTruth(cache, [a!, b!, c!])
      })

      it('nested savepoints: marks follow what the database kept (Sequelize reuses the outer savepoint name)', async () => {
        const [a, b, c] = skus(3)
        await warm(cache, [a!, b!, c!])
        await sequelize.transaction(async (tx) => {
          await move(a!, 1, tx)
          await sequelize
            .transaction({ transaction: tx }, async (sp1) => {
              await move(b!, 1, sp1)
              await sequelize.transaction({ transaction: sp1 }, async (sp2) => {
                expect((sp2 as unknown as { name: string }).name).toBe((sp1 as unknown as { name: string }).name) // the Sequelize v6 naming this case is about
                await move(c!, 1, sp2)
              })
              throw new Error('sp1')
            })
            .catch(() => {})
        })
        // ROLLBACK TO SAVEPOINT undid only c's write (after the newest savepoint of that name); b's row stays.
        const rows = await m.Movement.findAll({ where: { product: [b!, c!] }, raw: true })
        expect(rows.map((r) => (r as unknown as { product: string }).product)).toEqual([b])
        expectMarked(cache, [a!, b!])
        await expectTruth(cache, [a!, b!, c!])
      })

      it('a savepoint never committed nor rolled back is committed with the outer transaction', async () => {
        const [a] = skus(1)
        await warm(cache, [a!])
        await sequelize.transaction(async (tx) => {
          const sp = await sequelize.transaction({ transaction: tx })
          await move(a!, 1, sp)
        })
        expectMarked(cache, [a!])
        await expectTruth(cache, [a!])
      })
    })

    describe('CLS (Sequelize.useCLS with an AsyncLocalStorage namespace)', () => {
      beforeAll(() => {
        Sequelize.useCLS(new AlsNamespace())
      })
      afterAll(() => {
        ;(Sequelize as unknown as { _cls?: unknown })._cls = undefined
      })

      it('writes without a transaction option are held until the CLS transaction commits', async () => {
        const [a, b] = skus(2)
        await move(a!, 1)
        await warm(cache, [a!, b!])
        await sequelize.transaction(async () => {
          await move(a!, 2)
          await m.Movement.update({ product: b }, { where: { product: a, qty: 2 } })
          await m.Movement.increment('qty', { by: 1, where: { product: a } })
          expectUnmarked(cache, [a!, b!])
          // The cache reads outside the CLS transaction.
          expect((await cache.get(a!)).stockToday).toBe(1)
        })
        expectMarked(cache, [a!, b!])
        expect((await cache.get(a!)).stockToday).toBe(2)
        expect((await cache.get(b!)).stockToday).toBe(2)
        await expectTruth(cache, [a!, b!])
      })

      it('a rolled-back CLS transaction marks nothing; bulk lookups see its uncommitted rows', async () => {
        const [a, b] = skus(2)
        await warm(cache, [a!, b!])
        await expect(
          sequelize.transaction(async () => {
            await move(a!, 2)
            throw new Error('roll back')
          }),
        ).rejects.toThrow()
        expectUnmarked(cache, [a!])
        await sequelize.transaction(async () => {
          await rawMove(b!, 1, `${b}-cls`, undefined)
          await m.Movement.update({ qty: 3 }, { where: { ref: `${b}-cls` } })
        })
        expectMarked(cache, [b!])
        await expectTruth(cache, [a!, b!])
      })

      it('a CLS savepoint that rolls back drops its marks', async () => {
        const [a, b] = skus(2)
        await warm(cache, [a!, b!])
        await sequelize.transaction(async (tx) => {
          await move(a!, 1)
          await sequelize
            .transaction({ transaction: tx }, async () => {
              await move(b!, 1)
              throw new Error('inner')
            })
            .catch(() => {})
        })
        expectMarked(cache, [a!])
        expectUnmarked(cache, [b!])
        await expectTruth(cache, [a!, b!])
      })
    })
  })
}
