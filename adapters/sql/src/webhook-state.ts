import { ConfigError, type DeliveredState, isWellFormedText, StockcastError, type WebhookStateStore } from 'stockcast'
import { quoteIdent } from './quote.js'
import type { SqlDb } from './types.js'

export interface SqlWebhookStateOptions {
  /** The table, optionally schema-qualified. @default 'stockcast_webhook_state' */
  table?: string
  /** Run `install()` on first use. With `false`, call `install()` yourself. @default true */
  create?: boolean
}

/** The webhook state table: a `WebhookStateStore` plus `install()` and `drop()`. */
export interface SqlWebhookState extends WebhookStateStore {
  /** The quoted table name. */
  readonly table: string
  /** Create the table if it does not exist (idempotent). */
  install(): Promise<void>
  /** Drop the table. */
  drop(): Promise<void>
}

/** MySQL/MariaDB: keys per statement. */
const MYSQL_ROWS = 500

const encoder = new TextEncoder()
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))
/** The UTF-8 bytes of `s` as lowercase hex (keys travel as hex: text cannot carry U+0000). */
function toHex(s: string): string {
  let out = ''
  for (const b of encoder.encode(s)) out += HEX[b]
  return out
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

/**
 * `createWebhookDelivery`'s state in an SQL table (PostgreSQL, PGlite, MySQL/MariaDB): one row per key with
 * `key_hash` (SHA-256 of the key's UTF-8 bytes, the primary key), `key` (the bytes, compared on every read and
 * write), `state` (the `DeliveredState` as JSON) and `updated_at` (epoch ms). `set` upserts per key. A key with an
 * unpaired surrogate, which no UTF-8 column holds exactly, is never stored (the delivery then treats it as new after
 * a restart). Processes that share the table share the state; run one delivery per table (see
 * `createWebhookDelivery`).
 *
 * @example
 * ```ts
 * const state = sqlWebhookState(fromPg(pool))
 * const hooks = createWebhookDelivery(cache, { url, state })
 * ```
 */
export function sqlWebhookState(db: SqlDb, options: SqlWebhookStateOptions = {}): SqlWebhookState {
  if (db === null || typeof db !== 'object' || typeof db.query !== 'function') {
    throw new ConfigError('sqlWebhookState: db must be an SqlDb (fromPg, fromPGlite or fromMysql)', { option: 'db' })
  }
  const dialect = db.dialect
  if (dialect !== 'postgres' && dialect !== 'mysql') {
    throw new ConfigError(`sqlWebhookState: unknown dialect ${JSON.stringify(dialect)}`, { option: 'db' })
  }
  if (options === null || typeof options !== 'object') {
    throw new ConfigError('sqlWebhookState: options must be an object', { option: 'options' })
  }
  if (options.create !== undefined && typeof options.create !== 'boolean') {
    throw new ConfigError('sqlWebhookState: create must be a boolean', { option: 'create' })
  }
  const table = quoteIdent(dialect, options.table ?? 'stockcast_webhook_state', 'sqlWebhookState: table')
  const pg = dialect === 'postgres'
  const create = options.create ?? true
  let installing: Promise<void> | undefined

  const createSql = pg
    ? `CREATE TABLE IF NOT EXISTS ${table} (key_hash bytea PRIMARY KEY, key bytea NOT NULL, state text NOT NULL, updated_at bigint NOT NULL)`
    : `CREATE TABLE IF NOT EXISTS ${table} (\`key_hash\` BINARY(32) NOT NULL PRIMARY KEY, \`key\` LONGBLOB NOT NULL, \`state\` TEXT CHARACTER SET utf8mb4 NOT NULL, \`updated_at\` BIGINT NOT NULL)`

  const install = async (): Promise<void> => {
    if (pg) {
      // Two CREATE TABLE IF NOT EXISTS at once can both try to create the row type: take turns.
      await db.transaction(async (tx) => {
        await tx.query('SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtext($1))', [`stockcast webhooks ${table}`])
        await tx.execute(createSql)
      })
      return
    }
    await db.execute(createSql)
  }
  const ensureTable = (): Promise<void> => {
    installing ??= install().catch((e) => {
      installing = undefined
      throw e
    })
    return installing
  }

  const wrap = async <T>(what: string, fn: () => Promise<T>, admin = false): Promise<T> => {
    try {
      if (create && !admin) await ensureTable()
      return await fn()
    } catch (cause) {
      if (cause instanceof StockcastError) throw cause
      throw new StockcastError(`sqlWebhookState(${table}): ${what} failed: ${messageOf(cause)}`, { cause })
    }
  }

  /** A stored state's JSON; a row that does not parse counts as absent (the delivery then compares afresh). */
  const parse = (text: unknown): DeliveredState | undefined => {
    try {
      const v = JSON.parse(String(text)) as unknown
      return v !== null && typeof v === 'object' ? (v as DeliveredState) : undefined
    } catch {
      return undefined
    }
  }

  const chunks = <T>(items: readonly T[]): T[][] => {
    const out: T[][] = []
    for (let i = 0; i < items.length; i += MYSQL_ROWS) out.push(items.slice(i, i + MYSQL_ROWS))
    return out
  }

  const upsertPg = `INSERT INTO ${table} AS t (key_hash, key, state, updated_at)
SELECT sha256(x.b), x.b, x.s, x.u FROM (SELECT decode(k, 'hex') AS b, s, u FROM json_to_recordset($1::json) AS r(k text, s text, u bigint)) AS x
ON CONFLICT (key_hash) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at WHERE t.key = EXCLUDED.key`
  // `key` is never assigned: a row keeps its key, and a hash collision with another key changes nothing.
  const same = '`key` = VALUES(`key`)'
  const upsertMysql = (n: number) =>
    `INSERT INTO ${table} (\`key_hash\`, \`key\`, \`state\`, \`updated_at\`) VALUES ` +
    Array.from({ length: n }, () => '(UNHEX(SHA2(UNHEX(?), 256)), UNHEX(?), ?, ?)').join(', ') +
    ` ON DUPLICATE KEY UPDATE \`state\` = IF(${same}, VALUES(\`state\`), \`state\`), ` +
    `\`updated_at\` = IF(${same}, VALUES(\`updated_at\`), \`updated_at\`)`

  return {
    table,
    install: () => wrap('install', install, true),
    drop: () => wrap('drop', () => db.execute(`DROP TABLE IF EXISTS ${table}`).then(() => undefined), true),

    get(keys) {
      return wrap('get', async () => {
        const out = new Map<string, DeliveredState>()
        // Hex of the key's bytes (lowercase) -> key.
        const wanted = new Map<string, string>()
        for (const k of keys) if (typeof k === 'string' && isWellFormedText(k)) wanted.set(toHex(k), k)
        if (wanted.size === 0) return out
        const hexes = [...wanted.keys()]
        const take = (rows: Array<{ k: unknown; state: unknown }>) => {
          for (const r of rows) {
            const key = wanted.get(String(r.k).toLowerCase())
            const s = key === undefined ? undefined : parse(r.state)
            if (s !== undefined) out.set(key!, s)
          }
        }
        if (pg) {
          take(
            await db.query<{ k: unknown; state: unknown }>(
              `SELECT encode(t.key, 'hex') AS k, t.state FROM unnest($1::text[]) AS x(h) ` +
                `JOIN ${table} AS t ON t.key_hash = sha256(decode(x.h, 'hex')) AND t.key = decode(x.h, 'hex')`,
              [hexes],
            ),
          )
          return out
        }
        for (const chunk of chunks(hexes)) {
          take(
            await db.query<{ k: unknown; state: unknown }>(
              `SELECT HEX(\`key\`) AS k, \`state\` FROM ${table} WHERE \`key_hash\` IN (${chunk
                .map(() => 'UNHEX(SHA2(UNHEX(?), 256))')
                .join(', ')})`,
              chunk,
            ),
          )
        }
        return out
      })
    },

    set(entries) {
      return wrap('set', async () => {
        // In key order: concurrent writers take their row locks in the same order.
        const rows = [...entries]
          .filter(([k]) => typeof k === 'string' && isWellFormedText(k))
          .map(([k, s]) => ({ k: toHex(k), s: JSON.stringify(s), u: Math.trunc(Number(s.at) || Date.now()) }))
          .sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0))
        if (rows.length === 0) return
        if (pg) {
          await db.execute(upsertPg, [JSON.stringify(rows)])
          return
        }
        for (const chunk of chunks(rows)) {
          await db.execute(
            upsertMysql(chunk.length),
            chunk.flatMap((r) => [r.k, r.k, r.s, r.u]),
          )
        }
      })
    },

    async close() {},
  }
}
