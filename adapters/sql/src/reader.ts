import {
  ConfigError,
  type FlowRow,
  type MovementRow,
  type ReadOptions,
  type SourceInputs,
  type SourceReader,
  SourceUnavailableError,
  type StockSchema,
  type StockSource,
} from 'stockcast'
import { quoteIdent, splitQualified } from './quote.js'
import type { SqlDb, SqlDialect } from './types.js'

export interface SqlReaderOptions {
  /**
   * Products per query: the size of the PostgreSQL array parameter, or of the MySQL `IN (...)` list. A larger
   * batch is split into several queries per source.
   * @default 1000
   */
  batchSize?: number
  /**
   * Queries in flight at once on a pool (`pg`, `mysql2`). PGlite is one session: its queries always run one
   * after another.
   * @default 4
   */
  concurrency?: number
}

/** The set-based source reader (L3) over your own tables, plus a configuration check. */
export interface SqlReader extends SourceReader {
  /** Aggregated rows for a batch of products: one `GROUP BY` query per source (per `batchSize` products). */
  read(products: readonly string[], options?: ReadOptions): Promise<Map<string, SourceInputs>>
  /** Every distinct product in the source tables (their `where` is not applied: over-listing is safe), sorted. */
  products(): Promise<string[]>
  /**
   * Check the schema against the database: every table and column exists and each source's query runs.
   * Reads only. Throws a `ConfigError` naming every table or column at fault.
   */
  check(): Promise<void>
  /** The aggregate SQL this reader runs for a source, for `n` products (for logs and tests). */
  sqlFor(sourceId: string, n?: number): string
  /** Releases nothing: the connection is the caller's. */
  close(): Promise<void>
}

type AggRow = { sc_product: unknown; sc_location?: unknown; sc_date?: unknown; sc_qty: unknown }

interface Plan {
  source: StockSource
  /** SQL for `n` products. */
  sql(n: number): string
  /** The parameters for a chunk of products. */
  params(products: readonly string[]): unknown[]
}

/** The date expression: a `YYYY-MM-DD` string whatever the column type (date, timestamp, timestamptz, text). */
function dayOf(dialect: SqlDialect, col: string): string {
  return dialect === 'postgres' ? `to_char(${col}::date, 'YYYY-MM-DD')` : `DATE_FORMAT(${col}, '%Y-%m-%d')`
}

function planFor(dialect: SqlDialect, s: StockSource): Plan {
  const q = (name: string, what: string) => quoteIdent(dialect, name, `${s.id}: ${what}`)
  const table = q(s.table, 'table')
  const product = q(s.product, 'product')
  const qty = q(s.quantity, 'quantity')
  const location = s.location === undefined ? undefined : q(s.location, 'location')
  const date = s.date === undefined ? undefined : q(s.date, 'date')
  const pg = dialect === 'postgres'
  // Product ids are matched byte for byte, as cache keys are. PostgreSQL: the value as text (`char(n)` padding
  // dropped). MySQL/MariaDB compare with the column's collation (often case-insensitive, trailing spaces ignored):
  // group on the bytes so 'abc', 'ABC' and 'abc ' stay apart; rows for ids nobody asked for are dropped after.
  const groupKey = (col: string) => (pg ? col : `CAST(${col} AS BINARY)`)
  const pick = (col: string) => (pg ? `${col}::text` : `MIN(${col})`)
  const select = [`${pick(product)} AS sc_product`]
  const group = [groupKey(product)]
  if (location !== undefined) {
    select.push(`${pick(location)} AS sc_location`)
    group.push(groupKey(location))
  }
  if (date !== undefined) {
    select.push(`${dayOf(dialect, date)} AS sc_date`)
    group.push(dayOf(dialect, date))
  }
  // Exact decimals: the sum leaves the database as text (numeric in PostgreSQL: float columns sum without drift).
  select.push(pg ? `SUM(${qty}::numeric)::text AS sc_qty` : `CAST(SUM(${qty}) AS CHAR) AS sc_qty`)
  // The where is pasted as is; a placeholder in it would take one of our parameters (mysql2 fills every `?`, even
  // inside quotes), so it must not contain any.
  if (s.where !== undefined && (pg ? /\$\d/.test(s.where) : s.where.includes('?'))) {
    throw new ConfigError(
      `sqlReader: source "${s.id}" has a placeholder (${pg ? '$n' : '?'}) in its where, which would take a bound ` +
        `value meant for the product list; write the value in the fragment: ${s.where}`,
      { source: s.id, option: 'where' },
    )
  }
  const conditions: string[] = []
  // A dated flow without a date has no day to fall on: it is not counted (an undated on-hand movement is balance).
  if (date !== undefined && s.kind !== 'onHand') conditions.push(`${date} IS NOT NULL`)
  // A trailing line comment in the fragment must not swallow the closing parenthesis and the GROUP BY.
  if (s.where !== undefined) conditions.push(/--|#/.test(s.where) ? `(${s.where}\n)` : `(${s.where})`)
  const head = `SELECT ${select.join(', ')} FROM ${table} WHERE `
  const tail = `${conditions.map((c) => ` AND ${c}`).join('')} GROUP BY ${group.join(', ')}`
  return {
    source: s,
    sql: (n) =>
      pg
        ? `${head}${product} = ANY($1)${tail}`
        : `${head}${product} IN (${n === 0 ? 'NULL' : Array.from({ length: n }, () => '?').join(', ')})${tail}`,
    // PostgreSQL: one untyped array parameter, so it takes the column's type (text, varchar, integer ids).
    params: (products) => (pg ? [products] : [...products]),
  }
}

/** Run tasks with at most `limit` in flight; on the first failure start no more, wait for those running, rethrow. */
async function runLimited(tasks: ReadonlyArray<() => Promise<void>>, limit: number): Promise<void> {
  let next = 0
  let failed: { error: unknown } | undefined
  const worker = async () => {
    while (failed === undefined && next < tasks.length) {
      const task = tasks[next++]!
      try {
        await task()
      } catch (error) {
        failed ??= { error }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker))
  if (failed !== undefined) throw failed.error
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

function positiveInt(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ConfigError(`sqlReader: ${name} must be a positive integer, got ${JSON.stringify(value)}`, {
      option: name,
    })
  }
  return value
}

/**
 * The set-based reader (L3) over your own tables: for each schema source, one aggregate query per batch of products
 * (`SELECT product[, location], day, SUM(quantity) ... WHERE product = ANY($1) AND (where) GROUP BY ...`).
 * Every identifier is quoted and every value bound; the schema's `where` is the only raw SQL, in parentheses.
 * Quantities arrive as exact decimal strings and days as `YYYY-MM-DD` whatever the column type (timestamps are cut
 * to their day in the session time zone). Supply and demand rows with a NULL date are not counted.
 *
 * @example
 * ```ts
 * const reader = sqlReader(fromPg(pool), schema)
 * await reader.check() // ConfigError when a table or column does not exist
 * const cache = createStockCache({ schema, reader, store: sqlStore(fromPg(pool)) })
 * ```
 */
export function sqlReader(db: SqlDb, schema: StockSchema, options: SqlReaderOptions = {}): SqlReader {
  if (db === null || typeof db !== 'object' || typeof db.query !== 'function') {
    throw new ConfigError('sqlReader: db must be an SqlDb (fromPg, fromPGlite or fromMysql)', { option: 'db' })
  }
  if (db.dialect !== 'postgres' && db.dialect !== 'mysql') {
    throw new ConfigError(`sqlReader: unknown dialect ${JSON.stringify(db.dialect)}`, { option: 'db' })
  }
  if (schema === null || typeof schema !== 'object' || !Array.isArray(schema.sources)) {
    throw new ConfigError('sqlReader: schema must come from defineStockSchema', { option: 'schema' })
  }
  const batchSize = positiveInt(options.batchSize, 'batchSize', 1000)
  // PGlite is a single session: concurrent queries would only queue, and a transaction must not interleave.
  const concurrency = positiveInt(options.concurrency, 'concurrency', 4)
  const inFlight = db.driver === 'pglite' ? 1 : concurrency
  const dialect = db.dialect
  const plans = new Map<string, Plan>(schema.sources.map((s) => [s.id, planFor(dialect, s)]))

  const select = (sources: readonly string[] | undefined): Plan[] => {
    if (sources === undefined) return [...plans.values()]
    const out: Plan[] = []
    for (const id of new Set(sources)) {
      const plan = plans.get(id)
      if (plan === undefined) {
        throw new ConfigError(
          `sqlReader: unknown source ${JSON.stringify(id)} (the schema has ${[...plans.keys()].join(', ')})`,
          { option: 'sources', source: id },
        )
      }
      out.push(plan)
    }
    return out
  }

  const reader: SqlReader = {
    async read(products, readOptions = {}) {
      const out = new Map<string, SourceInputs>()
      const chosen = select(readOptions.sources)
      const list = [...new Set(products)].filter((p): p is string => typeof p === 'string')
      const wanted = new Set(list)
      if (list.length === 0 || chosen.length === 0) return out
      const bucket = (p: string): SourceInputs => {
        let b = out.get(p)
        if (b === undefined) {
          b = { onHand: [], supply: [], demand: [] }
          out.set(p, b)
        }
        return b
      }
      const chunks: string[][] = []
      for (let i = 0; i < list.length; i += batchSize) chunks.push(list.slice(i, i + batchSize))
      const tasks: Array<() => Promise<void>> = []
      for (const plan of chosen) {
        const s = plan.source
        for (const chunk of chunks) {
          tasks.push(async () => {
            let rows: AggRow[]
            try {
              rows = await db.query<AggRow>(plan.sql(chunk.length), plan.params(chunk))
            } catch (cause) {
              throw new SourceUnavailableError(
                `sqlReader: reading source "${s.id}" (table ${s.table}) failed: ${messageOf(cause)}`,
                { source: s.id, tier: 'l3', cause },
              )
            }
            for (const r of rows) {
              if (r.sc_qty === null || r.sc_qty === undefined) continue
              if (r.sc_product === null || r.sc_product === undefined) continue
              const p = String(r.sc_product)
              if (!wanted.has(p)) continue
              const quantity = String(r.sc_qty)
              const location =
                s.location === undefined ? undefined : r.sc_location == null ? null : String(r.sc_location)
              const b = bucket(p)
              if (s.kind === 'onHand') {
                const row: MovementRow = { quantity, source: s.id }
                if (s.date !== undefined) row.date = r.sc_date == null ? null : String(r.sc_date)
                if (location !== undefined) row.location = location
                b.onHand.push(row)
              } else {
                const row: FlowRow = { date: String(r.sc_date), quantity, source: s.id }
                if (s.pending) row.pending = true
                if (location !== undefined) row.location = location
                b[s.kind].push(row)
              }
            }
          })
        }
      }
      await runLimited(tasks, inFlight)
      return out
    },

    async products() {
      const parts: string[] = []
      const seen = new Set<string>()
      for (const s of schema.sources) {
        if (seen.has(`${s.table}\u0000${s.product}`)) continue
        seen.add(`${s.table}\u0000${s.product}`)
        const table = quoteIdent(dialect, s.table)
        const col = quoteIdent(dialect, s.product)
        parts.push(
          dialect === 'postgres'
            ? `SELECT DISTINCT ${col}::text AS sc_product FROM ${table}`
            : `SELECT MIN(${col}) AS sc_product FROM ${table} GROUP BY CAST(${col} AS BINARY)`,
        )
      }
      let rows: AggRow[]
      try {
        rows = await db.query<AggRow>(parts.join(' UNION ALL '))
      } catch (cause) {
        throw new SourceUnavailableError(
          `sqlReader: listing products of ${schema.tables.join(', ')} failed: ${messageOf(cause)}`,
          { tier: 'l3', cause },
        )
      }
      const set = new Set<string>()
      for (const r of rows) {
        if (r.sc_product === null || r.sc_product === undefined) continue
        const p = String(r.sc_product)
        if (p !== '') set.add(p)
      }
      return [...set].sort()
    },

    async check() {
      const problems: string[] = []
      let first: string | undefined
      const fail = (source: string, message: string) => {
        first ??= source
        problems.push(message)
      }
      const columnsByTable = new Map<string, Set<string> | null>()
      for (const table of schema.tables) {
        try {
          columnsByTable.set(table, await columnsOf(db, table, (m) => problems.push(m)))
        } catch (cause) {
          throw new SourceUnavailableError(
            `sqlReader.check: could not read the columns of ${table}: ${messageOf(cause)}`,
            { tier: 'l3', cause },
          )
        }
      }
      for (const s of schema.sources) {
        const cols = columnsByTable.get(s.table)
        if (cols === null || cols === undefined) {
          first ??= s.id
          continue
        }
        const named: Array<[string, string | undefined]> = [
          ['product', s.product],
          ['quantity', s.quantity],
          ['date', s.date],
          ['location', s.location],
        ]
        let ok = true
        for (const [role, col] of named) {
          if (col === undefined) continue
          const has = dialect === 'postgres' ? cols.has(col) : cols.has(col.toLowerCase())
          if (has) continue
          ok = false
          const folded = dialect === 'postgres' && col !== col.toLowerCase() && cols.has(col.toLowerCase())
          fail(
            s.id,
            `source "${s.id}": table ${s.table} has no column ${JSON.stringify(col)} (its ${role} column)` +
              (folded ? `; identifiers are quoted, so case matters: the column is "${col.toLowerCase()}"` : ''),
          )
        }
        if (!ok) continue
        // The whole query, matching no product: checks the where fragment and the column types without reading rows.
        const plan = plans.get(s.id)!
        try {
          await db.query(plan.sql(0), dialect === 'postgres' ? [[]] : [])
        } catch (cause) {
          fail(
            s.id,
            `source "${s.id}" (table ${s.table}): its query fails: ${messageOf(cause)}` +
              (s.where === undefined ? '' : ` (check its where: ${s.where})`),
          )
        }
      }
      if (problems.length > 0) {
        throw new ConfigError(`sqlReader: the schema does not match the database: ${problems.join('; ')}`, {
          ...(first === undefined ? {} : { source: first }),
        })
      }
    },

    sqlFor(sourceId, n = 1) {
      const plan = plans.get(sourceId)
      if (plan === undefined) throw new ConfigError(`sqlReader: unknown source ${JSON.stringify(sourceId)}`)
      return plan.sql(n)
    },

    async close() {},
  }
  return reader
}

/**
 * The column names of a table (lower-cased for MySQL, whose column names ignore case), or null when the table does
 * not exist (the problem is reported through `report`).
 */
async function columnsOf(db: SqlDb, table: string, report: (message: string) => void): Promise<Set<string> | null> {
  const [schemaName, name] = splitQualified(table)
  if (db.dialect === 'postgres') {
    const quoted = quoteIdent('postgres', table)
    const folded = quoteIdent('postgres', table.toLowerCase())
    const [hit] = await db.query<{ exact: string | null; folded: string | null }>(
      'SELECT to_regclass($1)::text AS exact, to_regclass($2)::text AS folded',
      [quoted, folded],
    )
    if (hit?.exact == null) {
      report(
        `table ${table} does not exist` +
          (hit?.folded != null && folded !== quoted
            ? ` (identifiers are quoted, so case matters: the table is ${table.toLowerCase()})`
            : ''),
      )
      return null
    }
    const rows = await db.query<{ name: string }>(
      'SELECT attname AS name FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped',
      [quoted],
    )
    return new Set(rows.map((r) => r.name))
  }
  const rows = await db.query<{ name: string }>(
    'SELECT COLUMN_NAME AS name FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?',
    [schemaName, name],
  )
  if (rows.length === 0) {
    report(`table ${table} does not exist${schemaName === null ? ' in the current database' : ''}`)
    return null
  }
  return new Set(rows.map((r) => String(r.name).toLowerCase()))
}
