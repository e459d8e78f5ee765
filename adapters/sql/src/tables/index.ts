import { backoffDelay, ConfigError, defaultTimers, every, isSafeIdentifier, type Timers } from 'stockcast'
import type { SqlDb } from '../types.js'
import { mysqlTables } from './mysql.js'
import { bareName, postgresTables } from './postgres.js'
import type {
  ScanResult,
  SqlTableChanges,
  SqlTableChangesOptions,
  TableChangesListener,
  TableChangesStatus,
  TableInvalidationTarget,
  TablesDialect,
} from './types.js'

export type {
  SqlTableChanges,
  SqlTableChangesOptions,
  TableChangesListener,
  TableChangesStatus,
  TableChangesVerifyReport,
  TableInvalidationTarget,
} from './types.js'

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/
/** Rows read per query. */
const BATCH = 1000
/** Missing ids looked for at most; beyond, the oldest are given up (and every watched table invalidated). */
const MAX_HOLES = 1000

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))
const asError = (e: unknown) => (e instanceof Error ? e : new Error(String(e)))

function positive(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ConfigError(`sqlTableChanges: ${name} must be a positive number of ms, got ${String(value)}`, {
      option: name,
    })
  }
  return value
}

/**
 * Table dependencies through SQL triggers: `cached(fn, { tables: ['orders'] })` entries are invalidated after each
 * commit that changed a row of a watched table, whoever wrote it (raw SQL, another service, any ORM). A rolled-back
 * write invalidates nothing: the trigger's change row commits or rolls back with the writer's transaction.
 *
 * PostgreSQL/PGlite: one `AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ... FOR EACH STATEMENT` trigger per table
 * (one change row and one `pg_notify` per statement); the listener LISTENs and scans on each notification (and every
 * `scanMs`). MySQL/MariaDB: row triggers (one change row per changed row; TRUNCATE and foreign-key cascades are not
 * seen); the listener polls every `pollMs`.
 *
 * @example
 * ```ts
 * const changes = sqlTableChanges(db, { tables: ['orders', 'payments'] })
 * await changes.install()
 * const listener = await changes.listen(cache)
 * const totals = cache.cached(loadTotals, { key: 'totals', tables: ['orders', 'payments'] })
 * ```
 */
export function sqlTableChanges(db: SqlDb, options: SqlTableChangesOptions): SqlTableChanges {
  if (db === null || typeof db !== 'object' || typeof db.query !== 'function') {
    throw new ConfigError('sqlTableChanges: db must be an SqlDb (fromPg, fromPGlite or fromMysql)', { option: 'db' })
  }
  if (options === null || typeof options !== 'object')
    throw new ConfigError('sqlTableChanges: options must be an object')
  const prefix = options.prefix ?? 'stockcast'
  if (typeof prefix !== 'string' || !IDENT.test(prefix) || prefix.length > 40) {
    throw new ConfigError(
      `sqlTableChanges: prefix must be an identifier ([A-Za-z_][A-Za-z0-9_]*) of at most 40 characters, got ${JSON.stringify(prefix)}`,
      { option: 'prefix' },
    )
  }
  if (!Array.isArray(options.tables) || options.tables.length === 0) {
    throw new ConfigError('sqlTableChanges: tables must be a non-empty array of table names', { option: 'tables' })
  }
  for (const t of options.tables) {
    if (!isSafeIdentifier(t, true)) {
      throw new ConfigError(
        `sqlTableChanges: a table must be an identifier like "orders" or "shop.orders", got ${JSON.stringify(t)}`,
        { option: 'tables' },
      )
    }
  }
  const tables = [...new Set(options.tables)]
  const watched = [...new Set(tables.map(bareName))]
  if (watched.length !== tables.length) {
    throw new ConfigError('sqlTableChanges: two watched tables have the same name in different schemas', {
      option: 'tables',
    })
  }
  const pollMs = positive(options.pollMs, 'pollMs', 200)
  const scanMs = positive(options.scanMs, 'scanMs', 1000)
  const retainMs = positive(options.retainMs, 'retainMs', 600_000)
  const timers = options.timers ?? defaultTimers
  if (typeof timers?.setTimeout !== 'function' || typeof timers.clearTimeout !== 'function') {
    throw new ConfigError(
      'sqlTableChanges: timers must be an object with setTimeout(fn, ms) and clearTimeout(handle)',
      {
        option: 'timers',
      },
    )
  }
  const dialect = db.dialect === 'mysql' ? mysqlTables(db, prefix, tables) : postgresTables(db, prefix, tables)

  return {
    install: () => dialect.install(),
    uninstall: () => dialect.uninstall(),
    verify: () => dialect.verify(),
    async listen(targets) {
      const list = (Array.isArray(targets) ? [...targets] : [targets]) as TableInvalidationTarget[]
      if (
        list.length === 0 ||
        list.some((c) => c === null || typeof c !== 'object' || typeof c.invalidate !== 'function')
      ) {
        throw new ConfigError('sqlTableChanges.listen: expects a cache (or several) with invalidate({ tables })', {
          option: 'targets',
        })
      }
      if (!(await dialect.exists())) {
        throw new ConfigError(
          `sqlTableChanges.listen: the changes table of prefix ${prefix} does not exist: call install() first`,
          {
            option: 'prefix',
          },
        )
      }
      return startListener(db, dialect, list, { watched, pollMs, scanMs, retainMs, timers })
    },
  }
}

interface ListenerOptions {
  watched: readonly string[]
  pollMs: number
  scanMs: number
  retainMs: number
  timers: Timers
}

/** A missing id: the snapshot xmax it was first missed in (PostgreSQL), undefined on MySQL/MariaDB. */
type Hole = bigint | undefined

async function startListener(
  db: SqlDb,
  dialect: TablesDialect,
  targets: readonly TableInvalidationTarget[],
  o: ListenerOptions,
): Promise<TableChangesListener> {
  const { timers } = o
  let stopped = false
  let lastId = 0
  /** Ids below lastId not read yet: a writer that has not committed, or rolled back. */
  let holes = new Map<number, Hole>()
  const s: Omit<TableChangesStatus, 'running' | 'lastId' | 'pendingIds'> = {
    processed: 0,
    errors: 0,
    gaps: 0,
    lastError: null,
  }
  const fail = (e: unknown) => {
    s.errors++
    s.lastError = asError(e)
  }
  const sleep = (ms: number) => new Promise<void>((r) => timers.setTimeout(r, ms))

  /** Invalidate `tables` on every target; a failure is retried with backoff until it succeeds (or stop()). */
  const invalidate = async (tables: readonly string[]) => {
    if (tables.length === 0) return
    await Promise.all(
      targets.map(async (t) => {
        for (let attempt = 0; !stopped; attempt++) {
          try {
            await t.invalidate({ tables: [...tables] })
            return
          } catch (e) {
            fail(new Error(`sqlTableChanges: invalidate failed (retried): ${messageOf(e)}`, { cause: e }))
            await sleep(backoffDelay(attempt, 100, 5000))
          }
        }
      }),
    )
  }

  /** Apply one scan: what to invalidate and the state after it (committed once the invalidation succeeded). */
  const apply = (r: ScanResult) => {
    const next = new Map(holes)
    let last = lastId
    let gap = false
    const found = new Set<string>()
    if (r.high !== null && r.high < last) {
      // Ids went back (the table was recreated, or its sequence reset): start over from there.
      gap = true
      last = r.high
      next.clear()
    }
    for (const row of r.rows) {
      if (next.delete(row.id)) found.add(row.tbl)
      else if (row.id > last) {
        if (row.id - last - 1 > MAX_HOLES) gap = true
        else for (let id = last + 1; id < row.id; id++) next.set(id, r.xmax)
        last = row.id
        found.add(row.tbl)
      }
    }
    for (const [id, seenAt] of next) {
      // Deleted by the retention sweep before it was read: it may have been a committed change.
      if (r.low !== null && id < r.low) {
        next.delete(id)
        gap = true
        // PostgreSQL: every transaction that was running when the id was first missed has ended, and the rows were
        // read in that snapshot: the id was rolled back (or never used).
      } else if (seenAt !== undefined && r.xmin !== undefined && r.xmin >= seenAt) next.delete(id)
    }
    if (next.size > MAX_HOLES) {
      gap = true
      for (const id of [...next.keys()].sort((a, b) => a - b).slice(0, next.size - MAX_HOLES)) next.delete(id)
    }
    if (r.low !== null && last + 1 < r.low && r.rows.length === 0) gap = true
    return { next, last, gap, found }
  }

  const scanOnce = async (): Promise<boolean> => {
    const r = await dialect.scan(
      lastId,
      [...holes.keys()].sort((a, b) => a - b),
      BATCH,
    )
    const { next, last, gap, found } = apply(r)
    const tables = new Set(found)
    if (gap) for (const t of o.watched) tables.add(t)
    await invalidate([...tables])
    if (stopped) return false
    if (gap) s.gaps++
    holes = next
    lastId = last
    s.processed += r.rows.length
    return r.rows.length >= BATCH
  }

  // One scan at a time; a wake during a scan runs one more after it.
  let running: Promise<void> | undefined
  let again = false
  const scan = (): Promise<void> => {
    if (stopped) return Promise.resolve()
    if (running !== undefined) {
      again = true
      return running
    }
    running = (async () => {
      try {
        do {
          again = false
          try {
            while ((await scanOnce()) && !stopped) {}
          } catch (e) {
            fail(e)
          }
        } while (again && !stopped)
      } finally {
        running = undefined
      }
    })()
    return running
  }
  const wake = () => {
    void scan()
  }

  // LISTEN first (nothing committed after the baseline goes unnoticed), then the baseline, then invalidate every
  // watched table once: whatever was cached before this listener ran may have missed changes.
  let unlisten: (() => Promise<void>) | undefined
  if (dialect.channel !== null && typeof db.listen === 'function') {
    unlisten = await db.listen(dialect.channel, wake, wake, { timers })
  }
  const stops: Array<() => void> = []
  try {
    const base = await dialect.baseline()
    lastId = base.high ?? 0
    let count = 0
    for (const [from, to] of base.gaps) {
      for (let id = from; id <= to && count < MAX_HOLES; id++, count++) holes.set(id, base.xmax)
    }
    await invalidate(o.watched)
  } catch (e) {
    stopped = true
    await unlisten?.()
    throw e
  }
  stops.push(every(timers, unlisten === undefined ? o.pollMs : o.scanMs, wake))
  const sweepMs = Math.max(1000, Math.min(60_000, o.retainMs / 2))
  stops.push(
    every(timers, sweepMs, () => {
      dialect.prune(o.retainMs).catch(fail)
    }),
  )

  return {
    status: () => ({ running: !stopped, lastId, pendingIds: holes.size, ...s }),
    scan,
    async stop() {
      if (stopped) return
      stopped = true
      for (const stop of stops) stop()
      await running?.catch(() => {})
      await unlisten?.()
    },
  }
}
