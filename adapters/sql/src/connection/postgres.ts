import type { SqlDb } from '../types.js'
import { isConnectionError } from './broken.js'
import { type ListenConnectionLike, listenWithReconnect } from './listen.js'

/** The members of a `pg` client this adapter calls (typed structurally: no dependency on `pg`). */
export interface PgClientLike {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>
  on(event: 'notification', listener: (msg: { channel: string; payload?: string }) => void): unknown
  on(event: 'error', listener: (err: Error) => void): unknown
  removeListener?(event: 'error', listener: (err: Error) => void): unknown
  removeAllListeners?(event?: string): unknown
  release(err?: boolean | Error): void
}

/** The members of a `pg` Pool this adapter calls. */
export interface PgPoolLike {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>
  connect(): Promise<PgClientLike>
}

/** `inTransaction`: a BEGIN is open on this client, so `transaction()` nests as a savepoint; otherwise it opens one. */
function wrapClient(client: PgClientLike, driver: string, inTransaction: boolean): SqlDb {
  const db: SqlDb = {
    dialect: 'postgres',
    driver,
    async query(sql, params) {
      return (await client.query(sql, params as unknown[])).rows as never
    },
    async execute(sql, params) {
      return (await client.query(sql, params as unknown[])).rowCount ?? 0
    },
    async transaction(fn) {
      // A session (`session()`) outside any transaction: open a real one on this connection.
      if (!inTransaction) return inTx(client, driver, 'BEGIN', fn)
      // Already on one connection: a nested transaction is a savepoint.
      const name = `sc_sp_${Math.random().toString(36).slice(2, 10)}`
      await client.query(`SAVEPOINT ${name}`)
      try {
        const out = await fn(db)
        await client.query(`RELEASE SAVEPOINT ${name}`)
        return out
      } catch (e) {
        await client.query(`ROLLBACK TO SAVEPOINT ${name}`)
        throw e
      }
    },
    session: (fn) => fn(db),
    // Inside BEGIN: the open transaction is the snapshot. A session: open a read-only snapshot on it.
    snapshot: (fn) => (inTransaction ? fn(db) : readSnapshot(client, driver, fn)),
  }
  return db
}

/** `fn` inside `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY` on `client` (one snapshot for all its queries). */
function readSnapshot<T>(client: PgClientLike, driver: string, fn: (tx: SqlDb) => Promise<T>): Promise<T> {
  return inTx(client, driver, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY', fn)
}

/** `fn` in a transaction opened by `begin` on `client`: COMMIT when it resolves, ROLLBACK when it throws. */
async function inTx<T>(client: PgClientLike, driver: string, begin: string, fn: (tx: SqlDb) => Promise<T>): Promise<T> {
  await client.query(begin)
  try {
    const out = await fn(wrapClient(client, driver, true))
    await client.query('COMMIT')
    return out
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {})
    throw e
  }
}

/**
 * A `pg` Pool (or a function returning one, called on first use) as an `SqlDb`.
 *
 * @example
 * ```ts
 * import pg from 'pg'
 * const db = fromPg(new pg.Pool({ connectionString: process.env.DATABASE_URL }))
 * ```
 */
export function fromPg(pool: PgPoolLike | (() => PgPoolLike)): SqlDb {
  let resolved: PgPoolLike | undefined
  const get = (): PgPoolLike => {
    resolved ??= typeof pool === 'function' ? pool() : pool
    return resolved
  }
  const withClient = async <T>(fn: (client: PgClientLike) => Promise<T>): Promise<T> => {
    const client = await get().connect()
    let broken: Error | undefined
    // pg-pool removes its own 'error' listener while a client is checked out: without one, a backend that dies
    // meanwhile (pg_terminate_backend, a restart) emits 'error' to nobody and crashes the process.
    const onError = (e: Error) => {
      broken = e
    }
    client.on('error', onError)
    try {
      return await fn(client)
    } catch (e) {
      // A connection-level failure must not go back into the pool.
      if (isConnectionError(e)) broken ??= e
      throw e
    } finally {
      client.removeListener?.('error', onError)
      client.release(broken ?? false)
    }
  }
  return {
    dialect: 'postgres',
    driver: 'pg',
    async query(sql, params) {
      return (await get().query(sql, params as unknown[])).rows as never
    },
    async execute(sql, params) {
      return (await get().query(sql, params as unknown[])).rowCount ?? 0
    },
    transaction(fn) {
      return withClient(async (client) => {
        await client.query('BEGIN')
        try {
          const out = await fn(wrapClient(client, 'pg', true))
          await client.query('COMMIT')
          return out
        } catch (e) {
          await client.query('ROLLBACK').catch(() => {})
          throw e
        }
      })
    },
    session(fn) {
      return withClient((client) => fn(wrapClient(client, 'pg', false)))
    },
    snapshot(fn) {
      return withClient((client) => readSnapshot(client, 'pg', fn))
    },
    listen(channel, onNotify, onReconnect, options) {
      return listenWithReconnect<PgClientLike & ListenConnectionLike>({
        channel,
        onNotify,
        onReconnect,
        onLost: options?.onLost,
        timers: options?.timers,
        acquire: async () => (await get().connect()) as PgClientLike & ListenConnectionLike,
        release: (c) => c.release(),
        // A client whose backend went away is destroyed, not pooled again.
        discard: (c) => c.release(true),
      })
    },
  }
}
