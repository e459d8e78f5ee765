// PostgreSQL: the rows a bulk update or delete changed, read by the statement itself (`RETURNING`), so the hooks need
// no SELECT before it. Sequelize v6 has no hook that sees a bulk statement's rows, and `Model.destroy` has no
// `returning` option: the hook puts a box in the statement's options (Sequelize copies symbol keys and keeps class
// instances by reference when it clones them) and the `sequelize.query` wrapper below fills it.

import { replaceMethod } from './replace.js'
import type { SequelizeLike } from './types.js'

type Row = Record<string, unknown>

/** The options key of a {@link ReturningRows} box. */
export const RETURNING_ROWS = Symbol.for('stockcast.sequelize.returningRows')

/** Filled by the `sequelize.query` wrapper with the rows a bulk UPDATE/DELETE changed (lookup columns only). */
export class ReturningRows {
  /** `"product_code" AS "productCode", ...`: the columns by their attribute names. */
  readonly columns: string
  /** Reads the rows before the statement: used when the statement cannot take a RETURNING clause. */
  readonly fallback: () => Promise<Row[]>
  /** The rows (after the statement ran), undefined while no statement was seen. */
  rows: Row[] | undefined

  constructor(fields: readonly string[], attrs: readonly string[], fallback: () => Promise<Row[]>) {
    const q = (s: string) => `"${s.replace(/"/g, '""')}"`
    this.columns = fields.map((f, i) => (f === attrs[i] ? q(f) : `${q(f)} AS ${q(attrs[i]!)}`)).join(', ')
    this.fallback = fallback
  }
}

/** An UPDATE or DELETE Sequelize wrote (leading comments allowed), which a RETURNING clause can end. */
const STATEMENT = /^\s*(?:(?:--[^\n]*\n|\/\*[\s\S]*?\*\/)\s*)*(?:update|delete\s+from)\s/i

/**
 * Wrap `sequelize.query` so a bulk UPDATE/DELETE whose options carry a {@link ReturningRows} box returns the rows it
 * changed into the box, and what Sequelize expects (the row count) to its caller. Returns the unwrapping function.
 */
export function returnRowsOfBulkWrites(sequelize: SequelizeLike): () => void {
  const original = (sequelize as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query
  let active = true
  // Every query of the app passes here: the common case returns the original call as it is (no async wrapper).
  const wrapped = function (this: unknown, ...args: unknown[]): Promise<unknown> {
    const options = args[1] as Record<string | symbol, unknown> | undefined
    const box = options?.[RETURNING_ROWS]
    if (
      !active ||
      !(box instanceof ReturningRows) ||
      box.rows !== undefined ||
      (options!.type !== 'BULKUPDATE' && options!.type !== 'BULKDELETE') ||
      options!.returning
    ) {
      return original.apply(this, args)
    }
    return withReturning.call(this, box, args)
  }
  const withReturning = async function (this: unknown, box: ReturningRows, args: unknown[]): Promise<unknown> {
    const options = args[1] as Record<string | symbol, unknown>
    const sql = args[0]
    const text = typeof sql === 'string' ? sql : (sql as { query?: unknown } | null)?.query
    if (typeof text !== 'string' || !STATEMENT.test(text)) {
      // Not the statement shape we know: read the rows first, as on other databases.
      box.rows = await box.fallback()
      return original.apply(this, args)
    }
    const query = `${text.replace(/;\s*$/, '')} RETURNING ${box.columns}`
    const rows = (await original.call(this, typeof sql === 'string' ? query : { ...(sql as object), query }, {
      ...options,
      type: 'SELECT',
      raw: true,
      plain: false,
      nest: false,
    })) as Row[]
    box.rows = rows
    // What Sequelize's PostgreSQL dialect returns for BULKUPDATE (no `returning`) and BULKDELETE: the row count.
    return rows.length
  }
  const restore = replaceMethod(sequelize, 'query', wrapped)
  return () => {
    active = false
    restore()
  }
}
