import type { Prisma } from '@prisma/client/extension'
import { ConfigError, type StockCache } from 'stockcast'
import { WRITE_OPERATIONS } from './capture.js'
import { type ModelInfo, modelsFromDmmf, readClientInternals, withExplicitModels } from './metadata.js'
import { Transactions, type TxContext } from './transactions.js'
import type { ModelMapping, PrismaClientLike, PrismaDmmfLike } from './types.js'

/** What `stockcastTables` calls: `createCache(...)` fits (typed structurally, no import of the cache). */
export interface TablesCache {
  invalidate(target: { tables: string[] }): Promise<void>
}

export interface StockcastTablesOptions {
  /** Only these tables (name, or `schema.name`). @default every model's table */
  tables?: readonly string[]
  /** Prisma's model metadata (`Prisma.dmmf` of `prisma-client-js`). @default read from the client */
  dmmf?: PrismaDmmfLike
  /** Model-to-table mapping by Prisma model name, over (or instead of) the metadata. @default none */
  models?: Record<string, ModelMapping>
  /**
   * An invalidation failed after its write committed (the write is never failed for it). A closed cache is not an
   * error: it is skipped. @default a process warning with code `STOCKCAST_PRISMA_TABLES_FAILED`
   */
  onError?: (error: Error) => void
}

/** What `stockcastTables` returns: a Prisma extension for `$extends` that adds nothing to the client's types. */
// biome-ignore lint/complexity/noBannedTypes: `{}` is how Prisma spells "this extension adds no types"
export type StockcastTablesExtension = ReturnType<typeof Prisma.defineExtension<{}, {}, {}, {}>>

/** The warning code of an invalidation that failed (when no `onError` is given). */
export const TABLES_FAILED_WARNING = 'STOCKCAST_PRISMA_TABLES_FAILED'

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v)
const listOf = (v: unknown): unknown[] => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v])

/** Nested write operations under a relation field of `data` (each may write the related model's table). */
const NESTED = new Set([
  'create',
  'createMany',
  'connectOrCreate',
  'upsert',
  'update',
  'updateMany',
  'delete',
  'deleteMany',
  'set',
  'connect',
  'disconnect',
])

/**
 * The tables a transaction scope holds until its commit. Given to `Transactions` in place of a cache's scope: a
 * savepoint hands its tables to its parent when it commits and drops them when it rolls back. The outermost scope is
 * emptied by an `afterCommit` step of its transaction (awaited before `$transaction` resolves); what is left at its
 * commit (a write that ended later) goes out then.
 */
class TableScope {
  state: 'open' | 'committed' | 'rolledBack' = 'open'
  readonly tables = new Set<string>()
  /** The outermost scope: whether its transaction already has the step that sends the tables. */
  scheduled = false
  readonly parent: TableScope | undefined
  readonly #late: (tables: string[]) => void

  constructor(late: (tables: string[]) => void, parent?: TableScope) {
    this.#late = late
    this.parent = parent
  }

  savepoint(): TableScope {
    return new TableScope(this.#late, this)
  }

  commit(): void {
    this.state = 'committed'
    const tables = [...this.tables]
    this.tables.clear()
    if (tables.length === 0) return
    if (this.parent?.state === 'open') for (const t of tables) this.parent.tables.add(t)
    else if (this.parent === undefined || this.parent.state === 'committed') this.#late(tables)
  }

  rollback(): void {
    this.state = 'rolledBack'
    this.tables.clear()
  }
}

/**
 * Table dependencies for `cached(fn, { tables })`, as a Prisma client extension: every write through the extended
 * client (create, createMany, createManyAndReturn, update, updateMany, updateManyAndReturn, upsert, delete,
 * deleteMany) calls `invalidate({ tables })` on each cache with the model's table (`@@map`, else the model name),
 * plus the tables of models written by nested writes, and, for deletes, the tables of the model's relations (a
 * database cascade may change them). Inside `$transaction` (interactive or batch; nested ones are savepoints) the
 * tables wait for the commit, and `$transaction` resolves once the caches were told; a rollback invalidates nothing.
 *
 * Not seen: raw SQL (`$executeRaw`), implicit many-to-many join tables, other services: `sqlTableChanges` of
 * @stockcast/sql (triggers and outbox) sees every writer. Composes with `stockcastExtension` (apply both).
 *
 * @example
 * ```ts
 * const cache = createCache({ name: 'reports' })
 * const prisma = new PrismaClient({ adapter }).$extends(stockcastTables(cache))
 * const report = cache.cached(loadReport, { key: 'report', tables: ['orders', 'payments'] })
 * ```
 */
export function stockcastTables(
  caches: TablesCache | readonly TablesCache[],
  options: StockcastTablesOptions = {},
): StockcastTablesExtension {
  const list: readonly TablesCache[] = Array.isArray(caches) ? caches : [caches as TablesCache]
  if (
    list.length === 0 ||
    list.some((c) => c === null || typeof c !== 'object' || typeof c.invalidate !== 'function')
  ) {
    throw new ConfigError('stockcastTables: caches must be a cache (createCache) or a non-empty array of them', {
      option: 'caches',
    })
  }
  if (options === null || typeof options !== 'object') {
    throw new ConfigError('stockcastTables: options must be an object', { option: 'options' })
  }
  const only = options.tables
  if (only !== undefined && (!Array.isArray(only) || only.some((t) => typeof t !== 'string' || t === ''))) {
    throw new ConfigError('stockcastTables: tables must be an array of table names', { option: 'tables' })
  }
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw new ConfigError('stockcastTables: onError must be a function', { option: 'onError' })
  }
  const wanted = only === undefined ? undefined : new Set(only)

  const report = (error: unknown, tables?: readonly string[]): void => {
    if ((error as { code?: unknown } | null)?.code === 'E_CLOSED') return // the app is shutting down
    const e = error instanceof Error ? error : new Error(String(error))
    if (options.onError !== undefined) options.onError(e)
    else {
      const what = tables === undefined ? '' : ` ${tables.join(', ')}`
      process.emitWarning(`@stockcast/prisma: invalidating tables${what} after a write failed: ${e.message}`, {
        code: TABLES_FAILED_WARNING,
        type: 'StockcastWarning',
      })
    }
  }
  const send = (tables: string[]): Promise<void> =>
    Promise.all(
      list.map(async (cache) => {
        try {
          await cache.invalidate({ tables: [...tables] })
        } catch (e) {
          report(e, tables)
        }
      }),
    ).then(() => undefined)
  const late = (tables: string[]) => void send(tables)

  const extension = (client: PrismaClientLike) => {
    if (client === null || typeof client !== 'object' || typeof client.$extends !== 'function') {
      throw new ConfigError('stockcastTables: apply it with prisma.$extends(stockcastTables(...))', {
        option: 'client',
      })
    }
    const found = options.dmmf !== undefined ? modelsFromDmmf(options.dmmf) : (readClientInternals(client).models ?? [])
    const models = new Map(withExplicitModels(found, options.models).map((m) => [m.name, m]))
    /** The table of a model (null: not watched); a model without metadata is its own table. */
    const tableOf = (model: string): string | null => {
      const info = models.get(model)
      const name = info?.table ?? model
      if (wanted === undefined || wanted.has(name)) return name
      const schema = info?.dbSchema
      return schema !== null && schema !== undefined && wanted.has(`${schema}.${name}`) ? name : null
    }
    const add = (out: Set<string>, model: string) => {
      const t = tableOf(model)
      if (t !== null) out.add(t)
    }
    /** Tables that nested writes in `data` (a model's create or update data) write to. */
    const walk = (info: ModelInfo | undefined, data: unknown, out: Set<string>, depth: number): void => {
      if (info === undefined || !isObj(data) || depth > 32) return
      for (const [field, value] of Object.entries(data)) {
        const target = info.relations.get(field)
        if (target === undefined || !isObj(value)) continue
        const sub = models.get(target)
        for (const [op, payload] of Object.entries(value)) {
          if (!NESTED.has(op)) continue
          add(out, target)
          for (const item of listOf(payload)) {
            if (!isObj(item)) continue
            // Over-reading is harmless (a `where` names no relation field's writes): the shapes differ between
            // to-one (`update: data` or `{ where, data }`) and to-many (`update: [{ where, data }]`) relations.
            if (op === 'create') walk(sub, item, out, depth + 1)
            else if (op === 'connectOrCreate') walk(sub, item.create, out, depth + 1)
            else if (op === 'upsert') {
              walk(sub, item.create, out, depth + 1)
              walk(sub, item.update, out, depth + 1)
            } else if (op === 'update') {
              walk(sub, item.data, out, depth + 1)
              walk(sub, item, out, depth + 1)
            }
          }
        }
      }
    }
    const tablesOf = (model: string, operation: string, args: Obj): string[] => {
      const out = new Set<string>()
      add(out, model)
      const info = models.get(model)
      if (operation === 'create' || operation === 'update') walk(info, args.data, out, 0)
      else if (operation === 'upsert') {
        walk(info, args.create, out, 0)
        walk(info, args.update, out, 0)
      } else if ((operation === 'delete' || operation === 'deleteMany') && info !== undefined) {
        // A database cascade (or SET NULL) may change the rows of related models.
        for (const target of info.relations.values()) add(out, target)
      }
      return [...out]
    }

    const transactions = new Transactions(
      { transaction: () => new TableScope(late) } as unknown as Pick<StockCache, 'transaction'>,
      (error) => report(error),
    )
    /** Hold tables in a transaction's scope; the outermost transaction sends them after Prisma committed. */
    const hold = (ctx: TxContext, tables: readonly string[]): Promise<void> | undefined => {
      const scope = ctx.scope as unknown as TableScope
      // An operation that ended after its transaction (not awaited inside it): the transaction is over.
      if (scope.state !== 'open') return scope.state === 'committed' ? send([...tables]) : undefined
      for (const t of tables) scope.tables.add(t)
      let root = ctx
      while ((root.scope as unknown as TableScope).parent !== undefined && root.parent !== undefined) root = root.parent
      const top = root.scope as unknown as TableScope
      if (!top.scheduled) {
        top.scheduled = true
        root.afterCommit.push(async () => {
          const all = [...top.tables]
          top.tables.clear()
          if (all.length > 0) await send(all)
        })
      }
      return undefined
    }

    const $allOperations = async (params: {
      model?: string
      operation: string
      args: unknown
      query: (args: unknown) => Promise<unknown>
    }): Promise<unknown> => {
      const { model, operation, query } = params
      if (model === undefined || !WRITE_OPERATIONS.has(operation)) return query(params.args)
      const tables = tablesOf(model, operation, isObj(params.args) ? params.args : {})
      if (tables.length === 0) return query(params.args)
      const place = transactions.place(params)
      const result = await query(params.args)
      if (place.ctx !== undefined) await hold(place.ctx, tables)
      if (place.now) await send(tables)
      return result
    }

    const original = client.$transaction as (...args: unknown[]) => Promise<unknown>
    return client.$extends({
      name: 'stockcast-tables',
      query: { $allOperations },
      client: { $transaction: transactions.wrap(original, client) },
    })
  }
  return extension as unknown as StockcastTablesExtension
}
