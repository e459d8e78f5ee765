import type { SqlDb } from '../types.js'
import { isConnectionError } from './broken.js'

type MysqlResult = [unknown, unknown]

/** The members of a mysql2/promise connection this adapter calls (typed structurally). */
export interface MysqlConnectionLike {
  query(sql: string, values?: unknown[]): Promise<MysqlResult>
  beginTransaction(): Promise<void>
  commit(): Promise<void>
  rollback(): Promise<void>
  release(): void
  /** Close the connection instead of pooling it again (mysql2 has it). */
  destroy?(): void
}

/** The members of a mysql2/promise Pool this adapter calls. */
export interface MysqlPoolLike {
  query(sql: string, values?: unknown[]): Promise<MysqlResult>
  getConnection(): Promise<MysqlConnectionLike>
}

const rowsOf = (result: MysqlResult) => (Array.isArray(result[0]) ? result[0] : []) as never
const affectedOf = (result: MysqlResult) => ((result[0] as { affectedRows?: number })?.affectedRows ?? 0) as number

/** `inTransaction`: a transaction is open on this connection, so `transaction()` nests as a savepoint; otherwise it opens one. */
function wrapConnection(conn: MysqlConnectionLike, inTransaction: boolean): SqlDb {
  const db: SqlDb = {
    dialect: 'mysql',
    driver: 'mysql2',
    async query(sql, params) {
      return rowsOf(await conn.query(sql, params as unknown[]))
    },
    async execute(sql, params) {
      return affectedOf(await conn.query(sql, params as unknown[]))
    },
    async transaction(fn) {
      if (!inTransaction) {
        // A session (`session()`) outside any transaction: open a real one on this connection.
        await conn.beginTransaction()
        try {
          const out = await fn(wrapConnection(conn, true))
          await conn.commit()
          return out
        } catch (e) {
          await conn.rollback().catch(() => {})
          throw e
        }
      }
      const name = `sc_sp_${Math.random().toString(36).slice(2, 10)}`
      await conn.query(`SAVEPOINT ${name}`)
      try {
        const out = await fn(db)
        await conn.query(`RELEASE SAVEPOINT ${name}`)
        return out
      } catch (e) {
        await conn.query(`ROLLBACK TO SAVEPOINT ${name}`)
        throw e
      }
    },
    session: (fn) => fn(db),
    snapshot: (fn) => (inTransaction ? fn(db) : readSnapshot(conn, fn)),
  }
  return db
}

/**
 * `fn` inside `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` on `conn`. The snapshot is taken at once only
 * under REPEATABLE READ (other levels ignore WITH CONSISTENT SNAPSHOT), so the level is set for this transaction.
 */
async function readSnapshot<T>(conn: MysqlConnectionLike, fn: (tx: SqlDb) => Promise<T>): Promise<T> {
  await conn.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
  await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY')
  try {
    const out = await fn(wrapConnection(conn, true))
    await conn.query('COMMIT')
    return out
  } catch (e) {
    await conn.query('ROLLBACK').catch(() => {})
    throw e
  }
}

/**
 * A mysql2/promise Pool (or a function returning one) as an `SqlDb`, for MySQL and MariaDB.
 * Create the pool with `decimalNumbers: false` (the default) so DECIMAL columns arrive as exact strings.
 *
 * @example
 * ```ts
 * import mysql from 'mysql2/promise'
 * const db = fromMysql(mysql.createPool({ host: '127.0.0.1', user: 'root', database: 'test' }))
 * ```
 */
export function fromMysql(pool: MysqlPoolLike | (() => MysqlPoolLike)): SqlDb {
  let resolved: MysqlPoolLike | undefined
  const get = (): MysqlPoolLike => {
    resolved ??= typeof pool === 'function' ? pool() : pool
    return resolved
  }
  const withConnection = async <T>(fn: (conn: MysqlConnectionLike) => Promise<T>): Promise<T> => {
    const conn = await get().getConnection()
    let broken = false
    try {
      return await fn(conn)
    } catch (e) {
      // A connection-level failure (or one that stopped answering) must not go back into the pool.
      broken = isConnectionError(e)
      throw e
    } finally {
      if (broken && typeof conn.destroy === 'function') conn.destroy()
      else conn.release()
    }
  }
  return {
    dialect: 'mysql',
    driver: 'mysql2',
    async query(sql, params) {
      return rowsOf(await get().query(sql, params as unknown[]))
    },
    async execute(sql, params) {
      return affectedOf(await get().query(sql, params as unknown[]))
    },
    transaction(fn) {
      return withConnection(async (conn) => {
        await conn.beginTransaction()
        try {
          const out = await fn(wrapConnection(conn, true))
          await conn.commit()
          return out
        } catch (e) {
          await conn.rollback().catch(() => {})
          throw e
        }
      })
    },
    session(fn) {
      return withConnection((conn) => fn(wrapConnection(conn, false)))
    },
    snapshot(fn) {
      return withConnection((conn) => readSnapshot(conn, fn))
    },
  }
}
