import { PGlite } from '@electric-sql/pglite'
import { PrismaPg } from '@prisma/adapter-pg'
import { fromPGlite, fromPg, type SqlDb, sqlReader, sqlStore } from '@stockcast/sql'
import pg from 'pg'
import { PrismaPGlite } from 'pglite-prisma-adapter'
import {
  createStockCache,
  defineStockSchema,
  type StockCache,
  type StockCacheOptions,
  type StockSchema,
} from 'stockcast'
import { prismaSqlDb, type StockcastExtensionOptions, stockcastExtension } from '../../src/index.js'
import { PrismaClient } from '../generated/client/client'
import { PG_URL, pgDown, uniquePrefix } from '../services.js'

/**
 * The tables of test/prisma/schema.prisma, written by hand: no migration engine runs offline. (With network
 * access, `prisma db push` creates the same tables.)
 */
export const DDL = `
CREATE TABLE cc_movements (id serial PRIMARY KEY, sku text NOT NULL, qty numeric(18,3) NOT NULL, moved_on date);
CREATE TABLE cc_supply (id serial PRIMARY KEY, sku text NOT NULL, qty numeric(18,3) NOT NULL, due date NOT NULL);
CREATE TABLE cc_demand (id serial PRIMARY KEY, sku text NOT NULL, qty numeric(18,3) NOT NULL, ship date NOT NULL);
CREATE TABLE stock_moves (id serial PRIMARY KEY, product_code text NOT NULL, quantity numeric(18,3) NOT NULL, note text);
CREATE TABLE orders (id serial PRIMARY KEY, code text NOT NULL UNIQUE, status text NOT NULL DEFAULT 'OPEN');
CREATE TABLE picking_items (
  id serial PRIMARY KEY,
  order_id integer NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
  product_code text NOT NULL,
  qty numeric(18,3) NOT NULL,
  ship_date date NOT NULL
);
CREATE TABLE audit_log (id serial PRIMARY KEY, message text NOT NULL);
`

/**
 * The ERP-like stock schema over the Prisma models StockMove, PickingItem and Order (their Prisma names differ from
 * the tables and columns): picking items are demand while their order is OPEN; an order's change marks its items.
 */
export const erpSchema: StockSchema = defineStockSchema({
  ...erpSources(),
  related: [{ table: 'orders', products: 'SELECT product_code FROM picking_items WHERE order_id = :id' }],
})

/** The sources of `erpSchema` (for a schema with other `related` declarations). */
export function erpSources() {
  return {
    onHand: [{ table: 'stock_moves', product: 'product_code', quantity: 'quantity' }],
    demand: [
      {
        table: 'picking_items',
        product: 'product_code',
        quantity: 'qty',
        date: 'ship_date',
        where: "EXISTS (SELECT 1 FROM orders o WHERE o.id = picking_items.order_id AND o.status = 'OPEN')",
      },
    ],
  }
}

/** A database to test on, with a Prisma client (not extended) over it. */
export interface TestDb {
  readonly kind: 'postgres' | 'pglite'
  /** The plain Prisma client. */
  readonly prisma: PrismaClient
  /** Raw SQL outside Prisma. */
  sql(text: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>
  /** The pool given to @prisma/adapter-pg (PostgreSQL only). */
  readonly pool?: pg.Pool
  /** An SqlDb on the database's own driver (`fromPg(pool)` or `fromPGlite`), besides `prismaSqlDb(prisma)`. */
  readonly driverDb: SqlDb
  /** Another Prisma driver adapter on the same database (for a second client with other options). */
  adapter(): PrismaPg | PrismaPGlite
  close(): Promise<void>
}

/** PostgreSQL: a schema of its own (search_path of every pool connection, and Prisma's schema), dropped by close. */
export async function pgTestDb(max = 10): Promise<TestDb> {
  const schemaName = uniquePrefix('sc_prisma').toLowerCase()
  const admin = new pg.Client({ connectionString: PG_URL })
  await admin.connect()
  try {
    await admin.query(`CREATE SCHEMA "${schemaName}"`)
  } finally {
    await admin.end()
  }
  const pool = new pg.Pool({ connectionString: PG_URL, max, options: `-c search_path=${schemaName}` })
  await pool.query(DDL)
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool, { schema: schemaName }) })
  return {
    kind: 'postgres',
    prisma,
    pool,
    adapter: () => new PrismaPg(pool, { schema: schemaName }),
    driverDb: fromPg(pool),
    sql: async (text, params) => (await pool.query(text, params)).rows,
    async close() {
      await prisma.$disconnect()
      await pool.query(`DROP SCHEMA IF EXISTS "${schemaName}" CASCADE`)
      await pool.end()
    },
  }
}

/** A fresh in-memory PGlite. */
export async function pgliteTestDb(): Promise<TestDb> {
  const pglite = new PGlite()
  await pglite.exec(DDL)
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(pglite) })
  return {
    kind: 'pglite',
    prisma,
    adapter: () => new PrismaPGlite(pglite),
    driverDb: fromPGlite(pglite),
    sql: async (text, params) => (await pglite.query<Record<string, unknown>>(text, params)).rows,
    async close() {
      await prisma.$disconnect()
      await pglite.close()
    },
  }
}

/** The databases every behaviour runs on (kysely's DIALECTS loop); STOCKCAST_PRISMA_DB=pglite keeps one. */
export const DATABASES = [
  { name: 'PostgreSQL', down: pgDown, open: () => pgTestDb() },
  { name: 'PGlite', down: null, open: pgliteTestDb },
].filter(
  (d) => process.env.STOCKCAST_PRISMA_DB === undefined || d.name.toLowerCase() === process.env.STOCKCAST_PRISMA_DB,
)

/** A cache over the database (reader and store through Prisma) and the client extended with it. */
export function stack(
  db: TestDb,
  schema: StockSchema,
  options: Partial<StockCacheOptions> & {
    via?: 'prisma' | 'driver'
    withStore?: boolean
    extension?: Partial<StockcastExtensionOptions>
  } = {},
) {
  const { via = 'prisma', withStore = false, extension, ...cacheOptions } = options
  const sqlDb = via === 'prisma' ? prismaSqlDb(db.prisma) : db.driverDb
  const cache: StockCache = createStockCache({
    schema,
    reader: sqlReader(sqlDb, schema),
    // One process here: an L1 ttl keeps the shared store legal without a bus (no STOCKCAST_SHARED_STORE_WITHOUT_BUS).
    ...(withStore
      ? {
          store: sqlStore(sqlDb, { table: 'stockcast_projections', prefix: `${uniquePrefix('t')}:` }),
          memory: { ttl: 600_000 },
        }
      : {}),
    ...cacheOptions,
  })
  const prisma = db.prisma.$extends(stockcastExtension({ cache, schema, ...extension }))
  return { cache, prisma }
}

/** Cache options under which a mark stays pending until read: `peek()` then tells which products were marked. */
export const HOLD_MARKS = { debounceMs: 3_600_000, maxWaitMs: 3_600_000 }

/** A UTC date (what a `@db.Date` column takes from Prisma). */
export const day = (iso: string) => new Date(`${iso}T00:00:00Z`)
