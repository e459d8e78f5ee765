import type { SqlDb } from '../types.js'

/** The members of a PGlite instance this adapter calls (typed structurally). */
export interface PGliteLike {
  query<T = Record<string, unknown>>(query: string, params?: unknown[]): Promise<{ rows: T[]; affectedRows?: number }>
  transaction<T>(fn: (tx: PGliteTxLike) => Promise<T>): Promise<T>
  listen(channel: string, callback: (payload: string) => void): Promise<(() => Promise<void>) | unknown>
  exec?(query: string): Promise<unknown>
}

export interface PGliteTxLike {
  query<T = Record<string, unknown>>(query: string, params?: unknown[]): Promise<{ rows: T[]; affectedRows?: number }>
}

function wrapTx(tx: PGliteTxLike): SqlDb {
  const db: SqlDb = {
    dialect: 'postgres',
    driver: 'pglite',
    async query(sql, params) {
      return (await tx.query(sql, params as unknown[])).rows as never
    },
    async execute(sql, params) {
      return (await tx.query(sql, params as unknown[])).affectedRows ?? 0
    },
    async transaction(fn) {
      const name = `sc_sp_${Math.random().toString(36).slice(2, 10)}`
      await tx.query(`SAVEPOINT ${name}`)
      try {
        const out = await fn(db)
        await tx.query(`RELEASE SAVEPOINT ${name}`)
        return out
      } catch (e) {
        await tx.query(`ROLLBACK TO SAVEPOINT ${name}`)
        throw e
      }
    },
    session: (fn) => fn(db),
    // Already inside PGlite's transaction (which holds the instance): that transaction is the snapshot.
    snapshot: (fn) => fn(db),
  }
  return db
}

/**
 * An embedded PGlite (PostgreSQL in WASM, one session) as an `SqlDb`. Triggers and LISTEN/NOTIFY work.
 *
 * @example
 * ```ts
 * import { PGlite } from '@electric-sql/pglite'
 * const db = fromPGlite(new PGlite())
 * ```
 */
export function fromPGlite(pglite: PGliteLike | (() => PGliteLike)): SqlDb {
  let resolved: PGliteLike | undefined
  const get = (): PGliteLike => {
    resolved ??= typeof pglite === 'function' ? pglite() : pglite
    return resolved
  }
  return {
    dialect: 'postgres',
    driver: 'pglite',
    async query(sql, params) {
      return (await get().query(sql, params as unknown[])).rows as never
    },
    async execute(sql, params) {
      return (await get().query(sql, params as unknown[])).affectedRows ?? 0
    },
    transaction(fn) {
      return get().transaction((tx) => fn(wrapTx(tx)))
    },
    // PGlite is a single session: a "session" is the instance itself. Session settings must be reset by the caller.
    session(fn) {
      return fn(this)
    },
    // PGlite's transaction() holds the single session until it ends: no other query runs in between. Call it on the
    // instance, never from inside one of its transactions (use that transaction's SqlDb there): it would wait forever.
    snapshot(fn) {
      return get().transaction(async (tx) => {
        await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY')
        return fn(wrapTx(tx))
      })
    },
    async listen(channel, onNotify) {
      const unsub = await get().listen(channel, onNotify)
      return async () => {
        if (typeof unsub === 'function') await (unsub as () => Promise<void>)()
      }
    },
  }
}
