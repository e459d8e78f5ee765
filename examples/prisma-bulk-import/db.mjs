// The example's database: embedded PGlite by default, PostgreSQL when DATABASE_URL is set; its Prisma client,
// generated on first use; the tables (SQL, no migration engine needed) and their stockcast mapping.
import { spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { prismaSqlDb } from '@stockcast/prisma'
import { fromPg } from '@stockcast/sql'
import { defineStockSchema } from 'stockcast'

const here = dirname(fileURLToPath(import.meta.url))
const SCHEMA_FILE = join(here, 'prisma', 'schema.prisma')
const CLIENT_ENTRY = join(here, 'generated', 'prisma', 'index.js')

/** The stock schema, in table and column names (the Prisma models map to them with @@map/@map). */
export const schema = defineStockSchema({
  onHand: [{ table: 'stock_movements', product: 'product_code', quantity: 'quantity' }],
  supply: [{ table: 'production_schedule', product: 'product_code', quantity: 'planned_qty', date: 'scheduled_for' }],
  demand: [{ table: 'order_lines', product: 'product_code', quantity: 'open_qty', date: 'ship_date' }],
})

/** What prisma/schema.prisma describes, as SQL (`npx prisma db push` does this when the schema engine is there). */
export const DDL = `
CREATE TABLE IF NOT EXISTS stock_movements (
  id serial PRIMARY KEY, product_code text NOT NULL, quantity numeric(18,3) NOT NULL, reference text,
  moved_at timestamptz(6) NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS production_schedule (
  id serial PRIMARY KEY, product_code text NOT NULL, planned_qty numeric(18,3) NOT NULL, scheduled_for date NOT NULL);
CREATE TABLE IF NOT EXISTS order_lines (
  id serial PRIMARY KEY, product_code text NOT NULL, open_qty numeric(18,3) NOT NULL, ship_date date NOT NULL);
CREATE INDEX IF NOT EXISTS stock_movements_product_code_idx ON stock_movements (product_code);
CREATE INDEX IF NOT EXISTS production_schedule_product_code_idx ON production_schedule (product_code);
CREATE INDEX IF NOT EXISTS order_lines_product_code_idx ON order_lines (product_code);
`

/**
 * The generated Prisma client (prisma-client-js: plain JavaScript). Generated here when missing or older than the
 * schema, with the offline-safe script of @stockcast/prisma; in your own app this is `npx prisma generate`.
 */
export async function loadPrismaClient() {
  const stale = !existsSync(CLIENT_ENTRY) || statSync(CLIENT_ENTRY).mtimeMs < statSync(SCHEMA_FILE).mtimeMs
  if (stale) {
    const script = join(here, '..', '..', 'adapters', 'prisma', 'scripts', 'generate.mjs')
    const r = spawnSync(process.execPath, [script, SCHEMA_FILE], { stdio: 'inherit' })
    if (r.status !== 0) throw new Error('prisma generate failed')
  }
  const mod = await import(pathToFileURL(CLIENT_ENTRY).href)
  return mod.default ?? mod
}

/**
 * Open the database and a plain Prisma client over it. `sqlDb` is what the stockcast reader and store use: on
 * PostgreSQL the pg Pool given to @prisma/adapter-pg (`fromPg(pool)`), on PGlite the Prisma client itself
 * (`prismaSqlDb(prisma)`). Both work on either database; the example shows one each.
 */
export async function openDatabase() {
  const { PrismaClient } = await loadPrismaClient()
  if (process.env.DATABASE_URL) {
    const { default: pg } = await import('pg')
    const { PrismaPg } = await import('@prisma/adapter-pg')
    const dbSchema = 'stockcast_prisma_example'
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL })
    await admin.connect()
    await admin.query(`DROP SCHEMA IF EXISTS ${dbSchema} CASCADE`)
    await admin.query(`CREATE SCHEMA ${dbSchema}`)
    await admin.end()
    const pool = new pg.Pool({
      connectionString: process.env.DATABASE_URL,
      max: 8,
      options: `-c search_path=${dbSchema}`,
    })
    await pool.query(DDL)
    const prisma = new PrismaClient({ adapter: new PrismaPg(pool, { schema: dbSchema }) })
    return {
      label: `PostgreSQL (${new URL(process.env.DATABASE_URL).host}, schema ${dbSchema})`,
      prisma,
      sqlDb: fromPg(pool),
      async close() {
        await prisma.$disconnect()
        await pool.query(`DROP SCHEMA IF EXISTS ${dbSchema} CASCADE`)
        await pool.end()
      },
    }
  }
  const { PGlite } = await import('@electric-sql/pglite')
  const { PrismaPGlite } = await import('pglite-prisma-adapter')
  const pglite = new PGlite()
  await pglite.exec(DDL)
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(pglite) })
  return {
    label: 'embedded PGlite (set DATABASE_URL to use PostgreSQL)',
    prisma,
    sqlDb: prismaSqlDb(prisma),
    async close() {
      await prisma.$disconnect()
      await pglite.close()
    },
  }
}
