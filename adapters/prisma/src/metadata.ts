import { ConfigError } from 'stockcast'
import type { ModelMapping, PrismaDmmfLike } from './types.js'

/** One Prisma model as this adapter sees it: its table and the column behind each scalar field. */
export interface ModelInfo {
  /** The Prisma model name (`StockMove`). */
  readonly name: string
  /** The table name (`@@map`, else the model name). */
  readonly table: string
  /** The database schema (`@@schema`), null when not set. */
  readonly dbSchema: string | null
  /** Column name by scalar field name (`@map`, else the field name). */
  readonly columns: ReadonlyMap<string, string>
  /** Target model name by relation field name. */
  readonly relations: ReadonlyMap<string, string>
  /** False for a model known only from the explicit `models` option: an unlisted column is its field's name. */
  readonly complete: boolean
}

/** A field of Prisma's compact data model (the runtime data model, and `Prisma.dmmf` of Prisma 7). */
interface RawField {
  name: string
  kind: string
  type: string
  dbName?: string | null
}

interface RawModel {
  dbName?: string | null
  schema?: string | null
  fields: readonly RawField[]
}

function toInfo(name: string, model: RawModel, where: string): ModelInfo {
  if (model === null || typeof model !== 'object' || !Array.isArray(model.fields)) {
    throw new ConfigError(`stockcastExtension: ${where} has no field list for model ${JSON.stringify(name)}`, {
      option: 'dmmf',
    })
  }
  const columns = new Map<string, string>()
  const relations = new Map<string, string>()
  for (const f of model.fields) {
    if (f.kind === 'object') relations.set(f.name, f.type)
    else if (f.kind === 'scalar' || f.kind === 'enum') columns.set(f.name, f.dbName ?? f.name)
  }
  return { name, table: model.dbName ?? name, dbSchema: model.schema ?? null, columns, relations, complete: true }
}

/** Models from the public `Prisma.dmmf` (`{ datamodel: { models: [{ name, dbName, fields }] } }`). */
export function modelsFromDmmf(dmmf: PrismaDmmfLike): ModelInfo[] {
  const models = dmmf?.datamodel?.models
  if (!Array.isArray(models)) {
    throw new ConfigError('stockcastExtension: dmmf must be Prisma.dmmf (with datamodel.models)', { option: 'dmmf' })
  }
  return models.map((m) => toInfo(m.name, m, 'dmmf'))
}

/** Fields a client omits from every result, by model delegate (`new PrismaClient({ omit })`). */
export type GlobalOmit = Readonly<Record<string, Readonly<Record<string, boolean>>>>

/** What `readClientInternals` found; `undefined` members are ones this Prisma version no longer has there. */
export interface ClientInternals {
  /** The models, from the runtime data model. */
  models: ModelInfo[] | undefined
  /** The client's global `omit` option; null when none is set. */
  globalOmit: GlobalOmit | null | undefined
}

/**
 * @internal The one place that reads a Prisma client's internals (Prisma 7.10): `_runtimeDataModel`, the only copy
 * of the `@@map`/`@map` names the `prisma-client` generator keeps (it exports no `Prisma.dmmf`), and `_globalOmit`,
 * the client's `omit` option (fields every result leaves out unless a query asks for them). A member that is not
 * there comes back undefined (`test/metadata.canary.test.ts` fails then): the caller asks for the `dmmf` or `models`
 * option instead of the models, and asks every write for the fields it needs instead of trusting the default result.
 */
export function readClientInternals(client: unknown): ClientInternals {
  const c = (client ?? {}) as { _runtimeDataModel?: { models?: Record<string, RawModel> }; _globalOmit?: unknown }
  const models = c._runtimeDataModel?.models
  const omit = '_globalOmit' in c ? c._globalOmit : undefined
  return {
    models:
      models === null || typeof models !== 'object'
        ? undefined
        : Object.entries(models).map(([name, m]) => toInfo(name, m, 'the client runtime data model')),
    globalOmit: !('_globalOmit' in c) ? undefined : omit === undefined || omit === null ? null : (omit as GlobalOmit),
  }
}

/**
 * @internal The database provider of a Prisma client (`'postgresql'`, `'cockroachdb'`, `'mysql'`, ...), as the
 * generated client declares it: `_activeProvider` of the client (Prisma 7.10; extended and transaction clients
 * pass it through). Prisma exposes no public equivalent. Undefined when not there (`test/metadata.canary.test.ts`
 * fails then): the caller treats an unknown provider as one without `updateManyAndReturn`.
 */
export function readProvider(client: unknown): string | undefined {
  const provider = (client as { _activeProvider?: unknown } | null | undefined)?._activeProvider
  return typeof provider === 'string' && provider !== '' ? provider : undefined
}

/** Apply the explicit `models` option over what the metadata says (or instead of it). */
export function withExplicitModels(found: readonly ModelInfo[], explicit: Record<string, ModelMapping> | undefined) {
  const byName = new Map(found.map((m) => [m.name, m]))
  if (explicit === undefined) return [...byName.values()]
  if (explicit === null || typeof explicit !== 'object') {
    throw new ConfigError('stockcastExtension: models must be an object keyed by Prisma model name', {
      option: 'models',
    })
  }
  for (const [name, mapping] of Object.entries(explicit)) {
    const at = `models.${name}`
    if (mapping === null || typeof mapping !== 'object' || typeof mapping.table !== 'string' || mapping.table === '') {
      throw new ConfigError(`stockcastExtension: ${at}.table must name the model's table`, { option: at })
    }
    const base = byName.get(name)
    const columns = new Map(base?.columns ?? [])
    for (const [field, column] of Object.entries(mapping.columns ?? {})) {
      if (typeof column !== 'string' || column === '') {
        throw new ConfigError(`stockcastExtension: ${at}.columns.${field} must be a column name`, { option: at })
      }
      columns.set(field, column)
    }
    const dot = mapping.table.indexOf('.')
    byName.set(name, {
      name,
      table: dot < 0 ? mapping.table : mapping.table.slice(dot + 1),
      dbSchema: dot < 0 ? (base?.dbSchema ?? null) : mapping.table.slice(0, dot),
      columns,
      relations: base?.relations ?? new Map(),
      complete: base !== undefined,
    })
  }
  return [...byName.values()]
}

/** True when the schema's table name (`t` or `schema.t`) names this model's table. */
export function tableMatches(schemaTable: string, model: ModelInfo): boolean {
  const dot = schemaTable.indexOf('.')
  if (dot < 0) return schemaTable === model.table
  return (
    schemaTable.slice(dot + 1) === model.table &&
    (model.dbSchema === null || model.dbSchema === schemaTable.slice(0, dot))
  )
}

/** The scalar field behind a column of a model, or undefined when the model has no such column. */
export function fieldOf(model: ModelInfo, column: string): string | undefined {
  for (const [field, col] of model.columns) if (col === column) return field
  return model.complete ? undefined : column
}
