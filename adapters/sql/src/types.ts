import type { Timers } from 'stockcast'

/** The SQL family a connection speaks: PostgreSQL (pg, PGlite) or MySQL/MariaDB (mysql2). */
export type SqlDialect = 'postgres' | 'mysql'

/**
 * "Run this SQL with these parameters": the one thing every part of this adapter needs, over any driver.
 * Placeholders are the dialect's own (`$1` for postgres, `?` for mysql). Rows come back as plain objects;
 * numerics as strings (exact decimals), never floats.
 */
export interface SqlDb {
  readonly dialect: SqlDialect
  /** What this connection is (for messages): `pg`, `pglite`, `mysql2`. */
  readonly driver: string
  /** Rows of a query. */
  query<R extends Record<string, unknown> = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ): Promise<R[]>
  /** A statement; resolves to the affected row count. */
  execute(sql: string, params?: readonly unknown[]): Promise<number>
  /** Run `fn` on one connection inside BEGIN/COMMIT (ROLLBACK when it throws). */
  transaction<T>(fn: (tx: SqlDb) => Promise<T>): Promise<T>
  /**
   * PostgreSQL only: LISTEN on `channel` with a connection of its own. `onReconnect` runs after the connection was
   * lost and LISTEN re-established (the caller then scans for what it missed). `options.timers` runs the reconnect
   * backoff (the change capture passes its own, so fake timers drive it too); `options.onLost` runs once as soon as
   * the listening connection is seen lost (notifications are lost from then until `onReconnect`). Resolves to a stop
   * function.
   */
  listen?(
    channel: string,
    onNotify: (payload: string) => void,
    onReconnect?: () => void,
    options?: { timers?: Timers | undefined; onLost?: ((error: Error) => void) | undefined },
  ): Promise<() => Promise<void>>
  /** A session of its own for `fn` (same connection throughout): for session settings that must not leak. */
  session<T>(fn: (session: SqlDb) => Promise<T>): Promise<T>
  /**
   * Run `fn`'s queries in one read-only snapshot on one connection: PostgreSQL `BEGIN ISOLATION LEVEL REPEATABLE
   * READ READ ONLY`; MySQL/MariaDB `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` under REPEATABLE READ.
   * Inside an open transaction `fn` runs in it as is (that transaction's isolation level decides). Optional: the
   * reader reads a call in one statement when it is absent.
   */
  snapshot?<T>(fn: (tx: SqlDb) => Promise<T>): Promise<T>
}
