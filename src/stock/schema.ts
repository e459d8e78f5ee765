import { ConfigError } from '../errors.js'

export type SourceKind = 'onHand' | 'supply' | 'demand'

/** One table that feeds the projection, in the user's own names. */
export interface SourceDeclaration {
  /** Table name, optionally schema-qualified (`inventory.stock_movements`). */
  table: string
  /** Column that holds the product id. */
  product: string
  /** Column that holds the signed quantity. */
  quantity: string
  /** Column that holds the day (required for supply and demand; optional for on-hand movements). */
  date?: string
  /** Column that holds the location (warehouse, site); keys become (product, location). */
  location?: string
  /** SQL fragment applied when reading (change capture ignores it: every change to the table marks its product). */
  where?: string
  /** Rows feed only `closingWithPending` (drafts, quotations). */
  pending?: boolean
  /** A stable name for this source (defaults to the table, suffixed `#2`, `#3` when a table is used twice). */
  id?: string
}

/** A table whose change marks the products a SQL query finds (`:name` params come from the changed row). */
export interface RelatedDeclaration {
  table: string
  /** `SELECT product FROM ... WHERE x = :column` */
  products: string
}

export interface StockSchemaDeclaration {
  onHand: SourceDeclaration[]
  supply?: SourceDeclaration[]
  demand?: SourceDeclaration[]
  related?: RelatedDeclaration[]
}

/** A validated source: identifiers checked, id assigned. */
export interface StockSource extends Readonly<SourceDeclaration> {
  readonly id: string
  readonly kind: SourceKind
  readonly pending: boolean
}

export interface RelatedSource {
  readonly table: string
  readonly products: string
  /** The `:name` parameters of `products`, in order of first use. */
  readonly params: readonly string[]
}

/** The validated, frozen schema every adapter reads. */
export interface StockSchema {
  readonly sources: readonly StockSource[]
  readonly onHand: readonly StockSource[]
  readonly supply: readonly StockSource[]
  readonly demand: readonly StockSource[]
  readonly related: readonly RelatedSource[]
  /** Distinct tables named by sources (not related). */
  readonly tables: readonly string[]
  /** True when any source names a location column: keys are then (product, location) plus the roll-up. */
  readonly hasLocations: boolean
  /** Source ids by table, for turning a changed table into the sources to re-read. */
  sourcesForTable(table: string): readonly StockSource[]
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/
/** `:name`, not part of a `::type` cast. */
const PARAM = /(?<![:A-Za-z0-9_]):([A-Za-z_][A-Za-z0-9_]*)/g

/**
 * The SQL with string literals, quoted identifiers and comments blanked out (same length), so `:name` inside them
 * is not taken for a parameter. The adapters rewrite parameters with their dialect's own full scanner.
 */
function withoutQuotedText(sql: string): string {
  return sql.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|--[^\n]*|\/\*[\s\S]*?\*\//g, (m) =>
    ' '.repeat(m.length),
  )
}

/** True for `name` or `schema.name`, each part `[A-Za-z_][A-Za-z0-9_]*`. */
export function isSafeIdentifier(value: unknown, qualified = false): value is string {
  if (typeof value !== 'string') return false
  const parts = value.split('.')
  if (parts.length > (qualified ? 2 : 1)) return false
  return parts.every((p) => IDENT.test(p))
}

/**
 * A SQL fragment pasted into a query must stand alone: parentheses balanced and never closed before they open,
 * quotes and block comments closed, all outside string literals, quoted identifiers and comments. So
 * `1=1) OR (1=1` (which would escape the parentheses it is wrapped in) and an unclosed `/*` are refused here.
 */
export function checkFragment(sql: string, option: string): void {
  let depth = 0
  let i = 0
  const fail = (why: string): never => {
    throw new ConfigError(`${option}: ${why}, in ${JSON.stringify(sql)}`, { option })
  }
  while (i < sql.length) {
    const c = sql[i]!
    const next = sql[i + 1]
    if (c === "'" || c === '"' || c === '`') {
      const end = closingQuote(sql, i + 1, c)
      if (end < 0) fail(`unclosed ${c === "'" ? 'string literal' : 'quoted identifier'}`)
      i = end + 1
    } else if (c === '-' && next === '-') {
      const nl = sql.indexOf('\n', i)
      i = nl < 0 ? sql.length : nl + 1
    } else if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2)
      if (end < 0) fail('unclosed /* comment')
      i = end + 2
    } else {
      if (c === '(') depth++
      else if (c === ')' && --depth < 0) fail('a ")" closes a parenthesis the fragment did not open')
      i++
    }
  }
  if (depth > 0) fail(`${depth} unclosed "("`)
}

/** The index of the quote that closes one opened before `from` (a doubled quote is an escaped one), or -1. */
function closingQuote(sql: string, from: number, quote: string): number {
  let i = from
  while (i < sql.length) {
    const j = sql.indexOf(quote, i)
    if (j < 0) return -1
    if (sql[j + 1] === quote) i = j + 2
    else return j
  }
  return -1
}

function checkIdent(value: unknown, where: string, qualified = false): string {
  if (!isSafeIdentifier(value, qualified)) {
    throw new ConfigError(
      `${where} must be an identifier like ${qualified ? '"stock_movements" or "inventory.stock_movements"' : '"product_code"'} ` +
        `([A-Za-z_][A-Za-z0-9_]*), got ${JSON.stringify(value)}`,
      { option: where },
    )
  }
  return value
}

/**
 * Declare, once, which of your tables make up on-hand stock, supply and demand. Every adapter reads this.
 * Identifiers are checked here: a bad one is a `ConfigError`, never SQL built from it.
 *
 * @example
 * ```ts
 * const schema = defineStockSchema({
 *   onHand: [{ table: 'stock_movements', product: 'product_code', quantity: 'quantity' }],
 *   supply: [{ table: 'production_schedule', product: 'product_code', quantity: 'planned_qty', date: 'scheduled_for' }],
 *   demand: [{ table: 'order_lines', product: 'product_code', quantity: 'open_qty', date: 'ship_date' }],
 * })
 * ```
 */
export function defineStockSchema(declaration: StockSchemaDeclaration): StockSchema {
  if (declaration === null || typeof declaration !== 'object') {
    throw new ConfigError('defineStockSchema expects an object with onHand, supply, demand and related lists')
  }
  const known = new Set(['onHand', 'supply', 'demand', 'related'])
  for (const k of Object.keys(declaration)) {
    if (!known.has(k))
      throw new ConfigError(`defineStockSchema: unknown key "${k}" (expected onHand, supply, demand, related)`, {
        option: k,
      })
  }
  const sources: StockSource[] = []
  const ids = new Set<string>()
  const tableCount = new Map<string, number>()
  const kinds: SourceKind[] = ['onHand', 'supply', 'demand']
  for (const kind of kinds) {
    const list = declaration[kind]
    if (list === undefined) {
      if (kind === 'onHand')
        throw new ConfigError('defineStockSchema: onHand needs at least one source', { option: 'onHand' })
      continue
    }
    if (!Array.isArray(list)) throw new ConfigError(`defineStockSchema: ${kind} must be an array`, { option: kind })
    list.forEach((decl, i) => {
      const at = `${kind}[${i}]`
      if (decl === null || typeof decl !== 'object') throw new ConfigError(`${at} must be an object`, { option: at })
      const table = checkIdent(decl.table, `${at}.table`, true)
      checkIdent(decl.product, `${at}.product`)
      checkIdent(decl.quantity, `${at}.quantity`)
      if (decl.date !== undefined) checkIdent(decl.date, `${at}.date`)
      else if (kind !== 'onHand')
        throw new ConfigError(`${at}.date is required: ${kind} rows are dated`, { option: `${at}.date` })
      if (decl.location !== undefined) checkIdent(decl.location, `${at}.location`)
      if (
        decl.where !== undefined &&
        (typeof decl.where !== 'string' || decl.where.trim() === '' || decl.where.includes(';'))
      ) {
        throw new ConfigError(
          `${at}.where must be a non-empty SQL condition without ";", got ${JSON.stringify(decl.where)}`,
          { option: `${at}.where` },
        )
      }
      if (decl.where !== undefined) checkFragment(decl.where, `${at}.where`)
      if (decl.pending !== undefined && typeof decl.pending !== 'boolean')
        throw new ConfigError(`${at}.pending must be a boolean`, { option: `${at}.pending` })
      if (decl.pending && kind === 'onHand')
        throw new ConfigError(`${at}.pending: on-hand movements cannot be pending`, { option: `${at}.pending` })
      const n = (tableCount.get(table) ?? 0) + 1
      tableCount.set(table, n)
      let id = decl.id ?? (n === 1 ? table : `${table}#${n}`)
      if (decl.id !== undefined && (typeof decl.id !== 'string' || decl.id === ''))
        throw new ConfigError(`${at}.id must be a non-empty string`, { option: `${at}.id` })
      if (ids.has(id)) {
        if (decl.id !== undefined) throw new ConfigError(`${at}.id "${id}" is used twice`, { option: `${at}.id` })
        id = `${table}#${n}-${kind}`
      }
      ids.add(id)
      sources.push(Object.freeze({ ...decl, table, id, kind, pending: decl.pending ?? false }))
    })
  }
  const locs = sources.filter((s) => s.location !== undefined)
  if (locs.length > 0 && locs.length !== sources.length) {
    const missing = sources.filter((s) => s.location === undefined).map((s) => s.id)
    throw new ConfigError(
      `defineStockSchema: when one source names a location column every source must (missing on ${missing.join(', ')})`,
      { option: 'location' },
    )
  }
  const related: RelatedSource[] = []
  const relatedList = declaration.related ?? []
  if (!Array.isArray(relatedList))
    throw new ConfigError('defineStockSchema: related must be an array', { option: 'related' })
  relatedList.forEach((r, i) => {
    const at = `related[${i}]`
    const table = checkIdent(r?.table, `${at}.table`, true)
    if (typeof r.products !== 'string' || !/^\s*select\s/i.test(r.products) || r.products.includes(';')) {
      throw new ConfigError(
        `${at}.products must be one SELECT returning product ids (no ";"), got ${JSON.stringify(r.products)}`,
        { option: `${at}.products` },
      )
    }
    checkFragment(r.products, `${at}.products`)
    const params: string[] = []
    for (const m of withoutQuotedText(r.products).matchAll(PARAM)) if (!params.includes(m[1]!)) params.push(m[1]!)
    related.push(Object.freeze({ table, products: r.products, params: Object.freeze(params) }))
  })
  const byTable = new Map<string, StockSource[]>()
  for (const s of sources) byTable.set(s.table, [...(byTable.get(s.table) ?? []), s])
  const empty: readonly StockSource[] = Object.freeze([])
  return Object.freeze({
    sources: Object.freeze(sources),
    onHand: Object.freeze(sources.filter((s) => s.kind === 'onHand')),
    supply: Object.freeze(sources.filter((s) => s.kind === 'supply')),
    demand: Object.freeze(sources.filter((s) => s.kind === 'demand')),
    related: Object.freeze(related),
    tables: Object.freeze([...byTable.keys()]),
    hasLocations: locs.length > 0,
    sourcesForTable: (table: string) => byTable.get(table) ?? empty,
  })
}
