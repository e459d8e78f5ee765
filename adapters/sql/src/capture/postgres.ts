import { createHash } from 'node:crypto'
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
  UNSYNCED,
} from './consumer.js'
import { rewriteNamedParams, tablesNamed } from './related.js'
import type { OutboxListener, SqlChangeCapture, SqlChangeCaptureOptions, VerifyReport } from './types.js'

/**
 * The version of the objects `install()` creates; bump it whenever the generated SQL changes.
 * 2: leased outbox rows (`lease_owner`, `lease_until`), a hash index on `product` (any length; the btree index of
 * version 1 refused values over about 2.7 kB).
 */
export const POSTGRES_CAPTURE_VERSION = 2

/** How long one attempt of `install()`/`uninstall()` waits for its table locks before it lets go and retries. */
const DDL_LOCK_WAIT_MS = 500
/** How long `install()`/`uninstall()` keep retrying before they give up. */
const DDL_DEADLINE_MS = 120_000
/** SQLSTATEs of a lock wait that gave up: lock_not_available, query_canceled (statement_timeout), deadlock_detected. */
const LOCK_GAVE_UP = new Set(['55P03', '57014', '40P01'])

/** Transition table names: unlikely to shadow a user table a related query reads. */
const NEW_ROWS = '__sc_new'
const OLD_ROWS = '__sc_old'

type Op = 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE'

interface TriggerPlan {
  name: string
  op: Op
  /** pg_trigger.tgtype: statement level; AFTER INSERT 4, AFTER UPDATE 16, AFTER DELETE 8, BEFORE TRUNCATE 2|32. */
  tgtype: number
  newTable: string | null
  oldTable: string | null
}

const TRIGGERS: ReadonlyArray<Omit<TriggerPlan, 'name'> & { suffix: string }> = [
  { suffix: 'ins', op: 'INSERT', tgtype: 4, newTable: NEW_ROWS, oldTable: null },
  { suffix: 'upd', op: 'UPDATE', tgtype: 16, newTable: NEW_ROWS, oldTable: OLD_ROWS },
  { suffix: 'del', op: 'DELETE', tgtype: 8, newTable: null, oldTable: OLD_ROWS },
  { suffix: 'trunc', op: 'TRUNCATE', tgtype: 34, newTable: null, oldTable: null },
]

/** A table as the database knows it. */
interface ResolvedTable {
  oid: string
  /** `"schema"."table"` */
  qualified: string
  columns: Set<string>
}

interface RelatedPlan {
  /** The products query with its `:params` rewritten to columns of the changed rows. */
  query: string
  params: string[]
}

interface TablePlan {
  /** The name the schema declares (what `sourcesForTable` knows). */
  table: string
  resolved: ResolvedTable
  productColumns: string[]
  related: RelatedPlan[]
  fnName: string
  fnQualified: string
  body: string
  triggers: TriggerPlan[]
}

interface Plan {
  objectSchema: string
  tables: TablePlan[]
}

const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`
const q = (name: string): string => quoteIdent('postgres', name)

/**
 * Change capture for PostgreSQL and PGlite: statement-level AFTER triggers with transition tables write the
 * distinct changed products into an outbox, in the writer's own transaction, and `pg_notify` once per statement.
 * A 100 000-row `INSERT .. SELECT` costs about 1.3 x the trigger-free insert (row triggers: 4.1 x), so bulk
 * imports need no trigger switch. Use through `sqlChangeCapture(db, schema, options)`.
 *
 * @example
 * ```ts
 * const capture = createPostgresCapture(fromPg(pool), schema)
 * await capture.install()
 * const cache = createStockCache({ schema, reader: sqlReader(db, schema), pendingMarks: capture })
 * const listener = await capture.listen(cache)
 * ```
 */
export function createPostgresCapture(
  db: SqlDb,
  schema: StockSchema,
  options: SqlChangeCaptureOptions = {},
): SqlChangeCapture {
  if (db?.dialect !== 'postgres') {
    throw new ConfigError(`createPostgresCapture needs a PostgreSQL connection, got ${String(db?.dialect)}`, {
      option: 'db',
    })
  }
  return new PostgresCapture(db, schema, resolveCaptureOptions(options))
}

class PostgresCapture implements SqlChangeCapture {
  readonly db: SqlDb
  readonly #schema: StockSchema
  readonly #o: ResolvedCaptureOptions
  /** Lower case: `LISTEN name` folds unquoted names, `pg_notify` does not. */
  readonly #channel: string
  #objectSchema: string | undefined
  #dialect: OutboxDialect | undefined

  constructor(db: SqlDb, schema: StockSchema, options: ResolvedCaptureOptions) {
    assertCaptureSchema(schema)
    this.db = db
    this.#schema = schema
    this.#o = options
    this.#channel = `${options.prefix}_outbox`.toLowerCase()
  }

  // ------------------------------------------------------------------ names

  /** Where the outbox, the meta table and the functions live: the outbox's schema, else the current schema. */
  async #schemaName(): Promise<string> {
    if (this.#objectSchema !== undefined) return this.#objectSchema
    const [given] = splitQualified(this.#o.outbox)
    if (given !== null) this.#objectSchema = given
    else {
      const rows = await this.db.query<{ s: string | null }>('SELECT current_schema() AS s')
      const s = rows[0]?.s
      if (s == null) {
        throw new ConfigError(
          'sqlChangeCapture: the connection has no current schema (empty search_path): qualify the outbox, e.g. "public.stockcast_outbox"',
          { option: 'outbox' },
        )
      }
      this.#objectSchema = s
    }
    return this.#objectSchema
  }

  #outboxBase(): string {
    return splitQualified(this.#o.outbox)[1]
  }

  #outbox(schemaName: string): string {
    return `${q(schemaName)}.${q(this.#outboxBase())}`
  }

  /** The hash index on `product` (version 2). */
  #productIndex(): string {
    return `${this.#outboxBase()}_product_hidx`
  }

  /** The btree `(product, id)` index of version 1 (dropped by `install()`). */
  #oldProductIndex(schemaName: string): string {
    return `${q(schemaName)}.${q(`${this.#outboxBase()}_product_idx`)}`
  }

  #meta(schemaName: string): string {
    return `${q(schemaName)}.${q(`${this.#o.prefix}_meta`)}`
  }

  #fnPrefix(): string {
    return `${this.#o.prefix}_fn_`
  }

  #triggerPrefix(): string {
    return `${this.#o.prefix}_capture_`
  }

  #fnName(table: string): string {
    const name = this.#fnPrefix() + table.replace('.', '__')
    if (name.length <= 63) return name
    const hash = createHash('sha1').update(table).digest('hex').slice(0, 8)
    return `${name.slice(0, 54)}_${hash}`
  }

  async #outboxDialect(): Promise<OutboxDialect> {
    if (this.#dialect !== undefined) return this.#dialect
    const outbox = this.#outbox(await this.#schemaName())
    const channel = this.#channel
    const pollMs = this.#o.pollMs
    const timers = this.#o.timers
    this.#dialect = {
      ...sqlOutboxQueries('postgres', outbox),
      // A NOTIFY during a batch's recompute is claimed at once, not after it (bench/sql-load.mjs: the p99 of
      // commit-to-fresh under load about halved). MySQL/MariaDB polls anyway and keeps one lane: with two, its
      // history check saw InnoDB deadlocks among the outbox statements (retried, but each one a backoff).
      lanes: 2,
      async claim(conn, owner, limit, leaseMs) {
        // One statement, committed at once: the products of the oldest claimable rows, then every claimable row of
        // them. Rows another consumer is leasing right now are skipped; uncommitted rows are invisible. The age of
        // the oldest row comes back with them (one query fewer per batch), and the lease commits without waiting
        // for its WAL flush (see `UNSYNCED`).
        const rows = await conn.query<{ id: unknown; product: string; age_ms: unknown }>(
          `WITH heads AS (
             SELECT product FROM ${outbox}
              WHERE lease_until IS NULL OR lease_until < clock_timestamp() ORDER BY id LIMIT $2
           ), picked AS (
             SELECT id FROM ${outbox}
              WHERE product IN (SELECT product FROM heads) AND (lease_until IS NULL OR lease_until < clock_timestamp())
              FOR UPDATE SKIP LOCKED
           )
           UPDATE ${outbox} AS o SET lease_owner = $1, lease_until = clock_timestamp() + make_interval(secs => $3::float8 / 1000)
             FROM picked, ${UNSYNCED} WHERE o.id = picked.id
           RETURNING o.id, o.product,
             (SELECT GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - created_at) * 1000)::float8
                FROM ${outbox} ORDER BY id LIMIT 1) AS age_ms`,
          [owner, limit, leaseMs],
        )
        const first = rows[0]
        return {
          rows: rows.map((r) => ({ id: Number(r.id), product: String(r.product) })),
          ...(first === undefined || first.age_ms == null ? {} : { oldestAgeMs: Math.round(Number(first.age_ms)) }),
        }
      },
      async oldestAgeMs(conn) {
        const rows = await conn.query<{ ms: unknown }>(
          `SELECT GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - created_at) * 1000)::float8 AS ms FROM ${outbox} ORDER BY id LIMIT 1`,
        )
        return rows.length === 0 ? 0 : Math.round(Number(rows[0]!.ms))
      },
      async subscribe(conn, wake, onReconnect) {
        if (conn.listen !== undefined) return conn.listen(channel, () => wake(), onReconnect, { timers })
        // A connection without LISTEN: poll.
        const stop = every(timers, pollMs, wake)
        return async () => stop()
      },
    }
    return this.#dialect
  }

  // ------------------------------------------------------------------ plan

  async #resolve(table: string): Promise<(ResolvedTable & { relkind: string }) | null> {
    const rows = await this.db.query<{ oid: unknown; relkind: string; qualified: string; columns: string[] }>(
      `SELECT c.oid::bigint AS oid, c.relkind::text AS relkind, format('%I.%I', n.nspname, c.relname) AS qualified,
              ARRAY(SELECT a.attname::text FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS columns
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = to_regclass($1)`,
      [q(table)],
    )
    const r = rows[0]
    if (r === undefined) return null
    return { oid: String(r.oid), relkind: r.relkind, qualified: r.qualified, columns: new Set(r.columns) }
  }

  /**
   * Resolve every table and check every column the schema names. With `strict`, the first problem is a
   * `ConfigError`; otherwise missing tables are returned for `verify()`.
   */
  async #plan(strict: boolean): Promise<{ plan: Plan; missingTables: string[] }> {
    const objectSchema = await this.#schemaName()
    const outbox = this.#outbox(objectSchema)
    const named = tablesNamed(this.#schema)
    const resolved = new Map<string, ResolvedTable>()
    const missingTables: string[] = []
    for (const [table, by] of named) {
      const r = await this.#resolve(table)
      if (r === null) {
        if (strict) {
          throw new ConfigError(
            `install: table ${JSON.stringify(table)} (named by ${by.join(', ')}) does not exist; nothing was changed`,
            { option: table, source: table },
          )
        }
        missingTables.push(table)
        continue
      }
      if (strict && r.relkind !== 'r' && r.relkind !== 'p') {
        throw new ConfigError(
          `install: ${JSON.stringify(table)} (named by ${by.join(', ')}) is not a table (relkind ${r.relkind}); change capture needs triggers on a table; nothing was changed`,
          { option: table, source: table },
        )
      }
      resolved.set(table, r)
    }
    const needColumn = (table: string, column: string, by: string) => {
      const r = resolved.get(table)
      if (strict && r !== undefined && !r.columns.has(column)) {
        throw new ConfigError(
          `install: column ${JSON.stringify(column)} of table ${JSON.stringify(table)} (${by}) does not exist; nothing was changed`,
          { option: `${table}.${column}`, source: table },
        )
      }
    }
    for (const s of this.#schema.sources) {
      for (const key of ['product', 'quantity', 'date', 'location'] as const) {
        const col = s[key]
        if (col !== undefined) needColumn(s.table, col, `${s.kind} source "${s.id}", ${key}`)
      }
    }
    const tables: TablePlan[] = []
    for (const [table, r] of resolved) {
      const captured = capturePlan(this.#schema).get(table)
      const productColumns = (captured?.productColumns ?? []).map((p) => p.column)
      const related: RelatedPlan[] = []
      for (const rel of captured?.related ?? []) {
        const rewritten = rewriteNamedParams('postgres', rel.products, (name) => `${q('__sc_changed')}.${q(name)}`)
        for (const p of rewritten.params) needColumn(table, p, `parameter :${p} of related[${rel.index}].products`)
        related.push({ query: rewritten.sql, params: rewritten.params })
      }
      const fnName = this.#fnName(table)
      const plan: TablePlan = {
        table,
        resolved: r,
        productColumns,
        related,
        fnName,
        fnQualified: `${q(objectSchema)}.${q(fnName)}`,
        body: '',
        triggers: TRIGGERS.map((t) => ({
          name: this.#triggerPrefix() + t.suffix,
          op: t.op,
          tgtype: t.tgtype,
          newTable: t.newTable,
          oldTable: t.oldTable,
        })),
      }
      plan.body = this.#body(plan, outbox)
      tables.push(plan)
    }
    if (strict) {
      // Plan every statement the triggers will run, against the tables themselves: a related query that does not
      // parse or names an unknown table fails here, at install, not in a writer's transaction.
      for (const t of tables) {
        for (const rels of [[t.resolved.qualified], [t.resolved.qualified, t.resolved.qualified]]) {
          try {
            await this.db.query(`EXPLAIN ${this.#select(t, rels)}`)
          } catch (cause) {
            const which = t.related.length > 0 ? ' (check the related products query)' : ''
            throw new ConfigError(
              `install: the capture query for table ${JSON.stringify(t.table)} fails${which}: ${(cause as Error).message}; nothing was changed`,
              { option: t.table, source: t.table, cause },
            )
          }
        }
      }
    }
    return { plan: { objectSchema, tables }, missingTables }
  }

  /** The changed products (and their table) of one statement, from the row sets `rels`. */
  #select(t: TablePlan, rels: readonly string[]): string {
    const parts: string[] = []
    for (const col of t.productColumns) {
      for (const rel of rels) parts.push(`SELECT ${q(col)}::text AS p, ${lit(t.table)}::text AS t FROM ${rel}`)
    }
    for (const r of t.related) {
      const changed =
        r.params.length === 0
          ? rels.map((rel) => `SELECT 1 AS ${q('__sc_one')} FROM ${rel}`).join(' UNION ')
          : rels.map((rel) => `SELECT ${r.params.map((p) => q(p)).join(', ')} FROM ${rel}`).join(' UNION ')
      // A related change may alter what any source's `where` keeps: table NULL re-reads every source.
      parts.push(
        `SELECT ${q('__sc_found')}.p::text AS p, NULL::text AS t FROM (${changed}) AS ${q('__sc_changed')} ` +
          `CROSS JOIN LATERAL (${r.query}) AS ${q('__sc_found')}(p)`,
      )
    }
    return `SELECT DISTINCT p, t FROM (\n      ${parts.join('\n      UNION ALL ')}\n    ) AS ${q('__sc_rows')} WHERE p IS NOT NULL AND p <> ''`
  }

  #body(t: TablePlan, outbox: string): string {
    // A product this transaction has already written a row for (at its top level: xmin is the top-level xid) gets no
    // second one: a bulk import by many statements writes one row per product, not one per product per statement.
    // Such a row is invisible to every consumer until the commit and cannot be rolled back without this statement
    // (a row written in a subtransaction has another xmin and never stands in for a later one).
    const insert = (rels: readonly string[]) =>
      `    INSERT INTO ${outbox} (product, source_table)\n    SELECT p, t FROM (${this.#select(t, rels)}) AS ${q('__sc_marks')}\n` +
      `     WHERE NOT EXISTS (SELECT 1 FROM ${outbox} AS ${q('__sc_o')} WHERE ${q('__sc_o')}.product = ${q('__sc_marks')}.p\n` +
      `                         AND ${q('__sc_o')}.xmin = (txid_current() % 4294967296)::text::xid);`
    return [
      `-- stockcast change capture v${POSTGRES_CAPTURE_VERSION} for ${t.table}: generated by install(), compared by verify(); do not edit.`,
      'BEGIN',
      "  IF TG_OP = 'INSERT' THEN",
      insert([NEW_ROWS]),
      "  ELSIF TG_OP = 'UPDATE' THEN",
      insert([NEW_ROWS, OLD_ROWS]),
      "  ELSIF TG_OP = 'DELETE' THEN",
      insert([OLD_ROWS]),
      '  ELSE',
      '    -- TRUNCATE (a BEFORE trigger): the rows are still there.',
      insert([t.resolved.qualified]),
      '  END IF;',
      '  IF FOUND THEN',
      `    PERFORM pg_notify(${lit(this.#channel)}, '');`,
      '  END IF;',
      '  RETURN NULL;',
      'END',
    ].join('\n')
  }

  #functionDdl(t: TablePlan, searchPath: string): string {
    let tag = '$stockcast$'
    for (let i = 1; t.body.includes(tag); i++) tag = `$stockcast${i}$`
    // SECURITY DEFINER: writers need no rights on the outbox; a fixed search_path (pg_temp last) makes the related
    // queries resolve as at install time, whatever the writer's search_path.
    return (
      `CREATE OR REPLACE FUNCTION ${t.fnQualified}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER ` +
      `SET search_path = ${searchPath} AS ${tag}${t.body}${tag}`
    )
  }

  #triggerDdl(t: TablePlan, tr: TriggerPlan): string {
    const when = tr.op === 'TRUNCATE' ? 'BEFORE TRUNCATE' : `AFTER ${tr.op}`
    const refs: string[] = []
    if (tr.oldTable !== null) refs.push(`OLD TABLE AS ${q(tr.oldTable)}`)
    if (tr.newTable !== null) refs.push(`NEW TABLE AS ${q(tr.newTable)}`)
    const referencing = refs.length === 0 ? '' : ` REFERENCING ${refs.join(' ')}`
    return `CREATE TRIGGER ${q(tr.name)} ${when} ON ${t.resolved.qualified}${referencing} FOR EACH STATEMENT EXECUTE FUNCTION ${t.fnQualified}()`
  }

  // ------------------------------------------------------------------ inspect

  async #inspect(
    plan: Plan,
    missingTables: readonly string[],
  ): Promise<{
    report: VerifyReport
    extraTriggers: Array<{ name: string; qualified: string }>
    extraFunctions: string[]
  }> {
    const schemaName = plan.objectSchema
    const outbox = this.#outbox(schemaName)
    const meta = this.#meta(schemaName)
    const [exists] = await this.db.query<{ outbox: boolean; meta: boolean }>(
      'SELECT to_regclass($1) IS NOT NULL AS outbox, to_regclass($2) IS NOT NULL AS meta',
      [outbox, meta],
    )
    const missing: string[] = missingTables.map((t) => `table ${t} (named by the schema)`)
    const outdated: string[] = []
    const extra: string[] = []
    if (!exists?.outbox) missing.push(`table ${outbox}`)
    else {
      const layout = await this.#outboxLayout(schemaName)
      if (!layout.current) {
        outdated.push(
          `table ${outbox}: the layout of version 1 (${layout.problems.join(', ')}); install() migrates it, keeping its rows`,
        )
      }
    }
    let installedVersion: number | null = null
    if (exists?.meta) {
      const rows = await this.db.query<{ value: string }>(`SELECT value FROM ${meta} WHERE key = 'version'`)
      if (rows[0] !== undefined) installedVersion = Number(rows[0].value)
    } else missing.push(`table ${meta}`)
    if (installedVersion !== null && installedVersion !== POSTGRES_CAPTURE_VERSION) {
      outdated.push(`version ${installedVersion} installed, ${POSTGRES_CAPTURE_VERSION} expected`)
    }
    const fnPrefix = this.#fnPrefix()
    const functions = await this.db.query<{
      proname: string
      prosrc: string
      prosecdef: boolean
      proconfig: string[] | null
    }>(
      `SELECT p.proname::text AS proname, p.prosrc, p.prosecdef, p.proconfig
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = $1 AND left(p.proname, $2) = $3`,
      [schemaName, fnPrefix.length, fnPrefix],
    )
    const fnByName = new Map(functions.map((f) => [f.proname, f]))
    const trPrefix = this.#triggerPrefix()
    const triggers = await this.db.query<{
      tgname: string
      rel: string
      relid: unknown
      tgtype: unknown
      tgenabled: string
      tgnewtable: string | null
      tgoldtable: string | null
      proname: string
      nspname: string
    }>(
      `SELECT t.tgname::text AS tgname, format('%I.%I', rn.nspname, c.relname) AS rel, t.tgrelid::bigint AS relid,
              t.tgtype::int AS tgtype, t.tgenabled::text AS tgenabled, t.tgnewtable::text AS tgnewtable,
              t.tgoldtable::text AS tgoldtable, p.proname::text AS proname, n.nspname::text AS nspname
         FROM pg_trigger t
         JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace rn ON rn.oid = c.relnamespace
         JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE NOT t.tgisinternal AND left(t.tgname, $1) = $2`,
      [trPrefix.length, trPrefix],
    )
    // A table that went missing still has its function: not an extra, the table is what is reported missing.
    const expectedFns = new Set<string>(missingTables.map((t) => this.#fnName(t)))
    const expectedTriggers = new Set<string>()
    for (const t of plan.tables) {
      expectedFns.add(t.fnName)
      const fn = fnByName.get(t.fnName)
      const fnLabel = `function ${t.fnQualified}()`
      if (fn === undefined) missing.push(fnLabel)
      else if (fn.prosrc !== t.body) outdated.push(`${fnLabel}: body differs`)
      else if (!fn.prosecdef || !(fn.proconfig ?? []).some((c) => c.startsWith('search_path='))) {
        outdated.push(`${fnLabel}: not SECURITY DEFINER with a fixed search_path`)
      }
      for (const tr of t.triggers) {
        expectedTriggers.add(`${t.resolved.oid}/${tr.name}`)
        const label = `trigger ${tr.name} on ${t.resolved.qualified}`
        const found = triggers.find((x) => String(x.relid) === t.resolved.oid && x.tgname === tr.name)
        if (found === undefined) missing.push(label)
        else if (
          Number(found.tgtype) !== tr.tgtype ||
          found.tgnewtable !== tr.newTable ||
          found.tgoldtable !== tr.oldTable ||
          found.proname !== t.fnName ||
          found.nspname !== schemaName
        ) {
          outdated.push(`${label}: definition differs`)
        } else if (found.tgenabled === 'D') outdated.push(`${label}: disabled`)
      }
    }
    const extraTriggers: Array<{ name: string; qualified: string }> = []
    for (const x of triggers) {
      if (expectedTriggers.has(`${String(x.relid)}/${x.tgname}`)) continue
      // Ours only: named with our prefix and calling one of our functions.
      if (x.nspname !== schemaName || !x.proname.startsWith(fnPrefix)) continue
      extraTriggers.push({ name: x.tgname, qualified: x.rel })
      extra.push(`trigger ${x.tgname} on ${x.rel}`)
    }
    const extraFunctions: string[] = []
    for (const f of functions) {
      if (expectedFns.has(f.proname)) continue
      extraFunctions.push(f.proname)
      extra.push(`function ${q(schemaName)}.${q(f.proname)}()`)
    }
    const ok =
      missing.length === 0 &&
      outdated.length === 0 &&
      extra.length === 0 &&
      installedVersion === POSTGRES_CAPTURE_VERSION
    return {
      report: { ok, installedVersion, expectedVersion: POSTGRES_CAPTURE_VERSION, missing, extra, outdated },
      extraTriggers,
      extraFunctions,
    }
  }

  /** Whether the outbox has the layout of this version: lease columns, a hash index on product, no btree one. */
  async #outboxLayout(schemaName: string): Promise<{ current: boolean; problems: string[] }> {
    const [r] = await this.db.query<{ owner: boolean; until: boolean; hash: boolean; old: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'lease_owner' AND NOT attisdropped) AS owner,
              EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'lease_until' AND NOT attisdropped) AS until,
              EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
                       WHERE i.indrelid = to_regclass($1) AND c.relname = $2 AND am.amname = 'hash') AS hash,
              to_regclass($3) IS NOT NULL AS old`,
      [this.#outbox(schemaName), this.#productIndex(), this.#oldProductIndex(schemaName)],
    )
    const problems: string[] = []
    if (!r?.owner || !r.until) problems.push('no lease columns')
    if (!r?.hash) problems.push('no hash index on product')
    if (r?.old) problems.push('a btree index on product, which refuses values over about 2.7 kB')
    return { current: problems.length === 0, problems }
  }

  /**
   * Run `fn` in a transaction that first locks `tables` (the outbox first, then the source tables, each at most
   * DDL_LOCK_WAIT_MS): when a lock is not granted in time the transaction lets go of everything and is retried with
   * backoff until DDL_DEADLINE_MS. DDL never waits for long while holding locks: a listener of an older version, whose
   * claim keeps a transaction on the outbox open while its reader reads the source tables, finishes its batch instead
   * of queueing behind this DDL (a deadlock across connections that PostgreSQL cannot see), and writers never queue
   * behind it for long.
   */
  async #ddl(what: string, tables: (tx: SqlDb) => Promise<string[]>, fn: (tx: SqlDb) => Promise<void>): Promise<void> {
    const schemaName = await this.#schemaName()
    const started = this.#o.clock.now()
    for (let attempt = 0; ; attempt++) {
      try {
        await this.db.transaction(async (tx) => {
          await tx.execute(`SET LOCAL lock_timeout = '${DDL_LOCK_WAIT_MS}ms'`)
          // Two processes installing at once take turns.
          await tx.query('SELECT pg_advisory_xact_lock(hashtext($1)) AS locked', [
            `stockcast install ${schemaName}.${this.#o.prefix}`,
          ])
          const list = await tables(tx)
          if (list.length > 0) {
            // One statement, bounded as a whole: all or none of the locks.
            await tx.execute(`SET LOCAL statement_timeout = '${DDL_LOCK_WAIT_MS}ms'`)
            await tx.execute(`LOCK TABLE ${list.join(', ')} IN ACCESS EXCLUSIVE MODE`)
            await tx.execute('SET LOCAL statement_timeout = 0')
          }
          await fn(tx)
        })
        return
      } catch (cause) {
        const code = (cause as { code?: unknown })?.code
        if (typeof code !== 'string' || !LOCK_GAVE_UP.has(code)) throw cause
        if (this.#o.clock.now() - started >= DDL_DEADLINE_MS) {
          throw new StockcastError(
            `${what}: the outbox and source tables stayed locked by other sessions for ${DDL_DEADLINE_MS} ms (last: ${(cause as Error).message}); nothing was changed`,
            { cause },
          )
        }
        await new Promise<void>((r) => this.#o.timers.setTimeout(r, backoffDelay(attempt, 50, 2000)))
      }
    }
  }

  // ------------------------------------------------------------------ public

  async install(): Promise<void> {
    // Validation first: a bad table, column or related query throws before any DDL runs.
    const { plan } = await this.#plan(true)
    const { report, extraTriggers, extraFunctions } = await this.#inspect(plan, [])
    if (report.ok) return // already installed as this version would: no DDL, no table locks
    // The function's fixed search_path: the installing session's schemas (the related queries were checked with
    // it), the objects' schema, then pg_temp.
    const schemas = (
      await this.db.query<{ s: string }>(
        'SELECT quote_ident(s) AS s FROM unnest(current_schemas(false)) WITH ORDINALITY AS x(s, n) ORDER BY n',
      )
    ).map((r) => r.s)
    const [own] = await this.db.query<{ s: string }>('SELECT quote_ident($1) AS s', [plan.objectSchema])
    if (own !== undefined && !schemas.includes(own.s)) schemas.push(own.s)
    const objectSchema = q(plan.objectSchema)
    const searchPath = [...schemas, 'pg_temp'].join(', ')
    const outbox = this.#outbox(plan.objectSchema)
    const meta = this.#meta(plan.objectSchema)
    // Locks: the outbox first (an older listener holds it while its reader reads the source tables), then every table
    // whose triggers change.
    const sourceTables = [
      ...new Set([...plan.tables.map((t) => t.resolved.qualified), ...extraTriggers.map((x) => x.qualified)]),
    ]
    await this.#ddl(
      'install',
      async (tx) => [...((await this.#exists(tx, outbox)) ? [outbox] : []), ...sourceTables.sort()],
      async (tx) => {
        await tx.execute(
          `CREATE TABLE IF NOT EXISTS ${outbox} (
             id bigserial PRIMARY KEY,
             product text NOT NULL,
             source_table text,
             created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
             lease_owner text,
             lease_until timestamptz
           )`,
        )
        // An outbox of version 1 keeps its rows: lease columns added (its rows are unleased: claimable).
        await tx.execute(
          `ALTER TABLE ${outbox} ADD COLUMN IF NOT EXISTS lease_owner text, ADD COLUMN IF NOT EXISTS lease_until timestamptz`,
        )
        // A hash index: any product the source column accepts fits (a btree entry refuses values over ~2.7 kB, and
        // the writer's insert with it). Claims, deletes and pending() look products up by equality only.
        await tx.execute(`DROP INDEX IF EXISTS ${this.#oldProductIndex(plan.objectSchema)}`)
        await tx.execute(`CREATE INDEX IF NOT EXISTS ${q(this.#productIndex())} ON ${outbox} USING hash (product)`)
        await tx.execute(`CREATE TABLE IF NOT EXISTS ${meta} (key text PRIMARY KEY, value text NOT NULL)`)
        for (const x of extraTriggers) await tx.execute(`DROP TRIGGER IF EXISTS ${q(x.name)} ON ${x.qualified}`)
        for (const f of extraFunctions) await tx.execute(`DROP FUNCTION IF EXISTS ${objectSchema}.${q(f)}()`)
        for (const t of plan.tables) {
          await tx.execute(this.#functionDdl(t, searchPath))
          for (const tr of t.triggers) {
            await tx.execute(`DROP TRIGGER IF EXISTS ${q(tr.name)} ON ${t.resolved.qualified}`)
            await tx.execute(this.#triggerDdl(t, tr))
          }
        }
        await tx.execute(
          `INSERT INTO ${meta} (key, value) VALUES ('version', $1), ('installed_at', clock_timestamp()::text)
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
          [String(POSTGRES_CAPTURE_VERSION)],
        )
      },
    )
  }

  /** Whether `table` exists (through `db`: on PGlite, inside a transaction, the instance itself would wait for it). */
  async #exists(db: SqlDb, table: string): Promise<boolean> {
    const [row] = await db.query<{ found: boolean }>('SELECT to_regclass($1) IS NOT NULL AS found', [table])
    return row?.found === true
  }

  async uninstall(): Promise<void> {
    const schemaName = await this.#schemaName()
    const fnPrefix = this.#fnPrefix()
    const outbox = this.#outbox(schemaName)
    // Every trigger that calls one of our functions, wherever it is (tables since removed from the schema too).
    let triggers: Array<{ tgname: string; rel: string }> = []
    await this.#ddl(
      'uninstall',
      async (tx) => {
        triggers = await tx.query<{ tgname: string; rel: string }>(
          `SELECT t.tgname::text AS tgname, format('%I.%I', rn.nspname, c.relname) AS rel
             FROM pg_trigger t
             JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace rn ON rn.oid = c.relnamespace
             JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE NOT t.tgisinternal AND n.nspname = $1 AND left(p.proname, $2) = $3`,
          [schemaName, fnPrefix.length, fnPrefix],
        )
        return [
          ...((await this.#exists(tx, outbox)) ? [outbox] : []),
          ...[...new Set(triggers.map((t) => t.rel))].sort(),
        ]
      },
      async (tx) => {
        for (const t of triggers) await tx.execute(`DROP TRIGGER IF EXISTS ${q(t.tgname)} ON ${t.rel}`)
        const functions = await tx.query<{ proname: string }>(
          `SELECT p.proname::text AS proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = $1 AND left(p.proname, $2) = $3`,
          [schemaName, fnPrefix.length, fnPrefix],
        )
        for (const f of functions) await tx.execute(`DROP FUNCTION IF EXISTS ${q(schemaName)}.${q(f.proname)}()`)
        await tx.execute(`DROP TABLE IF EXISTS ${outbox}`)
        await tx.execute(`DROP TABLE IF EXISTS ${this.#meta(schemaName)}`)
      },
    )
  }

  async verify(): Promise<VerifyReport> {
    const { plan, missingTables } = await this.#plan(false)
    return (await this.#inspect(plan, missingTables)).report
  }

  async pending(products: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>()
    if (products.length === 0) return out
    // By the hash index on product (leased rows too: they are not processed yet).
    const rows = await this.db.query<{ product: string; v: unknown }>(
      `SELECT product, max(id) AS v FROM ${this.#outbox(await this.#schemaName())} WHERE product = ANY($1::text[]) GROUP BY product`,
      [products],
    )
    for (const r of rows) out.set(String(r.product), Number(r.v))
    return out
  }

  async listen(cache: StockCache): Promise<OutboxListener> {
    if (cache === null || typeof cache !== 'object' || typeof cache.markDirty !== 'function') {
      throw new ConfigError('listen: expects a stock cache from createStockCache(...)', { option: 'cache' })
    }
    const schemaName = await this.#schemaName()
    const outbox = this.#outbox(schemaName)
    if (!(await this.#exists(this.db, outbox))) {
      throw new ConfigError(`listen: the outbox ${outbox} does not exist: call install() first`, { option: 'outbox' })
    }
    const layout = await this.#outboxLayout(schemaName)
    if (!layout.current) {
      throw new ConfigError(
        `listen: the outbox ${outbox} has the layout of an older version (${layout.problems.join(', ')}): call install() to migrate it`,
        { option: 'outbox' },
      )
    }
    const consumer = await startListener(this.db, await this.#outboxDialect(), cache, {
      name: `sql outbox ${outbox}`,
      batchSize: this.#o.batchSize,
      scanMs: this.#o.scanMs,
      leaseMs: this.#o.leaseMs,
      clock: this.#o.clock,
      timers: this.#o.timers,
    })
    return asListener(consumer)
  }

  async bulkImport<T>(cache: StockCache, fn: (session: SqlDb) => Promise<T>): Promise<T> {
    if (typeof fn !== 'function') throw new InvalidInputError('bulkImport expects a function (session) => Promise')
    if (cache === null || typeof cache !== 'object' || typeof cache.disableCacheTemporarily !== 'function') {
      throw new ConfigError('bulkImport: expects a stock cache from createStockCache(...)', { option: 'cache' })
    }
    // Statement triggers already cost little per row (one outbox row per product per statement): the session needs
    // no setting. The cache only collects marks meanwhile; when fn returns, it asks its listeners to catch up (the
    // import's rows are marked and held), recomputes every touched product once, then the listeners delete the held
    // rows without a second recompute (MarkSource.catchUp / afterBulk).
    return cache.disableCacheTemporarily(() => this.db.session(fn))
  }
}
