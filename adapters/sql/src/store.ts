import {
  ConfigError,
  InvalidInputError,
  StockcastError,
  type StockProjection,
  type Store,
  type StoreEntry,
  StoreUnavailableError,
} from 'stockcast'
import { LIKE_ESCAPE, likePrefix, placeholders, quoteIdent } from './quote.js'
import type { SqlDb } from './types.js'

export interface SqlStoreOptions {
  /** The table, optionally schema-qualified (`cache.stockcast_projections`). @default 'stockcast_projections' */
  table?: string
  /** Keys are stored as `prefix + key`; `clear()` deletes only rows under it, so stores can share a table. @default 'stockcast:' */
  prefix?: string
  /** Create the table (`CREATE TABLE IF NOT EXISTS`) on first use. With `false`, call `install()` yourself. @default true */
  create?: boolean
}

/** The SQL table store (L2): a `Store` plus `install()` and `drop()`. */
export interface SqlStore extends Store {
  /** The quoted table name. */
  readonly table: string
  /** Create the table if it does not exist (idempotent). Works after `close()`. */
  install(): Promise<void>
  /** Drop the table, with the entries of every prefix in it. Works after `close()`. */
  drop(): Promise<void>
}

/** MySQL: rows per statement, and a soft cap on the statement's size (well under the 16 MB `max_allowed_packet`). */
const MYSQL_ROWS = 500
const MYSQL_BYTES = 4 * 1024 * 1024
/** Deadlocks and lock timeouts between concurrent batches are retried this many times. */
const RETRIES = 5

type Row = { key: unknown; value: unknown; version: unknown; computed_at: unknown }

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** PostgreSQL deadlock_detected / serialization_failure, MySQL ER_LOCK_DEADLOCK / ER_LOCK_WAIT_TIMEOUT. */
function isRetryable(e: unknown): boolean {
  const err = e as { code?: unknown; errno?: unknown }
  return err?.code === '40P01' || err?.code === '40001' || err?.errno === 1213 || err?.errno === 1205
}

/**
 * The L2 store as one table: a row per key (`key`, JSON `value`, `version`, `computed_at`), shared by every process
 * that points at it. Writes are conditional in the statement itself, so a lower version never replaces a higher one,
 * whatever the interleaving. PostgreSQL stores `json` (kept as written: about 2x cheaper to write than `jsonb` here, and nothing queries inside it); MySQL/MariaDB store the JSON text as written (exact).
 *
 * @example
 * ```ts
 * const store = sqlStore(fromPg(pool), { table: 'stockcast_projections' })
 * await store.install() // optional: the table is created on first use unless `create: false`
 * const cache = createStockCache({ schema, reader, store })
 * ```
 */
export function sqlStore(db: SqlDb, options: SqlStoreOptions = {}): SqlStore {
  if (db === null || typeof db !== 'object' || typeof db.query !== 'function') {
    throw new ConfigError('sqlStore: db must be an SqlDb (fromPg, fromPGlite or fromMysql)', { option: 'db' })
  }
  const dialect = db.dialect
  if (dialect !== 'postgres' && dialect !== 'mysql') {
    throw new ConfigError(`sqlStore: unknown dialect ${JSON.stringify(dialect)}`, { option: 'db' })
  }
  const prefix = options.prefix ?? 'stockcast:'
  if (typeof prefix !== 'string') {
    throw new ConfigError(`sqlStore: prefix must be a string, got ${JSON.stringify(prefix)}`, { option: 'prefix' })
  }
  if (options.create !== undefined && typeof options.create !== 'boolean') {
    throw new ConfigError('sqlStore: create must be a boolean', { option: 'create' })
  }
  const table = quoteIdent(dialect, options.table ?? 'stockcast_projections', 'sqlStore: table')
  const pg = dialect === 'postgres'
  const create = options.create ?? true
  let installing: Promise<void> | undefined
  let closed = false

  /** `admin`: install() and drop() still work after close() (a cache closes its store; teardown comes after). */
  const wrap = async <T>(what: string, fn: () => Promise<T>, admin = false): Promise<T> => {
    if (closed && !admin) throw new StoreUnavailableError(`sqlStore(${table}): ${what} after close()`, { tier: 'l2' })
    try {
      if (create && !admin) await ensureTable()
      for (let attempt = 0; ; attempt++) {
        try {
          return await fn()
        } catch (e) {
          if (attempt >= RETRIES || !isRetryable(e)) throw e
          await new Promise((r) => setTimeout(r, 5 + Math.random() * 20 * (attempt + 1)))
        }
      }
    } catch (cause) {
      if (cause instanceof StockcastError) throw cause
      throw new StoreUnavailableError(`sqlStore(${table}): ${what} failed: ${messageOf(cause)}`, {
        tier: 'l2',
        cause,
      })
    }
  }

  const createSql = pg
    ? `CREATE TABLE IF NOT EXISTS ${table} (key text PRIMARY KEY, value json NOT NULL, version bigint NOT NULL, computed_at bigint NOT NULL)`
    : // VARBINARY key: byte-exact (the default collations ignore case and trailing spaces); LONGTEXT keeps the JSON as written.
      `CREATE TABLE IF NOT EXISTS ${table} (\`key\` VARBINARY(3072) NOT NULL PRIMARY KEY, \`value\` LONGTEXT CHARACTER SET utf8mb4 NOT NULL, \`version\` BIGINT NOT NULL, \`computed_at\` BIGINT NOT NULL)`

  const install = async (): Promise<void> => {
    try {
      await db.execute(createSql)
    } catch (e) {
      // Two processes racing on CREATE TABLE IF NOT EXISTS in PostgreSQL: the loser sees the type or table as existing.
      const code = (e as { code?: unknown }).code
      if (code !== '23505' && code !== '42P07') throw e
    }
  }
  const ensureTable = (): Promise<void> => {
    installing ??= install().catch((e) => {
      installing = undefined
      throw e
    })
    return installing
  }

  const parse = (r: Row): [string, StoreEntry] | undefined => {
    const raw = Buffer.isBuffer(r.key) ? r.key.toString('utf8') : String(r.key)
    if (!raw.startsWith(prefix)) return undefined
    const value = (typeof r.value === 'string' ? JSON.parse(r.value) : r.value) as StockProjection
    return [raw.slice(prefix.length), { value, version: Number(r.version), computedAt: Number(r.computed_at) }]
  }

  /** MySQL: split a list so each statement stays small. */
  const chunksOf = <T>(items: readonly T[], size: (item: T) => number = () => 0): T[][] => {
    const out: T[][] = []
    let cur: T[] = []
    let bytes = 0
    for (const item of items) {
      const b = size(item)
      if (cur.length > 0 && (cur.length >= MYSQL_ROWS || bytes + b > MYSQL_BYTES)) {
        out.push(cur)
        cur = []
        bytes = 0
      }
      cur.push(item)
      bytes += b
    }
    if (cur.length > 0) out.push(cur)
    return out
  }

  // One JSON document for the whole batch: the driver sends it as one string (an array parameter of JSON texts
  // costs an escaped array literal per value) and the server splits it with json_to_recordset.
  const upsertPg = `INSERT INTO ${table} AS t (key, value, version, computed_at)
SELECT k, v, n, c FROM json_to_recordset($1::json) AS x(k text, v json, n bigint, c bigint)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, computed_at = EXCLUDED.computed_at
WHERE t.version <= EXCLUDED.version`
  // MySQL/MariaDB run the assignments left to right, each seeing the columns already set; MariaDB's
  // SIMULTANEOUS_ASSIGNMENT mode lets each see the old row. `version` is set last and with GREATEST, so every IF
  // compares with the old version in both modes, and the version never goes down.
  const upsertMysql = (n: number) =>
    `INSERT INTO ${table} (\`key\`, \`value\`, \`version\`, \`computed_at\`) VALUES ${Array.from({ length: n }, () => '(?, ?, ?, ?)').join(', ')} ` +
    'ON DUPLICATE KEY UPDATE ' +
    '`value` = IF(VALUES(`version`) >= `version`, VALUES(`value`), `value`), ' +
    '`computed_at` = IF(VALUES(`version`) >= `version`, VALUES(`computed_at`), `computed_at`), ' +
    '`version` = GREATEST(`version`, VALUES(`version`))'

  const store: SqlStore = {
    table,
    capabilities: { shared: true },

    getMany(keys) {
      return wrap('getMany', async () => {
        const out = new Map<string, StoreEntry>()
        const full = [...new Set(keys)].map((k) => prefix + k)
        if (full.length === 0) return out
        const rows: Row[] = []
        if (pg) {
          rows.push(
            ...(await db.query<Row>(
              `SELECT key, value, version, computed_at FROM ${table} WHERE key = ANY($1::text[])`,
              [full],
            )),
          )
        } else {
          for (const chunk of chunksOf(full)) {
            rows.push(
              ...(await db.query<Row>(
                `SELECT \`key\`, \`value\`, \`version\`, \`computed_at\` FROM ${table} WHERE \`key\` IN (${placeholders('mysql', chunk.length)})`,
                chunk,
              )),
            )
          }
        }
        for (const r of rows) {
          const e = parse(r)
          if (e !== undefined) out.set(e[0], e[1])
        }
        return out
      })
    },

    setMany(entries) {
      return wrap('setMany', async () => {
        // One row per key (the highest version; the last one on a tie), in key order: concurrent batches then take
        // their row locks in the same order and do not deadlock.
        const latest = new Map<string, StoreEntry>()
        for (const [k, e] of entries) {
          if (!Number.isSafeInteger(e.version) || !Number.isFinite(e.computedAt)) {
            throw new InvalidInputError(
              `sqlStore: entry ${JSON.stringify(k)} needs an integer version and a numeric computedAt`,
              { key: k },
            )
          }
          const cur = latest.get(k)
          if (cur === undefined || cur.version <= e.version) latest.set(k, e)
        }
        if (latest.size === 0) return
        const sorted = [...latest].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        if (pg) {
          const doc = sorted.map(([k, e]) => ({ k: prefix + k, v: e.value, n: e.version, c: Math.trunc(e.computedAt) }))
          await db.execute(upsertPg, [JSON.stringify(doc)])
          return
        }
        const rows = sorted.map(
          ([k, e]) => [prefix + k, JSON.stringify(e.value), e.version, Math.trunc(e.computedAt)] as const,
        )
        for (const chunk of chunksOf(rows, (r) => r[0].length + r[1].length + 64)) {
          await db.execute(upsertMysql(chunk.length), chunk.flat())
        }
      })
    },

    deleteMany(keys) {
      return wrap('deleteMany', async () => {
        const full = [...new Set(keys)].map((k) => prefix + k)
        if (full.length === 0) return
        if (pg) {
          await db.execute(`DELETE FROM ${table} WHERE key = ANY($1::text[])`, [full])
          return
        }
        for (const chunk of chunksOf(full)) {
          await db.execute(`DELETE FROM ${table} WHERE \`key\` IN (${placeholders('mysql', chunk.length)})`, chunk)
        }
      })
    },

    clear() {
      return wrap('clear', async () => {
        const col = pg ? 'key' : '`key`'
        await db.execute(`DELETE FROM ${table} WHERE ${col} LIKE ${pg ? '$1' : '?'} ESCAPE '${LIKE_ESCAPE}'`, [
          likePrefix(prefix),
        ])
      })
    },

    async close() {
      // The connection belongs to the caller: nothing to release.
      closed = true
    },

    install() {
      return wrap('install', ensureTable, true)
    },

    drop() {
      return wrap(
        'drop',
        async () => {
          await db.execute(`DROP TABLE IF EXISTS ${table}`)
          installing = undefined
        },
        true,
      )
    },
  }
  return store
}
