import { ConfigError, type StockSchema } from 'stockcast'
import type { SqlDb } from '../types.js'
import { createMysqlCapture } from './mysql.js'
import { createPostgresCapture } from './postgres.js'
import type { SqlChangeCapture, SqlChangeCaptureOptions } from './types.js'

/**
 * Triggers + outbox change capture for your database: writes by any client (psql, another service, a migration)
 * mark the products they change, in the writer's own transaction. PostgreSQL and PGlite wake the listener with
 * LISTEN/NOTIFY; MySQL/MariaDB poll. The outbox row id is the mark's version.
 *
 * The pool needs room for the listener: one connection for LISTEN (PostgreSQL), one held by the batch being
 * processed, and the reader's own queries.
 *
 * @example
 * ```ts
 * const db = fromPg(pool)
 * const capture = sqlChangeCapture(db, schema)
 * await capture.install()                       // idempotent: run it at every start
 * const cache = createStockCache({ schema, reader: sqlReader(db, schema), pendingMarks: capture })
 * const listener = await capture.listen(cache)
 * const p = await cache.get('SKU-1', { consistency: 'strong' })
 * ```
 */
export function sqlChangeCapture(
  db: SqlDb,
  schema: StockSchema,
  options: SqlChangeCaptureOptions = {},
): SqlChangeCapture {
  switch (db?.dialect) {
    case 'postgres':
      return createPostgresCapture(db, schema, options)
    case 'mysql':
      return createMysqlCapture(db, schema, options)
    default:
      throw new ConfigError(
        `sqlChangeCapture: db must be an SqlDb from fromPg, fromPGlite or fromMysql, got dialect ${JSON.stringify(db?.dialect)}`,
        { option: 'db' },
      )
  }
}
