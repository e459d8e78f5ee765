// One database connection for the history checker's own SQL (writers, the orchestrator): `?` placeholders on both
// dialects, rows as plain objects, DECIMAL and DATE values as exact strings.
import mysql from 'mysql2/promise'
import pg from 'pg'

/** `?` placeholders to `$1..$n` (the checker's SQL has no `?` inside literals). */
const toPg = (sql) => {
  let i = 0
  return sql.replace(/\?/g, () => `$${++i}`)
}

/** Placeholders for a list. */
export const marks = (n) => Array.from({ length: n }, () => '?').join(', ')

/** pg types: numeric, date and int8 stay strings (the checker casts in SQL anyway). */
const pgTypes = { getTypeParser: (oid, format) => (oid === 1082 ? (v) => v : pg.types.getTypeParser(oid, format)) }

/**
 * A connection: `{ dialect, q(sql, params) -> rows (or the mysql2 result header for writes), insertId, close,
 * broken }`. PostgreSQL connections use `search_path` = the run's schema; `appName` names them in pg_stat_activity.
 */
export async function connect({ dialect, url, schema, appName }) {
  if (dialect === 'postgres') {
    const client = new pg.Client({
      connectionString: url,
      application_name: appName ?? 'stockcast_history',
      types: pgTypes,
      ...(schema ? { options: `-c search_path=${schema}` } : {}),
    })
    const conn = { dialect, broken: null }
    client.on('error', (e) => {
      conn.broken = e
    })
    await client.connect()
    conn.q = async (sql, params = []) => (await client.query(toPg(sql), params)).rows
    conn.close = () => client.end().catch(() => {})
    conn.client = client
    return conn
  }
  const c = await mysql.createConnection({
    uri: url,
    decimalNumbers: false,
    dateStrings: true,
    supportBigNumbers: true,
  })
  const conn = { dialect, broken: null, client: c }
  c.on('error', (e) => {
    conn.broken = e
  })
  conn.q = async (sql, params = []) => (await c.query(sql, params))[0]
  conn.close = () => c.end().catch(() => {})
  conn.threadId = c.threadId
  return conn
}
