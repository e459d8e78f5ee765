import { listenWithReconnect, type SqlDb, type SqlDialect, scanSql } from '@stockcast/sql'
import { ConfigError } from 'stockcast'
import type { SequelizeLike, SequelizeTransactionLike } from './types.js'

/** Marks the queries this adapter sends through `sequelize.query` (the raw-write warning skips them). */
export const INTERNAL = Symbol.for('stockcast.sequelize.internal')

export interface FromSequelizeOptions {
  /**
   * How stockcast's own queries are logged: a function, or `false` for silence.
   * @default the Sequelize instance's own `logging` option
   */
  logging?: false | ((sql: string, timing?: number) => void)
}

/** The SQL family of a Sequelize dialect, or a `ConfigError` for one this adapter does not speak. */
export function dialectOf(sequelize: SequelizeLike): SqlDialect {
  const d = sequelize.getDialect()
  if (d === 'postgres') return 'postgres'
  if (d === 'mysql' || d === 'mariadb') return 'mysql'
  throw new ConfigError(
    `fromSequelize: dialect ${JSON.stringify(d)} is not supported (postgres, mysql and mariadb are); ` +
      'other databases can still use the model hooks with a reader of their own',
    { option: 'sequelize' },
  )
}

type Params = readonly unknown[] | undefined

const WORD = /\w/
const DIGIT = /\d/

/** One run of `k` dollars, encoded so Sequelize's rewrite gives it back (`placeholder`: `$` + digits stays a parameter). */
function encodeRun(k: number, prev: string | undefined, next: string | undefined, placeholder: boolean): string {
  let out = ''
  // After a word character the first `$` is no match for Sequelize's `\B`: it stays as it is. Such a run is part of
  // an identifier (`a$1`), never a placeholder.
  if (prev !== undefined && WORD.test(prev)) {
    out = '$'
    k--
    placeholder = false
  }
  if (k === 0) return out
  if (placeholder && next !== undefined && DIGIT.test(next)) return out + '$'.repeat(2 * (k - 1)) + '$'
  return out + '$'.repeat(2 * k)
}

function encodeRuns(sql: string, start: number, end: number, code: boolean): string {
  let out = ''
  let j = start
  while (j < end) {
    const d = sql.indexOf('$', j)
    if (d < 0 || d >= end) {
      out += sql.slice(j, end)
      break
    }
    out += sql.slice(j, d)
    let e = d
    while (e < end && sql[e] === '$') e++
    out += encodeRun(e - d, sql[d - 1], sql[e], code)
    j = e
  }
  return out
}

/**
 * Sequelize rewrites `$` runs when it binds (`/\B\$(\$|\w+)/g`: `$$` becomes `$`, `$name` must be a parameter),
 * even inside strings and dollar quotes. Encode PostgreSQL text so that after that rewrite it is exactly what we
 * wrote: `$n` placeholders in code stay parameters, every other `$` comes back unchanged.
 */
export function protectDollars(sql: string): string {
  if (!sql.includes('$')) return sql
  let out = ''
  // `$n` placeholders are parameters only in code; in strings, identifiers, comments and dollar quotes every `$`
  // must come back as written.
  scanSql('postgres', sql, (start, end, code) => {
    out += encodeRuns(sql, start, end, code)
  })
  return out
}

/** How one statement goes through `sequelize.query` for a dialect. */
export interface Runner {
  rows(sql: string, params: Params, transaction: SequelizeTransactionLike | null): Promise<any[]>
  count(sql: string, params: Params, transaction: SequelizeTransactionLike | null): Promise<number>
}

export function runner(sequelize: SequelizeLike, dialect: SqlDialect, options: FromSequelizeOptions): Runner {
  const pg = dialect === 'postgres'
  const base = (type: string, transaction: SequelizeTransactionLike | null): Record<string | symbol, unknown> => {
    // `transaction: null` (not undefined): a CLS transaction of the caller must not capture the cache's reads.
    const o: Record<string | symbol, unknown> = { type, raw: true, transaction, [INTERNAL]: true }
    if (options.logging !== undefined) o.logging = options.logging
    return o
  }
  const prepare = (sql: string, params: Params, o: Record<string | symbol, unknown>): string => {
    if (params === undefined || params.length === 0) return sql
    // Sequelize rejects `undefined` values; SQL means NULL.
    const values = params.map((v) => (v === undefined ? null : v))
    if (pg) {
      // PostgreSQL: bound parameters ($1, $2, arrays as arrays). Sequelize turns `$$` into `$` when it binds.
      o.bind = values
      return protectDollars(sql)
    }
    // MySQL/MariaDB: positional `?` replacements, escaped by Sequelize (`?` inside strings and comments is left alone).
    o.replacements = values
    return sql
  }
  return {
    async rows(sql, params, transaction) {
      // PostgreSQL: SELECT type, raw rows. MySQL: RAW gives the driver's own result (rows, or a header for a statement).
      const o = base(pg ? 'SELECT' : 'RAW', transaction)
      const out = await sequelize.query(prepare(sql, params, o), o)
      if (pg) return Array.isArray(out) ? out : []
      const data = Array.isArray(out) ? out[0] : undefined
      return Array.isArray(data) ? data : []
    },
    async count(sql, params, transaction) {
      // BULKUPDATE: Sequelize answers with the affected row count on both dialects.
      const o = base('BULKUPDATE', transaction)
      const out = await sequelize.query(prepare(sql, params, o), o)
      return typeof out === 'number' && Number.isFinite(out) ? out : 0
    },
  }
}

/** The `SqlDb` of one Sequelize transaction (nested `transaction()` is a savepoint). */
export function transactionDb(
  sequelize: SequelizeLike,
  dialect: SqlDialect,
  driver: string,
  run: Runner,
  options: FromSequelizeOptions,
  t: SequelizeTransactionLike,
): SqlDb {
  const db: SqlDb = {
    dialect,
    driver,
    query: (sql, params) => run.rows(sql, params, t),
    execute: (sql, params) => run.count(sql, params, t),
    transaction: (fn) =>
      sequelize.transaction(txOptions(options, t), (sp: SequelizeTransactionLike) =>
        fn(transactionDb(sequelize, dialect, driver, run, options, sp)),
      ),
    session: (fn) => fn(db),
  }
  return db
}

function txOptions(options: FromSequelizeOptions, parent?: SequelizeTransactionLike): Record<string, unknown> {
  const o: Record<string, unknown> = {}
  if (parent !== undefined) o.transaction = parent
  if (options.logging !== undefined) o.logging = options.logging
  return o
}

// ---------------------------------------------------------------- dedicated connections (session, LISTEN)

/** A pg `Client` as Sequelize's postgres dialect hands it out. */
interface PgConnection {
  query(sql: string, values?: unknown[]): Promise<{ rows: any[]; rowCount: number | null }>
  on(event: string, listener: (...args: any[]) => void): unknown
  removeListener(event: string, listener: (...args: any[]) => void): unknown
}

/** A mysql2 (callback API) connection as Sequelize's mysql dialect hands it out. */
interface MysqlConnection {
  query(sql: string, values: unknown[], cb: (err: Error | null, result: unknown) => void): unknown
}

/** A `mariadb` connector connection (Sequelize's mariadb dialect): promises. */
interface MariadbConnection {
  query(sql: string, values: unknown[]): Promise<unknown>
}

/** A driver connection of Sequelize's pool as an `SqlDb`; `inTransaction`: nested `transaction()` is a savepoint. */
function connectionDb(conn: unknown, dialect: SqlDialect, driver: string, inTransaction: boolean): SqlDb {
  const raw = async (sql: string, params: Params): Promise<{ rows: any[]; count: number }> => {
    const values = (params ?? []).map((v) => (v === undefined ? null : v))
    if (dialect === 'postgres') {
      const r = await (conn as PgConnection).query(sql, values)
      return { rows: r.rows ?? [], count: r.rowCount ?? 0 }
    }
    // mysql2 (dialect mysql) has a callback API; the `mariadb` connector (dialect mariadb) returns promises.
    const result =
      driver === 'sequelize:mariadb'
        ? await (conn as MariadbConnection).query(sql, values)
        : await new Promise<unknown>((resolve, reject) => {
            ;(conn as MysqlConnection).query(sql, values, (err, res) => (err ? reject(err) : resolve(res)))
          })
    return Array.isArray(result)
      ? { rows: result, count: 0 }
      : { rows: [], count: Number((result as { affectedRows?: number })?.affectedRows ?? 0) }
  }
  const db: SqlDb = {
    dialect,
    driver,
    query: async (sql, params) => (await raw(sql, params)).rows,
    execute: async (sql, params) => (await raw(sql, params)).count,
    async transaction(fn) {
      if (!inTransaction) {
        await raw(dialect === 'postgres' ? 'BEGIN' : 'START TRANSACTION', undefined)
        try {
          const out = await fn(connectionDb(conn, dialect, driver, true))
          await raw('COMMIT', undefined)
          return out
        } catch (e) {
          await raw('ROLLBACK', undefined).catch(() => {})
          throw e
        }
      }
      const name = `sc_sp_${Math.random().toString(36).slice(2, 10)}`
      await raw(`SAVEPOINT ${name}`, undefined)
      try {
        const out = await fn(db)
        await raw(`RELEASE SAVEPOINT ${name}`, undefined)
        return out
      } catch (e) {
        await raw(`ROLLBACK TO SAVEPOINT ${name}`, undefined)
        throw e
      }
    },
    session: (fn) => fn(db),
  }
  return db
}

const CONNECTION_LOST = /terminat|connection|ECONN|closed|EPIPE|PROTOCOL_/i

/**
 * A Sequelize instance (or a function returning one, called on first use) as the SQL adapter's `SqlDb`: the
 * reader, the table store and the trigger capture of `@stockcast/sql` then run over Sequelize's own pool (no second
 * pool). Queries go through `sequelize.query` (PostgreSQL: bound `$1` parameters; MySQL/MariaDB: `?` replacements),
 * outside any CLS transaction; `transaction()` is a managed Sequelize transaction; `session()` and `listen()` hold one
 * connection of the pool.
 *
 * @example
 * ```ts
 * const db = fromSequelize(sequelize)
 * const cache = createStockCache({ schema, reader: sqlReader(db, schema), store: sqlStore(db) })
 * ```
 */
export function fromSequelize(
  sequelize: SequelizeLike | (() => SequelizeLike),
  options: FromSequelizeOptions = {},
): SqlDb {
  if (sequelize === null || (typeof sequelize !== 'object' && typeof sequelize !== 'function')) {
    throw new ConfigError('fromSequelize expects a Sequelize instance (or a function returning one)', {
      option: 'sequelize',
    })
  }
  if (options.logging !== undefined && options.logging !== false && typeof options.logging !== 'function') {
    throw new ConfigError('fromSequelize: logging must be false or a function', { option: 'logging' })
  }
  let state: { s: SequelizeLike; dialect: SqlDialect; driver: string; run: Runner } | undefined
  const get = () => {
    if (state === undefined) {
      const s =
        typeof sequelize === 'function' && !isSequelize(sequelize) ? (sequelize as () => SequelizeLike)() : sequelize
      if (!isSequelize(s)) {
        throw new ConfigError('fromSequelize expects a Sequelize instance (query, transaction, getDialect)', {
          option: 'sequelize',
        })
      }
      const dialect = dialectOf(s)
      state = { s, dialect, driver: `sequelize:${s.getDialect()}`, run: runner(s, dialect, options) }
    }
    return state
  }
  const withConnection = async <T>(fn: (conn: unknown) => Promise<T>): Promise<T> => {
    const { s } = get()
    const conn = await s.connectionManager.getConnection()
    let broken = false
    try {
      return await fn(conn)
    } catch (e) {
      // A connection-level failure must not go back into the pool.
      broken = e instanceof Error && CONNECTION_LOST.test(e.message)
      throw e
    } finally {
      if (broken && typeof s.connectionManager.destroyConnection === 'function') {
        await s.connectionManager.destroyConnection(conn).catch(() => {})
      } else s.connectionManager.releaseConnection(conn)
    }
  }
  const db: SqlDb = {
    get dialect() {
      return get().dialect
    },
    get driver() {
      return get().driver
    },
    query: (sql, params) => get().run.rows(sql, params, null),
    execute: (sql, params) => get().run.count(sql, params, null),
    transaction(fn) {
      const { s, dialect, driver, run } = get()
      return s.transaction(txOptions(options), (t: SequelizeTransactionLike) =>
        fn(transactionDb(s, dialect, driver, run, options, t)),
      )
    },
    session(fn) {
      const { dialect, driver } = get()
      return withConnection((conn) => fn(connectionDb(conn, dialect, driver, false)))
    },
  }
  // LISTEN/NOTIFY (PostgreSQL): one pool connection held while listening, given back by the stop function; a lost
  // connection is destroyed and replaced (the SQL adapter's listenWithReconnect, over Sequelize's pool).
  db.listen = async (channel, onNotify, onReconnect, options) => {
    const { s, dialect } = get()
    if (dialect !== 'postgres') throw new ConfigError('listen: LISTEN/NOTIFY is PostgreSQL only', { option: 'db' })
    const cm = s.connectionManager
    return listenWithReconnect<PgConnection>({
      channel,
      onNotify,
      onReconnect,
      onLost: options?.onLost,
      timers: options?.timers,
      acquire: async () => (await cm.getConnection()) as PgConnection,
      release: (conn) => cm.releaseConnection(conn),
      discard: (conn) => cm.destroyConnection?.(conn) ?? cm.releaseConnection(conn),
      // Sequelize's pg connections report a dead backend as 'error' or 'end'.
      goneEvents: ['error', 'end'],
    })
  }
  return db
}

function isSequelize(x: unknown): x is SequelizeLike {
  const s = x as SequelizeLike
  return (
    s !== null &&
    (typeof s === 'object' || typeof s === 'function') &&
    typeof s.query === 'function' &&
    typeof s.transaction === 'function' &&
    typeof s.getDialect === 'function'
  )
}
