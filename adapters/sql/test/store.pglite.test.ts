import { PGlite } from '@electric-sql/pglite'
import { runStoreConformance } from 'stockcast/conformance'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fromPGlite, type SqlDb, sqlStore } from '../src/index.js'
import { entry, runSqlStoreCases } from './store-cases.js'

describe('sqlStore on PGlite', () => {
  const table = 'sc_store_pglite'
  let pglite: PGlite
  let db: SqlDb

  beforeAll(() => {
    pglite = new PGlite()
    db = fromPGlite(pglite)
  })
  afterAll(async () => {
    await pglite.close()
  })

  runStoreConformance(({ prefix }) => sqlStore(db, { table, prefix }), { name: 'Store conformance', shared: true })

  describe('own cases', () => {
    runSqlStoreCases(
      () => db,
      () => table,
    )

    it('works inside a PGlite transaction and rolls back with it', async () => {
      const s = sqlStore(db, { table, prefix: 'tx:' })
      await s.install()
      await db
        .transaction(async (tx) => {
          await sqlStore(tx, { table, prefix: 'tx:' }).setMany([['A', entry('A', 1)]])
          throw new Error('roll back')
        })
        .catch(() => {})
      expect((await s.getMany(['A'])).size).toBe(0)
      await db.transaction((tx) => sqlStore(tx, { table, prefix: 'tx:' }).setMany([['A', entry('A', 2)]]))
      expect((await s.getMany(['A'])).get('A')!.version).toBe(2)
      await s.clear()
    })
  })
})
