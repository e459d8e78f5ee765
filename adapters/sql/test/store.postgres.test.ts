import type pg from 'pg'
import { runStoreConformance } from 'stockcast/conformance'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fromPg, type SqlDb, sqlStore } from '../src/index.js'
import { describeService, pgDown, pgPool, uniquePrefix } from './services.js'
import { entry, runSqlStoreCases } from './store-cases.js'

describeService(pgDown, 'sqlStore on PostgreSQL (pg Pool)', () => {
  const table = uniquePrefix('sc_store_pg')
  const schema = uniquePrefix('sc_store_schema')
  let pool: pg.Pool
  let db: SqlDb

  beforeAll(() => {
    pool = pgPool()
    db = fromPg(pool)
  })
  afterAll(async () => {
    await pool.query(`DROP TABLE IF EXISTS "${table}"`)
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  })

  runStoreConformance(({ prefix }) => sqlStore(db, { table, prefix }), { name: 'Store conformance', shared: true })

  describe('own cases', () => {
    runSqlStoreCases(
      () => db,
      () => table,
    )

    it('two pools writing the same key concurrently end at the highest version', async () => {
      const other = pgPool(4)
      try {
        const a = sqlStore(db, { table, prefix: 'two-pools:' })
        const b = sqlStore(fromPg(other), { table, prefix: 'two-pools:' })
        const versions = Array.from({ length: 60 }, (_, i) => i + 1).sort(() => Math.random() - 0.5)
        await Promise.all(versions.map((v, i) => (i % 2 === 0 ? a : b).setMany([['HOT', entry('HOT', v, v)]])))
        for (const s of [a, b]) {
          const got = (await s.getMany(['HOT'])).get('HOT')!
          expect(got.version).toBe(60)
          expect(got.value.stockToday).toBe(60)
        }
        await a.clear()
      } finally {
        await other.end()
      }
    })

    it('accepts a schema-qualified table', async () => {
      await pool.query(`CREATE SCHEMA "${schema}"`)
      const s = sqlStore(db, { table: `${schema}.projections`, prefix: 'q:' })
      expect(s.table).toBe(`"${schema}"."projections"`)
      await s.setMany([['A', entry('A', 2)]])
      expect((await s.getMany(['A'])).get('A')!.version).toBe(2)
      const { rows } = await pool.query(
        'SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1 AND tablename = $2',
        [schema, 'projections'],
      )
      expect(rows[0].n).toBe(1)
      await s.drop()
    })

    it('creates the table once when many stores start together', async () => {
      const name = `${table}_race`
      const stores = Array.from({ length: 6 }, () => sqlStore(db, { table: name, prefix: 'r:' }))
      await Promise.all(stores.map((s, i) => s.setMany([[`K${i}`, entry(`K${i}`, 1)]])))
      expect((await stores[0]!.getMany(stores.map((_, i) => `K${i}`))).size).toBe(6)
      await stores[0]!.drop()
    })
  })
})
