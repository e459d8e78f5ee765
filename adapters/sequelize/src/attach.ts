import type { SqlDialect } from '@stockcast/sql'
import { rewriteNamedParams } from '@stockcast/sql'
import { ConfigError, KEY_SEPARATOR, type StockCache, StockcastError, type StockSchema } from 'stockcast'
import { type Binding, bindModel, modelTable, type RelatedPlan } from './binding.js'
import { dialectOf, type Runner, runner } from './connection.js'
import { TransactionMarks } from './marks.js'
import { SEEN_WRITE, watchRawWrites } from './raw-writes.js'
import { replaceMethod } from './replace.js'
import { RETURNING_ROWS, ReturningRows, returnRowsOfBulkWrites } from './returning.js'
import type { SequelizeLike, SequelizeModelLike, SequelizeTransactionLike } from './types.js'

export interface AttachSequelizeOptions {
  /**
   * Warn once per table (process warning `STOCKCAST_SEQUELIZE_RAW_WRITE`) when SQL that no model hook sees writes to
   * a schema table (`sequelize.query`, `queryInterface.bulkInsert`, `hooks: false`). Turn it off when the SQL
   * adapter's triggers capture those writes. Wraps `sequelize.query` while attached (on PostgreSQL it is wrapped
   * either way: bulk UPDATE/DELETE statements get a RETURNING clause for the products they change).
   * @default true
   */
  warnRawWrites?: boolean
}

/** Stops the capture: removes the hooks and every wrapper `attachSequelize` installed. Idempotent. */
export type DetachSequelize = () => void

type Row = Record<string, unknown>
type HookOptions = Record<string | symbol, any>
interface InstanceLike {
  dataValues?: Row
  _previousDataValues?: Row
  constructor: unknown
}

/** Rows per lookup by key (`upsert`, `updateOnDuplicate`, re-reads by primary key). */
const KEY_CHUNK = 500
/** Parameter sets per related-products query (`UNION ALL` of the declared query). */
const RELATED_CHUNK = 100

let attachments = 0

/** The warning code of a model defined after `attachSequelize` that maps a schema table but misses a column. */
export const UNMAPPED_MODEL_WARNING = 'STOCKCAST_SEQUELIZE_UNMAPPED_MODEL'

/** A product id from a column value: strings as they are, numbers and bigints as text; nothing for the rest. */
function productOf(v: unknown): string | undefined {
  let s: string
  if (typeof v === 'string') s = v
  else if (typeof v === 'number' || typeof v === 'bigint') s = String(v)
  else return undefined
  return s === '' || s.includes(KEY_SEPARATOR) ? undefined : s
}

/** A value the database stores as given (not `fn`, `col`, `literal`: those are computed by the statement). */
function isPlain(v: unknown): boolean {
  return v === null || typeof v !== 'object' || v instanceof Date || Buffer.isBuffer(v)
}

function tupleKey(values: readonly unknown[]): string {
  return values
    .map((v) => (v === null ? '\u0000n' : `${typeof v}:${v instanceof Date ? v.toISOString() : String(v)}`))
    .join('\u0001')
}

function pick(row: Row | undefined, attrs: readonly string[]): Row {
  const out: Row = {}
  if (row === undefined || row === null) return out
  for (const a of attrs) if (row[a] !== undefined) out[a] = row[a]
  return out
}

/** What one write changed, for one model: products per declared table and parameter sets per related query. */
class Changes {
  readonly binding: Binding
  readonly products: Set<string>[]
  readonly tuples: Map<string, unknown[]>[][]

  constructor(binding: Binding) {
    this.binding = binding
    this.products = binding.parts.map(() => new Set<string>())
    this.tuples = binding.parts.map((p) => p.related.map(() => new Map<string, unknown[]>()))
  }

  add(row: Row | undefined | null): void {
    if (row === undefined || row === null) return
    const parts = this.binding.parts
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!
      for (const a of part.productAttrs) {
        const p = productOf(row[a])
        if (p !== undefined) this.products[i]!.add(p)
      }
      for (let j = 0; j < part.related.length; j++) {
        const rel = part.related[j]!
        const values = rel.attrs.map((a) => row[a] ?? null)
        if (!values.every(isPlain)) continue
        // `col = NULL` finds nothing: a row whose parameters are all NULL needs no query (unless the query is
        // written to match NULLs).
        if (!rel.nullTolerant && values.every((v) => v === null)) continue
        this.tuples[i]![j]!.set(tupleKey(values), values)
      }
    }
  }
}

/**
 * Capture the writes your Sequelize models make: every model whose table the schema names (matched by table name,
 * columns through each attribute's `field`) marks the products it changes, after commit when it writes in a
 * transaction (explicit or CLS; savepoints included), at once otherwise. Covers `create`, `save`/`update`, `destroy`
 * and `restore` (paranoid models too), `upsert`, `bulkCreate`, `Model.update`/`Model.destroy`/`Model.restore` with
 * a `where` (on PostgreSQL the statement returns the affected products; otherwise they are looked up before it, in
 * its transaction; `individualHooks` is never forced), `increment`/`decrement` and `truncate`. A key change marks the
 * old and the new product; a change to a `related` table marks what its query finds. A write that fails marks
 * nothing.
 *
 * Not captured: raw `sequelize.query` writes, calls with `hooks: false`, database cascades and other services:
 * install the SQL adapter's triggers for those (both together are fine: marks coalesce).
 *
 * @example
 * ```ts
 * const cache = createStockCache({ schema, reader: sequelizeReader(sequelize, schema), store: sequelizeStore(sequelize) })
 * const detach = attachSequelize(sequelize, cache, schema)
 * ```
 */
export function attachSequelize(
  sequelize: SequelizeLike,
  cache: StockCache,
  schema: StockSchema,
  options: AttachSequelizeOptions = {},
): DetachSequelize {
  if (
    sequelize === null ||
    typeof sequelize !== 'object' ||
    typeof sequelize.addHook !== 'function' ||
    typeof sequelize.removeHook !== 'function'
  ) {
    throw new ConfigError('attachSequelize: sequelize must be a Sequelize v6 instance', { option: 'sequelize' })
  }
  if (cache === null || typeof cache !== 'object' || typeof cache.markDirty !== 'function') {
    throw new ConfigError('attachSequelize: cache must come from createStockCache(...)', { option: 'cache' })
  }
  if (schema === null || typeof schema !== 'object' || typeof schema.sourcesForTable !== 'function') {
    throw new ConfigError('attachSequelize: schema must come from defineStockSchema(...)', { option: 'schema' })
  }
  if (options.warnRawWrites !== undefined && typeof options.warnRawWrites !== 'boolean') {
    throw new ConfigError('attachSequelize: warnRawWrites must be a boolean', { option: 'warnRawWrites' })
  }
  const dialect: SqlDialect = dialectOf(sequelize)
  const run: Runner = runner(sequelize, dialect, {})
  const marks = new TransactionMarks(cache)
  // PostgreSQL ends bulk UPDATE/DELETE with RETURNING: no SELECT before them (see returning.ts).
  const useReturning = dialect === 'postgres'
  const tag = `stockcast-${++attachments}`
  const undo: Array<() => void> = []
  const Sequelize = (sequelize as { constructor?: unknown }).constructor as {
    _cls?: { get(key: string): unknown }
    Op?: { or?: symbol }
  }
  const OR: symbol = Sequelize?.Op?.or ?? Symbol.for('or')

  const bindings = new WeakMap<object, Binding | null>()
  const bindingOf = (model: unknown): Binding | null => {
    if (typeof model !== 'function') return null
    let b = bindings.get(model)
    if (b === undefined) {
      // `Model.scope(...)` makes a subclass on every call: reuse the binding of the model it extends.
      const parent = Object.getPrototypeOf(model) as unknown
      const inherited = typeof parent === 'function' ? bindings.get(parent) : undefined
      b =
        inherited !== undefined && sameTable(parent, model)
          ? inherited
          : bindModel(model as unknown as SequelizeModelLike, schema, dialect)
      bindings.set(model, b)
    }
    return b
  }

  /** The transaction a write runs in: the one passed (null: none), else the CLS one. */
  const txOf = (o: HookOptions | undefined): SequelizeTransactionLike | null => {
    const t = o?.transaction
    if (t !== undefined) return t ?? null
    return (Sequelize?._cls?.get('transaction') as SequelizeTransactionLike | undefined) ?? null
  }

  // ---------------------------------------------------------------- lookups (in the write's transaction)

  // Unscoped: the statement's where already holds its scope (update, destroy) or ignores scopes (restore). Made once
  // per model: Sequelize builds a subclass on every unscoped() call.
  const unscoped = new WeakMap<object, SequelizeModelLike>()
  const findRows = async (
    b: Binding,
    where: unknown,
    o: HookOptions | undefined,
    attrs: readonly string[],
    distinct: boolean,
  ): Promise<Row[]> => {
    let model = unscoped.get(b.model)
    if (model === undefined) {
      model = typeof b.model.unscoped === 'function' ? b.model.unscoped() : b.model
      unscoped.set(b.model, model)
    }
    // One row at most (the primary key given as values): no GROUP BY needed.
    if (distinct && b.pkAttrs.length > 0 && isPlainObject(where)) {
      const w = where as Row
      if (b.pkAttrs.every((a) => ['string', 'number', 'bigint'].includes(typeof w[a]))) distinct = false
    }
    const q: Record<string, unknown> = {
      attributes: [...attrs],
      raw: true,
      paranoid: false,
      hooks: false,
      useMaster: true,
      transaction: o?.transaction,
    }
    if (where !== undefined && where !== null) q.where = where
    if (distinct) q.group = attrs.map((a) => b.model.rawAttributes[a]?.field ?? a)
    if (o?.logging !== undefined) q.logging = o.logging
    try {
      return (await model.findAll(q)) as Row[]
    } catch (cause) {
      throw new StockcastError(
        `attachSequelize: looking up the products a ${b.model.name} write changes failed: ${messageOf(cause)}; ` +
          'the write was not run',
        { source: b.parts[0]?.table, cause },
      )
    }
  }

  const byKeys = async (b: Binding, rows: readonly Row[], keys: readonly (readonly string[])[], o: HookOptions) => {
    const conditions: Row[] = []
    const seen = new Set<string>()
    for (const r of rows) {
      for (const k of keys) {
        if (!k.every((a) => r[a] !== undefined && r[a] !== null && isPlain(r[a]))) continue
        const id = tupleKey(k.map((a) => r[a]))
        if (seen.has(`${k.join(',')}|${id}`)) continue
        seen.add(`${k.join(',')}|${id}`)
        conditions.push(Object.fromEntries(k.map((a) => [a, r[a]])))
      }
    }
    const out: Row[] = []
    for (let i = 0; i < conditions.length; i += KEY_CHUNK) {
      out.push(...(await findRows(b, { [OR]: conditions.slice(i, i + KEY_CHUNK) }, o, b.lookupAttrs, true)))
    }
    return out
  }

  /** Current values of rows by primary key (after a statement that computed new values in SQL). */
  const reread = (b: Binding, rows: readonly Row[], o: HookOptions) =>
    b.pkAttrs.length === 0 ? Promise.resolve([] as Row[]) : byKeys(b, rows, [b.pkAttrs], o)

  const relatedProducts = async (
    rel: RelatedPlan,
    tuples: readonly unknown[][],
    tx: SequelizeTransactionLike | null,
  ): Promise<string[]> => {
    const found = new Set<string>()
    for (let i = 0; i < tuples.length; i += RELATED_CHUNK) {
      const chunk = tuples.slice(i, i + RELATED_CHUNK)
      const params: unknown[] = []
      const selects = chunk.map((values) => {
        const placeholder = new Map<string, string>()
        const sql = rewriteNamedParams(dialect, rel.products, (name) => {
          const value = values[rel.params.indexOf(name)] ?? null
          if (dialect === 'mysql') {
            params.push(value)
            return '?'
          }
          let ph = placeholder.get(name)
          if (ph === undefined) {
            params.push(value)
            ph = `$${params.length}`
            placeholder.set(name, ph)
          }
          return ph
        }).sql
        return chunk.length === 1 ? sql : `(${sql}\n)`
      })
      let rows: Row[]
      try {
        rows = await run.rows(selects.join(' UNION ALL '), params, tx)
      } catch (cause) {
        throw new StockcastError(
          `attachSequelize: the related query of table ${rel.table} failed: ${messageOf(cause)}; ` +
            `the products it would mark are unknown (query: ${rel.products})`,
          { source: rel.table, cause },
        )
      }
      for (const r of rows) {
        const p = productOf(Object.values(r)[0])
        if (p !== undefined) found.add(p)
      }
    }
    return [...found]
  }

  /** Mark what a write changed: source products now (or held by its transaction), related ones once queried. */
  const flush = (ch: Changes, o: HookOptions | undefined): Promise<void> | undefined => {
    const tx = txOf(o)
    let pending: Array<Promise<void>> | undefined
    ch.binding.parts.forEach((part, i) => {
      const products = ch.products[i]!
      if (products.size > 0) marks.mark(tx, [...products], { tables: [part.table] })
      part.related.forEach((rel, j) => {
        const tuples = ch.tuples[i]![j]!
        if (tuples.size === 0) return
        // Related products re-read every source (the query may feed any source's where).
        pending ??= []
        pending.push(
          relatedProducts(rel, [...tuples.values()], tx).then((found) =>
            marks.mark(tx, found, { note: `related table ${part.table}` }),
          ),
        )
      })
    })
    return pending === undefined ? undefined : Promise.all(pending).then(() => undefined)
  }

  // ---------------------------------------------------------------- hooks

  const hook = (type: string, fn: (this: unknown, ...args: any[]) => unknown) => {
    sequelize.addHook(type, tag, fn)
    undo.push(() => sequelize.removeHook(type, tag))
  }

  /** Old values of instances being updated, destroyed or restored (beforeX to afterX). */
  const before = new WeakMap<object, Row>()
  /** Rows looked up before a statement, by its options object (the same object reaches the after hook). */
  const stash = new WeakMap<object, { rows: Row[]; reread: boolean }>()

  // Checks the model before the insert: a model that cannot be captured fails its writes, not silently.
  hook('beforeCreate', function (this: unknown) {
    bindingOf(this)
  })
  hook('afterCreate', function (this: unknown, instance: InstanceLike, o: HookOptions) {
    const b = bindingOf(this)
    if (b === null) return
    const ch = new Changes(b)
    ch.add(instance.dataValues)
    return flush(ch, o)
  })

  const rememberOld = async function (this: unknown, instance: InstanceLike, o: HookOptions) {
    if (o !== null && typeof o === 'object') o[SEEN_WRITE] = true
    const b = bindingOf(this)
    if (b === null) return
    const prev = instance._previousDataValues ?? instance.dataValues ?? {}
    const old = pick(prev, b.lookupAttrs)
    // Loaded with some attributes only: read the rest of the row (in the write's transaction).
    if (b.lookupAttrs.some((a) => old[a] === undefined) && b.pkAttrs.every((a) => prev[a] != null)) {
      for (const r of await reread(b, [prev], o)) for (const a of b.lookupAttrs) if (old[a] === undefined) old[a] = r[a]
    }
    before.set(instance, old)
  }
  const markOldAndNew = async function (this: unknown, instance: InstanceLike, o: HookOptions) {
    const b = bindingOf(this)
    if (b === null) return
    const old = before.get(instance) ?? pick(instance._previousDataValues, b.lookupAttrs)
    before.delete(instance)
    const now: Row = { ...old }
    let computed = false
    for (const a of b.lookupAttrs) {
      const v = instance.dataValues?.[a]
      if (v === undefined) continue
      if (isPlain(v)) now[a] = v
      else computed = true
    }
    const ch = new Changes(b)
    ch.add(old)
    ch.add(now)
    // A value computed in SQL (fn, literal): read what the row holds now.
    if (computed) for (const r of await reread(b, [{ ...old, ...pick(instance.dataValues, b.pkAttrs) }], o)) ch.add(r)
    await flush(ch, o)
  }
  for (const t of ['Update', 'Destroy', 'Restore']) {
    hook(`before${t}`, rememberOld)
    hook(`after${t}`, markOldAndNew)
  }

  hook('beforeUpsert', async function (this: unknown, values: Row, o: HookOptions) {
    const b = bindingOf(this)
    if (b === null) return
    // The row an upsert may update can hold another product: find it by any key the values carry.
    stash.set(o, { rows: await byKeys(b, [values ?? {}], b.keys, o), reread: false })
  })
  hook('afterUpsert', function (this: unknown, result: unknown, o: HookOptions) {
    const b = bindingOf(this)
    if (b === null) return
    const instance = (Array.isArray(result) ? result[0] : result) as InstanceLike | undefined
    const ch = new Changes(b)
    ch.add(instance?.dataValues)
    for (const r of stash.get(o)?.rows ?? []) ch.add(r)
    stash.delete(o)
    return flush(ch, o)
  })

  hook('beforeBulkCreate', async function (this: unknown, instances: InstanceLike[], o: HookOptions) {
    const b = bindingOf(this)
    if (b === null || !o?.updateOnDuplicate) return
    // updateOnDuplicate: an existing row that gets updated may hold another product.
    stash.set(o, {
      rows: await byKeys(
        b,
        instances.map((i) => i.dataValues ?? {}),
        b.keys,
        o,
      ),
      reread: false,
    })
  })
  hook('afterBulkCreate', function (this: unknown, instances: InstanceLike[], o: HookOptions) {
    const b = bindingOf(this)
    if (b === null) return
    const ch = new Changes(b)
    const only = b.simple && b.parts.length === 1 && b.parts[0]!.productAttrs.length === 1
    if (only) {
      // One pass, one set: cheap next to building the instances (100 000 rows take a few ms).
      const attr = b.parts[0]!.productAttrs[0]!
      const set = ch.products[0]!
      for (let i = 0; i < instances.length; i++) {
        const p = productOf(instances[i]!.dataValues?.[attr])
        if (p !== undefined) set.add(p)
      }
    } else for (const instance of instances) ch.add(instance.dataValues)
    for (const r of stash.get(o)?.rows ?? []) ch.add(r)
    stash.delete(o)
    return flush(ch, o)
  })

  /**
   * PostgreSQL: a box the statement fills with the rows it changed (`RETURNING`), instead of a SELECT before it. Only
   * when the statement leaves the lookup attributes as they were (the rows' products then are the same before and
   * after) and the call did not ask for `returning` itself.
   */
  const returningBox = (b: Binding, o: HookOptions, where: unknown): ReturningRows | undefined => {
    if (!useReturning || o.returning) return undefined
    const box = new ReturningRows(b.lookupFields, b.lookupAttrs, () => findRows(b, where, o, b.lookupAttrs, true))
    o[RETURNING_ROWS] = box
    return box
  }
  /** The rows a box holds, or a StockcastError when the statement never reached the query wrapper. */
  const rowsOf = (b: Binding, box: ReturningRows, what: string): Row[] => {
    if (box.rows !== undefined) return box.rows
    throw new StockcastError(
      `attachSequelize: the ${what} of ${b.model.name} ran without passing its options to sequelize.query, so the ` +
        'products it changed are unknown (this Sequelize version changed how bulk statements run; please report it)',
      { source: b.parts[0]?.table },
    )
  }

  hook('beforeBulkUpdate', async function (this: unknown, o: HookOptions) {
    if (o !== null && typeof o === 'object') o[SEEN_WRITE] = true
    if (o?.individualHooks) return // Sequelize runs beforeUpdate/afterUpdate per row: they mark
    const b = bindingOf(this)
    if (b === null) return
    const set: Row = o.attributes ?? {}
    if (!b.lookupAttrs.some((a) => a in set) && returningBox(b, o, o.where) !== undefined) return
    const computed = b.lookupAttrs.some((a) => a in set && !isPlain(set[a]))
    const attrs = computed ? [...new Set([...b.lookupAttrs, ...b.pkAttrs])] : b.lookupAttrs
    stash.set(o, { rows: await findRows(b, o.where, o, attrs, !computed), reread: computed })
  })
  hook('afterBulkUpdate', async function (this: unknown, o: HookOptions) {
    const b = bindingOf(this)
    if (b === null) return
    const box = o?.[RETURNING_ROWS]
    if (box instanceof ReturningRows) {
      delete o[RETURNING_ROWS]
      // Sequelize runs no statement when nothing but `updatedAt` (or nothing) is set.
      const updatedAt = (b.model as { _timestampAttributes?: { updatedAt?: string } })._timestampAttributes?.updatedAt
      if (box.rows === undefined && Object.keys(o.attributes ?? {}).every((a) => a === updatedAt)) return
      const ch = new Changes(b)
      for (const row of rowsOf(b, box, 'update')) ch.add(row)
      return flush(ch, o)
    }
    const found = stash.get(o)
    if (found === undefined) return
    stash.delete(o)
    const set: Row = o.attributes ?? {}
    const ch = new Changes(b)
    for (const row of found.rows) {
      ch.add(row)
      const now: Row = { ...row }
      for (const a of b.lookupAttrs) if (a in set && isPlain(set[a])) now[a] = set[a]
      ch.add(now)
    }
    if (found.reread) for (const r of await reread(b, found.rows, o)) ch.add(r)
    await flush(ch, o)
  })

  for (const t of ['Destroy', 'Restore']) {
    hook(`beforeBulk${t}`, async function (this: unknown, o: HookOptions) {
      if (o !== null && typeof o === 'object') o[SEEN_WRITE] = true
      if (o?.individualHooks) return
      const b = bindingOf(this)
      if (b === null) return
      // Restore builds its statement's options anew (the box would not reach it); truncate takes no RETURNING.
      if (t === 'Destroy' && !o.truncate && returningBox(b, o, o.where) !== undefined) return
      stash.set(o, { rows: await findRows(b, o.truncate ? undefined : o.where, o, b.lookupAttrs, true), reread: false })
    })
    hook(`afterBulk${t}`, function (this: unknown, o: HookOptions) {
      const b = bindingOf(this)
      if (b === null) return
      const box = o?.[RETURNING_ROWS]
      let rows: Row[] | undefined
      if (box instanceof ReturningRows) {
        delete o[RETURNING_ROWS]
        rows = rowsOf(b, box, 'destroy')
      } else {
        rows = stash.get(o)?.rows
        stash.delete(o)
      }
      if (rows === undefined) return
      const ch = new Changes(b)
      for (const row of rows) ch.add(row)
      return flush(ch, o)
    })
  }

  // increment/decrement run no hooks in Sequelize v6: wrap the static method of each bound model.
  const patched = new WeakSet<object>()
  const patchIncrement = (model: unknown): void => {
    if (typeof model !== 'function' || patched.has(model)) return
    if (bindingOf(model) === null) return
    patched.add(model)
    const m = model as unknown as SequelizeModelLike & { increment: (...args: any[]) => Promise<unknown> }
    const original = m.increment
    const increment = async function (this: SequelizeModelLike, fields: unknown, o?: HookOptions) {
      const b = bindingOf(this)
      if (b === null) return original.call(this, fields, o)
      const opts: HookOptions = o ?? {}
      const names =
        typeof fields === 'string' ? [fields] : Array.isArray(fields) ? fields : Object.keys((fields as Row) ?? {})
      const touchesKey = names.some((n) => b.lookupAttrs.includes(n) || b.lookupFields.includes(n))
      const instance = opts.instance as InstanceLike | undefined
      const known =
        instance === undefined ? undefined : pick(instance._previousDataValues ?? instance.dataValues, b.lookupAttrs)
      let rows: Row[]
      if (known !== undefined && !touchesKey && b.lookupAttrs.every((a) => known[a] !== undefined)) rows = [known]
      else {
        const attrs = touchesKey ? [...new Set([...b.lookupAttrs, ...b.pkAttrs])] : b.lookupAttrs
        rows = await findRows(b, opts.where, opts, attrs, !touchesKey)
      }
      const result = await original.call(this, fields, o)
      const ch = new Changes(b)
      for (const r of rows) ch.add(r)
      if (touchesKey) for (const r of await reread(b, rows, opts)) ch.add(r)
      await flush(ch, opts)
      return result
    }
    undo.push(replaceMethod(m, 'increment', increment))
  }

  try {
    // Check every model defined so far (a schema column with no attribute is a ConfigError now, not a missed mark).
    for (const model of sequelize.modelManager?.models ?? []) patchIncrement(model)
    // Models defined later: checked and wrapped when they are defined. Sequelize does not await this hook, so a
    // model that cannot be captured is reported as a warning here, and its writes fail with the ConfigError.
    hook('afterDefine', (model: unknown) => {
      try {
        patchIncrement(model)
      } catch (e) {
        process.emitWarning(messageOf(e), { code: UNMAPPED_MODEL_WARNING })
      }
    })
    if (useReturning) undo.push(returnRowsOfBulkWrites(sequelize))
    if (options.warnRawWrites ?? true) {
      undo.push(watchRawWrites(sequelize, schema, (model) => bindingOf(model)?.parts[0]?.table))
    }
  } catch (e) {
    for (const u of undo.reverse()) u()
    throw e
  }

  let detached = false
  return () => {
    if (detached) return
    detached = true
    for (const u of undo.reverse()) u()
  }
}

function sameTable(a: unknown, b: unknown): boolean {
  const t = (m: unknown) => {
    const { schema, name } = modelTable(m as SequelizeModelLike)
    return `${schema ?? ''}.${name}`
  }
  try {
    return t(a) === t(b)
  } catch {
    return false
  }
}

function isPlainObject(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
