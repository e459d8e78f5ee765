import { type Sequelize, Transaction } from 'sequelize'
import type { StockCache } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { DetachSequelize } from '../src/index.js'
import { type OpsModels, opsModels, opsSchema, skus } from './fixtures.js'
import { sequelizeCache, type TestDb, testDb } from './helpers.js'
import { DIALECTS, describeService, downOf, labelOf } from './services.js'

const SECONDS = 3
const WRITERS = 6
const READERS = 3

for (const dialect of DIALECTS) {
  describeService(downOf(dialect), `concurrent transactions through the ORM on ${labelOf(dialect)}`, () => {
    let t: TestDb
    let sequelize: Sequelize
    let m: OpsModels
    let cache: StockCache
    let detach: DetachSequelize

    beforeAll(async () => {
      t = await testDb(dialect, { pool: { max: 12 } })
      sequelize = t.sequelize
      m = await opsModels(sequelize)
      ;({ cache, detach } = sequelizeCache(sequelize, opsSchema, { debounceMs: 20, maxWaitMs: 200 }))
      // The bulk update and delete below select by product: by an index, not a scan of every row.
      await t.sql('CREATE INDEX ops_movements_sku ON ops_movements (sku)')
    })
    afterAll(async () => {
      detach?.()
      await cache?.close()
      await t?.close()
    })

    it(`${WRITERS} writers and ${READERS} readers for ${SECONDS} s: no writer error, no read misses a commit, validate() finds 0 mismatches`, async () => {
      // Watched products only grow (inserts, increments): a read started after a commit must show at least it.
      const watched = skus(12, 'W')
      // Mixed products see key changes and bulk moves: checked by validate() at the end. Each writer moves rows
      // among two of its own, and every transaction locks at most one watched row: the writers cannot deadlock one
      // another, so any writer error is the adapter's. (With bulk moves among shared products under REPEATABLE
      // READ, MariaDB aborted ~130-260 of ~1 500 transactions as deadlocks with or without the adapter's hooks.)
      const mixed = skus(WRITERS * 2, 'X')
      const committed = new Map<string, number>(watched.map((p) => [p, 0]))
      const ids = new Map<string, number[]>(watched.map((p) => [p, []]))
      for (const p of watched) {
        const row = await m.Movement.create({ product: p, qty: 1 })
        ids.get(p)!.push(Number(row.get('id')))
        committed.set(p, 1)
      }
      for (const p of mixed) await m.Movement.create({ product: p, qty: 1 })
      for (const p of [...watched, ...mixed]) await cache.get(p)

      const deadline = Date.now() + SECONDS * 1000
      const rnd = (n: number) => Math.floor(Math.random() * n)
      const stats = { commits: 0, rollbacks: 0, errors: 0, reads: 0 }
      const misses: string[] = []

      // MariaDB: READ COMMITTED, so that a bulk update or delete by product takes no gap lock next to another
      // writer's rows (PostgreSQL takes none at its default level).
      const level = dialect === 'mysql' ? { isolationLevel: Transaction.ISOLATION_LEVELS.READ_COMMITTED } : {}
      const errors: string[] = []
      const writer = async (w: number) => {
        const own = [mixed[2 * w]!, mixed[2 * w + 1]!]
        while (Date.now() < deadline) {
          const p = watched[rnd(watched.length)]!
          const q = own[rnd(2)]!
          const gained = new Map<string, number>()
          const rollback = rnd(6) === 0
          try {
            await sequelize.transaction(level, async (tx) => {
              const op = rnd(6)
              if (op === 0) {
                await m.Movement.create({ product: p, qty: 1 }, { transaction: tx })
                gained.set(p, 1)
              } else if (op === 1) {
                const list = ids.get(p)!
                await m.Movement.increment('qty', { by: 1, where: { id: list[rnd(list.length)]! }, transaction: tx })
                gained.set(p, 1)
              } else if (op === 2) {
                await m.Movement.bulkCreate(
                  [
                    { product: p, qty: 1 },
                    { product: q, qty: 2 },
                  ],
                  { transaction: tx },
                )
                gained.set(p, 1)
              } else if (op === 3) {
                // A bulk update by a where that leaves the product as it is (PostgreSQL: products from RETURNING).
                const list = ids.get(p)!
                await m.Movement.update(
                  { qty: sequelize.literal('qty + 1') },
                  { where: { id: list[rnd(list.length)]! }, transaction: tx },
                )
                gained.set(p, 1)
              } else if (op === 4) {
                // A bulk delete by a where among the mixed products (PostgreSQL: products from RETURNING).
                await m.Movement.destroy({ where: { product: q, qty: 2 }, transaction: tx })
              } else {
                // A key change and a bulk move among the writer's own mixed products.
                const r = own[rnd(2)]!
                const row = await m.Movement.findOne({ where: { product: q }, transaction: tx })
                if (row !== null) await row.update({ product: r }, { transaction: tx })
                await m.Movement.update({ product: q }, { where: { product: r, qty: 2 }, transaction: tx })
              }
              if (rollback) throw new Error('roll back')
            })
            stats.commits++
            for (const [k, v] of gained) committed.set(k, committed.get(k)! + v)
          } catch (e) {
            if ((e as Error).message === 'roll back') stats.rollbacks++
            else {
              stats.errors++
              if (errors.length < 5) errors.push((e as Error).message)
            }
          }
        }
      }
      const reader = async () => {
        while (Date.now() < deadline) {
          const p = watched[rnd(watched.length)]!
          const atStart = committed.get(p)!
          const v = (await cache.get(p)).stockToday
          stats.reads++
          if (v < atStart) misses.push(`${p}: read ${v} after ${atStart} committed`)
          // L1 hits resolve at once: yield so the writers get the event loop too.
          await new Promise((r) => setTimeout(r, 1))
        }
      }
      await Promise.all([
        ...Array.from({ length: WRITERS }, (_, w) => writer(w)),
        ...Array.from({ length: READERS }, reader),
      ])
      await cache.flush()
      const report = await cache.validate({ products: [...watched, ...mixed] })
      console.log(
        `[${dialect}] ${stats.commits} commits, ${stats.rollbacks} rollbacks, ${stats.errors} failed, ` +
          `${stats.reads} reads; validate: ${report.checked} checked, ${report.mismatches.length} mismatches`,
      )
      expect(errors).toEqual([])
      expect(stats.errors).toBe(0)
      expect(misses).toEqual([])
      expect(report.mismatches).toEqual([])
      expect(report.checked).toBeGreaterThanOrEqual(watched.length + mixed.length)
      expect(stats.commits).toBeGreaterThan(50)
      for (const p of watched) expect((await cache.get(p)).stockToday).toBe(committed.get(p))
    })
  })
}
