import { PGlite } from '@electric-sql/pglite'
import {
  ConfigError,
  createStockCache,
  defineStockSchema,
  type SourceInputs,
  SourceUnavailableError,
  type StockSchema,
} from 'stockcast'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fromMysql, fromPGlite, fromPg, type SqlDb, type SqlDialect, sqlReader, sqlStore } from '../src/index.js'
import { describeService, mysqlDown, mysqlPool, pgDown, pgPool, uniquePrefix } from './services.js'

/** What a test needs from one database: the SqlDb under test, raw DDL, the column types, and cleanup. */
interface Harness {
  db: SqlDb
  close(): Promise<void>
}

interface Dialect {
  name: string
  dialect: SqlDialect
  down: string | null
  open(): Promise<Harness>
  types: { text: string; qty: string; day: string; ts: string; int: string }
  /** Schema-qualified tables (a schema the test creates and drops). */
  schemas: boolean
}

const DIALECTS: Dialect[] = [
  {
    name: 'PostgreSQL (pg Pool)',
    dialect: 'postgres',
    down: pgDown,
    async open() {
      const pool = pgPool()
      return { db: fromPg(pool), close: () => pool.end() }
    },
    types: { text: 'varchar(40)', qty: 'numeric(18,3)', day: 'date', ts: 'timestamp', int: 'integer' },
    schemas: true,
  },
  {
    name: 'PGlite',
    dialect: 'postgres',
    down: null,
    async open() {
      const pglite = new PGlite()
      return { db: fromPGlite(pglite), close: () => pglite.close() }
    },
    types: { text: 'text', qty: 'numeric(18,3)', day: 'date', ts: 'timestamptz', int: 'integer' },
    schemas: true,
  },
  {
    name: 'MariaDB (mysql2 pool)',
    dialect: 'mysql',
    down: mysqlDown,
    async open() {
      const pool = mysqlPool()
      return { db: fromMysql(pool), close: () => pool.end() }
    },
    types: { text: 'VARCHAR(40)', qty: 'DECIMAL(18,3)', day: 'DATE', ts: 'DATETIME', int: 'INT' },
    schemas: false,
  },
]

const only = process.env.STOCKCAST_DIALECTS?.split(',')
const sorted = <R extends { date?: string | null; quantity: unknown; location?: string | null }>(rows: readonly R[]) =>
  [...rows].sort((a, b) =>
    `${a.location ?? ''}|${a.date ?? ''}|${a.quantity}`.localeCompare(
      `${b.location ?? ''}|${b.date ?? ''}|${b.quantity}`,
    ),
  )

for (const d of DIALECTS) {
  if (only !== undefined && !only.some((o) => d.name.toLowerCase().includes(o.toLowerCase()))) continue

  describeService(d.down, `sqlReader on ${d.name}`, () => {
    const p = uniquePrefix('sc_rd')
    const T = {
      moves: `${p}_moves`,
      dated: `${p}_dated`,
      schedule: `${p}_schedule`,
      lines: `${p}_lines`,
      reserved: `${p}_reserved`,
      loc: `${p}_loc`,
      locDemand: `${p}_loc_demand`,
      ints: `${p}_ints`,
    }
    const qi = (name: string) =>
      name
        .split('.')
        .map((x) => (d.dialect === 'postgres' ? `"${x}"` : `\`${x}\``))
        .join('.')
    const ph = (i: number) => (d.dialect === 'postgres' ? `$${i}` : '?')
    let h: Harness
    let schema: StockSchema

    const exec = (sql: string, params?: unknown[]) => h.db.execute(sql, params)
    const insert = async (table: string, cols: string[], rows: unknown[][]) => {
      let i = 0
      const values = rows.map((r) => `(${r.map(() => ph(++i)).join(', ')})`).join(', ')
      await exec(`INSERT INTO ${qi(table)} (${cols.map(qi).join(', ')}) VALUES ${values}`, rows.flat())
    }
    const tables = async (): Promise<string[]> => {
      const rows =
        d.dialect === 'postgres'
          ? await h.db.query<{ t: string }>(
              "SELECT schemaname || '.' || tablename AS t FROM pg_tables WHERE tablename LIKE $1 ORDER BY 1",
              [`${p}%`],
            )
          : await h.db.query<{ t: string }>(
              'SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE ? ORDER BY 1',
              [`${p}%`],
            )
      return rows.map((r) => String(r.t))
    }

    beforeAll(async () => {
      h = await d.open()
      const { text, qty, day, ts, int } = d.types
      await exec(`CREATE TABLE ${qi(T.moves)} (id ${int}, product_code ${text}, quantity ${qty})`)
      await exec(`CREATE TABLE ${qi(T.dated)} (product_code ${text}, qty ${qty}, moved_at ${ts} NULL)`)
      await exec(`CREATE TABLE ${qi(T.schedule)} (product_code ${text}, planned_qty ${qty}, scheduled_for ${ts})`)
      await exec(
        `CREATE TABLE ${qi(T.lines)} (product_code ${text}, open_qty ${qty}, ship_date ${day} NULL, batch_id ${int} NULL, status ${text})`,
      )
      // Reserved words as column names: only quoting makes these work.
      await exec(
        `CREATE TABLE ${qi(T.reserved)} (${qi('select')} ${text}, ${qi('order')} ${qty}, ${qi('group')} ${day})`,
      )
      await exec(`CREATE TABLE ${qi(T.ints)} (product_id ${int}, qty ${qty})`)

      await insert(
        T.moves,
        ['product_code', 'quantity'],
        [
          ['A', '0.1'],
          ['A', '0.2'],
          ['B', '123456789012345.678'],
          ['B', '0.001'],
          ['C', '-5'],
          ['C', null],
          ['N', null],
          ['abc', '1'],
          ['ABC', '2'],
          ['ABC ', '4'],
        ],
      )
      await insert(
        T.dated,
        ['product_code', 'qty', 'moved_at'],
        [
          ['A', '1', '2026-03-01 08:00:00'],
          ['A', '2', '2026-03-01 17:30:00'],
          ['A', '4', null],
          ['A', '8', null],
        ],
      )
      await insert(
        T.schedule,
        ['product_code', 'planned_qty', 'scheduled_for'],
        [
          ['A', '10.5', '2026-03-05 00:00:00'],
          ['A', '0.25', '2026-03-05 23:59:59'],
          ['A', '1', '2026-03-06 12:00:00'],
          ['S', '3', '2026-03-07 12:00:00'],
        ],
      )
      await insert(
        T.lines,
        ['product_code', 'open_qty', 'ship_date', 'batch_id', 'status'],
        [
          ['A', '2', '2026-03-02', null, 'OPEN'],
          ['A', '3', '2026-03-02', null, 'OPEN'],
          ['A', '100', '2026-03-02', 7, 'OPEN'],
          ['A', '1.5', '2026-03-03', null, 'QUOTE'],
          ['A', '9', null, null, 'OPEN'],
          ['D', '4', '2026-03-04', null, 'OPEN'],
        ],
      )
      await insert(
        T.reserved,
        ['select', 'order', 'group'],
        [
          ['A', '0.5', '2026-03-09'],
          ['A', '0.25', '2026-03-09'],
        ],
      )
      await insert(
        T.ints,
        ['product_id', 'qty'],
        [
          [42, '1.5'],
          [42, '1'],
          [7, '3'],
        ],
      )
      schema = defineStockSchema({
        onHand: [
          { table: T.moves, product: 'product_code', quantity: 'quantity', id: 'moves' },
          { table: T.dated, product: 'product_code', quantity: 'qty', date: 'moved_at', id: 'dated' },
        ],
        supply: [
          {
            table: T.schedule,
            product: 'product_code',
            quantity: 'planned_qty',
            date: 'scheduled_for',
            id: 'schedule',
          },
        ],
        demand: [
          {
            table: T.lines,
            product: 'product_code',
            quantity: 'open_qty',
            date: 'ship_date',
            where: "batch_id IS NULL AND status = 'OPEN'",
            id: 'lines',
          },
          {
            table: T.lines,
            product: 'product_code',
            quantity: 'open_qty',
            date: 'ship_date',
            where: "status = 'QUOTE'",
            pending: true,
            id: 'quotes',
          },
          { table: T.reserved, product: 'select', quantity: 'order', date: 'group', id: 'reserved' },
        ],
      })
    })

    afterAll(async () => {
      if (h === undefined) return
      for (const t of Object.values(T)) await exec(`DROP TABLE IF EXISTS ${qi(t)}`).catch(() => {})
      await h.close()
    })

    it('generates one aggregate query per source, identifiers quoted, values bound', async () => {
      const reader = sqlReader(h.db, schema)
      if (d.dialect === 'postgres') {
        // A date column is its own day (no cast, so no session time zone); out-of-range days are flagged with `!`.
        expect(await reader.sqlFor('lines', 3)).toBe(
          `SELECT 3 AS sc_src, "product_code"::text AS sc_product, NULL::text AS sc_location, ` +
            `CASE WHEN "ship_date" BETWEEN DATE '0001-01-01' AND DATE '9999-12-31' THEN to_char("ship_date", 'YYYY-MM-DD') ` +
            `ELSE '!' || "ship_date"::text END AS sc_date, ` +
            `SUM("open_qty"::numeric)::text AS sc_qty FROM "${T.lines}" WHERE "product_code" = ANY($1) ` +
            `AND "ship_date" IS NOT NULL AND (batch_id IS NULL AND status = 'OPEN') ` +
            `GROUP BY "product_code", "ship_date"`,
        )
        expect(await reader.sqlFor('moves', 3)).toBe(
          `SELECT 0 AS sc_src, "product_code"::text AS sc_product, NULL::text AS sc_location, NULL::text AS sc_date, ` +
            `SUM("quantity"::numeric)::text AS sc_qty FROM "${T.moves}" ` +
            `WHERE "product_code" = ANY($1) GROUP BY "product_code"`,
        )
      } else {
        expect(await reader.sqlFor('lines', 3)).toBe(
          `SELECT 3 AS sc_src, CONVERT(MIN(\`product_code\`) USING utf8mb4) COLLATE utf8mb4_bin AS sc_product, ` +
            `NULL AS sc_location, DATE_FORMAT(\`ship_date\`, '%Y-%m-%d') AS sc_date, ` +
            `CAST(SUM(\`open_qty\`) AS CHAR) AS sc_qty FROM \`${T.lines}\` WHERE \`product_code\` IN (?, ?, ?) ` +
            `AND \`ship_date\` IS NOT NULL AND (batch_id IS NULL AND status = 'OPEN') ` +
            `GROUP BY CAST(\`product_code\` AS BINARY), DATE_FORMAT(\`ship_date\`, '%Y-%m-%d')`,
        )
      }
    })

    it('reads exact decimal sums as strings', async () => {
      const got = await sqlReader(h.db, schema).read(['A', 'B', 'C'], { sources: ['moves'] })
      expect(got.get('A')!.onHand).toEqual([{ quantity: '0.300', source: 'moves' }])
      expect(got.get('B')!.onHand).toEqual([{ quantity: '123456789012345.679', source: 'moves' }])
      // NULL quantities are left out of the sum; a product whose sum is NULL has no row.
      expect(got.get('C')!.onHand).toEqual([{ quantity: '-5.000', source: 'moves' }])
    })

    it('skips NULL sums and leaves products without rows out of the map', async () => {
      const got = await sqlReader(h.db, schema).read(['N', 'NOPE'])
      expect(got.has('N')).toBe(false)
      expect(got.has('NOPE')).toBe(false)
      expect((await sqlReader(h.db, schema).read([])).size).toBe(0)
    })

    it('reads every source of a product: where fragments, pending, dates from timestamps, undated balance', async () => {
      const got = (await sqlReader(h.db, schema).read(['A'])).get('A')! as SourceInputs
      expect(sorted(got.onHand)).toEqual(
        sorted([
          { quantity: '0.300', source: 'moves' },
          { date: '2026-03-01', quantity: '3.000', source: 'dated' },
          { date: null, quantity: '12.000', source: 'dated' },
        ]),
      )
      expect(sorted(got.supply)).toEqual([
        { date: '2026-03-05', quantity: '10.750', source: 'schedule' },
        { date: '2026-03-06', quantity: '1.000', source: 'schedule' },
      ])
      // batch_id set: excluded by the where; NULL ship date: not counted; the quotation is pending.
      expect(sorted(got.demand)).toEqual(
        sorted([
          { date: '2026-03-02', quantity: '5.000', source: 'lines' },
          { date: '2026-03-03', quantity: '1.500', source: 'quotes', pending: true },
          { date: '2026-03-09', quantity: '0.750', source: 'reserved' },
        ]),
      )
    })

    it('reads only the sources asked for', async () => {
      const reader = sqlReader(h.db, schema)
      const got = await reader.read(['A', 'D'], { sources: ['quotes', 'schedule'] })
      expect(got.get('A')!.onHand).toEqual([])
      expect(got.get('A')!.demand).toEqual([{ date: '2026-03-03', quantity: '1.500', source: 'quotes', pending: true }])
      expect(got.get('A')!.supply).toHaveLength(2)
      expect(got.has('D')).toBe(false)
      await expect(reader.read(['A'], { sources: ['nope'] })).rejects.toBeInstanceOf(ConfigError)
      expect((await reader.read(['A'], { sources: [] })).size).toBe(0)
    })

    it('matches product ids byte for byte: case and trailing spaces count (MySQL collations ignore them)', async () => {
      const got = await sqlReader(h.db, schema).read(['abc', 'ABC', 'Abc', 'ABC '], { sources: ['moves'] })
      expect(got.get('abc')!.onHand).toEqual([{ quantity: '1.000', source: 'moves' }])
      expect(got.get('ABC')!.onHand).toEqual([{ quantity: '2.000', source: 'moves' }])
      expect(got.get('ABC ')!.onHand).toEqual([{ quantity: '4.000', source: 'moves' }])
      expect(got.has('Abc')).toBe(false)
      const only = await sqlReader(h.db, schema).read(['ABC'], { sources: ['moves'] })
      expect([...only.keys()]).toEqual(['ABC'])
    })

    it('reads CHAR(n) product columns without their padding', async () => {
      const fixed = `${p}_fixed`
      await exec(`CREATE TABLE ${qi(fixed)} (code CHAR(8), q ${d.types.qty})`)
      try {
        await insert(
          fixed,
          ['code', 'q'],
          [
            ['K1', '1'],
            ['K1', '2'],
          ],
        )
        const reader = sqlReader(
          h.db,
          defineStockSchema({ onHand: [{ table: fixed, product: 'code', quantity: 'q' }] }),
        )
        expect((await reader.read(['K1'])).get('K1')!.onHand).toEqual([{ quantity: '3.000', source: fixed }])
        expect(await reader.products()).toEqual(['K1'])
      } finally {
        await exec(`DROP TABLE ${qi(fixed)}`)
      }
    })

    it('reads integer product columns with string ids', async () => {
      const ints = defineStockSchema({ onHand: [{ table: T.ints, product: 'product_id', quantity: 'qty' }] })
      const reader = sqlReader(h.db, ints)
      const got = await reader.read(['42', '7', '8'])
      expect(got.get('42')!.onHand).toEqual([{ quantity: '2.500', source: T.ints }])
      expect(got.get('7')!.onHand).toEqual([{ quantity: '3.000', source: T.ints }])
      expect(got.has('8')).toBe(false)
      expect(await reader.products()).toEqual(['42', '7'])
    })

    it('reads 1 200 products in one call, split into batches', async () => {
      const big = `${p}_big`
      await exec(`CREATE TABLE ${qi(big)} (product_code ${d.types.text}, quantity ${d.types.qty})`)
      try {
        const ids = Array.from({ length: 1200 }, (_, i) => `P${String(i).padStart(4, '0')}`)
        await insert(
          big,
          ['product_code', 'quantity'],
          ids.flatMap((id, i) => [
            [id, `${i}.5`],
            [id, '0.25'],
          ]),
        )
        const bigSchema = defineStockSchema({ onHand: [{ table: big, product: 'product_code', quantity: 'quantity' }] })
        for (const batchSize of [undefined, 100, 5000]) {
          const got = await sqlReader(h.db, bigSchema, { batchSize }).read(ids)
          expect(got.size).toBe(1200)
          expect(got.get('P0000')!.onHand).toEqual([{ quantity: '0.750', source: big }])
          expect(got.get('P1199')!.onHand).toEqual([{ quantity: '1199.750', source: big }])
        }
      } finally {
        await exec(`DROP TABLE ${qi(big)}`)
      }
    })

    it('lists every distinct product across sources, sorted', async () => {
      expect(await sqlReader(h.db, schema).products()).toEqual(
        ['A', 'ABC', 'ABC ', 'B', 'C', 'D', 'N', 'S', 'abc'].sort(),
      )
    })

    it('reads locations: rows carry the location column, NULL as null', async () => {
      const { text, qty, day } = d.types
      await exec(`CREATE TABLE ${qi(T.loc)} (sku ${text}, wh ${text} NULL, q ${qty})`)
      await exec(`CREATE TABLE ${qi(T.locDemand)} (sku ${text}, wh ${text} NULL, q ${qty}, due ${day})`)
      await insert(
        T.loc,
        ['sku', 'wh', 'q'],
        [
          ['L', 'W1', '5'],
          ['L', 'W1', '1'],
          ['L', 'W2', '2'],
          ['L', null, '7'],
        ],
      )
      await insert(
        T.locDemand,
        ['sku', 'wh', 'q', 'due'],
        [
          ['L', 'W1', '3', '2026-03-02'],
          ['L', 'W2', '1', '2026-03-02'],
          ['L', 'W2', '1', '2026-03-02'],
        ],
      )
      const locSchema = defineStockSchema({
        onHand: [{ table: T.loc, product: 'sku', quantity: 'q', location: 'wh', id: 'stock' }],
        demand: [{ table: T.locDemand, product: 'sku', quantity: 'q', date: 'due', location: 'wh', id: 'due' }],
      })
      const got = (await sqlReader(h.db, locSchema).read(['L'])).get('L')!
      expect(sorted(got.onHand)).toEqual(
        sorted([
          { quantity: '6.000', location: 'W1', source: 'stock' },
          { quantity: '2.000', location: 'W2', source: 'stock' },
          { quantity: '7.000', location: null, source: 'stock' },
        ]),
      )
      expect(sorted(got.demand)).toEqual(
        sorted([
          { date: '2026-03-02', quantity: '3.000', location: 'W1', source: 'due' },
          { date: '2026-03-02', quantity: '2.000', location: 'W2', source: 'due' },
        ]),
      )
    })

    it.runIf(d.schemas)('reads a schema-qualified table named by a reserved word', async () => {
      const ns = `${p}_ns`
      await exec(`CREATE SCHEMA ${qi(ns)}`)
      try {
        await exec(`CREATE TABLE ${qi(`${ns}.order`)} (${qi('from')} ${d.types.text}, ${qi('table')} ${d.types.qty})`)
        await insert(`${ns}.order`, ['from', 'table'], [['Q', '1.25']])
        const nsSchema = defineStockSchema({ onHand: [{ table: `${ns}.order`, product: 'from', quantity: 'table' }] })
        const reader = sqlReader(h.db, nsSchema)
        await reader.check()
        expect((await reader.read(['Q'])).get('Q')!.onHand).toEqual([{ quantity: '1.250', source: `${ns}.order` }])
        expect(await reader.products()).toEqual(['Q'])
      } finally {
        await exec(`DROP SCHEMA ${qi(ns)} CASCADE`)
      }
    })

    it('check() passes for a schema that matches the database', async () => {
      await sqlReader(h.db, schema).check()
    })

    it('check() names an unknown table or column with a ConfigError, and changes nothing', async () => {
      const before = await tables()
      const missingTable = defineStockSchema({
        onHand: [
          { table: T.moves, product: 'product_code', quantity: 'quantity' },
          { table: `${p}_nowhere`, product: 'product_code', quantity: 'quantity' },
        ],
      })
      const e1 = await sqlReader(h.db, missingTable)
        .check()
        .catch((e) => e)
      expect(e1).toBeInstanceOf(ConfigError)
      expect(e1.message).toContain(`${p}_nowhere`)

      const missingColumn = defineStockSchema({
        onHand: [{ table: T.moves, product: 'product_code', quantity: 'qty_typo' }],
        demand: [{ table: T.lines, product: 'product_code', quantity: 'open_qty', date: 'shipped_on' }],
      })
      const e2 = await sqlReader(h.db, missingColumn)
        .check()
        .catch((e) => e)
      expect(e2).toBeInstanceOf(ConfigError)
      expect(e2.message).toContain('qty_typo')
      expect(e2.message).toContain('shipped_on')
      expect(e2.message).toContain(T.lines)
      expect(e2.source).toBe(T.moves)

      const badWhere = defineStockSchema({
        onHand: [{ table: T.moves, product: 'product_code', quantity: 'quantity', where: 'no_such_column = 1' }],
      })
      const commented = defineStockSchema({
        onHand: [
          { table: T.moves, product: 'product_code', quantity: 'quantity', where: "product_code <> 'Z' -- no Z" },
        ],
      })
      await sqlReader(h.db, commented).check()
      expect((await sqlReader(h.db, commented).read(['A'])).get('A')!.onHand).toEqual([
        { quantity: '0.300', source: T.moves },
      ])
      const e3 = await sqlReader(h.db, badWhere)
        .check()
        .catch((e) => e)
      expect(e3).toBeInstanceOf(ConfigError)
      expect(e3.message).toContain('no_such_column')
      expect(await tables()).toEqual(before)
    })

    it.runIf(d.dialect === 'postgres')('check() explains a case mismatch (identifiers are quoted)', async () => {
      const mixed = defineStockSchema({
        onHand: [{ table: T.moves, product: 'Product_Code', quantity: 'quantity' }],
      })
      const e = await sqlReader(h.db, mixed)
        .check()
        .catch((x) => x)
      expect(e).toBeInstanceOf(ConfigError)
      expect(e.message).toMatch(/case matters.*"product_code"/)
    })

    it('a query failing at read time is a SourceUnavailableError naming the source, with the cause', async () => {
      const gone = defineStockSchema({
        onHand: [{ table: `${p}_gone`, product: 'product_code', quantity: 'quantity', id: 'gone-source' }],
      })
      const e = await sqlReader(h.db, gone)
        .read(['A'])
        .catch((x) => x)
      expect(e).toBeInstanceOf(SourceUnavailableError)
      expect(e.source).toBe('gone-source')
      expect(e.message).toContain(`${p}_gone`)
      expect(e.cause).toBeInstanceOf(Error)
      const e2 = await sqlReader(h.db, gone)
        .products()
        .catch((x) => x)
      expect(e2).toBeInstanceOf(SourceUnavailableError)
    })

    it('feeds createStockCache end to end, with sqlStore on the same database as L2', async () => {
      const store = sqlStore(h.db, { table: `${p}_projections` })
      const cache = createStockCache({
        schema,
        reader: sqlReader(h.db, schema),
        store,
        clock: { now: () => Date.parse('2026-03-01T12:00:00Z') },
      })
      try {
        const a = await cache.get('A')
        expect(a.today).toBe('2026-03-01')
        expect(a.stockToday).toBe(15.3) // 0.3 undated + 3 dated on D0 + 12 with a NULL date
        expect(a.days[1]!.closing).toBe(10.3) // 5 firm demand on 03-02 (the batch_id row is excluded)
        expect(a.days[2]!.closingWithPending).toBe(8.8) // the 1.5 quotation is pending only
        expect(a.days[4]!.closing).toBe(21.05) // 10.75 supply on 03-05, from two timestamps that day
        expect(a.days[8]!.closing).toBe(21.3) // 0.75 from the reserved-word table on 03-09
        expect(a.minClosing7d).toBe(10.3)
        const rebuilt = await cache.rebuildAll()
        expect(rebuilt.products).toBe(9)
        // B's 123456789012345.679 is read exactly but is beyond the calculator's range at scale 3.
        expect(rebuilt.failed).toBe(1)
        const listed = await sqlReader(h.db, schema).products()
        const report = await cache.validate({ products: listed.filter((x) => x !== 'B') })
        expect(report.mismatches).toEqual([])
        expect(report.checked).toBe(8)
        expect((await store.getMany(['A'])).get('A')!.value.stockToday).toBe(15.3)
      } finally {
        await cache.close()
        await store.drop()
      }
    })

    it('rejects bad options, and a placeholder in a where fragment', () => {
      expect(() => sqlReader(h.db, schema, { batchSize: 0 })).toThrow(ConfigError)
      expect(() => sqlReader(h.db, schema, { concurrency: 1.5 })).toThrow(ConfigError)
      const where = d.dialect === 'postgres' ? 'status = $2' : "status <> '?'"
      const withParam = defineStockSchema({
        onHand: [{ table: T.moves, product: 'product_code', quantity: 'quantity', where }],
      })
      expect(() => sqlReader(h.db, withParam)).toThrow(/placeholder/)
    })
  })
}

describe('sqlReader on PGlite runs one query at a time', () => {
  it('never has two queries in flight on a single-session database, batches inside one transaction', async () => {
    const pglite = new PGlite()
    try {
      const db = fromPGlite(pglite)
      await db.execute('CREATE TABLE m (p text, q numeric)')
      await db.execute("INSERT INTO m VALUES ('A', 1)")
      let inFlight = 0
      let most = 0
      let snapshots = 0
      const counting = (inner: SqlDb): SqlDb => ({
        ...inner,
        async query(sql, params) {
          most = Math.max(most, ++inFlight)
          try {
            return await inner.query(sql, params)
          } finally {
            inFlight--
          }
        },
        snapshot(fn) {
          snapshots++
          return inner.snapshot!((tx) => fn(counting(tx)))
        },
      })
      const s = defineStockSchema({
        onHand: [
          { table: 'm', product: 'p', quantity: 'q' },
          { table: 'm', product: 'p', quantity: 'q' },
          { table: 'm', product: 'p', quantity: 'q' },
        ],
      })
      const got = await sqlReader(counting(db), s, { concurrency: 8, batchSize: 1 }).read(['A', 'B', 'C'])
      expect(got.get('A')!.onHand).toHaveLength(3)
      expect(most).toBe(1)
      expect(snapshots).toBe(1)
    } finally {
      await pglite.close()
    }
  })
})
