// One harness over PostgreSQL, PGlite and MariaDB/MySQL for the capture tests that must hold on all three: a database
// of its own (a PostgreSQL schema, a fresh PGlite, a MariaDB database), the conformance tables, and raw SQL with `?`
// placeholders (what "any writer" does).
import mysql from 'mysql2/promise'
import { fromMysql, type SqlDb } from '../src/index.js'
import { createCcTables, pgliteTestDb, pgTestDb } from './capture-helpers.js'
import { MYSQL_URL, mysqlDown, mysqlPool, pgDown, uniquePrefix } from './services.js'

export interface DialectDb {
  readonly kind: 'postgres' | 'pglite' | 'mysql'
  readonly db: SqlDb
  /** Raw SQL outside the adapter, `?` placeholders on every dialect. */
  sql(text: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>
  /** Rows in the outbox of a capture with this prefix (default outbox name). */
  outboxCount(prefix: string): Promise<number>
  /** A name quoted for this dialect. */
  quote(name: string): string
  close(): Promise<void>
}

/** `?` -> `$1`, `$2`, ... (the tests' SQL has no `?` inside literals). */
const numbered = (text: string): string => {
  let n = 0
  return text.replace(/\?/g, () => `$${++n}`)
}

async function pgLike(kind: 'postgres' | 'pglite'): Promise<DialectDb> {
  const t = kind === 'postgres' ? await pgTestDb(10) : await pgliteTestDb()
  await createCcTables(t)
  return {
    kind,
    db: t.db,
    sql: (text, params) => t.sql(numbered(text), params),
    async outboxCount(prefix) {
      const [r] = await t.sql(`SELECT count(*)::int AS n FROM "${prefix}_outbox"`)
      return Number(r!.n)
    },
    quote: (name) => `"${name}"`,
    close: () => t.close(),
  }
}

async function mariadb(): Promise<DialectDb> {
  const database = uniquePrefix('sc_dl')
  const admin = mysqlPool(2)
  await admin.query(`CREATE DATABASE \`${database}\``)
  const url = new URL(MYSQL_URL)
  url.pathname = `/${database}`
  const pool = mysql.createPool({ uri: url.toString(), connectionLimit: 12, decimalNumbers: false, dateStrings: true })
  // The conformance tables; `sku` as TEXT: any product code up to 64 kB.
  for (const [table, date] of [
    ['cc_movements', 'moved_on DATE NULL'],
    ['cc_supply', 'due DATE NOT NULL'],
    ['cc_demand', 'ship DATE NOT NULL'],
  ]) {
    await pool.query(
      `CREATE TABLE ${table} (id INT AUTO_INCREMENT PRIMARY KEY, sku TEXT, qty DECIMAL(18,3) NOT NULL, ${date}, INDEX (sku(64))) ENGINE=InnoDB`,
    )
  }
  const sql = async (text: string, params: unknown[] = []) => {
    const [rows] = await pool.query(text, params)
    return (Array.isArray(rows) ? rows : []) as Array<Record<string, unknown>>
  }
  return {
    kind: 'mysql',
    db: fromMysql(pool),
    sql,
    async outboxCount(prefix) {
      const [r] = await sql(`SELECT COUNT(*) AS n FROM \`${prefix}_outbox\``)
      return Number(r!.n)
    },
    quote: (name) => `\`${name}\``,
    async close() {
      await pool.end()
      await admin.query(`DROP DATABASE IF EXISTS \`${database}\``)
      await admin.end()
    },
  }
}

/** The three databases, with why one is down (null: up). */
export const DIALECTS: Array<{ name: string; down: string | null; make: () => Promise<DialectDb> }> = [
  { name: 'PostgreSQL', down: pgDown, make: () => pgLike('postgres') },
  { name: 'PGlite', down: null, make: () => pgLike('pglite') },
  { name: 'MariaDB', down: mysqlDown, make: mariadb },
]

/** A prefix for a capture's objects that fits MariaDB's 64-character names and the capture's 40-character limit. */
export const capturePrefix = (): string => uniquePrefix('sc').replace(/^sc_\d+_/, 'sc')
