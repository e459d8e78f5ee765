import { createHash } from 'node:crypto'
import {
  backoffDelay,
  ClosedError,
  ConfigError,
  type DistributedLock,
  defaultTimers,
  InvalidInputError,
  isWellFormedText,
  LockTimeoutError,
  type Timers,
  withTimeout,
} from 'stockcast'
import type { SqlDb } from './types.js'

export interface SqlLockOptions {
  /**
   * Prefixed to every key: PostgreSQL locks `hashtextextended(namespace || key, 0)`, MySQL/MariaDB the name
   * `stockcast_lock:` + SHA-1 hex of `namespace + key`. Caches that must not exclude each other use different ones.
   * @default 'stockcast:lock:'
   */
  namespace?: string
  /** The longest pause between two attempts at a held key (they start at 5 ms and double, jittered). @default 100 */
  pollMs?: number
  /**
   * Called when the lock's session was found lost (a query on it failed): every lock it held has ended with it, and
   * the next `acquire` opens a new session. @default ignore
   */
  onSessionLost?: (error: Error) => void
  /**
   * A query on the lock session (or the opening of one) that gets no answer within this many ms counts as a lost
   * session: its connection is thrown away (which ends its locks in the database once the server sees it go) and
   * the next `acquire` opens a new one. Without it, one connection that stops answering (a network partition)
   * would hold every later `acquire` and release of this object. @default 5000
   */
  queryTimeoutMs?: number
  /** Runs the pauses between attempts, the acquire deadlines and the query timeouts. @default stockcast's `defaultTimers` */
  timers?: Timers
}

/** The lock `sqlLock` returns: a `DistributedLock` that holds one database session until `close()`. */
export interface SqlLock extends DistributedLock {
  /**
   * Release every lock this object holds and give its session back to the pool. Later `acquire` calls fail with
   * `ClosedError`; releases of locks taken before are no-ops.
   */
  close(): Promise<void>
}

/** What a dialect says to take, give back and drop all of its session-level locks. */
interface LockSql {
  take: string
  give: string
  giveAll: string
  /** The parameter naming a key's lock. */
  param(namespace: string, key: string): string
}

const POSTGRES: LockSql = {
  take: 'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS got',
  give: 'SELECT pg_advisory_unlock(hashtextextended($1, 0)) AS done',
  giveAll: 'SELECT pg_advisory_unlock_all()',
  param: (namespace, key) => namespace + key,
}

const sha1 = (text: string) => createHash('sha1').update(text, 'utf8').digest('hex')

/** MySQL/MariaDB lock names are at most 64 characters: a fixed prefix and a SHA-1 hex (15 + 40). */
const MYSQL: LockSql = {
  take: 'SELECT GET_LOCK(?, 0) AS got',
  give: 'SELECT RELEASE_LOCK(?) AS done',
  giveAll: 'SELECT RELEASE_ALL_LOCKS()',
  param: (namespace, key) => `stockcast_lock:${sha1(namespace + key)}`,
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** A query on the lock session that got no answer in time: the session counts as lost. */
class HungError extends Error {}

/** `true`, `1`, `'1'`, `'t'`: what drivers return for a true boolean or a 1. */
const truthy = (v: unknown) => v === true || v === 1 || v === '1' || v === 't' || v === 1n

/** One open session: `gen` tells a release whether the session its lock was taken on is still the current one. */
interface Session {
  db: SqlDb
  gen: number
  /** Ends the `db.session()` callback: normally (the connection goes back to the pool), or with an error. */
  end(error?: Error): void
  /** Settles once `db.session()` has given the connection back (or thrown it away). */
  done: Promise<void>
}

/** This object's own holders, one per key at a time, in arrival order (the session's locks are reentrant). */
class LocalKeys {
  readonly #queues = new Map<string, Array<() => boolean>>()

  constructor(private readonly timers: Timers) {}

  /** Resolves true once `key` is this caller's, false when `ms` ran out first. */
  take(key: string, ms: number): Promise<boolean> {
    const queue = this.#queues.get(key)
    if (queue === undefined) {
      this.#queues.set(key, [])
      return Promise.resolve(true)
    }
    if (ms <= 0) return Promise.resolve(false)
    return new Promise<boolean>((resolve) => {
      let settled = false
      const handoff = () => {
        if (settled) return false
        settled = true
        this.timers.clearTimeout(timer)
        resolve(true)
        return true
      }
      const timer = this.timers.setTimeout(() => {
        if (settled) return
        settled = true
        const i = queue.indexOf(handoff)
        if (i >= 0) queue.splice(i, 1)
        resolve(false)
      }, ms)
      queue.push(handoff)
    })
  }

  /** Hand `key` to the next waiter still waiting, or free it. */
  give(key: string): void {
    const queue = this.#queues.get(key)
    if (queue === undefined) return
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) if (next()) return
    this.#queues.delete(key)
  }
}

/**
 * A per-product lock over the database the cache already reads, for deployments without Redis: one instance at a
 * time recomputes a product. Each `sqlLock` object holds **one session** of the pool (a dedicated connection, opened
 * on first use and kept until `close()`) and takes every key on it: PostgreSQL session-level advisory locks
 * (`pg_try_advisory_lock(hashtextextended(namespace || key, 0))`, released with `pg_advisory_unlock`), MySQL/MariaDB
 * `GET_LOCK(name, 0)` / `RELEASE_LOCK(name)`. The session's queries run one at a time. Waiters retry with a short
 * jittered backoff (5 ms doubling to `pollMs`) until `timeoutMs`, then fail with `LockTimeoutError` naming the key.
 *
 * - The locks end with their session: an instance that dies, or whose connection is terminated, frees its keys at
 *   once (there is no ttl). This object sees that its session was lost at its next query on it: it reports
 *   `onSessionLost`, throws the connection away, and that `acquire` goes on with a new session (it fails with
 *   `LockTimeoutError` if none can be opened within its `timeoutMs`). Locks it handed out before the loss are no
 *   longer held in the database (another instance may take them; versions keep the store right); their releases
 *   are then no-ops.
 * - Make **one object per process** (per cache) and close it on shutdown: two objects hold two sessions and exclude
 *   each other like two instances; within one object, callers of a key take turns in arrival order.
 * - The session is a pool connection held for the object's lifetime: size the pool for it. PGlite (one embedded
 *   session, nothing to exclude) and Prisma (`session()` is a transaction with a timeout) are refused.
 *
 * @example
 * ```ts
 * const db = fromPg(pool)
 * const lock = sqlLock(db)
 * const cache = createStockCache({ schema, reader: sqlReader(db, schema), store: sqlStore(db), bus: sqlBus(db), lock })
 * // on shutdown, after cache.close():
 * await lock.close()
 * ```
 */
export function sqlLock(db: SqlDb, options: SqlLockOptions = {}): SqlLock {
  if (db === null || typeof db !== 'object' || typeof db.query !== 'function' || typeof db.session !== 'function') {
    throw new ConfigError('sqlLock: db must be an SqlDb (fromPg or fromMysql)', { option: 'db' })
  }
  if (options === null || typeof options !== 'object') throw new ConfigError('sqlLock: options must be an object')
  const dialect = db.dialect
  if (dialect !== 'postgres' && dialect !== 'mysql') {
    throw new ConfigError(`sqlLock: unknown dialect ${JSON.stringify(dialect)}`, { option: 'db' })
  }
  if (db.driver === 'pglite') {
    throw new ConfigError(
      'sqlLock: PGlite is one embedded session: there is no other instance to exclude, and locks taken on one ' +
        'session do not exclude each other (a cache on PGlite needs no lock)',
      { option: 'db' },
    )
  }
  if (db.driver === 'prisma') {
    throw new ConfigError(
      "sqlLock: Prisma's session() is an interactive transaction with a timeout, it cannot hold a session: pass " +
        'fromPg(pool) or fromMysql(pool) on the same database',
      { option: 'db' },
    )
  }
  const namespace = options.namespace ?? 'stockcast:lock:'
  if (typeof namespace !== 'string' || !isWellFormedText(namespace) || namespace.includes('\u0000')) {
    throw new ConfigError(
      `sqlLock: namespace must be a string of well-formed UTF-16 without U+0000, got ${JSON.stringify(namespace)}`,
      { option: 'namespace' },
    )
  }
  const pollMs = options.pollMs ?? 100
  if (!(Number.isFinite(pollMs) && pollMs > 0)) {
    throw new ConfigError(`sqlLock: pollMs must be a positive number, got ${String(pollMs)}`, { option: 'pollMs' })
  }
  const timers = options.timers ?? defaultTimers
  if (typeof timers?.setTimeout !== 'function' || typeof timers.clearTimeout !== 'function') {
    throw new ConfigError('sqlLock: timers must be an object with setTimeout(fn, ms) and clearTimeout(handle)', {
      option: 'timers',
    })
  }
  if (options.onSessionLost !== undefined && typeof options.onSessionLost !== 'function') {
    throw new ConfigError('sqlLock: onSessionLost must be a function', { option: 'onSessionLost' })
  }
  const onSessionLost = options.onSessionLost
  const queryTimeoutMs = options.queryTimeoutMs ?? 5000
  if (!(Number.isFinite(queryTimeoutMs) && queryTimeoutMs > 0)) {
    throw new ConfigError(`sqlLock: queryTimeoutMs must be a positive number, got ${String(queryTimeoutMs)}`, {
      option: 'queryTimeoutMs',
    })
  }
  const sql = dialect === 'postgres' ? POSTGRES : MYSQL
  const where = `sqlLock(${db.driver})`
  const local = new LocalKeys(timers)
  const sleep = (ms: number) => new Promise<void>((r) => timers.setTimeout(r, ms))

  let closed = false
  let session: Session | undefined
  let generation = 0
  // The session's queries run one at a time, in call order.
  let chain: Promise<unknown> = Promise.resolve()
  const serially = <T>(step: () => Promise<T>): Promise<T> => {
    const out = chain.then(step)
    chain = out.catch(() => {})
    return out
  }

  /** `promise`, or a `HungError` once `queryTimeoutMs` pass without an answer. */
  const bounded = <T>(promise: Promise<T>, what: string): Promise<T> =>
    withTimeout(
      promise,
      queryTimeoutMs,
      timers,
      () => new HungError(`${where}: ${what} got no answer within ${queryTimeoutMs} ms`),
    )

  /** The current session, opened if there is none (within `queryTimeoutMs`). Runs inside `serially`. */
  const current = (): Promise<Session> => {
    if (session !== undefined) return Promise.resolve(session)
    let abandoned = false
    const opening = new Promise<Session>((resolve, reject) => {
      let end!: (error?: Error) => void
      const ended = new Promise<void>((res, rej) => {
        end = (error) => (error === undefined ? res() : rej(error))
      })
      let closedDown!: () => void
      const done = new Promise<void>((r) => {
        closedDown = r
      })
      db.session(async (s) => {
        // Opened after its opening timed out: give the connection back at once, as broken.
        if (abandoned) throw new Error(`${where}: the lock session's connection opened too late`)
        session = { db: s, gen: ++generation, end, done }
        resolve(session)
        await ended
      }).then(
        () => closedDown(),
        // Opening failed (then reject wins), or the session ended with the error it was dropped for.
        (e: unknown) => {
          closedDown()
          reject(e)
        },
      )
    })
    return bounded(opening, 'opening the lock session').catch((e: unknown) => {
      if (e instanceof HungError) abandoned = true
      throw e
    })
  }

  /**
   * A query on the lock session failed: treat the session as lost (with a failing connection no one can tell which
   * of its locks are still held). Its locks are dropped (best effort, in case it still answers), and it ends with
   * an error that makes the pool throw the connection away.
   */
  const drop = async (s: Session, cause: unknown): Promise<void> => {
    if (session !== s) return
    session = undefined
    // A session that stopped answering would not answer this either.
    if (!(cause instanceof HungError)) await bounded(s.db.query(sql.giveAll), 'giving back its locks').catch(() => {})
    const error = new Error(`${where}: the lock session's connection was lost: ${messageOf(cause)}`, { cause })
    s.end(error)
    await s.done
    try {
      onSessionLost?.(error)
    } catch {
      // the caller's failure is not the lock's
    }
  }

  /** One attempt at `key` on the session; `attempt.abandoned` says its acquire gave up meanwhile (deadline). */
  const tryTake = (param: string, attempt: { abandoned: boolean }) =>
    serially(async (): Promise<number | undefined> => {
      if (closed) throw new ClosedError(`${where}: the lock is closed`)
      if (attempt.abandoned) return undefined
      const s = await current()
      if (attempt.abandoned) return undefined
      let got: boolean
      try {
        const rows = await bounded(s.db.query<{ got: unknown }>(sql.take, [param]), 'taking a lock')
        got = truthy(rows[0]?.got)
      } catch (e) {
        await drop(s, e)
        throw e
      }
      if (!got) return undefined
      if (attempt.abandoned) {
        await give(s, param)
        return undefined
      }
      return s.gen
    })

  /** Give back `param`'s lock on `s`. Runs inside `serially`. */
  const give = async (s: Session, param: string): Promise<void> => {
    try {
      await bounded(s.db.query(sql.give, [param]), 'giving back a lock')
    } catch (e) {
      // Its lock ends with the session, which is thrown away.
      await drop(s, e)
    }
  }

  /** `attempt` within `ms`: its value, or `timeout` (the attempt is then abandoned: a lock it gets is given back). */
  const within = (ms: number, param: string): Promise<number | undefined | 'timeout'> => {
    const attempt = { abandoned: false }
    return new Promise((resolve, reject) => {
      let settled = false
      const timer = timers.setTimeout(() => {
        if (settled) return
        settled = true
        attempt.abandoned = true
        resolve('timeout')
      }, ms)
      tryTake(param, attempt).then(
        (gen) => {
          if (!settled) {
            settled = true
            timers.clearTimeout(timer)
            resolve(gen)
          } else if (gen !== undefined) {
            // Taken after its acquire gave up: give it back.
            void serially(async () => {
              if (session?.gen === gen) await give(session, param)
            })
          }
        },
        (e) => {
          if (settled) return
          settled = true
          timers.clearTimeout(timer)
          reject(e)
        },
      )
    })
  }

  /** The release of `key`'s lock taken on session `gen`: once only; a no-op in the database once that session is gone. */
  const releaser = (key: string, param: string, gen: number) => {
    let released = false
    return async (): Promise<void> => {
      if (released) return
      released = true
      try {
        await serially(async () => {
          // Taken on a session since lost (its lock ended with it), or closed (every lock was given back).
          if (!closed && session?.gen === gen) await give(session, param)
        })
      } finally {
        local.give(key)
      }
    }
  }

  return {
    async acquire(key, timeoutMs) {
      if (typeof key !== 'string' || !isWellFormedText(key) || (dialect === 'postgres' && key.includes('\u0000'))) {
        throw new InvalidInputError(
          `${where}: cannot lock ${JSON.stringify(key)} (not a well-formed string${dialect === 'postgres' ? ' without U+0000' : ''})`,
          { productId: String(key) },
        )
      }
      if (closed) throw new ClosedError(`${where}: the lock is closed`)
      const budget = Number.isFinite(timeoutMs) && timeoutMs > 0 ? timeoutMs : 0
      const deadline = Date.now() + budget
      const timeout = (why: string, cause?: unknown) =>
        new LockTimeoutError(
          `${where}: lock of ${JSON.stringify(key)} not acquired within ${budget} ms (${why})`,
          cause === undefined ? { productId: key } : { productId: key, cause },
        )
      if (!(await local.take(key, budget))) throw timeout('another caller of this lock object holds it')
      const param = sql.param(namespace, key)
      try {
        let failure: unknown
        let heldSeen = false
        for (let attempt = 0, lostInARow = 0; ; attempt++) {
          let gen: number | undefined | 'timeout'
          try {
            gen = await within(Math.max(0, deadline - Date.now()), param)
            lostInARow = 0
            // A deadline that ends an attempt keeps the failure before it (it says why there was no answer).
            if (gen !== 'timeout') failure = undefined
          } catch (e) {
            if (e instanceof ClosedError) throw e
            // The session was lost, or none could be opened: the next attempt opens a new one.
            failure = e
            lostInARow++
          }
          if (typeof gen === 'number') return releaser(key, param, gen)
          if (gen === undefined && failure === undefined) heldSeen = true
          const rest = deadline - Date.now()
          if (rest <= 0 || gen === 'timeout') {
            if (failure !== undefined) throw timeout(`the database could not be asked: ${messageOf(failure)}`, failure)
            throw timeout(heldSeen ? 'another instance holds it' : 'the lock session did not answer in time')
          }
          // A lost session is replaced at once; a held key, or a session that cannot be opened, waits a little.
          if (lostInARow !== 1) await sleep(Math.min(rest, backoffDelay(attempt, 5, pollMs) * (0.5 + Math.random())))
        }
      } catch (e) {
        local.give(key)
        throw e
      }
    },

    async close() {
      if (closed) return
      closed = true
      await serially(async () => {
        const s = session
        if (s === undefined) return
        session = undefined
        try {
          await bounded(s.db.query(sql.giveAll), 'giving back its locks')
          s.end()
        } catch (e) {
          s.end(new Error(`${where}: the lock session's connection was lost: ${messageOf(e)}`, { cause: e }))
        }
        await s.done
      })
    },
  }
}
