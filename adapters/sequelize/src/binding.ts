import type { SqlDialect } from '@stockcast/sql'
import { rewriteNamedParams } from '@stockcast/sql'
import { ConfigError, capturePlan, type StockSchema } from 'stockcast'
import type { SequelizeModelLike } from './types.js'

/** A `related` declaration as one model sees it: its `:params` as the model's attribute names. */
export interface RelatedPlan {
  readonly table: string
  /** The declared query. */
  readonly products: string
  /** Parameter names, in order of first use. */
  readonly params: readonly string[]
  /** The attribute holding each parameter (same order). */
  readonly attrs: readonly string[]
  /**
   * True when the query may find rows for NULL parameters (it mentions IS NULL, COALESCE, `<=>`...). Otherwise a
   * change whose parameters are all NULL finds nothing (`col = NULL` is never true) and the query is skipped.
   */
  readonly nullTolerant: boolean
}

const NULL_TOLERANT = /\bIS\s+(?:NOT\s+)?(?:NULL|DISTINCT)\b|\b(?:COALESCE|IFNULL|NULLIF|NVL|ISNULL)\b|<=>/i

/** What a change to one declared table means, for one model. */
export interface BindingPart {
  /** The table as the schema declares it (the mark's reason). */
  readonly table: string
  /** Attributes holding product ids (one per source of the table, deduplicated). */
  readonly productAttrs: readonly string[]
  readonly related: readonly RelatedPlan[]
}

/** A model whose table the schema names. */
export interface Binding {
  readonly model: SequelizeModelLike
  readonly parts: readonly BindingPart[]
  /** Attributes a change must know, old and new: products and related parameters. */
  readonly lookupAttrs: readonly string[]
  /** Their columns (GROUP BY of lookups). */
  readonly lookupFields: readonly string[]
  /** Primary key attributes (empty when the model has none). */
  readonly pkAttrs: readonly string[]
  /** Primary and unique keys (attribute lists): what an upsert or `updateOnDuplicate` can conflict on. */
  readonly keys: readonly (readonly string[])[]
  /** True when only product columns matter (no related table): the fast path of bulk inserts. */
  readonly simple: boolean
}

/** `{ schema, name }` of a declared table (`inventory.stock_movements` or `stock_movements`). */
function splitTable(table: string): { schema: string | null; name: string } {
  const i = table.indexOf('.')
  return i < 0 ? { schema: null, name: table } : { schema: table.slice(0, i), name: table.slice(i + 1) }
}

/** The table of a model: its name and schema (null when none is set). */
export function modelTable(model: SequelizeModelLike): { schema: string | null; name: string } {
  const t = model.getTableName()
  if (typeof t === 'string') return { schema: null, name: t }
  return { schema: t.schema ?? null, name: t.tableName }
}

/**
 * The declared tables a model stands for. A qualified declaration matches a model with that schema; an unqualified
 * one matches by name whatever the model's schema (the search_path decides in the database; over-marking is safe).
 * MySQL compares names case-insensitively.
 */
function declaredTablesOf(model: SequelizeModelLike, schema: StockSchema, dialect: SqlDialect): string[] {
  const { schema: ms, name } = modelTable(model)
  const fold = (s: string | null) => (s === null ? null : dialect === 'mysql' ? s.toLowerCase() : s)
  const declared = capturePlan(schema).keys()
  const exact: string[] = []
  const loose: string[] = []
  for (const table of declared) {
    const d = splitTable(table)
    if (fold(d.name) !== fold(name)) continue
    if (d.schema === null) loose.push(table)
    else if (fold(d.schema) === fold(ms)) exact.push(table)
  }
  return [...exact, ...loose]
}

/** Attribute name by column name (`field`), for a model. */
function attributesByField(model: SequelizeModelLike): Map<string, string> {
  const out = new Map<string, string>()
  for (const [attr, def] of Object.entries(model.rawAttributes ?? {})) out.set(def?.field ?? attr, attr)
  return out
}

/** Primary and unique keys of a model, as attribute lists. */
function keysOf(model: SequelizeModelLike, byField: Map<string, string>): { pk: string[]; keys: string[][] } {
  const attrs = model.rawAttributes ?? {}
  const pk = [...(model.primaryKeyAttributes ?? Object.keys(attrs).filter((a) => attrs[a]?.primaryKey))]
  const keys: string[][] = []
  const add = (k: readonly string[]) => {
    if (k.length === 0 || k.some((a) => attrs[a] === undefined)) return
    const id = [...k].sort().join('\u0000')
    if (!keys.some((x) => [...x].sort().join('\u0000') === id)) keys.push([...k])
  }
  add(pk)
  const named = new Map<string, string[]>()
  for (const [attr, def] of Object.entries(attrs)) {
    const u = def?.unique
    if (u === true) add([attr])
    else if (typeof u === 'string' || (typeof u === 'object' && u !== null)) {
      const name = typeof u === 'string' ? u : (u.name ?? attr)
      named.set(name, [...(named.get(name) ?? []), attr])
    }
  }
  for (const k of named.values()) add(k)
  for (const u of Object.values(model.uniqueKeys ?? {})) {
    add((u?.fields ?? []).map((f) => byField.get(f) ?? f))
  }
  const indexes = (model as { _indexes?: Array<{ unique?: boolean; fields?: unknown[] }> })._indexes ?? []
  for (const ix of indexes) {
    if (!ix?.unique || !Array.isArray(ix.fields)) continue
    const fields = ix.fields.map((f) =>
      typeof f === 'string'
        ? f
        : ((f as { name?: string; attribute?: string })?.name ?? (f as { attribute?: string })?.attribute),
    )
    if (fields.every((f): f is string => typeof f === 'string')) add(fields.map((f) => byField.get(f) ?? f))
  }
  return { pk, keys }
}

/**
 * How a model's writes map to marks, or null when the schema does not name its table. Columns are found through
 * each attribute's `field`; a column the schema needs that the model has no attribute for is a `ConfigError`.
 */
export function bindModel(model: SequelizeModelLike, schema: StockSchema, dialect: SqlDialect): Binding | null {
  if (typeof (model as unknown) !== 'function' || typeof model.getTableName !== 'function') return null
  const tables = declaredTablesOf(model, schema, dialect)
  if (tables.length === 0) return null
  const byField = attributesByField(model)
  const attrOf = (column: string, what: string, table: string): string => {
    const exact = byField.get(column)
    if (exact !== undefined) return exact
    if (dialect === 'mysql') {
      for (const [f, a] of byField) if (f.toLowerCase() === column.toLowerCase()) return a
    }
    throw new ConfigError(
      `attachSequelize: model ${model.name} (table ${table}) has no attribute for column "${column}" (${what}); ` +
        `declare it, e.g. { ${column}: { type: ..., field: '${column}' } }, so its writes can be captured`,
      { option: 'schema', source: table },
    )
  }
  const parts: BindingPart[] = []
  const lookup: string[] = []
  const use = (a: string) => {
    if (!lookup.includes(a)) lookup.push(a)
    return a
  }
  const plan = capturePlan(schema)
  for (const table of tables) {
    const captured = plan.get(table)
    const productAttrs: string[] = []
    for (const p of captured?.productColumns ?? []) {
      const a = use(attrOf(p.column, `the product column of source "${p.sources[0]}"`, table))
      if (!productAttrs.includes(a)) productAttrs.push(a)
    }
    const related: RelatedPlan[] = []
    for (const r of captured?.related ?? []) {
      const params = rewriteNamedParams(dialect, r.products, () => '').params
      const attrs = params.map((p) => use(attrOf(p, `the :${p} parameter of its related query`, table)))
      related.push({ table, products: r.products, params, attrs, nullTolerant: NULL_TOLERANT.test(r.products) })
    }
    parts.push({ table, productAttrs, related })
  }
  const { pk, keys } = keysOf(model, byField)
  const fieldOf = (a: string) => model.rawAttributes[a]?.field ?? a
  return {
    model,
    parts,
    lookupAttrs: lookup,
    lookupFields: lookup.map(fieldOf),
    pkAttrs: pk,
    keys,
    simple: parts.every((p) => p.related.length === 0),
  }
}
