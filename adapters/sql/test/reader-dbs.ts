// The three databases the reader's behaviour tests run on, each opened fresh by the test file: PostgreSQL (a pool on
// a schema of its own), PGlite (a new instance) and MariaDB (tables under a unique prefix, dropped on close).
import { PGlite } from '@electric-sql/pglite'
import type mysql from 'mysql2/promise'
import pg from 'pg'
import { fromMysql, fromPGlite, fromPg, type SqlDb, type SqlDialect } from '../src/index.js'
import { mysqlDown, mysqlPool, PG_URL, pgDown, uniquePrefix } from './services.js'

type Rows = Array<Record<string, unknown>>

export interface ReaderDb {
  readonly kind: 'postgres' | 'pglite' | 'mysql'
  readonly dialect: SqlDialect
  /** The connection under test. */
  readonly db: SqlDb
  /** A table name of this test run (prefixed on MariaDB, dropped on close). */
  table(name: string): string
  /** `"x"` or `` `x` ``. */
  q(name: string): string
  /** The i-th placeholder (1-based). */
  ph(i: number): string
  /** Raw SQL on the writer's connections (apart from the reader's). */
  sql(text: string, params?: unknown[]): Promise<Rows>
  /** One transaction on a writer connection (PGlite: its single session, between the reader's statements). */
  writeTx(fn: (run: (text: string, params?: unknown[]) => Promise<unknown>) => Promise<void>): Promise<void>
  close(): Promise<void>
}

export interface OpenOptions {
  /** The session time zone of the reader's connections (PostgreSQL name, or a MariaDB offset such as '+09:00'). */
  sessionTimeZone?: string
  /** Connections of the reader's pool. @default 10 */
  max?: number
}

export interface ReaderDbCase {
  name: string
  kind: ReaderDb['kind']
  down: string | null
  open(options?: OpenOptions): Promise<ReaderDb>
}

const pgQuote = (name: string) =>
  name
    .split('.')
    .map((x) => `"${x}"`)
    .join('.')
const myQuote = (name: string) =>
  name
    .split('.')
    .map((x) => `\`${x}\``)
    .join('.')

async function openPg(options: OpenOptions = {}): Promise<ReaderDb> {
  const schemaName = uniquePrefix('sc_rdb').toLowerCase()
  const admin = new pg.Client({ connectionString: PG_URL })
  await admin.connect()
  await admin.query(`CREATE SCHEMA "${schemaName}"`)
  await admin.end()
  const settings = [`-c search_path=${schemaName}`]
  if (options.sessionTimeZone !== undefined) settings.push(`-c TimeZone=${options.sessionTimeZone}`)
  const pool = new pg.Pool({ connectionString: PG_URL, max: options.max ?? 10, options: settings.join(' ') })
  const writer = new pg.Pool({ connectionString: PG_URL, max: 2, options: `-c search_path=${schemaName}` })
  return {
    kind: 'postgres',
    dialect: 'postgres',
    db: fromPg(pool),
    table: (name) => name,
    q: pgQuote,
    ph: (i) => `$${i}`,
    sql: async (text, params) => (await writer.query(text, params)).rows,
    async writeTx(fn) {
      const c = await writer.connect()
      try {
        await c.query('BEGIN')
        await fn((text, params) => c.query(text, params))
        await c.query('COMMIT')
      } catch (e) {
        await c.query('ROLLBACK').catch(() => {})
        throw e
      } finally {
        c.release()
      }
    },
    async close() {
      await writer.query(`DROP SCHEMA IF EXISTS "${schemaName}" CASCADE`)
      await writer.end()
      await pool.end()
    },
  }
}

async function openPglite(options: OpenOptions = {}): Promise<ReaderDb> {
  const pglite = new PGlite()
  await pglite.waitReady
  if (options.sessionTimeZone !== undefined) await pglite.query(`SET TIME ZONE '${options.sessionTimeZone}'`)
  return {
    kind: 'pglite',
    dialect: 'postgres',
    db: fromPGlite(pglite),
    table: (name) => name,
    q: pgQuote,
    ph: (i) => `$${i}`,
    sql: async (text, params) => (await pglite.query<Record<string, unknown>>(text, params)).rows,
    writeTx: (fn) =>
      pglite.transaction(async (tx) => {
        await fn((text, params) => tx.query(text, params))
      }),
    close: () => pglite.close(),
  }
}

async function openMysql(options: OpenOptions = {}): Promise<ReaderDb> {
  const prefix = uniquePrefix('sc_rdb')
  const pool = mysqlPool(options.max ?? 10)
  if (options.sessionTimeZone !== undefined) {
    const tz = options.sessionTimeZone
    // mysql2's pool hands out promise connections; 'connection' gives the raw one.
    ;(pool as unknown as { pool: { on(e: string, f: (c: any) => void): void } }).pool.on('connection', (c) => {
      c.query(`SET time_zone = '${tz}'`)
    })
  }
  const writer: mysql.Pool = mysqlPool(2)
  const created = new Set<string>()
  return {
    kind: 'mysql',
    dialect: 'mysql',
    db: fromMysql(pool),
    table: (name) => {
      created.add(`${prefix}_${name}`)
      return `${prefix}_${name}`
    },
    q: myQuote,
    ph: () => '?',
    sql: async (text, params) => {
      const [rows] = await writer.query(text, params)
      return (Array.isArray(rows) ? rows : []) as Rows
    },
    async writeTx(fn) {
      const c = await writer.getConnection()
      try {
        await c.beginTransaction()
        await fn((text, params) => c.query(text, params))
        await c.commit()
      } catch (e) {
        await c.rollback().catch(() => {})
        throw e
      } finally {
        c.release()
      }
    },
    async close() {
      for (const t of created) await writer.query(`DROP TABLE IF EXISTS \`${t}\``)
      await writer.end()
      await pool.end()
    },
  }
}

const only = process.env.STOCKCAST_DIALECTS?.split(',')

/** PostgreSQL, PGlite and MariaDB (filtered by STOCKCAST_DIALECTS, as reader.test.ts is). */
export const READER_DBS: ReaderDbCase[] = [
  { name: 'PostgreSQL (pg Pool)', kind: 'postgres' as const, down: pgDown, open: openPg },
  { name: 'PGlite', kind: 'pglite' as const, down: null, open: openPglite },
  { name: 'MariaDB (mysql2 pool)', kind: 'mysql' as const, down: mysqlDown, open: openMysql },
].filter((c) => only === undefined || only.some((o) => c.name.toLowerCase().includes(o.toLowerCase())))

/** `onHand - demand` of a product's inputs (integers in these tests). */
export function closingOf(inputs: {
  onHand: readonly { quantity: unknown }[]
  demand: readonly { quantity: unknown }[]
}) {
  let total = 0
  for (const r of inputs.onHand) total += Number(r.quantity)
  for (const r of inputs.demand) total -= Number(r.quantity)
  return total
}
