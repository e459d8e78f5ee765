// The examples' database: embedded PGlite by default, PostgreSQL when DATABASE_URL is set. On PostgreSQL everything
// happens in a schema of the example's own (created if missing), never elsewhere.
import { fromPGlite, fromPg } from '@stockcast/sql'

/** `{ db, close }`: an SqlDb and the function that ends it. Prints which database it is. */
export async function openDatabase(schema) {
  if (process.env.DATABASE_URL) {
    const { default: pg } = await import('pg')
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL })
    await admin.connect()
    await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
    await admin.end()
    const pool = new pg.Pool({
      connectionString: process.env.DATABASE_URL,
      max: 8,
      options: `-c search_path=${schema}`,
    })
    console.log(`database: PostgreSQL (${new URL(process.env.DATABASE_URL).host}), schema ${schema}`)
    return { db: fromPg(pool), close: () => pool.end() }
  }
  const { PGlite } = await import('@electric-sql/pglite')
  const pglite = new PGlite()
  console.log('database: embedded PGlite (set DATABASE_URL to use PostgreSQL)')
  return { db: fromPGlite(pglite), close: () => pglite.close() }
}
