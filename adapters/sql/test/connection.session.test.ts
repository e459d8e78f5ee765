import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { fromMysql, fromPg, type SqlDb } from '../src/index.js'
import { describeService, mysqlDown, mysqlPool, PG_URL, pgDown, pgPool, uniquePrefix } from './services.js'

// Regressions: `session(fn)` hands out a connection outside any transaction; its `transaction()` must open one
// (it used to issue a bare SAVEPOINT: an error on PostgreSQL, and on MySQL rows committed despite the rollback).
const cases: Array<{ name: string; down: string | null; open: () => { db: SqlDb; end: () => Promise<void> } }> = [
  {
    name: 'PostgreSQL',
    down: pgDown,
    open: () => {
      const pool = pgPool(3)
      return { db: fromPg(pool), end: () => pool.end() }
    },
  },
  {
    name: 'MariaDB',
    down: mysqlDown,
    open: () => {
      const pool = mysqlPool(3)
      return { db: fromMysql(pool), end: () => pool.end() }
    },
  },
]

for (const c of cases) {
  describeService(c.down, `SqlDb.session() on ${c.name}`, () => {
    const table = uniquePrefix('sc_conn')
    let conn: { db: SqlDb; end: () => Promise<void> }
    const count = async () => Number((await conn.db.query<{ n: unknown }>(`SELECT COUNT(*) AS n FROM ${table}`))[0]!.n)

    beforeAll(async () => {
      conn = c.open()
      await conn.db.execute(`CREATE TABLE ${table} (a INT)`)
    })
    afterAll(async () => {
      await conn.db.execute(`DROP TABLE IF EXISTS ${table}`)
      await conn.end()
    })

    it('transaction() inside a session commits, rolls back and nests', async () => {
      await expect(
        conn.db.session((s) =>
          s.transaction(async (tx) => {
            await tx.execute(`INSERT INTO ${table} VALUES (1)`)
            await tx.transaction((inner) => inner.execute(`INSERT INTO ${table} VALUES (2)`))
            throw new Error('roll back')
          }),
        ),
      ).rejects.toThrow('roll back')
      expect(await count()).toBe(0)
      await conn.db.session((s) =>
        s.transaction(async (tx) => {
          await tx.execute(`INSERT INTO ${table} VALUES (1)`)
          await tx.transaction((inner) => inner.execute(`INSERT INTO ${table} VALUES (2)`)).catch(() => {})
          await tx
            .transaction(async (inner) => {
              await inner.execute(`INSERT INTO ${table} VALUES (3)`)
              throw new Error('inner only')
            })
            .catch(() => {})
        }),
      )
      expect(await count()).toBe(2)
    })
  })
}

describeService(pgDown, 'SqlDb.listen() on PostgreSQL after stop()', () => {
  let pool: pg.Pool
  let admin: pg.Client
  beforeAll(async () => {
    pool = pgPool(2)
    pool.on('error', () => {})
    admin = new pg.Client({ connectionString: PG_URL })
    await admin.connect()
  })
  afterAll(async () => {
    await admin.end()
    await pool.end()
  })

  it('a pooled connection that dies after stop() does not throw "release called twice"', async () => {
    const channel = uniquePrefix('sc_chan')
    const stop = await fromPg(pool).listen!(channel, () => {})
    const { rows } = await admin.query(
      'SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1',
      [`%LISTEN ${channel}%`],
    )
    expect(rows.length).toBe(1)
    await stop()
    // The same backend is now idle in the pool; kill it. The old handler used to call release() again (uncaught).
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0].pid])
    await new Promise((r) => setTimeout(r, 300))
    expect((await pool.query('SELECT 1 AS one')).rows[0].one).toBe(1)
  })
})
