import {
  backoffDelay,
  ConfigError,
  defaultTimers,
  InvalidInputError,
  isWellFormedText,
  projectionCodec,
  StockcastError,
  type StockProjection,
  type Store,
  type StoreEntry,
  StoreUnavailableError,
  type Timers,
} from 'stockcast'
import { placeholders, quoteIdent, splitQualified } from './quote.js'
import type { SqlDb } from './types.js'

export interface SqlStoreOptions {
  /** The table, optionally schema-qualified (`cache.stockcast_projections`). @default 'stockcast_projections' */
  table?: string
  /** Keys are stored as `prefix + key`; `clear()` deletes only rows under it, so stores can share a table. @default 'stockcast:' */
  prefix?: string
  /**
   * Run `install()` on first use: create the table, or migrate one of an older layout. With `false`, call `install()`
   * yourself (until then a missing or older table makes every call a `StoreUnavailableError`).
   * @default true
   */
  create?: boolean
  /** Runs the pause before a deadlocked or timed-out statement is retried. @default stockcast's `defaultTimers` */
  timers?: Timers
}

/** The SQL table store (L2): a `Store` plus `install()` and `drop()`. */
export interface SqlStore extends Store {
  /** The quoted table name. */
  readonly table: string
  /**
   * Create the table if it does not exist, or bring a table of an older layout to the current one (idempotent; safe
   * when several processes run it at once: they take turns on a lock). Works after `close()`.
   */
  install(): Promise<void>
  /** Drop the table, with the entries of every prefix in it. Works after `close()`. */
  drop(): Promise<void>
}

/** MySQL: rows per statement, and a soft cap on the statement's size (well under the 16 MB `max_allowed_packet`). */
const MYSQL_ROWS = 500
const MYSQL_BYTES = 4 * 1024 * 1024
/** Deadlocks and lock timeouts between concurrent batches are retried this many times. */
const RETRIES = 5
/** Seconds `install()` waits for another process's install on MySQL/MariaDB (PostgreSQL waits as long as it takes). */
const INSTALL_LOCK_SECONDS = 60

/** `key` arrives as hex text (every driver returns text; PostgreSQL `bytea` and MySQL `BLOB` would not agree). */
type Row = { key?: unknown; i?: unknown; value: unknown; version: unknown; computed_at: unknown }

const STATUSES = new Set(['OK', 'ATTENTION', 'CRITICAL'])
const DAY = /^\d{4}-\d{2}-\d{2}$/

/** The columns a projection fills beside its value (monitoring queries and listings read them); null otherwise. */
interface Summary {
  status: string
  stockToday: string
  minClosing7d: string
  firstStockoutDate: string | null
  daysOfCover: number | null
  /** UTF-8 hex of the location, null for a product's roll-up. */
  location: string | null
}

/** A quantity as decimal text (a JS number prints as the shortest decimal that reads back as itself). */
const decimalText = (x: number) => String(x)

function summaryOf(v: unknown): Summary | null {
  if (v === null || typeof v !== 'object') return null
  const p = v as Partial<StockProjection>
  if (typeof p.status !== 'string' || !STATUSES.has(p.status)) return null
  if (typeof p.stockToday !== 'number' || !Number.isFinite(p.stockToday)) return null
  if (typeof p.minClosing7d !== 'number' || !Number.isFinite(p.minClosing7d)) return null
  const first = p.firstStockoutDate
  if (first !== null && (typeof first !== 'string' || !DAY.test(first))) return null
  const cover = p.daysOfCover
  if (cover !== null && !(typeof cover === 'number' && Number.isSafeInteger(cover) && Math.abs(cover) < 2 ** 31))
    return null
  const loc = p.location
  if (loc !== null && (typeof loc !== 'string' || !isWellFormedText(loc))) return null
  return {
    status: p.status,
    stockToday: decimalText(p.stockToday),
    minClosing7d: decimalText(p.minClosing7d),
    firstStockoutDate: first ?? null,
    daysOfCover: cover ?? null,
    location: loc == null ? null : toHex(loc),
  }
}

/** A duration for an INT column: whole ms, null when absent or out of range. */
const durationOf = (ms: unknown) =>
  typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 && ms < 2 ** 31 ? Math.round(ms) : null

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** PostgreSQL deadlock_detected / serialization_failure, MySQL ER_LOCK_DEADLOCK / ER_LOCK_WAIT_TIMEOUT. */
function isRetryable(e: unknown): boolean {
  const err = e as { code?: unknown; errno?: unknown }
  return err?.code === '40P01' || err?.code === '40001' || err?.errno === 1213 || err?.errno === 1205
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

/** The UTF-8 bytes of `s` as hex (TextEncoder: no Buffer, so PGlite in a browser works too). */
function toHex(s: string): string {
  let out = ''
  for (const b of encoder.encode(s)) out += HEX[b]
  return out
}

/** A hex digit's value (either case); the input is hex the server wrote. */
const nibble = (c: number) => (c <= 57 ? c - 48 : (c | 32) - 87)

function fromHex(h: string): string {
  const bytes = new Uint8Array(h.length >> 1)
  for (let i = 0, j = 0; i < bytes.length; i++, j += 2)
    bytes[i] = (nibble(h.charCodeAt(j)) << 4) | nibble(h.charCodeAt(j + 1))
  return decoder.decode(bytes)
}

/** PostgreSQL `getMany`: keys per statement below which a batch is not split, and the most statements at once. */
const PG_PART_MIN = 250
const PG_PARTS = 4

/** Only ASCII characters and no U+0000 (text cannot carry it). */
function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0 || c > 0x7f) return false
  }
  return true
}

/** A key the table can hold exactly: any string whose UTF-8 form is its own (no unpaired surrogate). */
const storable = (key: string) => isWellFormedText(key)

/**
 * The L2 store as one table, shared by every process that points at it: a row per key with `key_hash` (SHA-256 of
 * the key's UTF-8 bytes, the primary key), `key` (the bytes themselves, compared on every read and write), the
 * `value` as text in `projectionCodec`'s compact form (plain JSON for other values, and as written by older
 * versions), `version`, `computed_at`, and for a projection the columns monitoring queries read: `location` (UTF-8
 * bytes, null for a product's roll-up), `status`, `stock_today`, `min_closing_7d` (exact decimals),
 * `first_stockout_date`, `days_of_cover` and `duration_ms` (the recompute's), with an index on
 * `(status, min_closing_7d)`. Any key fits, whatever its length or characters (PostgreSQL btree entries stop at
 * about 2.7 kB, so the key itself is not indexed); a key with an unpaired surrogate, which no UTF-8 column holds
 * exactly, is never stored and always a miss. Writes are conditional in the statement itself, so a lower version
 * never replaces a higher one, whatever the interleaving.
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
  if (!storable(prefix)) {
    throw new ConfigError('sqlStore: prefix has an unpaired surrogate (no UTF-8 column holds it exactly)', {
      option: 'prefix',
    })
  }
  if (options.create !== undefined && typeof options.create !== 'boolean') {
    throw new ConfigError('sqlStore: create must be a boolean', { option: 'create' })
  }
  const timers = options.timers ?? defaultTimers
  if (typeof timers?.setTimeout !== 'function' || typeof timers.clearTimeout !== 'function') {
    throw new ConfigError('sqlStore: timers must be an object with setTimeout(fn, ms) and clearTimeout(handle)', {
      option: 'timers',
    })
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
          // Jittered, so that the two sides of a deadlock do not retry in step.
          const ms = backoffDelay(attempt, 10, 200) * (0.5 + Math.random())
          await new Promise<void>((r) => timers.setTimeout(r, ms))
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

  const tableName = options.table ?? 'stockcast_projections'
  const riskIndex = quoteIdent(dialect, `${splitQualified(tableName)[1].slice(0, 50)}_risk`, 'sqlStore: table')
  const summaryColsPg =
    'location bytea, status text, stock_today numeric, min_closing_7d numeric, first_stockout_date date, days_of_cover integer, duration_ms integer'
  const createSql = pg
    ? `CREATE TABLE IF NOT EXISTS ${table} (key_hash bytea PRIMARY KEY, key bytea NOT NULL, value text NOT NULL, version bigint NOT NULL, computed_at bigint NOT NULL, ${summaryColsPg})`
    : // LONGTEXT keeps the value as written.
      `CREATE TABLE IF NOT EXISTS ${table} (\`key_hash\` BINARY(32) NOT NULL PRIMARY KEY, \`key\` LONGBLOB NOT NULL, \`value\` LONGTEXT CHARACTER SET utf8mb4 NOT NULL, \`version\` BIGINT NOT NULL, \`computed_at\` BIGINT NOT NULL, \`location\` LONGBLOB NULL, \`status\` VARCHAR(9) NULL, \`stock_today\` DECIMAL(38,9) NULL, \`min_closing_7d\` DECIMAL(38,9) NULL, \`first_stockout_date\` DATE NULL, \`days_of_cover\` INT NULL, \`duration_ms\` INT NULL, INDEX ${riskIndex} (\`status\`, \`min_closing_7d\`))`
  const indexPg = `CREATE INDEX IF NOT EXISTS ${riskIndex.split('.').at(-1)} ON ${table} (status, min_closing_7d)`
  // The index's name as to_regclass reads it: in the table's schema.
  const riskIndexName = (() => {
    const [schemaName] = splitQualified(tableName)
    const idx = riskIndex.split('.').at(-1)!
    return schemaName === null ? idx : `${quoteIdent(dialect, schemaName, 'sqlStore: table')}.${idx}`
  })()
  // The layout before the summary columns (value json on PostgreSQL): add them and fill them from the JSON of the
  // projections already stored (a product's location from its key: the bytes after U+001F).
  const summaryFromJsonPg = `UPDATE ${table} SET status = j.s, stock_today = j.st, min_closing_7d = j.mc, first_stockout_date = j.fs, days_of_cover = j.dc,
  location = CASE WHEN position('\\x1f'::bytea in key) > 0 THEN substring(key from position('\\x1f'::bytea in key) + 1) END
FROM (SELECT key_hash AS h, value::json->>'status' AS s, (value::json->>'stockToday')::numeric AS st, (value::json->>'minClosing7d')::numeric AS mc,
  (value::json->>'firstStockoutDate')::date AS fs, (value::json->>'daysOfCover')::integer AS dc
  FROM ${table} WHERE status IS NULL AND left(value, 1) = '{' AND value::json->>'status' IN ('OK', 'ATTENTION', 'CRITICAL')) AS j
WHERE key_hash = j.h`
  const summaryFromJsonMysql = `UPDATE ${table} SET
  \`status\` = JSON_UNQUOTE(JSON_EXTRACT(\`value\`, '$.status')),
  \`stock_today\` = JSON_EXTRACT(\`value\`, '$.stockToday'),
  \`min_closing_7d\` = JSON_EXTRACT(\`value\`, '$.minClosing7d'),
  \`first_stockout_date\` = IF(JSON_TYPE(JSON_EXTRACT(\`value\`, '$.firstStockoutDate')) = 'NULL', NULL, JSON_UNQUOTE(JSON_EXTRACT(\`value\`, '$.firstStockoutDate'))),
  \`days_of_cover\` = IF(JSON_TYPE(JSON_EXTRACT(\`value\`, '$.daysOfCover')) = 'NULL', NULL, JSON_EXTRACT(\`value\`, '$.daysOfCover')),
  \`location\` = IF(LOCATE(0x1f, \`key\`) > 0, SUBSTRING(\`key\`, LOCATE(0x1f, \`key\`) + 1), NULL)
WHERE \`status\` IS NULL AND LEFT(\`value\`, 1) = '{' AND JSON_VALID(\`value\`)
  AND JSON_UNQUOTE(JSON_EXTRACT(\`value\`, '$.status')) IN ('OK', 'ATTENTION', 'CRITICAL')`

  /**
   * Create the table, or migrate one of the first layout (`key` as the primary key: text on PostgreSQL,
   * VARBINARY(3072) on MySQL) in place, entries kept. Several processes at once take turns on a lock named after the
   * table (PostgreSQL: a transaction-scoped advisory lock; MySQL: GET_LOCK on one session).
   */
  const install = async (): Promise<void> => {
    if (pg) {
      await db.transaction(async (tx) => {
        // `FROM`: the lock function returns void, a type some drivers (Prisma's adapters) cannot read.
        await tx.query('SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtext($1))', [`stockcast store ${table}`])
        const cols = await tx.query<{ name: string }>(
          'SELECT attname AS name FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped',
          [table],
        )
        if (cols.length === 0) {
          await tx.execute(createSql)
          await tx.execute(indexPg)
          return
        }
        // One transaction for every step: readers and writers wait, then see the current layout.
        if (!cols.some((c) => c.name === 'key_hash')) {
          // The first layout: key text PRIMARY KEY.
          const [pk] = await tx.query<{ name: string }>(
            "SELECT conname AS name FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p'",
            [table],
          )
          const drop = pk === undefined ? '' : `DROP CONSTRAINT "${pk.name.replaceAll('"', '""')}", `
          await tx.execute(
            `ALTER TABLE ${table} ${drop}ALTER COLUMN key TYPE bytea USING convert_to(key, 'UTF8'), ADD COLUMN key_hash bytea`,
          )
          await tx.execute(`UPDATE ${table} SET key_hash = sha256(key)`)
          await tx.execute(`ALTER TABLE ${table} ALTER COLUMN key_hash SET NOT NULL, ADD PRIMARY KEY (key_hash)`)
        }
        if (!cols.some((c) => c.name === 'status')) {
          // The second layout: value json, no summary columns.
          const add = summaryColsPg
            .split(', ')
            .map((c) => `ADD COLUMN ${c}`)
            .join(', ')
          await tx.execute(`ALTER TABLE ${table} ALTER COLUMN value TYPE text USING value::text, ${add}`)
          await tx.execute(summaryFromJsonPg)
        }
        // Only when missing: CREATE INDEX takes a SHARE lock on the table even when the index exists, and writers
        // would queue behind it while another transaction writes.
        const [idx] = await tx.query<{ present: unknown }>('SELECT to_regclass($1) IS NOT NULL AS present', [
          riskIndexName,
        ])
        if (idx?.present !== true) await tx.execute(indexPg)
      })
      return
    }
    await db.session(async (s) => {
      // Lock names are server-wide: the database and the table, hashed to stay within 64 characters.
      const [got] = await s.query<{ ok: unknown }>(
        `SELECT GET_LOCK(CONCAT('stockcast_store:', LEFT(SHA2(CONCAT(DATABASE(), '.', ?), 256), 40)), ?) AS ok`,
        [table, INSTALL_LOCK_SECONDS],
      )
      if (Number(got?.ok) !== 1) {
        throw new StoreUnavailableError(
          `sqlStore(${table}): install() waited ${INSTALL_LOCK_SECONDS} s for another process installing the table`,
          { tier: 'l2' },
        )
      }
      try {
        const [schemaName, name] = splitQualified(tableName)
        const cols = await s.query<{ name: unknown; nullable: unknown }>(
          'SELECT COLUMN_NAME AS name, IS_NULLABLE AS nullable FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?',
          [schemaName, name],
        )
        if (cols.length === 0) {
          await s.execute(createSql)
          return
        }
        // The first layout (`key` VARBINARY(3072) PRIMARY KEY), in steps that a rerun resumes: MySQL DDL commits
        // one statement at a time.
        const hash = cols.find((c) => String(c.name).toLowerCase() === 'key_hash')
        if (hash === undefined) {
          await s.execute(
            `ALTER TABLE ${table} DROP PRIMARY KEY, MODIFY \`key\` LONGBLOB NOT NULL, ADD COLUMN \`key_hash\` BINARY(32) NULL FIRST`,
          )
        }
        if (hash === undefined || String(hash.nullable).toUpperCase() === 'YES') {
          await s.execute(`UPDATE ${table} SET \`key_hash\` = UNHEX(SHA2(\`key\`, 256)) WHERE \`key_hash\` IS NULL`)
          await s.execute(
            `ALTER TABLE ${table} MODIFY \`key_hash\` BINARY(32) NOT NULL, ADD PRIMARY KEY (\`key_hash\`)`,
          )
        }
        // The second layout: no summary columns. Added in one statement, then filled from the stored JSON.
        if (!cols.some((c) => String(c.name).toLowerCase() === 'status')) {
          await s.execute(
            `ALTER TABLE ${table} ADD COLUMN \`location\` LONGBLOB NULL, ADD COLUMN \`status\` VARCHAR(9) NULL, ` +
              'ADD COLUMN `stock_today` DECIMAL(38,9) NULL, ADD COLUMN `min_closing_7d` DECIMAL(38,9) NULL, ' +
              'ADD COLUMN `first_stockout_date` DATE NULL, ADD COLUMN `days_of_cover` INT NULL, ' +
              `ADD COLUMN \`duration_ms\` INT NULL, ADD INDEX ${riskIndex} (\`status\`, \`min_closing_7d\`)`,
          )
          await s.execute(summaryFromJsonMysql)
        }
      } finally {
        await s
          .query(
            "SELECT RELEASE_LOCK(CONCAT('stockcast_store:', LEFT(SHA2(CONCAT(DATABASE(), '.', ?), 256), 40))) AS released",
            [table],
          )
          .catch(() => {})
      }
    })
  }
  const ensureTable = (): Promise<void> => {
    installing ??= install().catch((e) => {
      installing = undefined
      throw e
    })
    return installing
  }

  /**
   * A row's value: text in the codec's compact form or JSON (older rows); an object, a json column a driver parsed.
   * A value that does not decode (written by something else) is a miss, not an error of the whole read.
   */
  const decodeRow = (r: Row): StockProjection | undefined => {
    try {
      return (typeof r.value === 'string' ? projectionCodec.decode(r.value) : r.value) as StockProjection
    } catch {
      return undefined
    }
  }
  const entryOf = (r: Row, value: StockProjection): StoreEntry => ({
    value,
    version: Number(r.version),
    computedAt: Number(r.computed_at),
  })
  /** The key of a stored key (hex of `prefix + key`), or undefined when it is not under this store's prefix. */
  const unprefixed = (hex: unknown): string | undefined => {
    const full = fromHex(String(hex))
    return full.startsWith(prefix) ? full.slice(prefix.length) : undefined
  }
  /** Full keys (prefix + key) asked for, by key, so rows are matched on the whole key and not the hash alone. */
  const parse = (r: Row, wanted: ReadonlyMap<string, string> | null): [string, StoreEntry] | undefined => {
    const key = wanted === null ? unprefixed(r.key) : wanted.get(fromHex(String(r.key)))
    if (key === undefined) return undefined
    const value = decodeRow(r)
    return value === undefined ? undefined : [key, entryOf(r, value)]
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

  // One JSON document for the whole batch: the driver sends it as one string and the server splits it with
  // json_to_recordset. Keys and locations travel as hex (text cannot carry U+0000) and are stored as bytes; values
  // are the codec's text, whose JSON escapes U+0000, so no text field of the document holds one. A row is only ever
  // replaced by the same key.
  const summarySet =
    'location = EXCLUDED.location, status = EXCLUDED.status, stock_today = EXCLUDED.stock_today, min_closing_7d = EXCLUDED.min_closing_7d, ' +
    'first_stockout_date = EXCLUDED.first_stockout_date, days_of_cover = EXCLUDED.days_of_cover, duration_ms = EXCLUDED.duration_ms'
  const upsertPg = `INSERT INTO ${table} AS t (key_hash, key, value, version, computed_at, location, status, stock_today, min_closing_7d, first_stockout_date, days_of_cover, duration_ms)
SELECT sha256(b), b, v, n, c, decode(l, 'hex'), s, st, mc, fs, dc, d FROM (SELECT decode(k, 'hex') AS b, * FROM json_to_recordset($1::json)
  AS x(k text, v text, n bigint, c bigint, l text, s text, st numeric, mc numeric, fs date, dc integer, d integer)) AS x
ON CONFLICT (key_hash) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version, computed_at = EXCLUDED.computed_at, ${summarySet}
WHERE t.version <= EXCLUDED.version AND t.key = EXCLUDED.key
RETURNING encode(t.key, 'hex') AS key`
  // MySQL/MariaDB run the assignments left to right, each seeing the columns already set; MariaDB's
  // SIMULTANEOUS_ASSIGNMENT mode lets each see the old row. `version` is set last, so every IF compares with the old
  // version in both modes, and the version never goes down. `key` is never assigned: a row keeps its key.
  const same = '`key` = VALUES(`key`)'
  const newer = (col: string) =>
    `\`${col}\` = IF(VALUES(\`version\`) >= \`version\` AND ${same}, VALUES(\`${col}\`), \`${col}\`)`
  const mysqlCols = [
    'value',
    'computed_at',
    'location',
    'status',
    'stock_today',
    'min_closing_7d',
    'first_stockout_date',
    'days_of_cover',
    'duration_ms',
  ]
  const upsertMysql = (n: number) =>
    `INSERT INTO ${table} (\`key_hash\`, \`key\`, \`value\`, \`version\`, \`computed_at\`, \`location\`, \`status\`, \`stock_today\`, \`min_closing_7d\`, \`first_stockout_date\`, \`days_of_cover\`, \`duration_ms\`) VALUES ` +
    Array.from({ length: n }, () => '(UNHEX(SHA2(?, 256)), ?, ?, ?, ?, UNHEX(?), ?, ?, ?, ?, ?, ?)').join(', ') +
    ' ON DUPLICATE KEY UPDATE ' +
    mysqlCols.map(newer).join(', ') +
    `, \`version\` = IF(${same}, GREATEST(\`version\`, VALUES(\`version\`)), \`version\`)`
  const hashes = (n: number) => Array.from({ length: n }, () => 'UNHEX(SHA2(?, 256))').join(', ')

  const store: SqlStore = {
    table,
    capabilities: { shared: true },

    getMany(keys) {
      return wrap('getMany', async () => {
        const out = new Map<string, StoreEntry>()
        const wanted = new Map<string, string>()
        for (const k of keys) if (storable(k)) wanted.set(prefix + k, k)
        if (wanted.size === 0) return out
        const full = [...wanted.keys()]
        if (pg) {
          // The server matches each asked key on its hash and its whole bytes and answers with the key's position,
          // so no key travels back. ASCII keys (product ids, nearly always) go as text, which has the same bytes in
          // every server encoding; a batch with any other key goes as hex.
          const ascii = full.every(isAscii)
          const bytes = ascii ? "convert_to(x.k, 'UTF8')" : "decode(x.k, 'hex')"
          // LATERAL with LIMIT 1 keeps the plan a primary-key lookup per key (a plain join of 1 000 keys is planned
          // as a hash join over the whole table).
          const sql =
            `SELECT x.i::int AS i, t.value, t.version, t.computed_at FROM unnest($1::text[]) WITH ORDINALITY AS x(k, i) ` +
            `CROSS JOIN LATERAL (SELECT value, version, computed_at FROM ${table} WHERE key_hash = sha256(${bytes}) ` +
            `AND key = ${bytes} LIMIT 1) t`
          // A large batch goes as up to PG_PARTS statements at once, on as many pooled connections: the server looks
          // the parts up in parallel, and the rows of one part are decoded while the others are still on their way
          // (bench/sql-postgres.mjs, 1 000 keys). A connection of its own (one client, PGlite) runs them in turn.
          const parts = Math.min(PG_PARTS, Math.ceil(full.length / PG_PART_MIN))
          const size = Math.ceil(full.length / parts)
          await Promise.all(
            Array.from({ length: parts }, async (_, p) => {
              const part = full.slice(p * size, (p + 1) * size)
              const found = await db.query<Row>(sql, [ascii ? part : part.map(toHex)])
              for (const r of found) {
                const key = wanted.get(part[Number(r.i) - 1]!)
                const value = key === undefined ? undefined : decodeRow(r)
                if (value !== undefined) out.set(key!, entryOf(r, value))
              }
            }),
          )
          return out
        }
        for (const chunk of chunksOf(full, (k) => k.length)) {
          const rows = await db.query<Row>(
            `SELECT HEX(\`key\`) AS \`key\`, \`value\`, \`version\`, \`computed_at\` FROM ${table} WHERE \`key_hash\` IN (${hashes(chunk.length)})`,
            chunk,
          )
          for (const r of rows) {
            const e = parse(r, wanted)
            if (e !== undefined) out.set(e[0], e[1])
          }
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
        // A key no UTF-8 column holds exactly is not stored (it stays a miss).
        for (const k of latest.keys()) if (!storable(k)) latest.delete(k)
        if (latest.size === 0) return
        const sorted = [...latest].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        const rows = sorted.map(([k, e]) => {
          const m = summaryOf(e.value)
          return {
            key: prefix + k,
            text: projectionCodec.encode(e.value),
            version: e.version,
            computedAt: Math.trunc(e.computedAt),
            m,
            duration: m === null ? null : durationOf(e.durationMs),
          }
        })
        if (pg) {
          const doc = JSON.stringify(
            rows.map((r) => ({
              k: toHex(r.key),
              v: r.text,
              n: r.version,
              c: r.computedAt,
              l: r.m?.location ?? null,
              s: r.m?.status ?? null,
              st: r.m?.stockToday ?? null,
              mc: r.m?.minClosing7d ?? null,
              fs: r.m?.firstStockoutDate ?? null,
              dc: r.m?.daysOfCover ?? null,
              d: r.duration,
            })),
          )
          // The rows inserted or updated come back: the keys this write now holds (a row kept back by a higher
          // version does not), so the cache reads back only the others.
          const written = new Set<string>()
          for (const r of await db.query<{ key: unknown }>(upsertPg, [doc])) {
            const key = unprefixed(r.key)
            if (key !== undefined) written.add(key)
          }
          return written
        }
        const params = rows.map((r) => [
          r.key,
          r.key,
          r.text,
          r.version,
          r.computedAt,
          r.m?.location ?? null,
          r.m?.status ?? null,
          r.m?.stockToday ?? null,
          r.m?.minClosing7d ?? null,
          r.m?.firstStockoutDate ?? null,
          r.m?.daysOfCover ?? null,
          r.duration,
        ])
        for (const chunk of chunksOf(params, (r) => 2 * String(r[0]).length + String(r[2]).length + 128)) {
          await db.execute(upsertMysql(chunk.length), chunk.flat())
        }
      })
    },

    deleteMany(keys) {
      return wrap('deleteMany', async () => {
        const full = [...new Set(keys)].filter(storable).map((k) => prefix + k)
        if (full.length === 0) return
        if (pg) {
          await db.execute(
            `DELETE FROM ${table} AS t USING (SELECT decode(h, 'hex') AS b FROM unnest($1::text[]) AS h) AS x ` +
              'WHERE t.key_hash = sha256(x.b) AND t.key = x.b',
            [full.map(toHex)],
          )
          return
        }
        for (const chunk of chunksOf(full, (k) => 2 * k.length)) {
          await db.execute(
            `DELETE FROM ${table} WHERE \`key_hash\` IN (${hashes(chunk.length)}) AND \`key\` IN (${placeholders('mysql', chunk.length)})`,
            [...chunk, ...chunk],
          )
        }
      })
    },

    list(q) {
      return wrap('list', async () => {
        const order =
          q.orderBy === 'minClosing7d'
            ? 'min_closing_7d'
            : q.orderBy === 'computedAt'
              ? 'computed_at'
              : 'first_stockout_date'
        const params: unknown[] = []
        const p = (v: unknown) => {
          params.push(v)
          return pg ? `$${params.length}` : '?'
        }
        const col = (c: string) => (pg ? c : `\`${c}\``)
        const bytes = encoder.encode(prefix).length
        const where = [
          pg
            ? `substring(key from 1 for ${p(bytes)}::int) = decode(${p(toHex(prefix))}, 'hex')`
            : `LEFT(\`key\`, ${p(bytes)}) = UNHEX(${p(toHex(prefix))})`,
          q.location === null
            ? `${col('location')} IS NULL`
            : `${col('location')} = ${pg ? `decode(${p(toHex(q.location))}, 'hex')` : `UNHEX(${p(toHex(q.location))})`}`,
          q.statuses === null
            ? `${col('status')} IS NOT NULL`
            : `${col('status')} IN (${q.statuses.map((st) => p(st)).join(', ')})`,
        ]
        if (q.stockoutBefore !== null) where.push(`${col('first_stockout_date')} < ${p(q.stockoutBefore)}`)
        // MySQL compares a DECIMAL with a string as doubles: cast, so the comparison stays exact.
        const dec = (v: string) => (pg ? `${p(v)}::numeric` : `CAST(${p(v)} AS DECIMAL(38,9))`)
        if (q.minClosingBelow !== null) where.push(`${col('min_closing_7d')} < ${dec(decimalText(q.minClosingBelow))}`)
        if (q.orderBy === 'firstStockoutDate') where.push(`${col('first_stockout_date')} IS NOT NULL`)
        if (q.after !== null) {
          const v =
            typeof q.after.value === 'number' && q.orderBy === 'minClosing7d'
              ? decimalText(q.after.value)
              : q.after.value
          const k = toHex(prefix + q.after.key)
          const value =
            q.orderBy === 'firstStockoutDate'
              ? pg
                ? `${p(v)}::date`
                : p(v)
              : q.orderBy === 'minClosing7d'
                ? dec(String(v))
                : pg
                  ? `${p(v)}::bigint`
                  : p(v)
          where.push(
            pg
              ? `(${order}, key) > (${value}, decode(${p(k)}, 'hex'))`
              : `(\`${order}\`, \`key\`) > (${value}, UNHEX(${p(k)}))`,
          )
        }
        const rows = await db.query<Row>(
          pg
            ? `SELECT encode(key, 'hex') AS key, value, version, computed_at FROM ${table} WHERE ${where.join(' AND ')} ORDER BY ${order}, key LIMIT ${p(q.limit)}`
            : `SELECT HEX(\`key\`) AS \`key\`, \`value\`, \`version\`, \`computed_at\` FROM ${table} WHERE ${where.join(' AND ')} ORDER BY \`${order}\`, \`key\` LIMIT ${Number(q.limit)}`,
          params,
        )
        const out: Array<[string, StoreEntry]> = []
        for (const r of rows) {
          const e = parse(r, null)
          if (e !== undefined) out.push(e)
        }
        return out
      })
    },

    clear() {
      return wrap('clear', async () => {
        // Keys under the prefix: their first bytes are the prefix's.
        const bytes = encoder.encode(prefix).length
        if (pg) {
          await db.execute(`DELETE FROM ${table} WHERE substring(key from 1 for $1::int) = decode($2, 'hex')`, [
            bytes,
            toHex(prefix),
          ])
          return
        }
        await db.execute(`DELETE FROM ${table} WHERE LEFT(\`key\`, ?) = ?`, [bytes, prefix])
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
