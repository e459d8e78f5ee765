import { createHash, randomBytes } from 'node:crypto'
import {
  backoffDelay,
  ConfigError,
  capturePlan,
  every,
  InvalidInputError,
  type StockCache,
  StockcastError,
  type StockSchema,
} from 'stockcast'
import { type MysqlTrigger, mysqlTriggersNamed } from '../mysql-triggers.js'
import { quoteIdent, splitQualified } from '../quote.js'
import type { SqlDb } from '../types.js'
import {
  asListener,
  assertCaptureSchema,
  type OutboxDialect,
  type ResolvedCaptureOptions,
  resolveCaptureOptions,
  sqlOutboxQueries,
  startListener,
} from './consumer.js'
import { rewriteNamedParams, tablesNamed } from './related.js'
import type { OutboxListener, SqlChangeCapture, SqlChangeCaptureOptions, VerifyReport } from './types.js'

/**
 * The version of the objects `install()` creates; bump it whenever the generated SQL changes.
 * 2: leased outbox rows (`lease_owner`, `lease_until`); products of any length (LONGTEXT, found through a SHA-256
 * `product_hash` column: version 1's VARCHAR(255) refused longer ones, and the writer's statement with it); `related`
 * products written row by row from a cursor (an INSERT .. SELECT held the outbox's AUTO-INC lock while it waited).
 */
export const MYSQL_CAPTURE_VERSION = 2

/** The outbox's hash of its product (stored: indexed and computed for any writer of the table). */
const OUTBOX_HASH = 'product_hash BINARY(32) AS (UNHEX(SHA2(product, 256))) STORED'
/** The same over the bulk table's product bytes (the UTF-8 bytes of the same text: the same hash). */
const BULK_HASH = 'product_hash BINARY(32) AS (UNHEX(SHA2(product, 256))) STORED'
/** TIMESTAMP (not DATETIME): compared with NOW(3) by consumers whose sessions may use different time zones. */
const OUTBOX_LEASE = 'lease_owner VARCHAR(64) NULL, lease_until TIMESTAMP(3) NULL DEFAULT NULL'

/** How long one DDL statement of `install()`/`uninstall()` waits for a metadata lock before it is retried, s. */
const DDL_LOCK_WAIT_S = 5
/** How long `install()`/`uninstall()` keep retrying before they give up, ms. */
const DDL_DEADLINE_MS = 120_000
/** ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK. */
const LOCK_GAVE_UP = new Set([1205, 1213])

/** The outbox's product hash as the database computes it (`UNHEX(SHA2(product, 256))`): SHA-256 of the UTF-8 bytes. */
const productHash = (product: string): Buffer => createHash('sha256').update(product, 'utf8').digest()

/**
 * Run `fn` in a READ COMMITTED transaction of its own: the consumer's outbox statements then take no gap or
 * next-key lock, which is what a writer's trigger insert into the outbox would wait for (under REPEATABLE READ a
 * locking read of the outbox's last rows locks the gap where every new row goes).
 */
function readCommitted<T>(db: SqlDb, fn: (tx: SqlDb) => Promise<T>): Promise<T> {
  return db.session(async (s) => {
    // Without SESSION: the next transaction only (the pooled connection keeps its own level afterwards).
    // (Refused inside a transaction a caller left open: that one then goes on at its own level.)
    await s.execute('SET TRANSACTION ISOLATION LEVEL READ COMMITTED').catch(() => {})
    return s.transaction(fn)
  })
}

/** MySQL/MariaDB identifiers (tables, triggers, user variables, lock names) are at most 64 characters. */
const MAX_NAME = 64
const TEXT_TYPES = new Set(['char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext'])
const INT_TYPES = new Set(['tinyint', 'smallint', 'mediumint', 'int', 'integer', 'bigint'])
const MAX_SIGNED = 2n ** 63n - 1n

type Event = 'INSERT' | 'UPDATE' | 'DELETE'
const EVENTS: ReadonlyArray<{ event: Event; suffix: string }> = [
  { event: 'INSERT', suffix: 'ins' },
  { event: 'UPDATE', suffix: 'upd' },
  { event: 'DELETE', suffix: 'del' },
]

interface ProductColumn {
  /** Quoted column name. */
  col: string
  /** A string column: '' is skipped like NULL (the cache cannot hold an empty product id). */
  text: boolean
}

interface RelatedPlan {
  /** The products query with its `:params` as `NEW.` / `OLD.` column references. */
  newSql: string
  oldSql: string
  /** With NULL for every parameter: what `install()` runs through EXPLAIN. */
  probeSql: string
  /** Quoted parameter columns. */
  params: string[]
  /** Its index in the schema's `related` list (names its cursor loop in the trigger). */
  index: number
}

interface TriggerPlan {
  name: string
  event: Event
  /** The body as `CREATE TRIGGER` takes it (`BEGIN ... END`), compared with information_schema by `verify()`. */
  body: string
}

interface TablePlan {
  /** The name the schema declares (the outbox's `source_table`). */
  table: string
  /** The table's database. */
  schemaName: string
  /** `` `db`.`table` `` */
  qualified: string
  productColumns: ProductColumn[]
  related: RelatedPlan[]
  /**
   * The AUTO_INCREMENT column, quoted, when inserts may take the bulk fast path: rows above the floor recorded at
   * the start of a bulk import are found by one range scan at its end instead of one write per row. Null for tables
   * without one and for related tables (their products come from a query per row).
   */
  floorKey: string | null
  /** The session variable holding this table's floor during a bulk import. */
  floorVar: string
  triggers: TriggerPlan[]
}

/** A table of ours: its bare name (information_schema) and its quoted, qualified name (SQL). */
interface ObjectTable {
  name: string
  sql: string
}

interface Plan {
  /** Where the outbox and the companion tables live. */
  objectSchema: string
  outbox: ObjectTable
  /** Products recorded by bulk imports, de-duplicated, until they settle. */
  bulk: ObjectTable
  /** Running bulk imports: their id, and the AUTO_INCREMENT floor of each table. */
  runs: ObjectTable
  meta: ObjectTable
  tables: TablePlan[]
}

type ExistingTrigger = MysqlTrigger

/** A string literal of a validated identifier (no quote or backslash can occur; doubled anyway). */
const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`
const q = (name: string): string => quoteIdent('mysql', name)
/** Whitespace-insensitive comparison of trigger bodies (servers may re-indent or change line ends). */
const normalize = (sql: string): string => sql.replace(/\s+/g, ' ').trim()
const hash8 = (s: string): string => createHash('sha1').update(s).digest('hex').slice(0, 8)
const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** `name` if it fits in 64 characters, else cut, with a hash of the full name, so that it still fits. */
function fit(name: string, keepSuffix = ''): string {
  if (name.length + keepSuffix.length <= MAX_NAME) return name + keepSuffix
  return `${name.slice(0, MAX_NAME - keepSuffix.length - 9)}_${hash8(name)}${keepSuffix}`
}

/**
 * Change capture for MySQL 8 and MariaDB 10.6+: AFTER INSERT/UPDATE/DELETE row triggers on every schema table
 * write the changed products (old and new on a key change) into an outbox, in the writer's own transaction; the
 * listener polls it. Use through `sqlChangeCapture(db, schema, options)`.
 *
 * Row triggers cost one outbox write per row: a 100 000-row `INSERT .. SELECT` takes 3.4-3.6 x the trigger-free
 * time on MariaDB 10.11 (`node bench/sql-mariadb.mjs`). `bulkImport` switches its session to a cheap mode: inserts
 * above the AUTO_INCREMENT floor recorded at its start skip the write (one comparison per row; their products are
 * read back by one range scan when it settles) and other changes go to a small de-duplicating table. The same import
 * then takes 1.30-1.42 x for the statement (an empty row trigger alone costs 1.08-1.18 x) and 1.41-1.55 x with the
 * final move of the distinct products into the outbox.
 *
 * @example
 * ```ts
 * const capture = createMysqlCapture(fromMysql(pool), schema)
 * await capture.install()
 * const cache = createStockCache({ schema, reader: sqlReader(db, schema), pendingMarks: capture })
 * const listener = await capture.listen(cache)
 * await capture.bulkImport(cache, (s) => s.execute('INSERT INTO stock_movements (...) SELECT ...'))
 * ```
 */
export function createMysqlCapture(
  db: SqlDb,
  schema: StockSchema,
  options: SqlChangeCaptureOptions = {},
): SqlChangeCapture {
  if (db?.dialect !== 'mysql') {
    throw new ConfigError(`createMysqlCapture needs a MySQL/MariaDB connection, got ${String(db?.dialect)}`, {
      option: 'db',
    })
  }
  return new MysqlCapture(db, schema, resolveCaptureOptions(options))
}

class MysqlCapture implements SqlChangeCapture {
  readonly db: SqlDb
  readonly #schema: StockSchema
  readonly #o: ResolvedCaptureOptions
  /** The session variable that switches the triggers to bulk mode (it holds the import's id). */
  readonly #bulkVar: string
  #plan: Plan | undefined
  #mariadb: boolean | undefined

  constructor(db: SqlDb, schema: StockSchema, options: ResolvedCaptureOptions) {
    assertCaptureSchema(schema)
    this.db = db
    this.#schema = schema
    this.#o = options
    this.#bulkVar = `@${q(`${options.prefix}_bulk`)}`
  }

  // ------------------------------------------------------------------ names

  #triggerName(table: string, suffix: string): string {
    return fit(`${this.#o.prefix}_${table.replace('.', '__')}`, `_${suffix}`)
  }

  #floorVar(table: string): string {
    return `@${q(fit(`${this.#o.prefix}_bf_${table.replace('.', '__')}`))}`
  }

  #lockName(what: string): string {
    return fit(`${this.#o.prefix}_${what}`)
  }

  async #isMariaDb(): Promise<boolean> {
    if (this.#mariadb === undefined) {
      const rows = await this.db.query<{ v: string }>('SELECT VERSION() AS v')
      this.#mariadb = /mariadb/i.test(String(rows[0]?.v ?? ''))
    }
    return this.#mariadb
  }

  // ------------------------------------------------------------------ plan

  /**
   * Resolve every table and column the schema names (information_schema) and build the trigger bodies. With
   * `strict`, the first problem is a `ConfigError` (nothing has been changed yet); otherwise problems are returned
   * for `verify()`.
   */
  async #makePlan(strict: boolean): Promise<{ plan: Plan; problems: string[] }> {
    const [info] = await this.db.query<{ db: string | null; lctn: unknown }>(
      'SELECT DATABASE() AS db, @@lower_case_table_names AS lctn',
    )
    const currentDb = info?.db ?? null
    const foldCase = Number(info?.lctn ?? 0) !== 0
    const [outboxSchema, outboxBase] = splitQualified(this.#o.outbox)
    const named = tablesNamed(this.#schema)
    if (currentDb === null && (outboxSchema === null || [...named.keys()].some((t) => splitQualified(t)[0] === null))) {
      throw new ConfigError(
        'sqlChangeCapture: the connection has no default database: name one in the connection (database: ...) or qualify every table and the outbox',
        { option: 'db' },
      )
    }
    const objectSchema = outboxSchema ?? (currentDb as string)
    const inSchema = (name: string): ObjectTable => ({ name, sql: `${q(objectSchema)}.${q(name)}` })
    const plan: Plan = {
      objectSchema,
      outbox: inSchema(outboxBase),
      bulk: inSchema(`${this.#o.prefix}_bulk`),
      runs: inSchema(`${this.#o.prefix}_bulk_runs`),
      meta: inSchema(`${this.#o.prefix}_meta`),
      tables: [],
    }
    const problems: string[] = []
    const fail = (message: string, option: string, label: string) => {
      if (strict) throw new ConfigError(`install: ${message}; nothing was changed`, { option, source: option })
      problems.push(label)
    }

    // Every table and its columns, in two queries.
    const wanted = [...named.keys()].map((t) => {
      const [s, name] = splitQualified(t)
      return { table: t, schemaName: s ?? (currentDb as string), name }
    })
    const pairs = wanted.map(() => '(?, ?)').join(', ')
    const pairParams = wanted.flatMap((w) => [w.schemaName, w.name])
    const tableRows =
      wanted.length === 0
        ? []
        : await this.db.query<{ s: string; t: string; ty: string }>(
            `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, TABLE_TYPE AS ty FROM information_schema.TABLES WHERE (TABLE_SCHEMA, TABLE_NAME) IN (${pairs})`,
            pairParams,
          )
    const columnRows =
      wanted.length === 0
        ? []
        : await this.db.query<{ s: string; t: string; c: string; dt: string; extra: string }>(
            `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS t, COLUMN_NAME AS c, DATA_TYPE AS dt, EXTRA AS extra
               FROM information_schema.COLUMNS WHERE (TABLE_SCHEMA, TABLE_NAME) IN (${pairs})`,
            pairParams,
          )
    const same = (a: string, b: string) => (foldCase ? a.toLowerCase() === b.toLowerCase() : a === b)
    const resolved = new Map<
      string,
      { schemaName: string; name: string; columns: Map<string, { dt: string; extra: string }> }
    >()
    for (const w of wanted) {
      const by = named.get(w.table)!.join(', ')
      const row = tableRows.find((r) => same(String(r.s), w.schemaName) && same(String(r.t), w.name))
      if (row === undefined) {
        fail(
          `table ${JSON.stringify(w.table)} (named by ${by}) does not exist`,
          w.table,
          `table ${w.table} (named by ${by})`,
        )
        continue
      }
      if (row.ty !== 'BASE TABLE' && row.ty !== 'SYSTEM VERSIONED') {
        fail(
          `${JSON.stringify(w.table)} (named by ${by}) is a ${String(row.ty).toLowerCase()}, not a table: change capture needs triggers on a table`,
          w.table,
          `table ${w.table} (named by ${by}; it is a ${String(row.ty).toLowerCase()})`,
        )
        continue
      }
      const columns = new Map<string, { dt: string; extra: string }>()
      for (const c of columnRows) {
        if (same(String(c.s), w.schemaName) && same(String(c.t), w.name)) {
          columns.set(String(c.c).toLowerCase(), { dt: String(c.dt).toLowerCase(), extra: String(c.extra ?? '') })
        }
      }
      resolved.set(w.table, { schemaName: String(row.s), name: String(row.t), columns })
    }
    const hasColumn = (table: string, column: string, by: string): boolean => {
      const r = resolved.get(table)
      if (r === undefined) return false
      if (r.columns.has(column.toLowerCase())) return true
      fail(
        `column ${JSON.stringify(column)} of table ${JSON.stringify(table)} (${by}) does not exist`,
        `${table}.${column}`,
        `column ${table}.${column} (${by})`,
      )
      return false
    }
    for (const s of this.#schema.sources) {
      for (const key of ['product', 'quantity', 'date', 'location'] as const) {
        const col = s[key]
        if (col !== undefined) hasColumn(s.table, col, `${s.kind} source "${s.id}", ${key}`)
      }
    }

    for (const [table, r] of resolved) {
      const captured = capturePlan(this.#schema).get(table)
      const productColumns: ProductColumn[] = []
      for (const { column } of captured?.productColumns ?? []) {
        const c = r.columns.get(column.toLowerCase())
        if (c === undefined || productColumns.some((p) => p.col === q(column))) continue
        productColumns.push({ col: q(column), text: TEXT_TYPES.has(c.dt) })
      }
      const related: RelatedPlan[] = []
      let relatedOk = true
      for (const rel of captured?.related ?? []) {
        const i = rel.index
        const asNew = rewriteNamedParams('mysql', rel.products, (name) => `NEW.${q(name)}`)
        const asOld = rewriteNamedParams('mysql', rel.products, (name) => `OLD.${q(name)}`)
        const probe = rewriteNamedParams('mysql', rel.products, () => 'NULL')
        for (const p of asNew.params) {
          if (!hasColumn(table, p, `parameter :${p} of related[${i}].products`)) relatedOk = false
        }
        related.push({
          newSql: asNew.sql,
          oldSql: asOld.sql,
          probeSql: probe.sql,
          params: asNew.params.map((p) => q(p)),
          index: i,
        })
      }
      if (!relatedOk) continue
      let floorKey: string | null = null
      if (related.length === 0) {
        for (const [name, c] of r.columns) {
          if (/auto_increment/i.test(c.extra) && INT_TYPES.has(c.dt)) floorKey = q(name)
        }
      }
      const t: TablePlan = {
        table,
        schemaName: r.schemaName,
        qualified: `${q(r.schemaName)}.${q(r.name)}`,
        productColumns,
        related,
        floorKey,
        floorVar: this.#floorVar(table),
        triggers: [],
      }
      t.triggers = EVENTS.map(({ event, suffix }) => ({
        name: this.#triggerName(table, suffix),
        event,
        body: this.#body(t, event, plan),
      }))
      plan.tables.push(t)
    }

    if (strict) {
      // Each related query must run and return one column: checked here, not in a writer's transaction.
      for (const t of plan.tables) {
        for (const r of t.related) {
          try {
            await this.db.query(`EXPLAIN WITH sc_q (p) AS (${r.probeSql}) SELECT p FROM sc_q`)
          } catch (cause) {
            throw new ConfigError(
              `install: the related products query of table ${JSON.stringify(t.table)} fails (it must be one SELECT of one column): ${errorText(cause)}; nothing was changed`,
              { option: t.table, source: t.table, cause },
            )
          }
        }
      }
      // A table of ours that exists must have the expected columns (it may be a user table with the same name).
      for (const [label, table, columns] of [
        // The columns of version 1 (install() migrates such a table).
        ['outbox', plan.outbox, ['id', 'product', 'source_table', 'created_at']],
        ['meta table', plan.meta, ['key', 'value']],
        ['bulk table', plan.bulk, ['bulk_id', 'product', 'source_table']],
        ['bulk runs table', plan.runs, ['bulk_id', 'source_table', 'key_column', 'floor_id']],
      ] as const) {
        const have = await this.#columnsOf(plan.objectSchema, table)
        if (have !== null && columns.some((c) => !have.has(c))) {
          throw new ConfigError(
            `install: ${table.sql} exists but is not a stockcast ${label} (expected columns ${columns.join(', ')}); choose another prefix or outbox option; nothing was changed`,
            { option: label === 'outbox' ? 'outbox' : 'prefix' },
          )
        }
      }
    }
    return { plan, problems }
  }

  /** Lower-case column names of an object table, or null when it does not exist. */
  async #columnsOf(schemaName: string, table: ObjectTable): Promise<Set<string> | null> {
    const rows = await this.db.query<{ c: string }>(
      'SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
      [schemaName, table.name],
    )
    return rows.length === 0 ? null : new Set(rows.map((r) => String(r.c).toLowerCase()))
  }

  /** The statements that record the products of one row image (`NEW` or `OLD`), into the outbox or the bulk table. */
  #record(t: TablePlan, row: 'NEW' | 'OLD', into: 'outbox' | 'bulk', plan: Plan, indent: string): string[] {
    const out: string[] = []
    const source = lit(t.table)
    for (const p of t.productColumns) {
      const v = `${row}.${p.col}`
      const guard = p.text ? `${v} IS NOT NULL AND ${v} <> ''` : `${v} IS NOT NULL`
      const insert =
        into === 'outbox'
          ? `INSERT INTO ${plan.outbox.sql} (product, source_table) VALUES (${v}, ${source});`
          : `INSERT IGNORE INTO ${plan.bulk.sql} (bulk_id, product, source_table) VALUES (${this.#bulkVar}, CONVERT(${v} USING utf8mb4), ${source});`
      out.push(`${indent}IF ${guard} THEN ${insert} END IF;`)
    }
    for (const r of t.related) {
      const query = row === 'NEW' ? r.newSql : r.oldSql
      if (into === 'bulk') {
        // The bulk table has no AUTO_INCREMENT: one INSERT .. SELECT.
        out.push(
          `${indent}INSERT IGNORE INTO ${plan.bulk.sql} (bulk_id, product, source_table) WITH sc_q (p) AS (${query}) SELECT DISTINCT ${this.#bulkVar}, CONVERT(p USING utf8mb4), '' FROM sc_q WHERE p IS NOT NULL;`,
        )
        continue
      }
      // Into the outbox, row by row from a cursor: an INSERT .. SELECT into an AUTO_INCREMENT table is a "bulk insert"
      // that holds the table's AUTO-INC lock until it ends, also while its SELECT waits for a row lock of another
      // writer, whose own outbox insert then waits for the AUTO-INC lock: a deadlock (ER_LOCK_DEADLOCK or
      // ER_AUTOINC_READ_FAILED). Single-row inserts take the AUTO-INC mutex only for a moment.
      // No source table: a related change may alter what any source's `where` keeps, so every source is re-read.
      const label = `sc_${row.toLowerCase()}_${r.index}`
      const i2 = `${indent}  `
      out.push(
        `${indent}BEGIN`,
        `${i2}DECLARE sc_done INT DEFAULT 0;`,
        `${i2}DECLARE sc_p LONGTEXT CHARACTER SET utf8mb4;`,
        `${i2}DECLARE sc_c CURSOR FOR WITH sc_q (p) AS (${query}) SELECT DISTINCT p FROM sc_q WHERE p IS NOT NULL;`,
        `${i2}DECLARE CONTINUE HANDLER FOR NOT FOUND SET sc_done = 1;`,
        `${i2}OPEN sc_c;`,
        `${i2}${label}: LOOP`,
        `${i2}  FETCH sc_c INTO sc_p;`,
        `${i2}  IF sc_done THEN LEAVE ${label}; END IF;`,
        `${i2}  IF sc_p <> '' THEN INSERT INTO ${plan.outbox.sql} (product, source_table) VALUES (sc_p, NULL); END IF;`,
        `${i2}END LOOP;`,
        `${i2}CLOSE sc_c;`,
        `${indent}END;`,
      )
    }
    return out
  }

  /** UPDATE: the new row's products, and the old row's where they differ. */
  #recordUpdate(t: TablePlan, into: 'outbox' | 'bulk', plan: Plan, indent: string): string[] {
    const out: string[] = []
    const single = (cols: ProductColumn[], related: RelatedPlan[]): TablePlan => ({
      ...t,
      productColumns: cols,
      related,
    })
    out.push(...this.#record(single(t.productColumns, t.related), 'NEW', into, plan, indent))
    for (const p of t.productColumns) {
      const lines = this.#record(single([p], []), 'OLD', into, plan, `${indent}  `)
      out.push(`${indent}IF NOT (OLD.${p.col} <=> NEW.${p.col}) THEN`, ...lines, `${indent}END IF;`)
    }
    for (const r of t.related) {
      if (r.params.length === 0) continue // the same query for the old row: nothing more to find
      const changed = r.params.map((p) => `OLD.${p} <=> NEW.${p}`).join(' AND ')
      const lines = this.#record(single([], [r]), 'OLD', into, plan, `${indent}  `)
      out.push(`${indent}IF NOT (${changed}) THEN`, ...lines, `${indent}END IF;`)
    }
    return out
  }

  #body(t: TablePlan, event: Event, plan: Plan): string {
    const lines = [`BEGIN`]
    if (event === 'INSERT' && t.floorKey !== null) {
      // Bulk fast path, one comparison per row: during a bulk import rows above the recorded floor are found by a
      // range scan when it settles. Outside one the floor variable is NULL, the comparison is NULL and every row is
      // recorded. (An empty THEN costs less per row than IFNULL or a second condition: measured on MariaDB 10.11.)
      lines.push(
        `  IF NEW.${t.floorKey} > ${t.floorVar} THEN`,
        '    BEGIN END;',
        `  ELSEIF ${this.#bulkVar} IS NULL THEN`,
        ...this.#record(t, 'NEW', 'outbox', plan, '    '),
        '  ELSE',
        ...this.#record(t, 'NEW', 'bulk', plan, '    '),
        '  END IF;',
      )
    } else {
      const record = (into: 'outbox' | 'bulk') =>
        event === 'UPDATE'
          ? this.#recordUpdate(t, into, plan, '    ')
          : this.#record(t, event === 'INSERT' ? 'NEW' : 'OLD', into, plan, '    ')
      lines.push(`  IF ${this.#bulkVar} IS NULL THEN`, ...record('outbox'), '  ELSE', ...record('bulk'), '  END IF;')
    }
    lines.push('END')
    return lines.join('\n')
  }

  #triggerDdl(t: TablePlan, tr: TriggerPlan, replace: boolean): string {
    return `CREATE${replace ? ' OR REPLACE' : ''} TRIGGER ${q(t.schemaName)}.${q(tr.name)} AFTER ${tr.event} ON ${t.qualified} FOR EACH ROW\n${tr.body}`
  }

  async #getPlan(): Promise<Plan> {
    this.#plan ??= (await this.#makePlan(true)).plan
    return this.#plan
  }

  // ------------------------------------------------------------------ inspect

  /**
   * Triggers named with our prefix, wherever they are. `ours` when the body uses our bulk variable (a user's trigger
   * that merely shares the prefix is never dropped as an extra).
   */
  async #prefixedTriggers(): Promise<Array<ExistingTrigger & { ours: boolean }>> {
    const triggers = await mysqlTriggersNamed(this.db, `${this.#o.prefix}_`)
    return triggers.map((t) => ({ ...t, ours: t.statement.includes(this.#bulkVar) }))
  }

  async #inspect(
    plan: Plan,
    problems: readonly string[],
  ): Promise<{
    report: VerifyReport
    missingTables: ObjectTable[]
    /** Tables of ours with the layout of version 1 (install() migrates them). */
    oldLayout: ObjectTable[]
    /** Expected triggers to create (missing) or replace (outdated, with the definition they replace). */
    toCreate: Array<{ t: TablePlan; tr: TriggerPlan; old: ExistingTrigger | undefined }>
    extraTriggers: ExistingTrigger[]
    metaVersion: string | null
  }> {
    const missing = [...problems]
    const outdated: string[] = []
    const extra: string[] = []
    const missingTables: ObjectTable[] = []
    const oldLayout: ObjectTable[] = []
    for (const table of [plan.outbox, plan.bulk, plan.runs, plan.meta]) {
      const columns = await this.#columnsOf(plan.objectSchema, table)
      if (columns === null) {
        missingTables.push(table)
        missing.push(`table ${table.sql}`)
      } else if (
        (table === plan.outbox && !['product_hash', 'lease_owner', 'lease_until'].every((c) => columns.has(c))) ||
        (table === plan.bulk && !columns.has('product_hash'))
      ) {
        oldLayout.push(table)
        outdated.push(
          `table ${table.sql}: the layout of version 1 (products of at most ${table === plan.bulk ? '1020 bytes' : '255 characters'}${table === plan.outbox ? ', no lease columns' : ''}); install() migrates it, keeping its rows`,
        )
      }
    }
    let installedVersion: number | null = null
    let metaVersion: string | null = null
    if (!missingTables.includes(plan.meta)) {
      const rows = await this.db.query<{ value: string }>(
        `SELECT value FROM ${plan.meta.sql} WHERE \`key\` = 'version'`,
      )
      if (rows[0] !== undefined) {
        metaVersion = String(rows[0].value)
        installedVersion = Number(rows[0].value)
      }
    }
    if (installedVersion !== null && installedVersion !== MYSQL_CAPTURE_VERSION) {
      outdated.push(`version ${installedVersion} installed, ${MYSQL_CAPTURE_VERSION} expected`)
    }
    const existing = await this.#prefixedTriggers()
    // Trigger names are per database.
    const byName = new Map(existing.map((x) => [`${x.schema}.${x.name}`, x]))
    const expected = new Set<string>()
    const toCreate: Array<{ t: TablePlan; tr: TriggerPlan; old: ExistingTrigger | undefined }> = []
    for (const t of plan.tables) {
      const tableName = splitQualified(t.table)[1]
      for (const tr of t.triggers) {
        expected.add(`${t.schemaName}.${tr.name}`)
        const label = `trigger ${tr.name} on ${t.qualified}`
        const found = byName.get(`${t.schemaName}.${tr.name}`)
        if (found === undefined) {
          missing.push(label)
          toCreate.push({ t, tr, old: undefined })
        } else if (
          found.table.toLowerCase() !== tableName.toLowerCase() ||
          found.event !== tr.event ||
          found.timing !== 'AFTER'
        ) {
          outdated.push(`${label}: definition differs (${found.timing} ${found.event} on ${found.table})`)
          toCreate.push({ t, tr, old: found })
        } else if (normalize(found.statement) !== normalize(tr.body)) {
          outdated.push(`${label}: body differs`)
          toCreate.push({ t, tr, old: found })
        }
      }
    }
    // A trigger on a table that is now missing still exists: the table is what is reported missing, not an extra.
    const missingNamed = new Set(
      [...tablesNamed(this.#schema).keys()].flatMap((table) => EVENTS.map((e) => this.#triggerName(table, e.suffix))),
    )
    const extraTriggers: ExistingTrigger[] = []
    for (const x of existing) {
      if (!x.ours || expected.has(`${x.schema}.${x.name}`) || missingNamed.has(x.name)) continue
      extraTriggers.push(x)
      extra.push(`trigger ${x.name} on ${q(x.schema)}.${q(x.table)}`)
    }
    const ok =
      missing.length === 0 && outdated.length === 0 && extra.length === 0 && installedVersion === MYSQL_CAPTURE_VERSION
    return {
      report: { ok, installedVersion, expectedVersion: MYSQL_CAPTURE_VERSION, missing, extra, outdated },
      missingTables,
      oldLayout,
      toCreate,
      extraTriggers,
      metaVersion,
    }
  }

  /** Run `fn` on one session holding the named lock (two processes installing at once take turns). */
  async #locked<T>(what: string, fn: (s: SqlDb) => Promise<T>): Promise<T> {
    const name = this.#lockName(what)
    return this.db.session(async (s) => {
      const [row] = await s.query<{ ok: unknown }>('SELECT GET_LOCK(?, 60) AS ok', [name])
      if (Number(row?.ok) !== 1) throw new StockcastError(`${what}: could not take the lock ${name} within 60 s`)
      try {
        return await fn(s)
      } finally {
        await s.query('SELECT RELEASE_LOCK(?) AS released', [name]).catch(() => {})
      }
    })
  }

  /**
   * `install()`/`uninstall()`: their DDL waits at most DDL_LOCK_WAIT_S for a metadata lock (a writer's or a listener's
   * open transaction on the table; the server default is a year, and every later statement on the table queues
   * behind the waiting DDL), and the whole call is retried with backoff until DDL_DEADLINE_MS.
   */
  async #ddl(what: string, fn: (s: SqlDb) => Promise<void>): Promise<void> {
    const started = this.#o.clock.now()
    for (let attempt = 0; ; attempt++) {
      try {
        // One lock for both: an install and an uninstall take turns.
        await this.#locked('install', async (s) => {
          const [row] = await s.query<{ v: unknown }>('SELECT @@SESSION.lock_wait_timeout AS v')
          await s.execute(`SET SESSION lock_wait_timeout = ${DDL_LOCK_WAIT_S}`)
          try {
            await fn(s)
          } finally {
            // The session goes back to the pool: its own setting again.
            await s.execute('SET SESSION lock_wait_timeout = ?', [Number(row?.v ?? 31_536_000)]).catch(() => {})
          }
        })
        return
      } catch (cause) {
        const errno = (e: unknown) => (e as { errno?: unknown })?.errno
        const gaveUp = (e: unknown) =>
          LOCK_GAVE_UP.has(errno(e) as number) || LOCK_GAVE_UP.has(errno((e as Error)?.cause) as number)
        if (!gaveUp(cause)) throw cause
        if (this.#o.clock.now() - started >= DDL_DEADLINE_MS) {
          throw new StockcastError(
            `${what}: tables stayed locked by other sessions for ${DDL_DEADLINE_MS} ms (last: ${errorText(cause)})`,
            { cause },
          )
        }
        await new Promise<void>((r) => this.#o.timers.setTimeout(r, backoffDelay(attempt, 50, 2000)))
      }
    }
  }

  // ------------------------------------------------------------------ public

  async install(): Promise<void> {
    // Validation first: a bad table, column or related query throws before any DDL runs. MySQL DDL is not
    // transactional, so every step below registers its undo, and a failure midway undoes what this call did.
    const { plan } = await this.#makePlan(true)
    this.#plan = plan
    const mariadb = await this.#isMariaDb()
    await this.#ddl('install', async (s) => {
      const { report, missingTables, oldLayout, toCreate, extraTriggers, metaVersion } = await this.#inspect(plan, [])
      if (report.ok) return // installed as this version would: no DDL
      const undo: Array<() => Promise<unknown>> = []
      let step = ''
      try {
        const createTable = async (table: ObjectTable, ddl: string) => {
          if (!missingTables.includes(table)) return
          step = `creating ${table.sql}`
          await s.execute(ddl)
          undo.push(() => s.execute(`DROP TABLE IF EXISTS ${table.sql}`))
        }
        // Products of any length (what the source column accepts) are looked up by the SHA-256 of their UTF-8 bytes
        // (an index on the text itself is limited to 3072 bytes) and compared byte for byte (the cache's keys): a
        // binary collation, and bytes where rows are de-duplicated (a PAD SPACE collation would merge 'a' and 'a ').
        await createTable(
          plan.outbox,
          `CREATE TABLE IF NOT EXISTS ${plan.outbox.sql} (
             id BIGINT AUTO_INCREMENT PRIMARY KEY,
             product LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
             ${OUTBOX_HASH},
             source_table VARCHAR(128),
             created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
             ${OUTBOX_LEASE},
             INDEX ${q(`${this.#o.prefix}_product_hash_idx`)} (product_hash)
           ) ENGINE=InnoDB`,
        )
        await createTable(
          plan.bulk,
          `CREATE TABLE IF NOT EXISTS ${plan.bulk.sql} (
             bulk_id VARCHAR(32) CHARACTER SET ascii NOT NULL,
             product LONGBLOB NOT NULL,
             ${BULK_HASH},
             source_table VARCHAR(128) NOT NULL DEFAULT '',
             UNIQUE KEY ${q(`${this.#o.prefix}_bulk_key`)} (bulk_id, product_hash, source_table),
             INDEX ${q(`${this.#o.prefix}_bulk_hash_idx`)} (product_hash)
           ) ENGINE=InnoDB`,
        )
        // Tables of version 1 keep their rows (not undone on a later failure: version 1 triggers write them as well).
        if (oldLayout.includes(plan.outbox)) {
          step = `migrating ${plan.outbox.sql} to the layout of version ${MYSQL_CAPTURE_VERSION}`
          await s.execute(
            `ALTER TABLE ${plan.outbox.sql}
               DROP INDEX ${q(`${this.#o.prefix}_product_idx`)},
               MODIFY product LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
               ADD COLUMN ${OUTBOX_HASH} AFTER product,
               ADD COLUMN lease_owner VARCHAR(64) NULL,
               ADD COLUMN lease_until TIMESTAMP(3) NULL DEFAULT NULL,
               ADD INDEX ${q(`${this.#o.prefix}_product_hash_idx`)} (product_hash)`,
          )
        }
        if (oldLayout.includes(plan.bulk)) {
          step = `migrating ${plan.bulk.sql} to the layout of version ${MYSQL_CAPTURE_VERSION}`
          await s.execute(
            `ALTER TABLE ${plan.bulk.sql}
               DROP PRIMARY KEY,
               DROP INDEX ${q(`${this.#o.prefix}_bulk_product_idx`)},
               MODIFY product LONGBLOB NOT NULL,
               ADD COLUMN ${BULK_HASH} AFTER product,
               ADD UNIQUE KEY ${q(`${this.#o.prefix}_bulk_key`)} (bulk_id, product_hash, source_table),
               ADD INDEX ${q(`${this.#o.prefix}_bulk_hash_idx`)} (product_hash)`,
          )
        }
        await createTable(
          plan.runs,
          `CREATE TABLE IF NOT EXISTS ${plan.runs.sql} (
             bulk_id VARCHAR(32) CHARACTER SET ascii NOT NULL,
             source_table VARCHAR(128) NOT NULL,
             key_column VARCHAR(64),
             floor_id BIGINT,
             started_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
             PRIMARY KEY (bulk_id, source_table)
           ) ENGINE=InnoDB`,
        )
        await createTable(
          plan.meta,
          `CREATE TABLE IF NOT EXISTS ${plan.meta.sql} (
             \`key\` VARCHAR(64) NOT NULL PRIMARY KEY,
             value TEXT NOT NULL
           ) ENGINE=InnoDB`,
        )
        const restore = (x: ExistingTrigger) => () =>
          s.execute(
            `CREATE${mariadb ? ' OR REPLACE' : ''} TRIGGER ${q(x.schema)}.${q(x.name)} ${x.timing} ${x.event} ON ${q(x.schema)}.${q(x.table)} FOR EACH ROW\n${x.statement}`,
          )
        for (const { t, tr, old } of toCreate) {
          step = `creating trigger ${tr.name} on ${t.qualified}`
          const sameTable = old !== undefined && old.table.toLowerCase() === splitQualified(t.table)[1].toLowerCase()
          if (old !== undefined && !(mariadb && sameTable)) {
            // MySQL has no CREATE OR REPLACE TRIGGER (and MariaDB's replaces on the same table only).
            await s.execute(`DROP TRIGGER IF EXISTS ${q(old.schema)}.${q(old.name)}`)
            undo.push(restore(old))
            await s.execute(this.#triggerDdl(t, tr, false))
            undo.push(() => s.execute(`DROP TRIGGER IF EXISTS ${q(t.schemaName)}.${q(tr.name)}`))
          } else {
            await s.execute(this.#triggerDdl(t, tr, old !== undefined))
            undo.push(
              old === undefined
                ? () => s.execute(`DROP TRIGGER IF EXISTS ${q(t.schemaName)}.${q(tr.name)}`)
                : restore(old),
            )
          }
        }
        for (const x of extraTriggers) {
          step = `dropping trigger ${x.name} (its table is no longer in the schema)`
          await s.execute(`DROP TRIGGER IF EXISTS ${q(x.schema)}.${q(x.name)}`)
          undo.push(restore(x))
        }
        step = `recording the version in ${plan.meta.sql}`
        await s.execute(
          `INSERT INTO ${plan.meta.sql} (\`key\`, value) VALUES ('version', ?), ('installed_at', CAST(NOW(3) AS CHAR))
           ON DUPLICATE KEY UPDATE value = VALUES(value)`,
          [String(MYSQL_CAPTURE_VERSION)],
        )
        undo.push(() =>
          metaVersion === null
            ? s.execute(`DELETE FROM ${plan.meta.sql} WHERE \`key\` IN ('version', 'installed_at')`)
            : s.execute(`UPDATE ${plan.meta.sql} SET value = ? WHERE \`key\` = 'version'`, [metaVersion]),
        )
      } catch (cause) {
        const undoErrors: string[] = []
        for (const u of undo.reverse()) {
          try {
            await u()
          } catch (e) {
            undoErrors.push(errorText(e))
          }
        }
        const tail =
          undoErrors.length === 0
            ? 'what this call had created was removed'
            : `undoing it failed too (${undoErrors.join('; ')}): run verify()`
        throw new StockcastError(`install: ${step} failed: ${errorText(cause)}; ${tail}`, { cause })
      }
    })
  }

  async uninstall(): Promise<void> {
    const { plan } = await this.#makePlan(false)
    this.#plan = undefined
    await this.#ddl('uninstall', async (s) => {
      // Every trigger of ours, wherever it is (tables since removed from the schema too).
      for (const x of await this.#prefixedTriggers()) {
        if (x.ours) await s.execute(`DROP TRIGGER IF EXISTS ${q(x.schema)}.${q(x.name)}`)
      }
      for (const table of [plan.outbox, plan.bulk, plan.runs, plan.meta]) {
        await s.execute(`DROP TABLE IF EXISTS ${table.sql}`)
      }
    })
  }

  async verify(): Promise<VerifyReport> {
    const { plan, problems } = await this.#makePlan(false)
    return (await this.#inspect(plan, problems)).report
  }

  /**
   * For each of these products with unprocessed marks, the highest mark version: outbox rows (one indexed query),
   * plus products a running bulk import has changed and committed but not moved to the outbox yet.
   */
  async pending(products: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>()
    if (products.length === 0) return out
    const plan = await this.#getPlan()
    const list = products.map(() => '?').join(', ')
    // By the hash of each product (the index); a hash another product shares is told apart below (`add`).
    const hashes = products.map(productHash)
    const rows = await this.db.query<{ k: string; p: unknown; v: unknown; f: unknown }>(
      `SELECT 'o' AS k, MIN(product) AS p, MAX(id) AS v, NULL AS f FROM ${plan.outbox.sql}
        WHERE product_hash IN (${list}) GROUP BY product_hash
       UNION ALL
       SELECT DISTINCT 'b', CONVERT(product USING utf8mb4), NULL, NULL FROM ${plan.bulk.sql} WHERE product_hash IN (${list})
       UNION ALL
       SELECT 'r', source_table, key_column, CAST(MIN(floor_id) AS CHAR) FROM ${plan.runs.sql}
        WHERE floor_id IS NOT NULL GROUP BY source_table, key_column`,
      [...hashes, ...hashes],
    )
    let newest = 1
    for (const r of rows) if (r.k === 'o' && Number(r.v) > newest) newest = Number(r.v)
    const add = (p: unknown, v: number) => {
      const key = String(p)
      if (!products.includes(key)) return
      out.set(key, Math.max(out.get(key) ?? 0, v))
    }
    for (const r of rows) {
      if (r.k === 'o') add(r.p, Number(r.v))
      // No outbox id yet: the newest one stands for them (a version only orders marks).
      else if (r.k === 'b') add(r.p, newest)
    }
    // Inserts above a running bulk import's floor: committed rows of the asked products, by the product index.
    for (const r of rows) {
      if (r.k !== 'r') continue
      const t = plan.tables.find((x) => x.table === String(r.p))
      if (t === undefined || t.productColumns.length === 0) continue
      const key = q(String(r.v))
      const parts = t.productColumns.map(
        (c) => `SELECT ${c.col} AS p FROM ${t.qualified} WHERE ${key} > CAST(? AS SIGNED) AND ${c.col} IN (${list})`,
      )
      const found = await this.db.query<{ p: unknown }>(
        `SELECT DISTINCT p FROM (${parts.join(' UNION ALL ')}) AS sc_found`,
        t.productColumns.flatMap(() => [String(r.f), ...products]),
      )
      for (const f of found) add(f.p, newest)
    }
    return out
  }

  async #outboxDialect(plan: Plan): Promise<OutboxDialect> {
    const pollMs = this.#o.pollMs
    const scanMs = this.#o.scanMs
    const timers = this.#o.timers
    const sweep = () => this.#sweep(plan)
    const outbox = plan.outbox.sql
    return {
      ...sqlOutboxQueries('mysql', outbox, readCommitted),
      async claim(conn, owner, limit, leaseMs) {
        // The products of the oldest claimable rows: a consistent (non-locking) read.
        const heads = await conn.query<{ h: Buffer }>(
          `SELECT product_hash AS h FROM ${outbox} WHERE lease_until IS NULL OR lease_until < NOW(3) ORDER BY id LIMIT ?`,
          [limit],
        )
        if (heads.length === 0) return { rows: [] }
        const hashes = [...new Map(heads.map((r) => [Buffer.from(r.h).toString('hex'), Buffer.from(r.h)])).values()]
        // Every claimable row of them, leased in READ COMMITTED: record locks on these rows only, no gap lock.
        const rows = await readCommitted(conn, async (tx) => {
          const out: Array<{ id: number; product: string }> = []
          for (let i = 0; i < hashes.length; i += 1000) {
            const chunk = hashes.slice(i, i + 1000)
            const list = chunk.map(() => '?').join(', ')
            await tx.execute(
              `UPDATE ${outbox} SET lease_owner = ?, lease_until = TIMESTAMPADD(MICROSECOND, ?, NOW(3))
                WHERE product_hash IN (${list}) AND (lease_until IS NULL OR lease_until < NOW(3))`,
              [owner, leaseMs * 1000, ...chunk],
            )
            const rows = await tx.query<{ id: unknown; product: string }>(
              `SELECT id, product FROM ${outbox} WHERE product_hash IN (${list}) AND lease_owner = ?`,
              [...chunk, owner],
            )
            for (const r of rows) out.push({ id: Number(r.id), product: String(r.product) })
          }
          return out
        })
        return { rows }
      },
      async oldestAgeMs(conn) {
        const rows = await conn.query<{ ms: unknown }>(
          `SELECT GREATEST(0, TIMESTAMPDIFF(MICROSECOND, created_at, NOW(3))) / 1000 AS ms FROM ${outbox} ORDER BY id LIMIT 1`,
        )
        return rows.length === 0 ? 0 : Math.round(Number(rows[0]!.ms))
      },
      async subscribe(_conn, wake) {
        // MySQL has no LISTEN: poll. Every scanMs (and now) also finish the bulk imports whose session died.
        const stopPoll = every(timers, pollMs, wake)
        let sweeping = false
        const runSweep = () => {
          if (sweeping) return
          sweeping = true
          sweep()
            .then((moved) => {
              if (moved > 0) wake()
            })
            .catch(() => {}) // retried at the next interval; the consumer reports outbox errors
            .finally(() => {
              sweeping = false
            })
        }
        const stopSweep = every(timers, scanMs, runSweep)
        runSweep()
        return async () => {
          stopPoll()
          stopSweep()
        }
      },
    }
  }

  async listen(cache: StockCache): Promise<OutboxListener> {
    if (cache === null || typeof cache !== 'object' || typeof cache.markDirty !== 'function') {
      throw new ConfigError('listen: expects a stock cache from createStockCache(...)', { option: 'cache' })
    }
    const plan = await this.#getPlan()
    const columns = await this.#columnsOf(plan.objectSchema, plan.outbox)
    if (columns === null) {
      throw new ConfigError(`listen: the outbox ${plan.outbox.sql} does not exist: call install() first`, {
        option: 'outbox',
      })
    }
    if (!columns.has('lease_owner') || !columns.has('product_hash')) {
      throw new ConfigError(
        `listen: the outbox ${plan.outbox.sql} has the layout of an older version: call install() to migrate it`,
        { option: 'outbox' },
      )
    }
    const consumer = await startListener(this.db, await this.#outboxDialect(plan), cache, {
      name: `sql outbox ${plan.outbox.sql}`,
      batchSize: this.#o.batchSize,
      scanMs: this.#o.scanMs,
      leaseMs: this.#o.leaseMs,
      clock: this.#o.clock,
      timers: this.#o.timers,
    })
    return asListener(consumer)
  }

  // ------------------------------------------------------------------ bulk

  /**
   * Move what bulk import `bulkId` recorded into the outbox, in one transaction: the de-duplicated products, and
   * the products of rows inserted above each recorded floor. Resolves to the outbox rows written.
   */
  async #moveRun(tx: SqlDb, plan: Plan, bulkId: string): Promise<number> {
    const runs = await tx.query<{ source_table: string; key_column: string | null; floor: string | null }>(
      `SELECT source_table, key_column, CAST(floor_id AS CHAR) AS floor FROM ${plan.runs.sql} WHERE bulk_id = ? FOR UPDATE`,
      [bulkId],
    )
    // A plain read, then multi-row inserts: an INSERT .. SELECT into the outbox would hold its AUTO-INC lock (every
    // writer's trigger insert waits for it) for as long as the statement runs, and lock the rows it reads.
    const recorded = await tx.query<{ p: unknown; t: string | null }>(
      `SELECT CONVERT(product USING utf8mb4) AS p, NULLIF(source_table, '') AS t FROM ${plan.bulk.sql} WHERE bulk_id = ?`,
      [bulkId],
    )
    let moved = 0
    for (let i = 0; i < recorded.length; i += 1000) {
      const chunk = recorded.slice(i, i + 1000)
      moved += await tx.execute(
        `INSERT INTO ${plan.outbox.sql} (product, source_table) VALUES ${chunk.map(() => '(?, ?)').join(', ')}`,
        chunk.flatMap((r) => [String(r.p), r.t]),
      )
    }
    for (const r of runs) {
      if (r.key_column === null || r.floor === null) continue
      const t = plan.tables.find((x) => x.table === r.source_table)
      if (t === undefined || t.productColumns.length === 0) continue
      const key = q(r.key_column)
      const parts = t.productColumns.map(
        (c) =>
          `SELECT ${c.col} AS p FROM ${t.qualified} WHERE ${key} > CAST(? AS SIGNED) AND ${c.col} IS NOT NULL${c.text ? ` AND ${c.col} <> ''` : ''}`,
      )
      // A plain (consistent, non-locking) read, then the inserts: INSERT .. SELECT would take shared next-key locks
      // up to the end of the table and make other writers wait.
      const found = await tx.query<{ p: unknown }>(
        `SELECT DISTINCT p FROM (${parts.join(' UNION ALL ')}) AS sc_rows`,
        t.productColumns.map(() => r.floor),
      )
      for (let i = 0; i < found.length; i += 1000) {
        const chunk = found.slice(i, i + 1000)
        moved += await tx.execute(
          `INSERT INTO ${plan.outbox.sql} (product, source_table) VALUES ${chunk.map(() => `(?, ${lit(t.table)})`).join(', ')}`,
          chunk.map((f) => String(f.p)),
        )
      }
    }
    await tx.execute(`DELETE FROM ${plan.bulk.sql} WHERE bulk_id = ?`, [bulkId])
    await tx.execute(`DELETE FROM ${plan.runs.sql} WHERE bulk_id = ?`, [bulkId])
    return moved
  }

  /** Finish bulk imports whose session ended without finishing (a crash): their lock is free. */
  async #sweep(plan: Plan): Promise<number> {
    const ids = await this.db.query<{ id: string }>(
      `SELECT bulk_id AS id FROM ${plan.runs.sql} UNION SELECT DISTINCT bulk_id FROM ${plan.bulk.sql}`,
    )
    let moved = 0
    for (const { id } of ids) {
      const [row] = await this.db.query<{ free: unknown }>('SELECT IS_FREE_LOCK(?) AS free', [
        this.#lockName(`bulk_${id}`),
      ])
      if (Number(row?.free) !== 1) continue
      moved += await readCommitted(this.db, (tx) => this.#moveRun(tx, plan, String(id)))
    }
    return moved
  }

  async bulkImport<T>(cache: StockCache, fn: (session: SqlDb) => Promise<T>): Promise<T> {
    if (typeof fn !== 'function') throw new InvalidInputError('bulkImport expects a function (session) => Promise')
    if (cache === null || typeof cache !== 'object' || typeof cache.disableCacheTemporarily !== 'function') {
      throw new ConfigError('bulkImport: expects a stock cache from createStockCache(...)', { option: 'cache' })
    }
    const plan = await this.#getPlan()
    // The import's marks reach the outbox when fn is done (#moveRun); the cache then asks its listeners to catch up,
    // recomputes every touched product once, and the listeners delete the held rows (MarkSource.catchUp / afterBulk).
    return cache.disableCacheTemporarily(() => this.db.session((s) => this.#bulkSession(s, plan, fn)))
  }

  async #bulkSession<T>(s: SqlDb, plan: Plan, fn: (session: SqlDb) => Promise<T>): Promise<T> {
    const bulkId = randomBytes(8).toString('hex')
    const lock = this.#lockName(`bulk_${bulkId}`)
    // The lock says "this import is alive": if the session dies, the listener's sweep finishes the import.
    const [got] = await s.query<{ ok: unknown }>('SELECT GET_LOCK(?, 0) AS ok', [lock])
    if (Number(got?.ok) !== 1) throw new StockcastError(`bulkImport: could not take the lock ${lock}`)
    const floors: Array<{ t: TablePlan; floor: string }> = []
    let vars = ''
    try {
      // A row per run (found by the sweep even with no floor), then a floor per table with an AUTO_INCREMENT key.
      await s.execute(`INSERT INTO ${plan.runs.sql} (bulk_id, source_table) VALUES (?, '')`, [bulkId]).catch((e) => {
        if ((e as { errno?: number })?.errno !== 1146) throw e // ER_NO_SUCH_TABLE
        throw new ConfigError(`bulkImport: ${plan.runs.sql} does not exist: call install() first`, {
          option: 'prefix',
          cause: e,
        })
      })
      for (const t of plan.tables) {
        if (t.floorKey === null) continue
        const [m] = await s.query<{ m: string }>(
          `SELECT CAST(COALESCE(MAX(${t.floorKey}), 0) AS CHAR) AS m FROM ${t.qualified}`,
        )
        const floor = String(m?.m ?? '0')
        // A signed variable compares faster than an unsigned one; keys beyond the signed range take the slow path.
        if (BigInt(floor) > MAX_SIGNED) continue
        await s.execute(
          `INSERT INTO ${plan.runs.sql} (bulk_id, source_table, key_column, floor_id) VALUES (?, ?, ?, CAST(? AS SIGNED))`,
          [bulkId, t.table, t.floorKey.slice(1, -1), floor],
        )
        floors.push({ t, floor })
      }
      vars = [`${this.#bulkVar} = NULL`, ...floors.map((f) => `${f.t.floorVar} = NULL`)].join(', ')
      const set = [`${this.#bulkVar} = ?`, ...floors.map((f) => `${f.t.floorVar} = CAST(? AS SIGNED)`)].join(', ')
      await s.execute(`SET ${set}`, [bulkId, ...floors.map((f) => f.floor)])
      let result: { ok: true; value: T } | { ok: false; error: unknown }
      try {
        result = { ok: true, value: await fn(s) }
      } catch (error) {
        result = { ok: false, error }
        // A transaction fn left open is rolled back (its marks with it); committed work is moved below.
        await s.execute('ROLLBACK').catch(() => {})
      }
      // Back to normal capture first: the move itself must not be diverted.
      await s.execute(`SET ${vars}`)
      vars = ''
      try {
        // READ COMMITTED: its deletes take no gap lock another import's inserts would wait for.
        await readCommitted(s, (tx) => this.#moveRun(tx, plan, bulkId))
      } catch (cause) {
        throw new StockcastError(
          `bulkImport: the import ${result.ok ? 'ran' : 'failed'}, and moving its marks to the outbox failed: ${errorText(cause)}; a running listener finishes it once this session has ended`,
          { cause },
        )
      }
      if (!result.ok) throw result.error
      return result.value
    } finally {
      if (vars !== '') await s.execute(`SET ${vars}`).catch(() => {})
      await s.query('SELECT RELEASE_LOCK(?) AS released', [lock]).catch(() => {})
    }
  }
}
