import mysql from 'mysql2/promise'
import {
  ConfigError,
  createStockCache,
  defineStockSchema,
  type StockCache,
  type StockCacheOptions,
  type StockSchema,
} from 'stockcast'
import { type CaptureWriter, type ChangeCaptureHarness, runChangeCaptureConformance } from 'stockcast/conformance'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createMysqlCapture, MYSQL_CAPTURE_VERSION } from '../src/capture/mysql.js'
import {
  fromMysql,
  type SqlChangeCapture,
  type SqlChangeCaptureOptions,
  type SqlDb,
  sqlChangeCapture,
  sqlReader,
} from '../src/index.js'
import { describeService, MYSQL_URL, mysqlDown, mysqlPool, uniquePrefix } from './services.js'

type Conn = mysql.Pool | mysql.PoolConnection

/** Plain SQL writes (no adapter involved): what the triggers must capture. */
function writer(conn: Conn): CaptureWriter {
  return {
    async insert(table, row) {
      const cols = Object.keys(row)
      const [res] = await conn.query(
        `INSERT INTO \`${table}\` (${cols.map((c) => `\`${c}\``).join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`,
        Object.values(row),
      )
      return (res as mysql.ResultSetHeader).insertId
    },
    async update(table, id, patch) {
      const cols = Object.keys(patch)
      await conn.query(`UPDATE \`${table}\` SET ${cols.map((c) => `\`${c}\` = ?`).join(', ')} WHERE id = ?`, [
        ...Object.values(patch),
        id,
      ])
    },
    async delete(table, id) {
      await conn.query(`DELETE FROM \`${table}\` WHERE id = ?`, [id])
    },
  }
}

const CC_TABLES = {
  cc_movements: 'moved_on DATE NULL',
  cc_supply: 'due DATE',
  cc_demand: 'ship DATE',
} as const

async function count(pool: mysql.Pool, sql: string, params: unknown[] = []): Promise<number> {
  const [rows] = await pool.query(sql, params)
  return Number(Object.values((rows as Array<Record<string, unknown>>)[0]!)[0])
}

describeService(mysqlDown, 'MySQL/MariaDB change capture (triggers + outbox)', () => {
  // The conformance schema names fixed tables (cc_movements, ...): a database of our own keeps runs apart.
  const database = uniquePrefix('sc_test')
  let admin: mysql.Pool
  let pool: mysql.Pool
  let db: SqlDb

  beforeAll(async () => {
    admin = mysqlPool(2)
    await admin.query(`CREATE DATABASE \`${database}\``)
    const url = new URL(MYSQL_URL)
    url.pathname = `/${database}`
    pool = mysql.createPool({ uri: url.toString(), connectionLimit: 12, decimalNumbers: false, dateStrings: true })
    db = fromMysql(pool)
  })
  afterAll(async () => {
    await pool?.end()
    await admin?.query(`DROP DATABASE IF EXISTS \`${database}\``)
    await admin?.end()
  })

  async function createCcTables(): Promise<void> {
    for (const [table, date] of Object.entries(CC_TABLES)) {
      await pool.query(`DROP TABLE IF EXISTS \`${table}\``)
      await pool.query(
        `CREATE TABLE \`${table}\` (id INT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(64), qty DECIMAL(18,3), ${date}, INDEX (sku)) ENGINE=InnoDB`,
      )
    }
  }

  /** Tables of ours (prefix) and triggers of ours in the test database. */
  async function objectsOf(prefix: string): Promise<{ tables: string[]; triggers: string[] }> {
    const [t] = await pool.query(
      'SELECT TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME LIKE ? ORDER BY 1',
      [database, `${prefix}%`],
    )
    const [g] = await pool.query(
      'SELECT TRIGGER_NAME AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? AND TRIGGER_NAME LIKE ? ORDER BY 1',
      [database, `${prefix}%`],
    )
    return {
      tables: (t as Array<{ n: string }>).map((r) => r.n),
      triggers: (g as Array<{ n: string }>).map((r) => r.n),
    }
  }

  function cacheFor(schema: StockSchema, capture: SqlChangeCapture, extra: Partial<StockCacheOptions> = {}) {
    return createStockCache({ schema, reader: sqlReader(db, schema), pendingMarks: capture, ...extra })
  }

  runChangeCaptureConformance(
    async (schema): Promise<ChangeCaptureHarness> => {
      await createCcTables()
      const capture = sqlChangeCapture(db, schema, { prefix: 'sc_cc', pollMs: 20 })
      await capture.install()
      const cache = cacheFor(schema, capture)
      const listener = await capture.listen(cache)
      return {
        cache,
        ...writer(pool),
        async transaction(fn) {
          const conn = await pool.getConnection()
          try {
            await conn.beginTransaction()
            try {
              await fn(writer(conn))
              await conn.commit()
            } catch (e) {
              await conn.rollback()
              throw e
            }
          } finally {
            conn.release()
          }
        },
        settle: () => listener.drain(),
        async close() {
          await listener.stop()
          await cache.close()
          await capture.uninstall()
          for (const table of Object.keys(CC_TABLES)) await pool.query(`DROP TABLE IF EXISTS \`${table}\``)
        },
      }
    },
    { name: 'ChangeCapture conformance (MariaDB/MySQL triggers)' },
  )

  describe('own cases', () => {
    const schema = defineStockSchema({
      onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty', date: 'moved_on' }],
      supply: [{ table: 'cc_supply', product: 'sku', quantity: 'qty', date: 'due' }],
      demand: [{ table: 'cc_demand', product: 'sku', quantity: 'qty', date: 'ship' }],
    })
    const cleanups: Array<() => Promise<unknown>> = []
    let prefix = ''
    let capture: SqlChangeCapture

    function make(s: StockSchema = schema, options: SqlChangeCaptureOptions = {}): SqlChangeCapture {
      const c = createMysqlCapture(db, s, { prefix, pollMs: 20, ...options })
      cleanups.push(() => c.uninstall())
      return c
    }

    async function setUp(): Promise<void> {
      prefix = uniquePrefix('scm').replace(/^scm_\d+_/, 'scm')
      await createCcTables()
      capture = make()
      await capture.install()
    }

    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
    })

    const outboxRows = async (): Promise<Array<{ product: string; source_table: string | null }>> => {
      const [rows] = await pool.query(`SELECT product, source_table FROM \`${prefix}_outbox\` ORDER BY id`)
      return rows as Array<{ product: string; source_table: string | null }>
    }

    it('install is idempotent: a second call changes nothing, verify is ok', async () => {
      await setUp()
      const before = await objectsOf(prefix)
      expect(before.triggers).toHaveLength(9)
      expect(before.tables).toEqual([`${prefix}_bulk`, `${prefix}_bulk_runs`, `${prefix}_meta`, `${prefix}_outbox`])
      const [created] = await pool.query(
        'SELECT TRIGGER_NAME AS n, CREATED AS c FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY 1',
        [database],
      )
      await capture.install()
      await make().install()
      const [again] = await pool.query(
        'SELECT TRIGGER_NAME AS n, CREATED AS c FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY 1',
        [database],
      )
      expect(again).toEqual(created)
      expect(await objectsOf(prefix)).toEqual(before)
      expect(await capture.verify()).toEqual({
        ok: true,
        installedVersion: MYSQL_CAPTURE_VERSION,
        expectedVersion: MYSQL_CAPTURE_VERSION,
        missing: [],
        extra: [],
        outdated: [],
      })
      expect(await outboxRows()).toEqual([])
    })

    it('verify reports a dropped trigger as missing and a changed one as outdated; install repairs both', async () => {
      await setUp()
      await pool.query(`DROP TRIGGER \`${prefix}_cc_supply_del\``)
      let report = await capture.verify()
      expect(report.ok).toBe(false)
      expect(report.missing).toEqual([`trigger ${prefix}_cc_supply_del on \`${database}\`.\`cc_supply\``])
      await capture.install()
      expect((await capture.verify()).ok).toBe(true)

      // Same name, same event, another body (what an older version or a hand edit leaves).
      await pool.query(`DROP TRIGGER \`${prefix}_cc_movements_upd\``)
      await pool.query(
        `CREATE TRIGGER \`${prefix}_cc_movements_upd\` AFTER UPDATE ON cc_movements FOR EACH ROW
         BEGIN IF @\`${prefix}_bulk\` IS NULL THEN INSERT INTO \`${prefix}_outbox\` (product) VALUES (NEW.sku); END IF; END`,
      )
      report = await capture.verify()
      expect(report.missing).toEqual([])
      expect(report.outdated).toEqual([
        `trigger ${prefix}_cc_movements_upd on \`${database}\`.\`cc_movements\`: body differs`,
      ])
      await capture.install()
      expect((await capture.verify()).ok).toBe(true)
      // The repaired trigger records the old product of a key change again.
      const [res] = await pool.query("INSERT INTO cc_movements (sku, qty) VALUES ('OLD', 1)")
      await pool.query("UPDATE cc_movements SET sku = 'NEW' WHERE id = ?", [(res as mysql.ResultSetHeader).insertId])
      expect((await outboxRows()).map((r) => r.product)).toEqual(['OLD', 'NEW', 'OLD'])
    })

    it('verify reports the triggers of a table removed from the schema as extra; install drops them', async () => {
      await setUp()
      const smaller = defineStockSchema({
        onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty' }],
        demand: [{ table: 'cc_demand', product: 'sku', quantity: 'qty', date: 'ship' }],
      })
      const c2 = make(smaller)
      const report = await c2.verify()
      expect(report.ok).toBe(false)
      expect(report.extra.sort()).toEqual(
        ['del', 'ins', 'upd'].map((s) => `trigger ${prefix}_cc_supply_${s} on \`${database}\`.\`cc_supply\``),
      )
      await c2.install()
      expect(await c2.verify()).toMatchObject({ ok: true, extra: [] })
      expect((await objectsOf(prefix)).triggers).toHaveLength(6)
    })

    it('verify on a database never installed: everything missing, version null', async () => {
      prefix = uniquePrefix('scm').replace(/^scm_\d+_/, 'scn')
      await createCcTables()
      const report = await make().verify()
      expect(report.ok).toBe(false)
      expect(report.installedVersion).toBeNull()
      expect(report.missing).toHaveLength(4 + 9)
    })

    it('uninstall removes every trigger and table of ours, and only those', async () => {
      await setUp()
      await pool.query(
        `CREATE TRIGGER \`${prefix}_users_own\` AFTER INSERT ON cc_demand FOR EACH ROW SET @users_own = NEW.id`,
      )
      await capture.uninstall()
      expect(await objectsOf(prefix)).toEqual({ tables: [], triggers: [`${prefix}_users_own`] })
      await pool.query(`DROP TRIGGER \`${prefix}_users_own\``)
      await capture.uninstall() // twice: nothing to do
      // Writes work without the triggers.
      await pool.query("INSERT INTO cc_movements (sku, qty) VALUES ('X', 1)")
    })

    it('bad config: an unknown table, column or related query is a ConfigError naming it, and nothing is created', async () => {
      prefix = uniquePrefix('scm').replace(/^scm_\d+_/, 'scb')
      await createCcTables()
      const cases: Array<[StockSchema, RegExp]> = [
        [
          defineStockSchema({
            onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty' }],
            demand: [{ table: 'no_such_table', product: 'sku', quantity: 'qty', date: 'ship' }],
          }),
          /table "no_such_table" \(named by demand source "no_such_table"\) does not exist/,
        ],
        [
          defineStockSchema({ onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'quantity' }] }),
          /column "quantity" of table "cc_movements"/,
        ],
        [
          defineStockSchema({
            onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty' }],
            related: [{ table: 'cc_demand', products: 'SELECT sku FROM cc_supply WHERE batch = :batch_id' }],
          }),
          /column "batch_id" of table "cc_demand" \(parameter :batch_id of related\[0\]\.products\)/,
        ],
        [
          defineStockSchema({
            onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty' }],
            related: [{ table: 'cc_demand', products: 'SELECT nope FROM cc_supply WHERE id = :id' }],
          }),
          /related products query of table "cc_demand" fails/,
        ],
      ]
      for (const [bad, message] of cases) {
        const c = make(bad)
        const err = await c.install().catch((e: unknown) => e)
        expect(err).toBeInstanceOf(ConfigError)
        expect((err as Error).message).toMatch(message)
        expect((err as Error).message).toMatch(/nothing was changed/)
        expect(await objectsOf(prefix)).toEqual({ tables: [], triggers: [] })
      }
      // Unsafe identifiers never reach SQL.
      expect(() => createMysqlCapture(db, schema, { prefix: 'x; DROP TABLE y' })).toThrow(ConfigError)
    })

    it('a failure midway through install removes what that call created', async () => {
      prefix = uniquePrefix('scm').replace(/^scm_\d+_/, 'scf')
      await createCcTables()
      // A user's table where our meta table goes: validation passes (it is checked for columns) until the
      // version is written, so this fails after the triggers were created.
      await pool.query(`CREATE TABLE \`${prefix}_meta\` (\`key\` VARCHAR(8) PRIMARY KEY, value INT NOT NULL)`)
      cleanups.push(() => pool.query(`DROP TABLE IF EXISTS \`${prefix}_meta\``))
      const err = await make()
        .install()
        .catch((e: unknown) => e)
      expect((err as Error).message).toMatch(
        /install: recording the version .* failed: .*what this call had created was removed/,
      )
      expect(await objectsOf(prefix)).toEqual({ tables: [`${prefix}_meta`], triggers: [] })
    })

    it('a key change marks the old and the new product; a delete the old one', async () => {
      await setUp()
      const [res] = await pool.query("INSERT INTO cc_movements (sku, qty) VALUES ('K-A', 1)")
      const id = (res as mysql.ResultSetHeader).insertId
      await pool.query("UPDATE cc_movements SET sku = 'K-B' WHERE id = ?", [id])
      await pool.query('UPDATE cc_movements SET qty = 2 WHERE id = ?', [id])
      await pool.query('DELETE FROM cc_movements WHERE id = ?', [id])
      await pool.query("INSERT INTO cc_movements (sku, qty) VALUES (NULL, 1), ('', 2)")
      expect(await outboxRows()).toEqual([
        { product: 'K-A', source_table: 'cc_movements' },
        { product: 'K-B', source_table: 'cc_movements' },
        { product: 'K-A', source_table: 'cc_movements' },
        { product: 'K-B', source_table: 'cc_movements' },
        { product: 'K-B', source_table: 'cc_movements' },
      ])
    })

    it('a rolled-back transaction leaves no outbox row', async () => {
      await setUp()
      const conn = await pool.getConnection()
      try {
        await conn.beginTransaction()
        await conn.query("INSERT INTO cc_movements (sku, qty) VALUES ('RB', 1)")
        await conn.query("INSERT INTO cc_demand (sku, qty, ship) VALUES ('RB', 1, '2030-01-01')")
        await conn.rollback()
      } finally {
        conn.release()
      }
      expect(await outboxRows()).toEqual([])
      expect(await capture.pending(['RB'])).toEqual(new Map())
    })

    it('related tables: a change marks the products their query finds (old and new parameters)', async () => {
      prefix = uniquePrefix('scm').replace(/^scm_\d+_/, 'scr')
      await pool.query('DROP TABLE IF EXISTS rel_orders, rel_picks')
      await pool.query(
        'CREATE TABLE rel_orders (id INT AUTO_INCREMENT PRIMARY KEY, batch INT, status VARCHAR(10)) ENGINE=InnoDB',
      )
      await pool.query(
        'CREATE TABLE rel_picks (id INT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(64), qty DECIMAL(18,3), ship DATE, batch INT) ENGINE=InnoDB',
      )
      cleanups.push(() => pool.query('DROP TABLE IF EXISTS rel_orders, rel_picks'))
      await createCcTables()
      const relSchema = defineStockSchema({
        onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty' }],
        demand: [
          {
            table: 'rel_picks',
            product: 'sku',
            quantity: 'qty',
            date: 'ship',
            where:
              "EXISTS (SELECT 1 FROM rel_orders o WHERE o.batch = rel_picks.batch AND o.status IN ('OPEN','QUOTED'))",
          },
        ],
        related: [{ table: 'rel_orders', products: 'SELECT sku FROM rel_picks WHERE batch = :batch' }],
      })
      const c = make(relSchema)
      await c.install()
      expect((await c.verify()).ok).toBe(true)
      const cache = cacheFor(relSchema, c)
      cleanups.push(() => cache.close())
      const listener = await c.listen(cache)
      cleanups.push(() => listener.stop())
      const ship = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10)
      await pool.query("INSERT INTO cc_movements (sku, qty) VALUES ('R1', 10), ('R2', 10)")
      await pool.query('INSERT INTO rel_orders (batch, status) VALUES (1, ?), (2, ?)', ['DRAFT', 'OPEN'])
      await pool.query("INSERT INTO rel_picks (sku, qty, ship, batch) VALUES ('R1', 4, ?, 1), ('R2', 3, ?, 2)", [
        ship,
        ship,
      ])
      await listener.drain()
      expect((await cache.get('R1')).days[2]!.closing).toBe(10) // batch 1 is a draft: not counted
      expect((await cache.get('R2')).days[2]!.closing).toBe(7)
      await pool.query("UPDATE rel_orders SET status = 'OPEN' WHERE batch = 1")
      await listener.drain()
      expect((await cache.get('R1')).days[2]!.closing).toBe(6)
      // Moving order 2 to batch 1 marks the products of batch 2 (old) and of batch 1 (new).
      await pool.query("UPDATE rel_orders SET status = 'DRAFT' WHERE batch = 1")
      await pool.query('UPDATE rel_orders SET batch = 1 WHERE batch = 2')
      await listener.drain()
      expect((await cache.get('R1')).days[2]!.closing).toBe(6) // batch 1 is OPEN again (order 2)
      expect((await cache.get('R2')).days[2]!.closing).toBe(10) // no open order has batch 2 now
      await pool.query('DELETE FROM rel_orders')
      await listener.drain()
      expect((await cache.get('R1')).days[2]!.closing).toBe(10)
      expect((await cache.validate({ products: ['R1', 'R2'] })).mismatches).toEqual([])
    })

    it('strong reads reflect a commit by another connection before the listener ran', async () => {
      await setUp()
      const cache = cacheFor(schema, capture)
      cleanups.push(() => cache.close())
      expect((await cache.get('S1')).stockToday).toBe(0)
      await pool.query("INSERT INTO cc_movements (sku, qty) VALUES ('S1', 5)")
      expect((await cache.get('S1')).stockToday).toBe(0) // default: no listener ran, L1 still serves the old value
      expect((await cache.get('S1', { consistency: 'strong' })).stockToday).toBe(5)
      expect(await capture.pending(['S1', 'S2'])).toEqual(new Map([['S1', expect.any(Number)]]))
      // Bytes, not collation: 's1' is another product.
      expect(await capture.pending(['s1'])).toEqual(new Map())
    })

    async function seed(n: number, products: number): Promise<string[]> {
      await pool.query('DROP TABLE IF EXISTS bulk_src')
      await pool.query('CREATE TABLE bulk_src (id INT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(64), qty DECIMAL(18,3))')
      cleanups.push(() => pool.query('DROP TABLE IF EXISTS bulk_src'))
      const rows: unknown[][] = []
      for (let i = 0; i < n; i++) rows.push([`B-${(i * 7919) % products}`, ((i % 50) - 20).toFixed(3)])
      for (let i = 0; i < rows.length; i += 5000) {
        await pool.query('INSERT INTO bulk_src (sku, qty) VALUES ?', [rows.slice(i, i + 5000)])
      }
      return Array.from({ length: products }, (_, i) => `B-${i}`)
    }

    it('bulkImport captures every product it touched (inserts, updates, deletes, explicit ids); validate finds 0 mismatches', async () => {
      await setUp()
      const products = await seed(20_000, 400)
      const cache = cacheFor(schema, capture)
      cleanups.push(() => cache.close())
      const listener = await capture.listen(cache)
      cleanups.push(() => listener.stop())
      // Some rows before the import (below the floor), cached values for every product.
      await pool.query("INSERT INTO cc_movements (id, sku, qty) VALUES (1000000, 'B-1', 1), (1000001, 'B-2', 2)")
      await pool.query("INSERT INTO cc_movements (sku, qty) VALUES ('B-3', 3), ('B-4', 4)")
      await pool.query("INSERT INTO cc_demand (sku, qty, ship) VALUES ('B-5', 1, CURRENT_DATE)")
      await listener.drain()
      await cache.getMany([...products, 'LOW', 'MOVED'])
      const outboxBefore = await count(pool, `SELECT MAX(id) FROM \`${prefix}_outbox\``)
      const out = await capture.bulkImport(cache, async (s) => {
        const n = await s.execute('INSERT INTO cc_movements (sku, qty) SELECT sku, qty FROM bulk_src ORDER BY id')
        await s.execute("INSERT INTO cc_movements (id, sku, qty) VALUES (5, 'LOW', 9)") // below the floor
        await s.execute("UPDATE cc_movements SET sku = 'MOVED' WHERE sku = 'B-3'") // a row from before the import
        await s.execute("DELETE FROM cc_movements WHERE sku = 'B-4'")
        await s.execute("UPDATE cc_movements SET sku = 'B-399' WHERE sku = 'B-398' AND id > 1000001") // new rows
        await s.transaction(async (tx) => {
          await tx.execute("INSERT INTO cc_demand (sku, qty, ship) VALUES ('B-7', 2, CURRENT_DATE)")
        })
        return n
      })
      expect(out).toBe(20_000)
      // Distinct products reach the outbox once the import settles: far fewer rows than row changes.
      const written = await count(pool, `SELECT COUNT(*) FROM \`${prefix}_outbox\` WHERE id > ?`, [outboxBefore ?? 0])
      expect(written).toBeLessThan(1000)
      expect(await count(pool, `SELECT COUNT(*) FROM \`${prefix}_bulk\``)).toBe(0)
      expect(await count(pool, `SELECT COUNT(*) FROM \`${prefix}_bulk_runs\``)).toBe(0)
      await listener.drain()
      const report = await cache.validate({ products: [...products, 'LOW', 'MOVED'] })
      expect(report.mismatches).toEqual([])
      expect(report.checked).toBe(products.length + 2)
      expect((await cache.get('LOW')).stockToday).toBe(9)
      expect((await cache.get('B-4')).stockToday).toBe(0)
      // The session is back to normal capture: the pool connection it used records rows again.
      await Promise.all(
        Array.from({ length: 12 }, () => pool.query("INSERT INTO cc_movements (sku, qty) VALUES ('AFTER', 1)")),
      )
      await listener.drain()
      expect((await cache.get('AFTER')).stockToday).toBe(12)
    })

    it('bulkImport: what fn committed before throwing is captured, the error is rethrown', async () => {
      await setUp()
      const cache = cacheFor(schema, capture)
      cleanups.push(() => cache.close())
      const listener = await capture.listen(cache)
      cleanups.push(() => listener.stop())
      expect((await cache.get('T1')).stockToday).toBe(0)
      await expect(
        capture.bulkImport(cache, async (s) => {
          await s.execute("INSERT INTO cc_movements (sku, qty) VALUES ('T1', 3)")
          await s.execute('START TRANSACTION')
          await s.execute("INSERT INTO cc_movements (sku, qty) VALUES ('T2', 3)") // left open: rolled back
          throw new Error('import failed')
        }),
      ).rejects.toThrow('import failed')
      await listener.drain()
      expect((await cache.get('T1')).stockToday).toBe(3)
      expect((await cache.get('T2')).stockToday).toBe(0)
      expect((await cache.validate({ products: ['T1', 'T2'] })).mismatches).toEqual([])
    })

    it('strong reads see rows a running bulk import committed, before it settles', async () => {
      await setUp()
      const reading = cacheFor(schema, capture) // another instance: not inside the import's block
      const importing = cacheFor(schema, capture)
      cleanups.push(
        () => reading.close(),
        () => importing.close(),
      )
      await pool.query("INSERT INTO cc_movements (sku, qty) VALUES ('BI-3', 1)")
      await pool.query(`DELETE FROM \`${prefix}_outbox\``)
      expect((await reading.get('BI-1')).stockToday).toBe(0)
      expect((await reading.get('BI-2')).days[0]!.closing).toBe(0)
      expect((await reading.get('BI-3')).stockToday).toBe(1)
      let release!: () => void
      const gate = new Promise<void>((r) => {
        release = r
      })
      let committed!: () => void
      const inserted = new Promise<void>((r) => {
        committed = r
      })
      const running = capture.bulkImport(importing, async (s) => {
        await s.execute("INSERT INTO cc_movements (sku, qty) VALUES ('BI-1', 4)") // above the floor: no row written
        await s.execute("INSERT INTO cc_supply (sku, qty, due) VALUES ('BI-2', 6, CURRENT_DATE)")
        await s.execute("UPDATE cc_movements SET qty = 8 WHERE sku = 'BI-3'") // recorded in the bulk table
        committed()
        await gate
      })
      await inserted
      expect(await count(pool, `SELECT COUNT(*) FROM \`${prefix}_outbox\``)).toBe(0)
      expect((await reading.get('BI-1', { consistency: 'strong' })).stockToday).toBe(4)
      expect((await reading.get('BI-2', { consistency: 'strong' })).days[0]!.closing).toBe(6)
      expect((await reading.get('BI-3')).stockToday).toBe(1) // default read: the listener has not run
      expect((await reading.get('BI-3', { consistency: 'strong' })).stockToday).toBe(8)
      release()
      await running
    })

    it('a bulk import whose session died is finished by the listener (sweep), nothing lost', async () => {
      await setUp()
      const c = make(schema, { scanMs: 100 })
      const cache = cacheFor(schema, c)
      cleanups.push(() => cache.close())
      expect((await cache.get('D1')).stockToday).toBe(0)
      expect((await cache.get('D2')).stockToday).toBe(0)
      // What bulkImport does, on a connection that is then destroyed before the import settles.
      const url = new URL(MYSQL_URL)
      url.pathname = `/${database}`
      const conn = await mysql.createConnection({ uri: url.toString() })
      await conn.query(`SELECT GET_LOCK('${prefix}_bulk_deadbeef', 0)`)
      await conn.query(`INSERT INTO \`${prefix}_bulk_runs\` (bulk_id, source_table) VALUES ('deadbeef', '')`)
      await conn.query(
        `INSERT INTO \`${prefix}_bulk_runs\` (bulk_id, source_table, key_column, floor_id)
         SELECT 'deadbeef', 'cc_movements', 'id', COALESCE(MAX(id), 0) FROM cc_movements`,
      )
      await conn.query(
        `SET @\`${prefix}_bulk\` = 'deadbeef', @\`${prefix}_bf_cc_movements\` = (SELECT COALESCE(MAX(id), 0) FROM cc_movements)`,
      )
      await conn.query("INSERT INTO cc_movements (sku, qty) VALUES ('D1', 1), ('D1', 1)")
      await conn.query("INSERT INTO cc_demand (sku, qty, ship) VALUES ('D2', 1, CURRENT_DATE)")
      expect(await count(pool, `SELECT COUNT(*) FROM \`${prefix}_outbox\``)).toBe(0)
      conn.destroy()
      const listener = await c.listen(cache)
      cleanups.push(() => listener.stop())
      const deadline = Date.now() + 10_000
      while ((await count(pool, `SELECT COUNT(*) FROM \`${prefix}_bulk_runs\``)) > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50))
      }
      await listener.drain()
      expect((await cache.get('D1')).stockToday).toBe(2)
      expect((await cache.get('D2')).days[0]!.closing).toBe(-1)
      expect(await count(pool, `SELECT COUNT(*) FROM \`${prefix}_bulk\``)).toBe(0)
    })

    it('listen before install is a ConfigError; status reports the oldest unprocessed mark', async () => {
      prefix = uniquePrefix('scm').replace(/^scm_\d+_/, 'scl')
      await createCcTables()
      const c = make()
      const cache: StockCache = cacheFor(schema, c)
      cleanups.push(() => cache.close())
      await expect(c.listen(cache)).rejects.toThrow(/call install\(\) first/)
      await expect(c.bulkImport(cache, async () => {})).rejects.toThrow(ConfigError)
      await c.install()
      await pool.query("INSERT INTO cc_movements (sku, qty) VALUES ('L1', 1)")
      await new Promise((r) => setTimeout(r, 60))
      const listener = await c.listen(cache)
      cleanups.push(() => listener.stop())
      await listener.drain()
      const st = listener.status()
      expect(st).toMatchObject({ running: true, processed: 1, lastError: null })
      expect((await cache.get('L1')).stockToday).toBe(1)
    })
  })
})
