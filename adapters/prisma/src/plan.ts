import type { SqlDialect } from '@stockcast/sql'
import { ConfigError, capturePlan, type StockSchema } from 'stockcast'
import { fieldOf, type ModelInfo, tableMatches } from './metadata.js'
import { splitNamedParams } from './named-params.js'

/** A `related` declaration bound to a model: the query cut at its parameters, each parameter a field. */
export interface RelatedPlan {
  /** The table as the schema declares it (the mark's reason). */
  readonly table: string
  /** The query text between parameters (a TemplateStringsArray for `$queryRaw`). */
  readonly parts: TemplateStringsArray
  /** The field that fills each parameter, in order of appearance. */
  readonly fields: readonly string[]
}

/** What the extension knows about one Prisma model. */
export interface ModelPlan {
  readonly info: ModelInfo
  /** The client property of the model (`stockMove`). */
  readonly delegate: string
  /** The schema's spelling of this model's table when it feeds sources (the marks' reason), else empty. */
  readonly sourceTables: readonly string[]
  /** Fields holding product ids (one per distinct product column among the table's sources). */
  readonly productFields: readonly string[]
  /** The `related` declarations on this model's table. */
  readonly related: readonly RelatedPlan[]
  /** Scalar fields a write must know: the product fields and the related queries' parameters. */
  readonly need: readonly string[]
  /** This model's own rows matter (a source or a related table). */
  readonly tracked: boolean
  /** Relation fields (to their target model) that reach a tracked model: nested writes through them are followed. */
  readonly paths: ReadonlyMap<string, string>
  /** Relation fields to source models: a delete reads their rows first (database cascades). */
  readonly cascades: ReadonlyMap<string, string>
}

/** The models of one client, planned against the stock schema. */
export interface Plans {
  readonly byModel: ReadonlyMap<string, ModelPlan>
  /** Schema tables that no model maps to (written by something else, or a naming mistake). */
  readonly unmapped: readonly string[]
}

const delegateOf = (model: string) => model.charAt(0).toLowerCase() + model.slice(1)

function frozenTemplate(parts: string[]): TemplateStringsArray {
  return Object.freeze(Object.assign([...parts], { raw: Object.freeze([...parts]) })) as unknown as TemplateStringsArray
}

/** Match every model to the schema's sources and related tables; check that the named columns exist. */
export function planModels(schema: StockSchema, models: readonly ModelInfo[], dialect: SqlDialect): Plans {
  const draft = new Map<
    string,
    { info: ModelInfo; sourceTables: string[]; productFields: string[]; related: RelatedPlan[] }
  >()
  const get = (m: ModelInfo) => {
    let d = draft.get(m.name)
    if (d === undefined) {
      d = { info: m, sourceTables: [], productFields: [], related: [] }
      draft.set(m.name, d)
    }
    return d
  }
  const column = (m: ModelInfo, col: string, what: string): string => {
    const f = fieldOf(m, col)
    if (f === undefined) {
      throw new ConfigError(
        `stockcastExtension: ${what} names column ${JSON.stringify(col)}, but model ${m.name} (table ${m.table}) has ` +
          `no field mapped to it (fields: ${[...m.columns].map(([k, v]) => (k === v ? k : `${k} @map("${v}")`)).join(', ')})`,
        { option: 'schema' },
      )
    }
    return f
  }
  const unmapped: string[] = []
  for (const captured of capturePlan(schema).values()) {
    const matched = models.filter((m) => tableMatches(captured.table, m))
    if (matched.length === 0) unmapped.push(captured.table)
    const named = captured.related.map((r) => splitNamedParams(dialect, r.products))
    for (const m of matched) {
      const d = get(m)
      if (captured.productColumns.length > 0 && !d.sourceTables.includes(captured.table)) {
        d.sourceTables.push(captured.table)
      }
      for (const p of captured.productColumns) {
        const f = column(m, p.column, `source "${p.sources[0]}" (product)`)
        if (!d.productFields.includes(f)) d.productFields.push(f)
      }
      for (const { parts, names } of named) {
        const fields = names.map((n) => column(m, n, `related query on ${captured.table} (parameter :${n})`))
        d.related.push({ table: captured.table, parts: frozenTemplate(parts), fields })
      }
    }
  }
  const byName = new Map(models.map((m) => [m.name, m]))
  // A relation reaches a tracked model when its target is tracked or reaches one itself (a fixed point).
  const reaches = new Set(draft.keys())
  for (let changed = true; changed; ) {
    changed = false
    for (const m of models) {
      if (reaches.has(m.name)) continue
      for (const target of m.relations.values()) {
        if (reaches.has(target)) {
          reaches.add(m.name)
          changed = true
          break
        }
      }
    }
  }
  const byModel = new Map<string, ModelPlan>()
  for (const m of models) {
    const d = draft.get(m.name)
    const paths = new Map<string, string>()
    const cascades = new Map<string, string>()
    for (const [field, target] of m.relations) {
      if (!byName.has(target)) continue
      if (reaches.has(target)) paths.set(field, target)
      if ((draft.get(target)?.sourceTables.length ?? 0) > 0) cascades.set(field, target)
    }
    if (d === undefined && paths.size === 0) continue
    const productFields = d?.productFields ?? []
    const related = d?.related ?? []
    const need = [...new Set([...productFields, ...related.flatMap((r) => r.fields)])]
    byModel.set(m.name, {
      info: m,
      delegate: delegateOf(m.name),
      sourceTables: d?.sourceTables ?? [],
      productFields,
      related,
      need,
      tracked: d !== undefined,
      paths,
      cascades,
    })
  }
  return { byModel, unmapped }
}
