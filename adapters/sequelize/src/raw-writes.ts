import type { StockSchema } from 'stockcast'
import { INTERNAL } from './connection.js'
import { replaceMethod } from './replace.js'
import type { SequelizeLike } from './types.js'

/** Set on the options of writes the hooks saw (an instance `destroy` issues its DELETE without naming the model). */
export const SEEN_WRITE = Symbol.for('stockcast.sequelize.seenWrite')

/** Query types of the statements models write with. */
const WRITE_TYPES = new Set(['INSERT', 'UPDATE', 'BULKUPDATE', 'BULKDELETE', 'UPSERT', 'DELETE'])

/** The warning code of a raw write to a schema table. */
export const RAW_WRITE_WARNING = 'STOCKCAST_SEQUELIZE_RAW_WRITE'

// INSERT INTO / REPLACE INTO / UPDATE / DELETE FROM / TRUNCATE, after leading comments, and the table it names.
const WRITE =
  /^\s*(?:(?:--[^\n]*\n|\/\*[\s\S]*?\*\/)\s*)*(?:insert\s+(?:ignore\s+)?into|replace\s+into|update(?:\s+only)?(?:\s+ignore)?|delete\s+from(?:\s+only)?|truncate(?:\s+table)?(?:\s+only)?)\s+((?:[`"]?[\w$]+[`"]?\s*\.\s*)?[`"]?[\w$]+[`"]?)/i

/**
 * Wrap `sequelize.query` to warn once per table (process warning `STOCKCAST_SEQUELIZE_RAW_WRITE`) when a write to a
 * table the schema names escapes the model hooks: raw SQL (`sequelize.query`, `queryInterface.bulkInsert`), or a
 * model call with `hooks: false`. Returns the function that unwraps it.
 */
export function watchRawWrites(
  sequelize: SequelizeLike,
  schema: StockSchema,
  tableOfModel: (model: unknown) => string | undefined,
): () => void {
  const byName = new Map<string, string>()
  for (const t of [...schema.tables, ...schema.related.map((r) => r.table)]) {
    byName.set(t.toLowerCase(), t)
    const dot = t.indexOf('.')
    if (dot >= 0 && !byName.has(t.slice(dot + 1).toLowerCase())) byName.set(t.slice(dot + 1).toLowerCase(), t)
  }
  const declared = new Set(byName.values())
  const warned = new Set<string>()
  const original = (sequelize as unknown as { query: (...args: unknown[]) => unknown }).query
  const warn = (table: string, how: string) => {
    warned.add(table)
    process.emitWarning(
      `stockcast: a write to ${table} ${how}: no Sequelize model hook saw it, so the cache is not told about it. ` +
        'Install the SQL triggers of @stockcast/sql for such writes, or mark the products yourself with ' +
        'cache.markDirty (warned once per table).',
      { code: RAW_WRITE_WARNING },
    )
  }
  const check = (sql: unknown, options: Record<string | symbol, unknown> | undefined): void => {
    if (options != null && (options[INTERNAL] || options[SEEN_WRITE])) return
    if (options != null && (options.model || options.instance)) {
      // A model write: captured unless it ran with hooks: false (increments are wrapped, hooks or not).
      if (options.hooks !== false || typeof options.increment === 'boolean' || !WRITE_TYPES.has(String(options.type))) {
        return
      }
      const model = options.model ?? (options.instance as { constructor?: unknown } | undefined)?.constructor
      const table = tableOfModel(model)
      if (table !== undefined && !warned.has(table)) warn(table, 'ran with hooks: false')
      return
    }
    const text = typeof sql === 'string' ? sql : (sql as { query?: unknown } | null)?.query
    if (typeof text !== 'string') return
    const m = WRITE.exec(text.length > 400 ? text.slice(0, 400) : text)
    if (m === null) return
    const name = m[1]!.replace(/[`"\s]/g, '').toLowerCase()
    const dot = name.indexOf('.')
    const table = byName.get(name) ?? (dot >= 0 ? byName.get(name.slice(dot + 1)) : undefined)
    if (table === undefined || warned.has(table)) return
    warn(table, 'went through raw SQL (sequelize.query or queryInterface)')
  }
  let active = true
  const wrapped = function (this: unknown, ...args: unknown[]) {
    if (active && warned.size < declared.size) {
      try {
        check(args[0], args[1] as Record<string | symbol, unknown> | undefined)
      } catch {
        // the warning must never break a query
      }
    }
    return original.apply(this, args)
  }
  const restore = replaceMethod(sequelize, 'query', wrapped)
  return () => {
    active = false
    restore()
  }
}
