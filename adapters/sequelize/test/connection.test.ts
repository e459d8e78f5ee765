import { type SqlDb, sqlChangeCapture } from '@stockcast/sql'
import { Sequelize } from 'sequelize'
import { ConfigError, createStockCache } from 'stockcast'
import { runStoreConformance } from 'stockcast/conformance'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { attachSequelize, fromSequelize, sequelizeReader, sequelizeStore } from '../src/index.js'
import { AlsNamespace } from './cls.js'
import { opsModels, opsSchema, skus } from './fixtures.js'
import { HOLD_MARKS, sleep, type TestDb, testDb } from './helpers.js'
import { DIALECTS, describeService, downOf, labelOf, uniqueName } from './services.js'

describe('fromSequelize: setup errors', () => {
  it('rejects what is not a Sequelize instance, and dialects it does not speak', () => {
    expect(() => fromSequelize(null as never)).toThrow(ConfigError)
    // A Sequelize-shaped object on another dialect (the sqlite3 driver is not installed here).
    const sqlite = { getDialect: () => 'sqlite', query: async () => [], transaction: async () => {} } as never
    expect(() => fromSequelize(sqlite).dialect).toThrow(/dialect "sqlite" is not supported/)
    expect(() => fromSequelize(sqlite, { logging: 'yes' as never })).toThrow(ConfigError)
  })

  it('takes a lazy factory, called on first use', () => {
    let calls = 0
    const db = fromSequelize(() => {
      calls++
      return new Sequelize('postgres://u@127.0.0.1:1/x', { logging: false })
    })
    expect(calls).toBe(0)
    expect(db.dialect).toBe('postgres')
    expect(db.driver).toBe('sequelize:postgres')
    expect(calls).toBe(1)
  })
})

for (const dialect of DIALECTS) {
  describeService(downOf(dialect), `fromSequelize on ${labelOf(dialect)}`, () => {
    let t: TestDb
    let db: SqlDb
    const ph = (i: number) => (dialect === 'postgres' ? `$${i}` : '?')

    beforeAll(async () => {
      t = await testDb(dialect)
      db = fromSequelize(t.sequelize)
      await db.execute('CREATE TABLE kv (k varchar(32) PRIMARY KEY, v numeric(18,3))')
    })
    afterAll(async () => {
      await t?.close()
    })

    it('query, execute (affected rows), exact decimals, $$ kept as is', async () => {
      expect(
        await db.execute(`INSERT INTO kv (k, v) VALUES (${ph(1)}, ${ph(2)}), (${ph(3)}, ${ph(4)})`, [
          'a',
          '1.5',
          'b',
          2,
        ]),
      ).toBe(2)
      const rows = await db.query(
        `SELECT k, CAST(v AS CHAR(20)) AS v FROM kv WHERE k IN (${ph(1)}, ${ph(2)}) ORDER BY k`,
        ['a', 'b'],
      )
      expect(rows.map((r) => [r.k, String(r.v).trim()])).toEqual([
        ['a', '1.500'],
        ['b', '2.000'],
      ])
      expect(await db.execute(`UPDATE kv SET v = v + 1 WHERE k = ${ph(1)}`, ['zzz'])).toBe(0)
      if (dialect === 'postgres') {
        expect(await db.query('SELECT $$a$$ AS x, $1::text AS y', ['$$'])).toEqual([{ x: 'a', y: '$$' }])
        expect(await db.query("SELECT $t$ $1 $$ $t$ AS x, '$2' AS y, $1::int AS z", [7])).toEqual([
          { x: ' $1 $$ ', y: '$2', z: 7 },
        ])
        expect(await db.query('SELECT 1 AS one WHERE $1 = ANY($2)', ['x', ['x', 'y']])).toEqual([{ one: 1 }])
      } else {
        expect(await db.query("SELECT '?' AS q, ? AS v", [null])).toEqual([{ q: '?', v: null }])
      }
    })

    it('transaction commits, rolls back, and nests as a savepoint', async () => {
      await db.transaction(async (tx) => {
        await tx.execute(`INSERT INTO kv (k, v) VALUES (${ph(1)}, 1)`, ['t1'])
        await tx
          .transaction(async (sp) => {
            await sp.execute(`INSERT INTO kv (k, v) VALUES (${ph(1)}, 1)`, ['t2'])
            throw new Error('inner')
          })
          .catch(() => {})
      })
      await expect(
        db.transaction(async (tx) => {
          await tx.execute(`INSERT INTO kv (k, v) VALUES (${ph(1)}, 1)`, ['t3'])
          throw new Error('outer')
        }),
      ).rejects.toThrow('outer')
      const rows = await db.query("SELECT k FROM kv WHERE k LIKE 't%' ORDER BY k")
      expect(rows.map((r) => r.k)).toEqual(['t1'])
    })

    it('session holds one connection (session variables), with its own transactions', async () => {
      const out = await db.session(async (s) => {
        if (dialect === 'postgres') await s.execute("SELECT set_config('stockcast.x', 'yes', false)")
        else await s.execute("SET @stockcast_x = 'yes'")
        await s.transaction(async (tx) => {
          await tx.execute(`INSERT INTO kv (k, v) VALUES (${ph(1)}, 1)`, ['s1'])
          await tx.transaction(async (sp) => sp.execute(`DELETE FROM kv WHERE k = ${ph(1)}`, ['s1']))
        })
        const [row] = await s.query(
          dialect === 'postgres' ? "SELECT current_setting('stockcast.x') AS x" : 'SELECT @stockcast_x AS x',
        )
        if (dialect === 'postgres') await s.execute("SELECT set_config('stockcast.x', '', false)")
        return row?.x
      })
      expect(out).toBe('yes')
      expect(await db.query("SELECT k FROM kv WHERE k = 's1'")).toEqual([])
    })

    it('reads run outside the CLS transaction of the caller (no dirty reads into the cache)', async () => {
      const ns = new AlsNamespace()
      Sequelize.useCLS(ns)
      try {
        await t.sequelize.transaction(async () => {
          await t.sequelize.query(`INSERT INTO kv (k, v) VALUES ('cls', 1)`)
          expect(await db.query("SELECT k FROM kv WHERE k = 'cls'")).toEqual([])
        })
        expect(await db.query("SELECT k FROM kv WHERE k = 'cls'")).toEqual([{ k: 'cls' }])
      } finally {
        ;(Sequelize as unknown as { _cls?: unknown })._cls = undefined
      }
    })

    describe('the SQL adapter over it', () => {
      runStoreConformance(({ prefix }) => sequelizeStore(t.sequelize, { table: 'sc_store', prefix }), {
        name: 'Store conformance (sequelizeStore)',
        shared: true,
      })

      it('sequelizeReader reads the sources through Sequelize (check, products, read)', async () => {
        const t2 = await testDb(dialect)
        try {
          const m = await opsModels(t2.sequelize)
          const [a] = skus(1)
          await m.Movement.bulkCreate([
            { product: a, qty: '1.25' },
            { product: a, qty: 2 },
          ])
          const reader = sequelizeReader(t2.sequelize, opsSchema)
          await reader.check()
          expect(await reader.products()).toEqual([a])
          const read = await reader.read([a!])
          expect(read.get(a!)?.onHand).toEqual([{ quantity: '3.250', source: 'ops_movements' }])
        } finally {
          await t2.close()
        }
      })

      it('triggers installed through Sequelize capture raw writes; with the hooks too, marks coalesce', async () => {
        const t2 = await testDb(dialect)
        try {
          const m = await opsModels(t2.sequelize)
          const sdb = fromSequelize(t2.sequelize)
          const capture = sqlChangeCapture(sdb, opsSchema, { prefix: uniqueName('scq') })
          await capture.install()
          expect((await capture.verify()).ok).toBe(true)
          const cache = createStockCache({
            schema: opsSchema,
            reader: sequelizeReader(t2.sequelize, opsSchema),
            pendingMarks: capture,
            ...HOLD_MARKS,
          })
          const detach = attachSequelize(t2.sequelize, cache, opsSchema, { warnRawWrites: false })
          const listener = await capture.listen(cache)
          try {
            const [a, b] = skus(2)
            await cache.get(a!)
            await cache.get(b!)
            // A raw write: only the triggers see it.
            await t2.sequelize.query(`INSERT INTO ops_movements (sku, qty) VALUES ('${a}', 4)`)
            await listener.drain()
            // The listener marked and recomputed it: fresh in L1 already.
            expect(cache.peek(a!)?.stockToday).toBe(4)
            // A model write: hooks and triggers both mark b. The two marks coalesce into one dirty entry; only when
            // the listener happens to start its recompute before the hook's mark lands is there a second one.
            const before = cache.metrics()
            await t2.sequelize.transaction((transaction) => m.Movement.create({ product: b, qty: 2 }, { transaction }))
            await listener.drain()
            await sleep(20)
            expect((await cache.get(b!)).stockToday).toBe(2)
            const after = cache.metrics()
            expect(after.marks - before.marks).toBe(2)
            expect(after.keysComputed - before.keysComputed).toBeLessThanOrEqual(2)
            expect(after.keysComputed - before.keysComputed).toBeGreaterThanOrEqual(1)
          } finally {
            // Stop the listener first: it holds a pool connection that sequelize.close() would wait for.
            await listener.stop()
            detach()
            await cache.close()
            await capture.uninstall()
          }
        } finally {
          await t2.close()
        }
      })
    })
  })
}
