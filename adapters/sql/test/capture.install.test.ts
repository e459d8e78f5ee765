import { ConfigError, defineStockSchema, type StockSchema } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { POSTGRES_CAPTURE_VERSION } from '../src/capture/postgres.js'
import { sqlChangeCapture } from '../src/index.js'
import { createCcTables, pgliteTestDb, pgTestDb, type TestDb } from './capture-helpers.js'
import { describeService, pgDown, uniquePrefix } from './services.js'

const DIALECTS: Array<[string, () => Promise<TestDb>, string | null]> = [
  ['PostgreSQL', () => pgTestDb(4), pgDown],
  ['PGlite', pgliteTestDb, null],
]

for (const [name, make, down] of DIALECTS) {
  describeService(down, `sqlChangeCapture install / verify / uninstall on ${name}`, () => {
    let t: TestDb
    let prefix: string
    beforeEach(async () => {
      t = await make()
      await createCcTables(t)
      prefix = uniquePrefix('sc')
    })
    afterEach(async () => {
      await t.close()
    })

    /** What of ours is in the database: triggers, functions, tables. */
    const objects = async () => {
      const [r] = await t.sql(
        `SELECT (SELECT count(*)::int FROM pg_trigger WHERE left(tgname, $2) = $1) AS triggers,
                (SELECT count(*)::int FROM pg_proc WHERE left(proname, $2) = $1) AS functions,
                to_regclass($3) IS NOT NULL AS outbox, to_regclass($4) IS NOT NULL AS meta`,
        [`${prefix}_`, prefix.length + 1, `"${prefix}_outbox"`, `"${prefix}_meta"`],
      )
      return r
    }

    it('installs the outbox, one function and four statement triggers per table; twice is a no-op', async () => {
      const capture = sqlChangeCapture(t.db, changeCaptureSchema, { prefix })
      expect((await capture.verify()).installedVersion).toBeNull()
      await capture.install()
      expect(await objects()).toEqual({ triggers: 12, functions: 3, outbox: true, meta: true })
      const triggers = await t.sql(
        `SELECT tgname::text AS name, tgtype::int AS type, tgnewtable::text AS new, tgoldtable::text AS old
           FROM pg_trigger WHERE tgrelid = to_regclass('cc_movements') AND NOT tgisinternal ORDER BY tgname`,
      )
      expect(triggers).toEqual([
        { name: `${prefix}_capture_del`, type: 8, new: null, old: '__sc_old' },
        { name: `${prefix}_capture_ins`, type: 4, new: '__sc_new', old: null },
        { name: `${prefix}_capture_trunc`, type: 34, new: null, old: null },
        { name: `${prefix}_capture_upd`, type: 16, new: '__sc_new', old: '__sc_old' },
      ])
      const report = await capture.verify()
      expect(report).toEqual({
        ok: true,
        installedVersion: POSTGRES_CAPTURE_VERSION,
        expectedVersion: POSTGRES_CAPTURE_VERSION,
        missing: [],
        extra: [],
        outdated: [],
      })
      // Idempotent: a second install (another process starting) changes nothing and stays ok.
      const [before] = await t.sql(`SELECT value FROM "${prefix}_meta" WHERE key = 'installed_at'`)
      await capture.install()
      await sqlChangeCapture(t.db, changeCaptureSchema, { prefix }).install()
      const [after] = await t.sql(`SELECT value FROM "${prefix}_meta" WHERE key = 'installed_at'`)
      expect(after).toEqual(before)
      expect(await objects()).toEqual({ triggers: 12, functions: 3, outbox: true, meta: true })
      expect((await capture.verify()).ok).toBe(true)
    })

    it('verify() reports a trigger dropped by hand as missing and a hand-edited function as outdated; install repairs', async () => {
      const capture = sqlChangeCapture(t.db, changeCaptureSchema, { prefix })
      await capture.install()
      await t.sql(`DROP TRIGGER "${prefix}_capture_upd" ON cc_supply`)
      let report = await capture.verify()
      expect(report.ok).toBe(false)
      expect(report.missing).toEqual([
        expect.stringMatching(new RegExp(`trigger ${prefix}_capture_upd on .*cc_supply`)),
      ])
      expect(report.outdated).toEqual([])

      const fn = `${prefix}_fn_cc_demand`
      const [{ src }] = (await t.sql(`SELECT prosrc AS src FROM pg_proc WHERE proname = $1`, [fn])) as [{ src: string }]
      const edited = src.replace('IF FOUND THEN', 'IF FALSE THEN')
      await t.sql(`CREATE OR REPLACE FUNCTION "${fn}"() RETURNS trigger LANGUAGE plpgsql AS $x$${edited}$x$`)
      report = await capture.verify()
      expect(report.outdated).toEqual([expect.stringContaining(`${fn}"(): body differs`)])

      await t.sql(`UPDATE "${prefix}_meta" SET value = '0' WHERE key = 'version'`)
      report = await capture.verify()
      expect(report.installedVersion).toBe(0)
      expect(report.outdated).toContain(`version 0 installed, ${POSTGRES_CAPTURE_VERSION} expected`)

      await t.sql(`ALTER TABLE cc_movements DISABLE TRIGGER "${prefix}_capture_ins"`)
      expect((await capture.verify()).outdated).toContainEqual(expect.stringContaining('disabled'))

      await capture.install()
      expect(await capture.verify()).toMatchObject({ ok: true, missing: [], outdated: [], extra: [] })
    })

    it('verify() reports objects of a table the schema no longer names as extra; install removes them', async () => {
      await sqlChangeCapture(t.db, changeCaptureSchema, { prefix }).install()
      const smaller = defineStockSchema({
        onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty' }],
        demand: [{ table: 'cc_demand', product: 'sku', quantity: 'qty', date: 'ship' }],
      })
      const capture = sqlChangeCapture(t.db, smaller, { prefix })
      const report = await capture.verify()
      expect(report.ok).toBe(false)
      expect(report.missing).toEqual([])
      expect(report.extra).toHaveLength(5) // 4 triggers on cc_supply and its function
      expect(report.extra).toContainEqual(expect.stringMatching(/^function .*_fn_cc_supply"\(\)$/))
      await capture.install()
      expect((await capture.verify()).ok).toBe(true)
      expect(await objects()).toEqual({ triggers: 8, functions: 2, outbox: true, meta: true })
    })

    it('uninstall() leaves nothing of ours; rows keep being writable without triggers', async () => {
      const capture = sqlChangeCapture(t.db, changeCaptureSchema, { prefix })
      await capture.install()
      await t.sql(`INSERT INTO cc_movements (sku, qty) VALUES ('U1', 1)`)
      await capture.uninstall()
      expect(await objects()).toEqual({ triggers: 0, functions: 0, outbox: false, meta: false })
      await t.sql(`INSERT INTO cc_movements (sku, qty) VALUES ('U1', 1)`)
      const report = await capture.verify()
      expect(report.ok).toBe(false)
      expect(report.installedVersion).toBeNull()
      expect(report.missing).toHaveLength(2 + 3 + 12) // outbox, meta, 3 functions, 12 triggers
      await capture.uninstall() // twice: nothing to do
    })

    const rejects = async (schema: StockSchema, message: RegExp) => {
      const capture = sqlChangeCapture(t.db, schema, { prefix })
      const error = await capture.install().then(
        () => null,
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(ConfigError)
      expect((error as Error).message).toMatch(message)
      // Validation runs before any DDL: nothing was created, not even the outbox.
      expect(await objects()).toEqual({ triggers: 0, functions: 0, outbox: false, meta: false })
    }

    it('an unknown table is a ConfigError naming it, and the database is unchanged', async () => {
      await rejects(
        defineStockSchema({
          onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty' }],
          supply: [{ table: 'cc_supplies', product: 'sku', quantity: 'qty', date: 'due' }],
        }),
        /table "cc_supplies" \(named by supply source "cc_supplies"\) does not exist; nothing was changed/,
      )
    })

    it('an unknown column is a ConfigError naming it, and the database is unchanged', async () => {
      await rejects(
        defineStockSchema({
          onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty' }],
          demand: [{ table: 'cc_demand', product: 'sku', quantity: 'qty', date: 'ship_date' }],
        }),
        /column "ship_date" of table "cc_demand" \(demand source "cc_demand", date\) does not exist/,
      )
    })

    it('a related query that does not run, or names an unknown parameter column, is a ConfigError; nothing changed', async () => {
      await t.sql(`CREATE TABLE cc_orders (id serial PRIMARY KEY, batch int, status text)`)
      const withRelated = (products: string) =>
        defineStockSchema({
          onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty' }],
          related: [{ table: 'cc_orders', products }],
        })
      await rejects(
        withRelated('SELECT sku FROM cc_picking WHERE batch = :batch'),
        /capture query for table "cc_orders" fails \(check the related products query\): relation "cc_picking" does not exist/,
      )
      await rejects(
        withRelated('SELECT sku FROM cc_movements WHERE id = :order_batch'),
        /column "order_batch" of table "cc_orders" \(parameter :order_batch of related\[0\]\.products\) does not exist/,
      )
    })

    it('a view is refused: triggers need a table', async () => {
      await t.sql(`CREATE VIEW cc_moves_view AS SELECT * FROM cc_movements`)
      await rejects(
        defineStockSchema({ onHand: [{ table: 'cc_moves_view', product: 'sku', quantity: 'qty' }] }),
        /"cc_moves_view" .* is not a table \(relkind v\)/,
      )
    })

    it('bad options are ConfigErrors at construction', () => {
      expect(() => sqlChangeCapture(t.db, changeCaptureSchema, { prefix: 'bad-prefix' })).toThrow(ConfigError)
      expect(() => sqlChangeCapture(t.db, changeCaptureSchema, { outbox: 'a.b.c' })).toThrow(/outbox must be/)
      expect(() => sqlChangeCapture(t.db, changeCaptureSchema, { batchSize: 0 })).toThrow(/batchSize/)
      expect(() => sqlChangeCapture(t.db, changeCaptureSchema, { bogus: 1 } as never)).toThrow(/unknown option "bogus"/)
      expect(() => sqlChangeCapture(t.db, changeCaptureSchema, { leaseMs: 10 })).toThrow(/leaseMs must be an integer/)
      expect(() => sqlChangeCapture(t.db, changeCaptureSchema, { clock: {} as never })).toThrow(/clock must be/)
      expect(() => sqlChangeCapture(t.db, changeCaptureSchema, { timers: { setTimeout } as never })).toThrow(
        /timers must be/,
      )
    })
  })
}
