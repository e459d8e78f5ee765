import type { StockSchema } from './schema.js'

/** A product column of a declared table, with the sources that read it (for messages). */
export interface CaptureProductColumn {
  readonly column: string
  /** Ids of the sources on this table whose product column it is. */
  readonly sources: readonly string[]
}

/** A `related` declaration as a capture of its table needs it. */
export interface CaptureRelated {
  /** Its position in `schema.related` (for messages and generated names). */
  readonly index: number
  /**
   * The declared query. Its `:name` parameters are columns of the changed row; each adapter reads them with its
   * dialect's scanner (`rewriteNamedParams` of `@stockcast/sql`), which knows that dialect's quoting and comments.
   */
  readonly products: string
}

/** What a written row of one declared table means: the products a change to it marks. */
export interface CaptureTable {
  /** The table as the schema declares it (the marks' reason). */
  readonly table: string
  /** Distinct product columns of the table's sources, in declaration order (old and new values are marked). */
  readonly productColumns: readonly CaptureProductColumn[]
  /** The `related` declarations on this table (their products are marked for old and new rows). */
  readonly related: readonly CaptureRelated[]
}

const plans = new WeakMap<StockSchema, ReadonlyMap<string, CaptureTable>>()

/**
 * The row -> products plan of a schema, one entry per declared table (sources first, then related tables, in
 * declaration order). The SQL triggers, the Sequelize hooks and the Prisma extension all capture from it, so a
 * declaration means the same to each; they map its columns to their own names (trigger column references, model
 * attributes, Prisma fields). Computed once per schema.
 */
export function capturePlan(schema: StockSchema): ReadonlyMap<string, CaptureTable> {
  const known = plans.get(schema)
  if (known !== undefined) return known
  const draft = new Map<
    string,
    { productColumns: { column: string; sources: string[] }[]; related: CaptureRelated[] }
  >()
  const entry = (table: string) => {
    let d = draft.get(table)
    if (d === undefined) {
      d = { productColumns: [], related: [] }
      draft.set(table, d)
    }
    return d
  }
  for (const s of schema.sources) {
    const d = entry(s.table)
    const c = d.productColumns.find((p) => p.column === s.product)
    if (c === undefined) d.productColumns.push({ column: s.product, sources: [s.id] })
    else c.sources.push(s.id)
  }
  schema.related.forEach((r, index) => {
    entry(r.table).related.push(Object.freeze({ index, products: r.products }))
  })
  const out = new Map<string, CaptureTable>()
  for (const [table, d] of draft) {
    out.set(
      table,
      Object.freeze({
        table,
        productColumns: Object.freeze(
          d.productColumns.map((p) => Object.freeze({ column: p.column, sources: Object.freeze(p.sources) })),
        ),
        related: Object.freeze(d.related),
      }),
    )
  }
  plans.set(schema, out)
  return out
}
