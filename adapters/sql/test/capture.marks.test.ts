import { defineStockSchema } from 'stockcast'
import { dayFromToday } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { sqlChangeCapture } from '../src/index.js'
import { type CaptureSetup, pgliteTestDb, pgTestDb, startCapture, type TestDb } from './capture-helpers.js'
import { describeService, pgDown, uniquePrefix } from './services.js'

const DIALECTS: Array<[string, () => Promise<TestDb>, string | null]> = [
  ['PostgreSQL', () => pgTestDb(6), pgDown],
  ['PGlite', pgliteTestDb, null],
]

/** On-hand movements, picking items whose demand counts while their order is open, orders as a related table. */
const schema = defineStockSchema({
  onHand: [{ table: 'mk_movements', product: 'sku', quantity: 'qty' }],
  demand: [
    {
      table: 'mk_picking',
      product: 'sku',
      quantity: 'qty',
      date: 'ship',
      where: "EXISTS (SELECT 1 FROM mk_orders o WHERE o.batch = mk_picking.batch AND o.status IN ('OPEN', 'QUOTED'))",
    },
  ],
  related: [
    // A cast (::text) and a literal with a colon: neither is a parameter.
    { table: 'mk_orders', products: "SELECT sku::text FROM mk_picking WHERE batch = :batch AND ':nope' <> 'x'" },
  ],
})

async function createTables(t: TestDb): Promise<void> {
  await t.sql(`CREATE TABLE mk_movements (id serial PRIMARY KEY, sku text, qty numeric(18,3) NOT NULL)`)
  await t.sql(`CREATE TABLE mk_orders (id serial PRIMARY KEY, batch int NOT NULL, status text NOT NULL)`)
  await t.sql(
    `CREATE TABLE mk_picking (id serial PRIMARY KEY, sku text, qty numeric(18,3) NOT NULL, ship date NOT NULL, batch int NOT NULL)`,
  )
}

for (const [name, make, down] of DIALECTS) {
  describeService(down, `sqlChangeCapture marks on ${name}`, () => {
    let t: TestDb
    let prefix: string
    beforeEach(async () => {
      t = await make()
      await createTables(t)
      prefix = uniquePrefix('sc')
    })
    afterEach(async () => {
      await t.close()
    })

    /** Outbox rows as (product, table), sorted; `null` table: a related change (re-read every source). */
    const outbox = async () =>
      (await t.sql(`SELECT product, source_table AS t FROM "${prefix}_outbox"`))
        .map((r) => `${r.product}:${r.t ?? '*'}`)
        .sort()
    const clear = () => t.sql(`DELETE FROM "${prefix}_outbox"`)

    it('writes one outbox row per distinct product per statement; old and new product on a key change', async () => {
      await sqlChangeCapture(t.db, schema, { prefix }).install()
      await t.sql(`INSERT INTO mk_movements (sku, qty) SELECT 'P' || (i % 3), 1 FROM generate_series(1, 100) AS i`)
      expect(await outbox()).toEqual(['P0:mk_movements', 'P1:mk_movements', 'P2:mk_movements'])
      await clear()
      await t.sql(`UPDATE mk_movements SET sku = 'Q' WHERE sku = 'P1'`)
      expect(await outbox()).toEqual(['P1:mk_movements', 'Q:mk_movements'])
      await clear()
      await t.sql(`UPDATE mk_movements SET qty = 2 WHERE sku = 'P2'`)
      expect(await outbox()).toEqual(['P2:mk_movements'])
      await clear()
      await t.sql(`DELETE FROM mk_movements WHERE sku = 'P0'`)
      expect(await outbox()).toEqual(['P0:mk_movements'])
      await clear()
      // NULL and empty products are nobody's: no row.
      await t.sql(`INSERT INTO mk_movements (sku, qty) VALUES (NULL, 1), ('', 1)`)
      expect(await outbox()).toEqual([])
      // A statement that changes nothing writes nothing.
      await t.sql(`UPDATE mk_movements SET qty = 3 WHERE sku = 'nobody'`)
      expect(await outbox()).toEqual([])
    })

    it('one row per product per transaction however many statements; savepoints never lose a mark', async () => {
      await sqlChangeCapture(t.db, schema, { prefix }).install()
      await t.db.transaction(async (tx) => {
        for (let i = 0; i < 5; i++) {
          await tx.execute(
            `INSERT INTO mk_movements (sku, qty) SELECT 'S' || (i % 3), 1 FROM generate_series(1, 10) AS i`,
          )
        }
      })
      expect(await outbox()).toEqual(['S0:mk_movements', 'S1:mk_movements', 'S2:mk_movements'])
      await clear()
      await t.db.transaction(async (tx) => {
        // A: written at the top level; a savepoint that writes A again and rolls back leaves the first row.
        await tx.execute(`INSERT INTO mk_movements (sku, qty) VALUES ('A', 1)`)
        await tx.execute('SAVEPOINT s1')
        await tx.execute(`INSERT INTO mk_movements (sku, qty) VALUES ('A', 1)`)
        await tx.execute('ROLLBACK TO SAVEPOINT s1')
        // B: first written in a savepoint that rolls back, then at the top level: the later write has its row.
        await tx.execute('SAVEPOINT s2')
        await tx.execute(`INSERT INTO mk_movements (sku, qty) VALUES ('B', 1)`)
        await tx.execute('ROLLBACK TO SAVEPOINT s2')
        await tx.execute(`INSERT INTO mk_movements (sku, qty) VALUES ('B', 1)`)
        // C: written in a savepoint that is released, then again at the top level (two rows: harmless).
        await tx.execute('SAVEPOINT s3')
        await tx.execute(`INSERT INTO mk_movements (sku, qty) VALUES ('C', 1)`)
        await tx.execute('RELEASE SAVEPOINT s3')
        await tx.execute(`INSERT INTO mk_movements (sku, qty) VALUES ('C', 1)`)
      })
      expect(await outbox()).toEqual(['A:mk_movements', 'B:mk_movements', 'C:mk_movements', 'C:mk_movements'])
      // Another transaction's row of the same product does not stand in for this one's.
      await t.sql(`INSERT INTO mk_movements (sku, qty) VALUES ('A', 1)`)
      expect((await outbox()).filter((r) => r.startsWith('A:'))).toHaveLength(2)
    })

    it('a rolled-back transaction leaves no outbox row', async () => {
      await sqlChangeCapture(t.db, schema, { prefix }).install()
      await expect(
        t.db.transaction(async (tx) => {
          await tx.execute(`INSERT INTO mk_movements (sku, qty) VALUES ('R1', 5)`)
          await tx.execute(`UPDATE mk_movements SET sku = 'R2' WHERE sku = 'R1'`)
          throw new Error('roll back')
        }),
      ).rejects.toThrow('roll back')
      expect(await outbox()).toEqual([])
    })

    it('TRUNCATE marks every product the table held', async () => {
      await sqlChangeCapture(t.db, schema, { prefix }).install()
      await t.sql(`INSERT INTO mk_movements (sku, qty) VALUES ('T1', 1), ('T2', 1), ('T1', 1)`)
      await clear()
      await t.sql(`TRUNCATE mk_movements`)
      expect(await outbox()).toEqual(['T1:mk_movements', 'T2:mk_movements'])
    })

    it('a related table marks the products its query finds, for the old and the new row', async () => {
      await sqlChangeCapture(t.db, schema, { prefix }).install()
      await t.sql(`INSERT INTO mk_orders (batch, status) VALUES (1, 'OPEN'), (2, 'OPEN')`)
      await t.sql(
        `INSERT INTO mk_picking (sku, qty, ship, batch) VALUES ('A', 1, $1, 1), ('B', 1, $1, 1), ('C', 1, $1, 2)`,
        [dayFromToday(1)],
      )
      await clear()
      await t.sql(`UPDATE mk_orders SET status = 'CLOSED' WHERE batch = 1`)
      expect(await outbox()).toEqual(['A:*', 'B:*'])
      await clear()
      await t.sql(`UPDATE mk_orders SET batch = 2 WHERE batch = 1`) // old batch 1 and new batch 2
      expect(await outbox()).toEqual(['A:*', 'B:*', 'C:*'])
      await clear()
      await t.sql(`DELETE FROM mk_orders WHERE batch = 2`) // both orders now name batch 2: its picking item is C
      expect(await outbox()).toEqual(['C:*'])
    })

    it('end to end: an order status change moves the demand of its picking items in the cache', async () => {
      const s: CaptureSetup = await startCapture(t, schema, { capture: { prefix } })
      try {
        await t.sql(`INSERT INTO mk_movements (sku, qty) VALUES ('A', 10), ('B', 10)`)
        await t.sql(`INSERT INTO mk_orders (batch, status) VALUES (7, 'OPEN')`)
        await t.sql(`INSERT INTO mk_picking (sku, qty, ship, batch) VALUES ('A', 4, $1, 7), ('B', 6, $1, 7)`, [
          dayFromToday(2),
        ])
        await s.listener.drain()
        expect((await s.cache.get('A')).days[2]!.closing).toBe(6)
        expect((await s.cache.get('B')).days[2]!.closing).toBe(4)
        await t.sql(`UPDATE mk_orders SET status = 'SHIPPED' WHERE batch = 7`)
        await s.listener.drain()
        expect((await s.cache.get('A')).days[2]!.closing).toBe(10)
        expect((await s.cache.get('B')).days[2]!.closing).toBe(10)
        expect((await s.cache.validate({ products: ['A', 'B'] })).mismatches).toEqual([])
        expect(s.listener.status()).toMatchObject({ running: true, lastError: null, oldestUnprocessedMs: 0 })
        expect(s.listener.status().processed).toBeGreaterThanOrEqual(3)
      } finally {
        await s.close()
      }
    })

    it('pending() answers the newest mark per product; a strong read applies it without any listener', async () => {
      const capture = sqlChangeCapture(t.db, schema, { prefix })
      await capture.install()
      const { createStockCache } = await import('stockcast')
      const { sqlReader } = await import('../src/index.js')
      const cache = createStockCache({ schema, reader: sqlReader(t.db, schema), pendingMarks: capture })
      try {
        expect((await cache.get('S1')).stockToday).toBe(0)
        await t.sql(`INSERT INTO mk_movements (sku, qty) VALUES ('S1', 3)`)
        await t.sql(`INSERT INTO mk_movements (sku, qty) VALUES ('S1', 4), ('S2', 1)`)
        const pending = await capture.pending(['S1', 'S2', 'S3'])
        const ids = (await t.sql(`SELECT product, max(id)::int AS v FROM "${prefix}_outbox" GROUP BY product`)).map(
          (r) => [r.product, r.v],
        )
        expect([...pending].sort()).toEqual(ids.sort())
        // The default read relies on a listener (there is none): it still serves the cached 0.
        expect((await cache.get('S1')).stockToday).toBe(0)
        const strong = await cache.get('S1', { consistency: 'strong' })
        expect(strong.stockToday).toBe(7)
        expect(strong.version).toBeGreaterThanOrEqual(pending.get('S1')!) // versions follow the clock; the mark's is below
      } finally {
        await cache.close()
      }
    })

    if (name === 'PostgreSQL') {
      it("captures a writer whose search_path does not include the tables' schema (fixed search_path, SECURITY DEFINER)", async () => {
        await sqlChangeCapture(t.db, schema, { prefix }).install()
        await t.sql(`INSERT INTO mk_orders (batch, status) VALUES (3, 'OPEN')`)
        await t.sql(`INSERT INTO mk_picking (sku, qty, ship, batch) VALUES ('W', 1, $1, 3)`, [dayFromToday(1)])
        await clear()
        await t.db.session(async (s) => {
          await s.execute('SET search_path TO public')
          try {
            await s.execute(`INSERT INTO "${t.schemaName}".mk_movements (sku, qty) VALUES ('W', 1)`)
            await s.execute(`UPDATE "${t.schemaName}".mk_orders SET status = 'CLOSED' WHERE batch = 3`)
          } finally {
            await s.execute(`SET search_path TO "${t.schemaName}"`)
          }
        })
        expect(await outbox()).toEqual(['W:*', 'W:mk_movements'])
      })
    }
  })
}
