import { backoffDelay, defaultTimers, SourceUnavailableError, type Timers } from 'stockcast'

/** A PostgreSQL connection held for LISTEN (a `pg` client, or one a pool such as Sequelize's hands out). */
export interface ListenConnectionLike {
  query(sql: string): Promise<unknown>
  on(event: string, listener: (...args: any[]) => void): unknown
  removeListener?(event: string, listener: (...args: any[]) => void): unknown
}

export interface ListenWithReconnectOptions<C extends ListenConnectionLike> {
  /** A plain identifier (it is written into `LISTEN`). */
  channel: string
  onNotify: (payload: string) => void
  /** Called after a lost connection was replaced and `LISTEN` holds again (notifications in between are lost). */
  onReconnect?: (() => void) | undefined
  /**
   * Called once when the listening connection is lost (its backend went away), before it is replaced: from then on
   * notifications are lost until `onReconnect`. Not called for a reconnect attempt that fails, nor after `stop()`.
   */
  onLost?: ((error: Error) => void) | undefined
  /** Take a connection from the pool. */
  acquire(): Promise<C>
  /** Give a healthy connection back to the pool (after `UNLISTEN`). */
  release(conn: C): unknown
  /** Throw away a connection whose backend went away (it must not go back into the pool). */
  discard(conn: C): unknown
  /** The events that mean the backend went away. @default ['error'] */
  goneEvents?: readonly string[]
  /** Runs the reconnect backoff. @default stockcast's `defaultTimers` (unref'd) */
  timers?: Timers | undefined
}

/**
 * `LISTEN` on one pooled connection, held until the returned function stops it: a lost connection (terminated
 * backend, restart, network) is discarded and replaced with backoff (100 ms doubling up to 5 s), then `onReconnect`
 * runs so the caller can catch up on what it missed (`onLost` runs as soon as the loss is seen). For adapters whose pool hands out `pg`-like connections
 * (`fromPg` and `@stockcast/sequelize` use it).
 */
export async function listenWithReconnect<C extends ListenConnectionLike>(
  o: ListenWithReconnectOptions<C>,
): Promise<() => Promise<void>> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(o.channel)) {
    throw new SourceUnavailableError(`listen: channel ${JSON.stringify(o.channel)} is not a plain identifier`)
  }
  const gone = o.goneEvents ?? ['error']
  let stopped = false
  let current: { conn: C; onNotification: (msg: any) => void; onGone: () => void } | undefined
  const timers = o.timers ?? defaultTimers
  let retry: unknown
  let attempt = 0
  const detach = (c: NonNullable<typeof current>) => {
    c.conn.removeListener?.('notification', c.onNotification)
    for (const ev of gone) c.conn.removeListener?.(ev, c.onGone)
  }
  const discard = async (conn: C) => {
    try {
      await o.discard(conn)
    } catch {
      // already gone
    }
  }
  const connect = async (isReconnect: boolean): Promise<void> => {
    const conn = await o.acquire()
    const c = {
      conn,
      onNotification: (msg: { channel: string; payload?: string }) => {
        if (msg.channel === o.channel) o.onNotify(msg.payload ?? '')
      },
      onGone: (cause?: unknown) => {
        // Once only: a second event, or one after stop() gave the connection back, must not discard it again.
        if (current !== c) return
        current = undefined
        detach(c)
        void discard(conn)
        schedule()
        if (o.onLost !== undefined) {
          const error =
            cause instanceof Error ? cause : new Error(`listen(${o.channel}): the LISTEN connection was lost`)
          try {
            o.onLost(error)
          } catch {
            // the caller's failure is not the listener's
          }
        }
      },
    }
    current = c
    conn.on('notification', c.onNotification)
    for (const ev of gone) conn.on(ev, c.onGone)
    try {
      await conn.query(`LISTEN ${o.channel}`)
    } catch (e) {
      // LISTEN failed without an event: do not keep (leak) the checked-out connection.
      if (current === c) {
        current = undefined
        detach(c)
        await discard(conn)
      }
      throw e
    }
    attempt = 0
    if (isReconnect) o.onReconnect?.()
  }
  const schedule = () => {
    if (stopped || retry !== undefined) return
    retry = timers.setTimeout(
      () => {
        retry = undefined
        connect(true).catch(() => schedule())
      },
      backoffDelay(attempt++, 100, 5000),
    )
  }
  await connect(false)
  return async () => {
    stopped = true
    if (retry !== undefined) timers.clearTimeout(retry)
    const c = current
    current = undefined
    if (c === undefined) return
    c.conn.removeListener?.('notification', c.onNotification)
    // The 'error' handler stays while UNLISTEN runs: a pooled connection with no 'error' listener crashes the
    // process when its backend dies. It goes in the same tick as the connection goes back to the pool.
    await c.conn.query(`UNLISTEN ${o.channel}`).catch(() => {})
    o.release(c.conn)
    detach(c)
  }
}
