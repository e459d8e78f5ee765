import type mysql from 'mysql2/promise'
import { runStoreConformance } from 'stockcast/conformance'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fromMysql, type SqlDb, sqlStore } from '../src/index.js'
import { describeService, mysqlDown, mysqlPool, uniquePrefix } from './services.js'
import { entry, runSqlStoreCases } from './store-cases.js'

describeService(mysqlDown, 'sqlStore on MariaDB/MySQL (mysql2 pool)', () => {
  const table = uniquePrefix('sc_store_my')
  let pool: mysql.Pool
  let db: SqlDb

  beforeAll(() => {
    pool = mysqlPool()
    db = fromMysql(pool)
  })
  afterAll(async () => {
    await pool.query(`DROP TABLE IF EXISTS \`${table}\``)
    await pool.query(`DROP TABLE IF EXISTS \`${table}_manual\``)
    await pool.end()
  })

  runStoreConformance(({ prefix }) => sqlStore(db, { table, prefix }), { name: 'Store conformance', shared: true })

  describe('own cases', () => {
    runSqlStoreCases(
      () => db,
      () => table,
    )

    it('stores the JSON text as written, one row per key', async () => {
      const s = sqlStore(db, { table, prefix: 'sql:' })
      const e = entry('P1', 4, 12)
      await s.setMany([['P1', e]])
      const [rows] = await pool.query(
        `SELECT CAST(\`key\` AS CHAR) AS k, \`version\`, \`value\` FROM \`${table}\` WHERE \`key\` = ?`,
        ['sql:P1'],
      )
      expect(rows).toEqual([{ k: 'sql:P1', version: 4, value: JSON.stringify(e.value) }])
      await s.clear()
    })

    it('two pools writing the same key concurrently end at the highest version', async () => {
      const other = mysqlPool(4)
      try {
        const a = sqlStore(db, { table, prefix: 'two-pools:' })
        const b = sqlStore(fromMysql(other), { table, prefix: 'two-pools:' })
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

    it('keeps the highest version under SIMULTANEOUS_ASSIGNMENT too (MariaDB)', async () => {
      const [[ver]] = (await pool.query('SELECT VERSION() AS v')) as unknown as [[{ v: string }]]
      if (!/mariadb/i.test(ver.v)) return
      const conn = await pool.getConnection()
      try {
        await conn.query("SET SESSION sql_mode = CONCAT(@@sql_mode, ',SIMULTANEOUS_ASSIGNMENT')")
        const s = sqlStore(fromMysql({ query: (q, v) => conn.query(q, v), getConnection: async () => conn }), {
          table,
          prefix: 'simul:',
        })
        await s.setMany([['K', entry('K', 10, 10)]])
        await s.setMany([['K', entry('K', 9, 9)]])
        await s.setMany([['K', entry('K', 11, 11)]])
        const got = (await s.getMany(['K'])).get('K')!
        expect(got.version).toBe(11)
        expect(got.value.stockToday).toBe(11)
        await s.setMany([['K', entry('K', 3, 3)]])
        expect((await s.getMany(['K'])).get('K')!.value.stockToday).toBe(11)
        await s.clear()
      } finally {
        await conn.query('SET SESSION sql_mode = DEFAULT')
        conn.release()
      }
    })

    it('install() resumes a migration stopped midway (MySQL DDL commits statement by statement)', async () => {
      const name = `${table}_half`
      await pool.query(
        `CREATE TABLE \`${name}\` (\`key\` VARBINARY(3072) NOT NULL PRIMARY KEY, \`value\` LONGTEXT NOT NULL, \`version\` BIGINT NOT NULL, \`computed_at\` BIGINT NOT NULL)`,
      )
      try {
        const e = entry('A', 6, 60)
        await pool.query(`INSERT INTO \`${name}\` VALUES (?, ?, ?, ?)`, [
          'h:A',
          JSON.stringify(e.value),
          6,
          e.computedAt,
        ])
        // The first step of the migration only: no primary key, key_hash still NULL.
        await pool.query(
          `ALTER TABLE \`${name}\` DROP PRIMARY KEY, MODIFY \`key\` LONGBLOB NOT NULL, ADD COLUMN \`key_hash\` BINARY(32) NULL FIRST`,
        )
        const s = sqlStore(db, { table: name, prefix: 'h:' })
        expect((await s.getMany(['A'])).get('A')!.version).toBe(6)
        const [cols] = (await pool.query(
          'SELECT IS_NULLABLE AS n, COLUMN_KEY AS k FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?',
          [name, 'key_hash'],
        )) as unknown as [Array<{ n: string; k: string }>]
        expect(cols).toEqual([{ n: 'NO', k: 'PRI' }])
      } finally {
        await pool.query(`DROP TABLE IF EXISTS \`${name}\``)
      }
    })

    it('splits a large batch into several statements', async () => {
      const s = sqlStore(db, { table, prefix: 'large:' })
      const keys = Array.from({ length: 1300 }, (_, i) => `L${i}`)
      await s.setMany(keys.map((k, i) => [k, entry(k, i + 1)] as const))
      const got = await s.getMany(keys)
      expect(got.size).toBe(1300)
      await s.deleteMany(keys.slice(0, 1200))
      expect((await s.getMany(keys)).size).toBe(100)
      await s.clear()
    })
  })
})
