import { sqlReader, sqlStore } from '@stockcast/sql'
import { ConfigError } from 'stockcast'
import { runStoreConformance } from 'stockcast/conformance'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { prismaSqlDb } from '../src/index.js'
import { DATABASES, erpSchema, type TestDb } from './helpers/db.js'
import { describeService, uniquePrefix } from './services.js'

// prismaSqlDb: the SQL adapter's reader and store running on the connections Prisma already has.

for (const database of DATABASES) {
  describeService(database.down, `${database.name}: prismaSqlDb`, () => {
    let db: TestDb
    const table = uniquePrefix('sc_prisma_store')
    beforeAll(async () => {
      db = await database.open()
    })
    afterAll(async () => {
      await db?.close()
    })

    runStoreConformance(({ prefix }) => sqlStore(prismaSqlDb(db.prisma), { table, prefix }), {
      name: 'Store conformance (sqlStore over prismaSqlDb)',
      shared: true,
    })

    describe('own cases', () => {
      it('returns exact decimals and 64-bit integers as strings, like the pg driver', async () => {
        const sql = prismaSqlDb(db.prisma)
        const rows = await sql.query(
          "SELECT 12.345::numeric(18,3) AS d, 9007199254740993::bigint AS b, 7::int AS i, 'x'::text AS t, NULL::numeric AS n",
        )
        expect(rows).toEqual([{ d: '12.345', b: '9007199254740993', i: 7, t: 'x', n: null }])
        expect(await sql.execute('INSERT INTO audit_log (message) VALUES ($1), ($2)', ['a', 'b'])).toBe(2)
      })

      it('transaction() commits, rolls back, and nests as a savepoint', async () => {
        const sql = prismaSqlDb(db.prisma)
        const tag = uniquePrefix('tx')
        await sql.transaction(async (tx) => {
          await tx.execute('INSERT INTO audit_log (message) VALUES ($1)', [`${tag}-1`])
          if (db.kind === 'postgres') {
            // Savepoints: the pglite Prisma adapter has none.
            await expect(
              tx.transaction(async (inner) => {
                await inner.execute('INSERT INTO audit_log (message) VALUES ($1)', [`${tag}-2`])
                throw new Error('inner')
              }),
            ).rejects.toThrow('inner')
          }
        })
        await expect(
          sql.transaction(async (tx) => {
            await tx.execute('INSERT INTO audit_log (message) VALUES ($1)', [`${tag}-3`])
            throw new Error('outer')
          }),
        ).rejects.toThrow('outer')
        const rows = await sql.query<{ message: string }>(
          'SELECT message FROM audit_log WHERE message LIKE $1 ORDER BY message',
          [`${tag}%`],
        )
        expect(rows.map((r) => r.message)).toEqual([`${tag}-1`])
        expect(await sql.session(async (s) => (await s.query('SELECT 1 AS one'))[0])).toEqual({ one: 1 })
      })

      it('serves the reader: check() passes and reads aggregate exactly', async () => {
        const sql = prismaSqlDb(() => db.prisma)
        const reader = sqlReader(sql, erpSchema)
        await reader.check()
        const p = uniquePrefix('R')
        await db.prisma.stockMove.createMany({
          data: [
            { productCode: p, quantity: '0.1' },
            { productCode: p, quantity: '0.2' },
          ],
        })
        const got = await reader.read([p])
        expect(got.get(p)!.onHand).toEqual([{ quantity: '0.300', source: 'stock_moves' }])
      })

      it('checks its options', () => {
        expect(() => prismaSqlDb(db.prisma, { dialect: 'sqlite' as never })).toThrow(ConfigError)
        expect(() => prismaSqlDb({} as never)).toThrow(/Prisma client/)
      })
    })
  })
}
