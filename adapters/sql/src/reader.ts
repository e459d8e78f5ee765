import {
  ConfigError,
  type FlowRow,
  InvalidInputError,
  isWellFormedText,
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
   * Products per statement: the size of the PostgreSQL array parameter, or of the MySQL `IN (...)` list. A larger
   * call is read in several statements, all in one read-only snapshot (`SqlDb.snapshot()`).
   * @default 1000
   */
  batchSize?: number
  /**
   * @deprecated No effect: every source of a call is read in one statement (one snapshot), on one connection.
   * Still checked (a positive integer) so existing configurations keep working.
   * @default 4
   */
  concurrency?: number
}

/** The set-based source reader (L3) over your own tables, plus a configuration check. */
export interface SqlReader extends SourceReader {
  /**
   * Aggregated rows for a batch of products: one statement for every source (a `UNION ALL` of one `GROUP BY` query
   * per source) per `batchSize` products, all in one snapshot. Throws `InvalidInputError` (with `products`) for ids
   * the product columns cannot hold, before querying, and for dates out of range, after reading.
   */
  read(products: readonly string[], options?: ReadOptions): Promise<Map<string, SourceInputs>>
  /** Every distinct product in the source tables (their `where` is not applied: over-listing is safe), sorted. */
  products(): Promise<string[]>
  /**
   * Check the schema against the database: every table and column exists and each source's query runs.
   * Reads only. Throws a `ConfigError` naming every table or column at fault.
   */
  check(): Promise<void>
  /**
   * The aggregate SQL of one source for `n` products, as `read()` runs it (one branch of its `UNION ALL`), once the
   * column types are known: for logs and tests.
   */
  sqlFor(sourceId: string, n?: number): Promise<string>
  /** Releases nothing: the connection is the caller's. */
  close(): Promise<void>
}

type AggRow = { sc_src?: unknown; sc_product: unknown; sc_location?: unknown; sc_date?: unknown; sc_qty: unknown }

// ------------------------------------------------------------------------------------------------ column types

/**
 * How a date column becomes a day. `date`: its own value. `wall`: a wall-clock timestamp (PostgreSQL `timestamp`,
 * MySQL `datetime`): its own date. `instant`: a point in time (PostgreSQL `timestamptz`, MySQL `timestamp`): its
 * date in the cache's time zone. `other`: cast to a date (text columns).
 */
type DayKind = 'date' | 'wall' | 'instant' | 'other'

/** What the reader knows of a column, from the catalog. */
interface ColumnInfo {
  /** The type as the catalog names it (messages; equal types share a parameter). */
  readonly type: string
  readonly day: DayKind
  /** What an id must look like to be held exactly; absent: any id (text). */
  readonly expect?: string
  /** True when the column can hold `id` exactly (its value read back as text is `id`). */
  holds(id: string): boolean
}

const ASTRAL = /[\uD800-\uDBFF][\uDC00-\uDFFF]/
const INTEGER = /^-?(0|[1-9][0-9]*)$/
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const DECIMAL = /^-?(0|[1-9][0-9]*)(?:\.([0-9]+))?$/

/** No unpaired surrogate: no database stores one as is (it becomes U+FFFD). */
const textual = (id: string) => isWellFormedText(id)
const charLength = (id: string) => {
  let n = 0
  for (const _ of id) n++
  return n
}

function integerColumn(type: string, min: bigint, max: bigint): Omit<ColumnInfo, 'day'> {
  return {
    type,
    expect: `the canonical decimal form of an integer in [${min}, ${max}]`,
    holds: (id) => INTEGER.test(id) && id !== '-0' && BigInt(id) >= min && BigInt(id) <= max,
  }
}

/** `numeric(p, s)` / `DECIMAL(p, s)` read back as text with exactly `s` decimals; unconstrained: as written. */
function decimalColumn(type: string, precision?: number, scale?: number): Omit<ColumnInfo, 'day'> {
  if (precision === undefined || scale === undefined) {
    return {
      type,
      expect: 'a plain decimal number (digits, an optional fraction, no exponent, no leading zeros)',
      holds: (id) => id === 'NaN' || (DECIMAL.test(id) && !/^-[0.]+$/.test(id)),
    }
  }
  return {
    type,
    expect: `a decimal with ${scale === 0 ? 'no fraction' : `exactly ${scale} decimals`} and at most ${precision - scale} integer digits`,
    holds: (id) => {
      const m = DECIMAL.exec(id)
      if (m === null || /^-[0.]+$/.test(id)) return false
      const fraction = m[2] ?? ''
      return fraction.length === scale && (m[1] === '0' ? 0 : m[1]!.length) <= precision - scale
    },
  }
}

function uuidColumn(type: string): Omit<ColumnInfo, 'day'> {
  return { type, expect: 'a lower-case uuid with hyphens (8-4-4-4-12)', holds: (id) => UUID.test(id) }
}

/** `char(n)`: at most n characters; trailing spaces are padding (dropped when read back), so an id cannot end with one. */
function charColumn(type: string, length: number | undefined, astral: boolean): Omit<ColumnInfo, 'day'> {
  return {
    type,
    expect: `at most ${length ?? '?'} characters, no trailing space`,
    holds: (id) =>
      textual(id) &&
      !id.endsWith(' ') &&
      (length === undefined || charLength(id) <= length) &&
      (astral || !ASTRAL.test(id)),
  }
}

function varcharColumn(type: string, length: number | undefined, astral: boolean): Omit<ColumnInfo, 'day'> {
  if (length === undefined && astral) return { type, holds: textual }
  return {
    type,
    expect:
      length === undefined
        ? 'characters of the Basic Multilingual Plane (utf8mb3)'
        : `at most ${length} characters${astral ? '' : ' of the Basic Multilingual Plane (utf8mb3)'}`,
    holds: (id) => textual(id) && (length === undefined || charLength(id) <= length) && (astral || !ASTRAL.test(id)),
  }
}

/** A column the catalog did not list (the read will fail with the database's message): no checks. */
const UNKNOWN: ColumnInfo = { type: 'unknown', day: 'other', holds: () => true }

const INT16: [bigint, bigint] = [-32768n, 32767n]
const INT32: [bigint, bigint] = [-2147483648n, 2147483647n]
const INT64: [bigint, bigint] = [-9223372036854775808n, 9223372036854775807n]

/** A PostgreSQL column from `format_type()` of its (base) type. Text input never takes U+0000. */
function pgColumn(type: string): ColumnInfo {
  const day: DayKind =
    type === 'date'
      ? 'date'
      : /^timestamp(\(\d+\))? without time zone$/.test(type)
        ? 'wall'
        : /^timestamp(\(\d+\))? with time zone$/.test(type)
          ? 'instant'
          : 'other'
  const numeric = /^numeric\((\d+),(\d+)\)$/.exec(type)
  const fixed = /^character\((\d+)\)$/.exec(type)
  const varying = /^character varying\((\d+)\)$/.exec(type)
  let base: Omit<ColumnInfo, 'day'>
  if (type === 'smallint') base = integerColumn(type, ...INT16)
  else if (type === 'integer') base = integerColumn(type, ...INT32)
  else if (type === 'bigint') base = integerColumn(type, ...INT64)
  else if (type === 'numeric') base = decimalColumn(type)
  else if (numeric !== null) base = decimalColumn(type, Number(numeric[1]), Number(numeric[2]))
  else if (type === 'uuid') base = uuidColumn(type)
  else if (fixed !== null) base = charColumn(type, Number(fixed[1]), true)
  else if (varying !== null) base = varcharColumn(type, Number(varying[1]), true)
  else base = { type, holds: textual }
  const inner = base.holds
  return { ...base, day, holds: (id) => !id.includes('\u0000') && inner(id) }
}

type MysqlColumnRow = { dt: unknown; ct: unknown; len: unknown; np: unknown; ns: unknown; cs: unknown }

const MYSQL_INTS: Record<string, [bigint, bigint, bigint]> = {
  tinyint: [-128n, 127n, 255n],
  smallint: [-32768n, 32767n, 65535n],
  mediumint: [-8388608n, 8388607n, 16777215n],
  int: [-2147483648n, 2147483647n, 4294967295n],
  integer: [-2147483648n, 2147483647n, 4294967295n],
  bigint: [-9223372036854775808n, 9223372036854775807n, 18446744073709551615n],
}

/** A MySQL/MariaDB column from information_schema.COLUMNS. */
function mysqlColumn(r: MysqlColumnRow): ColumnInfo {
  const dataType = String(r.dt).toLowerCase()
  const type = String(r.ct)
  const num = (v: unknown) => (v === null || v === undefined ? undefined : Number(v))
  const day: DayKind =
    dataType === 'date' ? 'date' : dataType === 'datetime' ? 'wall' : dataType === 'timestamp' ? 'instant' : 'other'
  // utf8mb3 (`utf8`) holds no character outside the Basic Multilingual Plane.
  const astral = !/^utf8(mb3)?$/i.test(String(r.cs ?? ''))
  const ints = MYSQL_INTS[dataType]
  let base: Omit<ColumnInfo, 'day'>
  if (ints !== undefined) {
    base = /unsigned/i.test(type) ? integerColumn(type, 0n, ints[2]) : integerColumn(type, ints[0], ints[1])
  } else if (dataType === 'decimal' || dataType === 'numeric')
    base = decimalColumn(type, num(r.np) ?? 10, num(r.ns) ?? 0)
  else if (dataType === 'uuid') base = uuidColumn(type)
  else if (dataType === 'char') base = charColumn(type, num(r.len), astral)
  else if (dataType === 'varchar' || /text$/.test(dataType)) base = varcharColumn(type, num(r.len), astral)
  else base = { type, holds: textual }
  return { ...base, day }
}

// ------------------------------------------------------------------------------------------------ days

const YMD = /^(\d{4})-(\d{2})-(\d{2})$/

/** A calendar day `0001-01-01`..`9999-12-31` as strict `YYYY-MM-DD` (what the calculator takes). */
function isDay(s: string): boolean {
  const m = YMD.exec(s)
  if (m === null) return false
  const y = Number(m[1])
  const mo = Number(m[2])
  const d = Number(m[3])
  if (y < 1 || mo < 1 || mo > 12 || d < 1) return false
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1]!
  return d <= days
}

const formatters = new Map<string, Intl.DateTimeFormat>()

/** The `en-CA` formatter of an IANA zone (YYYY-MM-DD parts); a ConfigError for an unknown zone. */
function formatterOf(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone)
  if (f === undefined) {
    try {
      f = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' })
    } catch {
      throw new ConfigError(`sqlReader: timeZone ${JSON.stringify(timeZone)} is not an IANA time zone`, {
        option: 'timeZone',
      })
    }
    formatters.set(timeZone, f)
  }
  return f
}

/** The day (`YYYY-MM-DD`) of an instant (epoch seconds) in a zone. */
function dayOfInstant(f: Intl.DateTimeFormat, seconds: number): string {
  let y = ''
  let m = ''
  let d = ''
  for (const part of f.formatToParts(seconds * 1000)) {
    if (part.type === 'year') y = part.value
    else if (part.type === 'month') m = part.value
    else if (part.type === 'day') d = part.value
  }
  return `${y.padStart(4, '0')}-${m}-${d}`
}

/**
 * MySQL/MariaDB `timestamp` columns are instants; their day depends on the zone, and the server may have no time
 * zone tables (CONVERT_TZ then returns NULL). They are read as 15-minute buckets of epoch seconds (every zone offset
 * and transition since 1972 falls on a quarter hour, so a bucket never spans two local days) and mapped to days here.
 */
const BUCKET_SECONDS = 900

// ------------------------------------------------------------------------------------------------ exact sums

const PLAIN_DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/

/** `a + b` for plain decimal strings, exactly; undefined when either is not one (the rows then stay apart). */
function addDecimals(a: string, b: string): string | undefined {
  const x = PLAIN_DECIMAL.exec(a)
  const y = PLAIN_DECIMAL.exec(b)
  if (x === null || y === null) return undefined
  const scale = Math.max(x[3]?.length ?? 0, y[3]?.length ?? 0)
  const scaled = (m: RegExpExecArray) => {
    const v = BigInt(m[2]! + (m[3] ?? '').padEnd(scale, '0'))
    return m[1] === '-' ? -v : v
  }
  const sum = scaled(x) + scaled(y)
  const digits = (sum < 0n ? -sum : sum).toString().padStart(scale + 1, '0')
  const sign = sum < 0n ? '-' : ''
  return scale === 0 ? sign + digits : `${sign}${digits.slice(0, -scale)}.${digits.slice(-scale)}`
}

// ------------------------------------------------------------------------------------------------ plans

/** Adds a bound value and returns its placeholder. PostgreSQL shares one parameter per `key`. */
type Bind = (key: string, value: unknown) => string

interface Plan {
  readonly source: StockSource
  /** Index in the schema's sources (the `sc_src` tag of its rows). */
  readonly index: number
  readonly product: ColumnInfo
  readonly date: ColumnInfo | undefined
  /** The source's `SELECT ... GROUP BY ...` for these products (already filtered to those the column holds). */
  branch(ids: readonly string[], bind: Bind, timeZone: string): string
}

/** Static checks of a source (identifiers, the where's placeholders), before the column types are known. */
function checkSource(dialect: SqlDialect, s: StockSource): void {
  const q = (name: string, what: string) => quoteIdent(dialect, name, `${s.id}: ${what}`)
  q(s.table, 'table')
  q(s.product, 'product')
  q(s.quantity, 'quantity')
  if (s.location !== undefined) q(s.location, 'location')
  if (s.date !== undefined) q(s.date, 'date')
  const pg = dialect === 'postgres'
  // The where is pasted as is; a placeholder in it would take one of our parameters (mysql2 fills every `?`, even
  // inside quotes), so it must not contain any.
  if (s.where !== undefined && (pg ? /\$\d/.test(s.where) : s.where.includes('?'))) {
    throw new ConfigError(
      `sqlReader: source "${s.id}" has a placeholder (${pg ? '$n' : '?'}) in its where, which would take a bound ` +
        `value meant for the product list; write the value in the fragment: ${s.where}`,
      { source: s.id, option: 'where' },
    )
  }
}

function planFor(
  dialect: SqlDialect,
  s: StockSource,
  index: number,
  product: ColumnInfo,
  dateInfo: ColumnInfo | undefined,
): Plan {
  const q = (name: string) => quoteIdent(dialect, name)
  const table = q(s.table)
  const productCol = q(s.product)
  const qty = q(s.quantity)
  const location = s.location === undefined ? undefined : q(s.location)
  const date = s.date === undefined ? undefined : q(s.date)
  const pg = dialect === 'postgres'
  const dayKind: DayKind = dateInfo?.day ?? 'other'
  const conditions: string[] = []
  // A dated flow without a date has no day to fall on: it is not counted (an undated on-hand movement is balance).
  if (date !== undefined && s.kind !== 'onHand') conditions.push(`${date} IS NOT NULL`)
  // A trailing line comment in the fragment must not swallow the closing parenthesis and the GROUP BY.
  if (s.where !== undefined) conditions.push(/--|#/.test(s.where) ? `(${s.where}\n)` : `(${s.where})`)
  const tail = conditions.map((c) => ` AND ${c}`).join('')

  return {
    source: s,
    index,
    product,
    date: dateInfo,
    branch(ids, bind, timeZone) {
      const select: string[] = [`${index} AS sc_src`]
      const group: string[] = []
      if (pg) {
        // Product ids are matched byte for byte, as cache keys are: the value as text (`char(n)` padding dropped).
        select.push(`${productCol}::text AS sc_product`)
        group.push(productCol)
        select.push(location === undefined ? 'NULL::text AS sc_location' : `${location}::text AS sc_location`)
        if (location !== undefined) group.push(location)
        if (date === undefined) select.push('NULL::text AS sc_date')
        else {
          // The day as a date value, grouped on; outside 0001..9999 (year 12345, BC, infinity) it is flagged with
          // `!` and reported, never passed on.
          const d =
            dayKind === 'date'
              ? date
              : dayKind === 'instant'
                ? `(${date} AT TIME ZONE ${bind('tz', timeZone)}::text)::date`
                : `${date}::date`
          select.push(
            `CASE WHEN ${d} BETWEEN DATE '0001-01-01' AND DATE '9999-12-31' THEN to_char(${d}, 'YYYY-MM-DD') ` +
              `ELSE '!' || ${d}::text END AS sc_date`,
          )
          group.push(d)
        }
        // Exact decimals: the sum leaves the database as text (numeric: float columns sum without drift).
        select.push(`SUM(${qty}::numeric)::text AS sc_qty`)
        // One untyped array parameter per product column type: it takes the column's type (text, integer ids).
        const list = bind(`ids:${product.type}`, ids)
        return `SELECT ${select.join(', ')} FROM ${table} WHERE ${productCol} = ANY(${list})${tail} GROUP BY ${group.join(', ')}`
      }
      // MySQL/MariaDB compare with the column's collation (often case-insensitive, trailing spaces ignored): group on
      // the bytes so 'abc', 'ABC' and 'abc ' stay apart; rows for ids nobody asked for are dropped after. The text
      // goes out in one collation, so branches over columns of different collations unite.
      const text = (col: string) => `CONVERT(MIN(${col}) USING utf8mb4) COLLATE utf8mb4_bin`
      select.push(`${text(productCol)} AS sc_product`)
      group.push(`CAST(${productCol} AS BINARY)`)
      select.push(location === undefined ? 'NULL AS sc_location' : `${text(location)} AS sc_location`)
      if (location !== undefined) group.push(`CAST(${location} AS BINARY)`)
      if (date === undefined) select.push('NULL AS sc_date')
      else {
        const d =
          dayKind === 'instant'
            ? // UNIX_TIMESTAMP of a TIMESTAMP column is its stored instant, whatever the session's time zone; 0 is
              // the zero timestamp.
              `IF(UNIX_TIMESTAMP(${date}) = 0, '!0000-00-00 00:00:00', CONCAT('@', FLOOR(UNIX_TIMESTAMP(${date}) / ${BUCKET_SECONDS})))`
            : `DATE_FORMAT(${date}, '%Y-%m-%d')`
        select.push(`${d} AS sc_date`)
        group.push(d)
      }
      select.push(`CAST(SUM(${qty}) AS CHAR) AS sc_qty`)
      const list = ids.length === 0 ? 'NULL' : ids.map((id) => bind('', id)).join(', ')
      return `SELECT ${select.join(', ')} FROM ${table} WHERE ${productCol} IN (${list})${tail} GROUP BY ${group.join(', ')}`
    },
  }
}

/** A statement's parameters: PostgreSQL `$n` shared per key, MySQL one `?` per value in order. */
function binder(dialect: SqlDialect): { bind: Bind; params: unknown[] } {
  const params: unknown[] = []
  if (dialect === 'mysql') {
    return {
      params,
      bind: (_key, value) => {
        params.push(value)
        return '?'
      },
    }
  }
  const byKey = new Map<string, string>()
  return {
    params,
    bind: (key, value) => {
      let p = byKey.get(key)
      if (p === undefined) {
        params.push(value)
        p = `$${params.length}`
        byKey.set(key, p)
      }
      return p
    },
  }
}

// ------------------------------------------------------------------------------------------------ the reader

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))
const show = (ids: readonly string[], max = 5) =>
  ids
    .slice(0, max)
    .map((id) => JSON.stringify(id.length > 60 ? `${id.slice(0, 60)}…` : id))
    .join(', ') + (ids.length > max ? ` and ${ids.length - max} more` : '')

function positiveInt(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new ConfigError(`sqlReader: ${name} must be a positive integer, got ${JSON.stringify(value)}`, {
      option: name,
    })
  }
  return value
}

/** A row whose date is not a calendar day 0001..9999. */
interface BadDate {
  product: string
  plan: Plan
  value: string
}

/**
 * The set-based reader (L3) over your own tables. A `read()` is ONE statement: a `UNION ALL` of one aggregate per
 * source (`SELECT product[, location], day, SUM(quantity) ... WHERE product = ANY($1) AND (where) GROUP BY ...`),
 * so every source is read in the same snapshot; a call larger than `batchSize` runs one such statement per batch
 * inside one read-only snapshot transaction (`SqlDb.snapshot()`). Every identifier is quoted and every value bound;
 * the schema's `where` is the only raw SQL, in parentheses. Quantities arrive as exact decimal strings, days as
 * `YYYY-MM-DD`: `date` columns and wall-clock timestamps (PostgreSQL `timestamp`, MySQL `datetime`) give their own
 * date; instants (PostgreSQL `timestamptz`, MySQL `timestamp`) their date in `readOptions.timeZone` (the cache's),
 * whatever the session's time zone. Supply and demand rows with a NULL date are not counted. Column types are read
 * from the catalog on first use and kept.
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
  positiveInt(options.concurrency, 'concurrency', 4)
  const dialect = db.dialect
  for (const s of schema.sources) checkSource(dialect, s)
  const ids = new Map(schema.sources.map((s, i) => [s.id, i]))

  // The column types, learned from the catalog once; kept only when every column was found (a table created later
  // is looked up again).
  let planning: Promise<Plan[]> | undefined
  const plans = (): Promise<Plan[]> => {
    planning ??= (async () => {
      const types = await columnTypes(db, schema)
      const out = schema.sources.map((s, i) => {
        const product = types.get(`${s.table}\u0000${s.product}`)
        const date = s.date === undefined ? undefined : types.get(`${s.table}\u0000${s.date}`)
        return { plan: planFor(dialect, s, i, product ?? UNKNOWN, date ?? undefined), found: !!product }
      })
      if (out.some((x) => !x.found) || [...types.values()].some((t) => t === null)) planning = undefined
      return out.map((x) => x.plan)
    })().catch((cause) => {
      planning = undefined
      throw new SourceUnavailableError(
        `sqlReader: reading the column types of ${schema.tables.join(', ')} failed: ${messageOf(cause)}`,
        { tier: 'l3', cause },
      )
    })
    return planning
  }

  const select = (all: Plan[], sources: readonly string[] | undefined): Plan[] => {
    if (sources === undefined) return all
    const out: Plan[] = []
    for (const id of new Set(sources)) {
      const i = ids.get(id)
      if (i === undefined) {
        throw new ConfigError(
          `sqlReader: unknown source ${JSON.stringify(id)} (the schema has ${[...ids.keys()].join(', ')})`,
          { option: 'sources', source: id },
        )
      }
      out.push(all[i]!)
    }
    return out
  }

  /** Ids that no product column of the schema can hold: an `InvalidInputError` before any data is read. */
  const rejectIds = (all: Plan[], list: readonly string[]): void => {
    const rejected = list.filter((id) => all.every((p) => !p.product.holds(id)))
    if (rejected.length === 0) return
    const columns = new Map<string, Plan>()
    for (const p of all) columns.set(`${p.source.table}.${p.source.product}`, p)
    const why = [...columns]
      .map(
        ([col, p]) =>
          `${col} (source "${p.source.id}") is ${p.product.type}` +
          (p.product.expect === undefined ? '' : `: ids must be ${p.product.expect}`),
      )
      .join('; ')
    throw new InvalidInputError(
      `sqlReader: product id${rejected.length > 1 ? 's' : ''} ${show(rejected)} cannot be held exactly by the ` +
        `product column${columns.size > 1 ? ' of any source' : ''}: ${why}. Nothing was read; read the other ids alone.`,
      { productId: rejected[0]!, products: rejected, source: all[0]!.source.id },
    )
  }

  const reader: SqlReader = {
    async read(products, readOptions = {}) {
      const out = new Map<string, SourceInputs>()
      const timeZone = readOptions.timeZone ?? 'UTC'
      const zone = formatterOf(timeZone)
      const all = await plans()
      const chosen = select(all, readOptions.sources)
      const list = [...new Set(products)].filter((p): p is string => typeof p === 'string')
      if (list.length === 0 || chosen.length === 0) return out
      rejectIds(all, list)
      const wanted = new Set(list)

      const statementFor = (chunk: readonly string[]) => {
        const { bind, params } = binder(dialect)
        const branches: string[] = []
        for (const plan of chosen) {
          const held = chunk.filter((id) => plan.product.holds(id))
          if (held.length > 0) branches.push(`(${plan.branch(held, bind, timeZone)})`)
        }
        return branches.length === 0 ? undefined : { sql: branches.join(' UNION ALL '), params }
      }
      const rows: AggRow[] = []
      const run = async (q: SqlDb, chunks: readonly (readonly string[])[]) => {
        for (const chunk of chunks) {
          const st = statementFor(chunk)
          if (st !== undefined) rows.push(...(await q.query<AggRow>(st.sql, st.params)))
        }
      }
      try {
        if (list.length <= batchSize) await run(db, [list])
        else if (db.snapshot !== undefined) {
          const chunks: string[][] = []
          for (let i = 0; i < list.length; i += batchSize) chunks.push(list.slice(i, i + batchSize))
          await db.snapshot((tx) => run(tx, chunks))
        }
        // A connection without snapshot() (the ORM adapters'): the whole call in one statement, one snapshot.
        else await run(db, [list])
      } catch (cause) {
        const tables = [...new Set(chosen.map((p) => p.source.table))].join(', ')
        throw new SourceUnavailableError(
          `sqlReader: reading ${chosen.length === 1 ? `source "${chosen[0]!.source.id}"` : `sources ${chosen.map((p) => `"${p.source.id}"`).join(', ')}`} ` +
            `(table${tables.includes(',') ? 's' : ''} ${tables}) failed: ${messageOf(cause)}`,
          { tier: 'l3', cause, ...(chosen.length === 1 ? { source: chosen[0]!.source.id } : {}) },
        )
      }

      const bad: BadDate[] = []
      const buckets = new Map<string, string>()
      /** Rows of bucketed sources by (source, product, location, day). */
      const merged = new Map<string, MovementRow | FlowRow>()
      const bucketed = (plan: Plan) => dialect === 'mysql' && plan.date?.day === 'instant'
      const bucket = (p: string): SourceInputs => {
        let b = out.get(p)
        if (b === undefined) {
          b = { onHand: [], supply: [], demand: [] }
          out.set(p, b)
        }
        return b
      }
      for (const r of rows) {
        if (r.sc_qty === null || r.sc_qty === undefined) continue
        if (r.sc_product === null || r.sc_product === undefined) continue
        const p = String(r.sc_product)
        if (!wanted.has(p)) continue
        const plan = all[Number(r.sc_src)]!
        const s = plan.source
        const quantity = String(r.sc_qty)
        const location = s.location === undefined ? undefined : r.sc_location == null ? null : String(r.sc_location)
        let date: string | null | undefined
        if (s.date !== undefined) {
          const raw = r.sc_date == null ? null : String(r.sc_date)
          if (raw === null) {
            // An undated on-hand movement is balance; a flow's NULL day here is a value the database could not read
            // as a date (its NULL dates were filtered out by the query).
            if (s.kind !== 'onHand') {
              bad.push({ product: p, plan, value: 'a value that is not a date' })
              continue
            }
            date = null
          } else if (raw.startsWith('@')) {
            let day = buckets.get(raw)
            if (day === undefined) {
              day = dayOfInstant(zone, Number(raw.slice(1)) * BUCKET_SECONDS)
              buckets.set(raw, day)
            }
            date = day
          } else date = raw
          if (date !== null && !isDay(date)) {
            bad.push({ product: p, plan, value: date.startsWith('!') ? date.slice(1) : date })
            continue
          }
        }
        if (bad.length > 0) continue
        // Bucketed rows of one day add up into one row (exactly; rows whose sums are not plain decimals stay apart).
        const mergeKey = bucketed(plan)
          ? `${plan.index}\u0000${p}\u0000${location === null ? '\u0001' : (location ?? '')}\u0000${date}`
          : undefined
        if (mergeKey !== undefined) {
          const seen = merged.get(mergeKey)
          const sum = seen === undefined ? undefined : addDecimals(String(seen.quantity), quantity)
          if (seen !== undefined && sum !== undefined) {
            seen.quantity = sum
            continue
          }
        }
        const b = bucket(p)
        let row: MovementRow | FlowRow
        if (s.kind === 'onHand') {
          const m: MovementRow = { quantity, source: s.id }
          if (s.date !== undefined) m.date = date ?? null
          if (location !== undefined) m.location = location
          b.onHand.push(m)
          row = m
        } else {
          const f: FlowRow = { date: date!, quantity, source: s.id }
          if (s.pending) f.pending = true
          if (location !== undefined) f.location = location
          b[s.kind].push(f)
          row = f
        }
        if (mergeKey !== undefined) merged.set(mergeKey, row)
      }
      if (bad.length > 0) {
        // In the order of the call (rows come in the database's order).
        const order = new Map(list.map((id, i) => [id, i]))
        bad.sort((a, b) => order.get(a.product)! - order.get(b.product)!)
        const products = [...new Set(bad.map((x) => x.product))]
        const first = bad[0]!
        const detail = bad
          .slice(0, 5)
          .map(
            (x) =>
              `product ${JSON.stringify(x.product)}: ${x.value} in ${x.plan.source.table}.${x.plan.source.date} (source "${x.plan.source.id}")`,
          )
          .join('; ')
        throw new InvalidInputError(
          `sqlReader: date${bad.length > 1 ? 's' : ''} outside 0001-01-01..9999-12-31 or not a calendar day: ${detail}` +
            `${bad.length > 5 ? ` and ${bad.length - 5} more` : ''}. Fix the rows; the other products read without them.`,
          { productId: first.product, products, source: first.plan.source.id },
        )
      }
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
            : `SELECT CONVERT(MIN(${col}) USING utf8mb4) COLLATE utf8mb4_bin AS sc_product FROM ${table} GROUP BY CAST(${col} AS BINARY)`,
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
      const runnable: StockSource[] = []
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
        if (ok) runnable.push(s)
      }
      if (runnable.length > 0) {
        // Types as they are now (check() is also how to refresh them after a migration).
        planning = undefined
        const all = await plans()
        for (const s of runnable) {
          // The whole query, matching no product: checks the where fragment and the column types without reading rows.
          const { bind, params } = binder(dialect)
          try {
            await db.query(all[ids.get(s.id)!]!.branch([], bind, 'UTC'), params)
          } catch (cause) {
            fail(
              s.id,
              `source "${s.id}" (table ${s.table}): its query fails: ${messageOf(cause)}` +
                (s.where === undefined ? '' : ` (check its where: ${s.where})`),
            )
          }
        }
      }
      if (problems.length > 0) {
        throw new ConfigError(`sqlReader: the schema does not match the database: ${problems.join('; ')}`, {
          ...(first === undefined ? {} : { source: first }),
        })
      }
    },

    async sqlFor(sourceId, n = 1) {
      const i = ids.get(sourceId)
      if (i === undefined) throw new ConfigError(`sqlReader: unknown source ${JSON.stringify(sourceId)}`)
      const plan = (await plans())[i]!
      return plan.branch(
        Array.from({ length: n }, (_, k) => String(k)),
        binder(dialect).bind,
        'UTC',
      )
    },

    async close() {},
  }
  return reader
}

/**
 * The type of every product and date column of the schema, keyed `table\0column`; null when the table or column
 * was not found (the read then fails with the database's own message).
 */
async function columnTypes(db: SqlDb, schema: StockSchema): Promise<Map<string, ColumnInfo | null>> {
  const wanted: Array<[table: string, column: string]> = []
  const seen = new Set<string>()
  for (const s of schema.sources) {
    for (const col of [s.product, s.date]) {
      if (col === undefined || seen.has(`${s.table}\u0000${col}`)) continue
      seen.add(`${s.table}\u0000${col}`)
      wanted.push([s.table, col])
    }
  }
  const out = new Map<string, ColumnInfo | null>()
  if (db.dialect === 'postgres') {
    // A domain is read as its base type.
    const rows = await db.query<{ i: unknown; type: string | null }>(
      `SELECT x.i::int AS i, format_type(
         CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
         CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END) AS type
       FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(tbl, col, i)
       LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = to_regclass(x.tbl) AND a.attname = x.col AND a.attnum > 0 AND NOT a.attisdropped
       LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid`,
      [wanted.map(([t]) => quoteIdent('postgres', t)), wanted.map(([, c]) => c)],
    )
    for (const r of rows) {
      const [table, col] = wanted[Number(r.i) - 1]!
      out.set(`${table}\u0000${col}`, r.type == null ? null : pgColumn(r.type))
    }
    return out
  }
  const byTable = new Map<string, string[]>()
  for (const [t, c] of wanted) byTable.set(t, [...(byTable.get(t) ?? []), c])
  for (const [table, cols] of byTable) {
    const [schemaName, name] = splitQualified(table)
    const rows = await db.query<MysqlColumnRow & { c: unknown }>(
      'SELECT COLUMN_NAME AS c, DATA_TYPE AS dt, COLUMN_TYPE AS ct, CHARACTER_MAXIMUM_LENGTH AS len, ' +
        'NUMERIC_PRECISION AS np, NUMERIC_SCALE AS ns, CHARACTER_SET_NAME AS cs ' +
        'FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?',
      [schemaName, name],
    )
    for (const col of cols) {
      // Column names ignore case in MySQL.
      const r = rows.find((x) => String(x.c).toLowerCase() === col.toLowerCase())
      out.set(`${table}\u0000${col}`, r === undefined ? null : mysqlColumn(r))
    }
  }
  return out
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
