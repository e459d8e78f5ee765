import type { Prisma } from '@prisma/client/extension'
import { ConfigError, StockcastError } from 'stockcast'
import { createCapture } from './capture.js'
import {
  type ClientInternals,
  type ModelInfo,
  modelsFromDmmf,
  readClientInternals,
  readProvider,
  withExplicitModels,
} from './metadata.js'
import { type Plans, planModels } from './plan.js'
import { Transactions } from './transactions.js'
import type { PrismaClientLike, StockcastExtensionOptions } from './types.js'

/**
 * What `stockcastExtension` returns: a Prisma extension for `$extends`. It adds nothing to the client's types (the
 * client keeps every model and `$transaction` signature it had).
 */
// biome-ignore lint/complexity/noBannedTypes: `{}` is how Prisma spells "this extension adds no types"
export type StockcastPrismaExtension = ReturnType<typeof Prisma.defineExtension<{}, {}, {}, {}>>

const warned = new Set<string>()
function warnOnce(code: string, message: string): void {
  if (warned.has(code)) return
  warned.add(code)
  process.emitWarning(message, { code, type: 'StockcastWarning' })
}

/** The models of the client: explicit mapping over `dmmf`, else over the client's own runtime data model. */
function discoverModels(internals: ClientInternals, options: StockcastExtensionOptions): ModelInfo[] {
  let found: ModelInfo[] | undefined
  if (options.dmmf !== undefined) found = modelsFromDmmf(options.dmmf)
  else found = internals.models
  if (found === undefined && options.models === undefined) {
    throw new ConfigError(
      'stockcastExtension: this Prisma client carries no model metadata the extension can read. Pass `dmmf: ' +
        'Prisma.dmmf` (prisma-client-js generator) or `models: { ModelName: { table, columns } }`.',
      { option: 'models' },
    )
  }
  return withExplicitModels(found ?? [], options.models)
}

/**
 * The `@stockcast/prisma` client extension: every write through the extended client (create, createMany,
 * createManyAndReturn, update, updateMany, updateManyAndReturn, upsert, delete, deleteMany, and nested writes)
 * marks the products it touched, old and new when a row moves to another product. Inside `$transaction` (interactive
 * or batch) the marks wait for the commit and vanish on rollback; outside, they land right after the write.
 * Raw SQL (`$executeRaw`, `$queryRaw`) is not seen: use the SQL adapter's triggers for it.
 *
 * @example
 * ```ts
 * const base = new PrismaClient({ adapter: new PrismaPg(pool) })
 * const db = prismaSqlDb(base)
 * const cache = createStockCache({ schema, reader: sqlReader(db, schema), store: sqlStore(db) })
 * const prisma = base.$extends(stockcastExtension({ cache, schema }))
 * await prisma.stockMove.create({ data: { productCode: 'SKU-1', quantity: 5 } }) // SKU-1 is marked
 * ```
 */
export function stockcastExtension(options: StockcastExtensionOptions): StockcastPrismaExtension {
  if (options === null || typeof options !== 'object') {
    throw new ConfigError('stockcastExtension expects { cache, schema }', { option: 'options' })
  }
  const { cache, schema } = options
  if (cache === null || typeof cache !== 'object' || typeof cache.markDirty !== 'function') {
    throw new ConfigError('stockcastExtension: cache must be a stock cache (createStockCache)', { option: 'cache' })
  }
  if (typeof cache.transaction !== 'function') {
    throw new ConfigError('stockcastExtension: cache must have transaction() (createStockCache)', { option: 'cache' })
  }
  if (schema === null || typeof schema !== 'object' || !Array.isArray(schema.sources)) {
    throw new ConfigError('stockcastExtension: schema must come from defineStockSchema', { option: 'schema' })
  }
  const dialect = options.dialect ?? 'postgres'
  if (dialect !== 'postgres' && dialect !== 'mysql') {
    throw new ConfigError(`stockcastExtension: dialect must be 'postgres' or 'mysql', got ${JSON.stringify(dialect)}`, {
      option: 'dialect',
    })
  }
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw new ConfigError('stockcastExtension: onError must be a function', { option: 'onError' })
  }
  const report = (error: unknown): void => {
    const e =
      error instanceof StockcastError
        ? error
        : new StockcastError(`@stockcast/prisma: marking failed: ${String((error as Error)?.message ?? error)}`, {
            cause: error,
          })
    if (options.onError !== undefined) options.onError(e)
    else process.emitWarning(e.message, { code: 'STOCKCAST_PRISMA_MARK_FAILED', type: 'StockcastWarning' })
  }

  const extension = (client: PrismaClientLike) => {
    if (client === null || typeof client !== 'object' || typeof client.$extends !== 'function') {
      throw new ConfigError('stockcastExtension: apply it with prisma.$extends(stockcastExtension(...))', {
        option: 'client',
      })
    }
    const internals = readClientInternals(client)
    const plans: Plans = planModels(schema, discoverModels(internals, options), dialect)
    if (plans.unmapped.length > 0) {
      warnOnce(
        'STOCKCAST_PRISMA_UNMAPPED_TABLE',
        `@stockcast/prisma: no Prisma model maps to ${plans.unmapped.join(', ')}: writes to ` +
          `${plans.unmapped.length === 1 ? 'it' : 'them'} are not seen by the extension (check @@map, or capture them with the SQL triggers).`,
      )
    }
    const transactions = new Transactions(cache, report)
    const capture = createCapture({
      plans,
      base: client as unknown as Record<string, unknown>,
      cache,
      transactions,
      report,
      globalOmit: internals.globalOmit,
      provider: readProvider(client),
    })
    const original = client.$transaction as (...args: unknown[]) => Promise<unknown>
    return client.$extends({
      name: 'stockcast',
      query: { $allOperations: capture },
      client: { $transaction: transactions.wrap(original, client) },
    })
  }
  return extension as unknown as StockcastPrismaExtension
}
