import type { SqlDialect } from '@stockcast/sql'
import type { StockCache, StockcastError, StockSchema } from 'stockcast'

/** A model of Prisma's public metadata (`Prisma.dmmf.datamodel.models[i]`): only the members this adapter reads. */
export interface PrismaDmmfModelLike {
  name: string
  dbName?: string | null
  schema?: string | null
  fields: ReadonlyArray<{ name: string; kind: string; type: string; dbName?: string | null }>
}

/** `Prisma.dmmf` as exported by the `prisma-client-js` generator (typed structurally). */
export interface PrismaDmmfLike {
  datamodel: { models: readonly PrismaDmmfModelLike[] }
}

/** How one Prisma model maps to its table, for the `models` option. */
export interface ModelMapping {
  /** The table (`@@map`), optionally schema-qualified. */
  table: string
  /** Column by field name, for fields whose column differs (`@map`); other fields are their own column. */
  columns?: Record<string, string>
}

export interface StockcastExtensionOptions {
  /** The cache to mark (`createStockCache`). */
  cache: Pick<StockCache, 'markDirty' | 'transaction'>
  /** The stock schema: its tables are matched to Prisma models through the models' `@@map`/`@map` names. */
  schema: StockSchema
  /**
   * Prisma's model metadata, when your generated client exports it: `Prisma.dmmf` of the `prisma-client-js`
   * generator. @default read from the client (the `prisma-client` generator exports no `dmmf`)
   */
  dmmf?: PrismaDmmfLike
  /**
   * Model-to-table mapping by Prisma model name, over (or instead of) the metadata: the fallback when neither the
   * client nor `dmmf` carries it. @default none
   */
  models?: Record<string, ModelMapping>
  /**
   * The SQL family of the `related` products queries (how their quotes and comments are read; Prisma writes the
   * placeholders). @default 'postgres'
   */
  dialect?: SqlDialect
  /**
   * A write committed but the products it touched could not be resolved (a `related` query failed after the write,
   * outside a transaction): the write stands and this is told. Inside an interactive transaction the error is thrown
   * instead (the transaction rolls back). @default a process warning with code STOCKCAST_PRISMA_MARK_FAILED
   */
  onError?: (error: StockcastError) => void
}

/** The members of a Prisma client the extension calls (typed structurally). */
export interface PrismaClientLike {
  $extends(extension: unknown): unknown
  $transaction(...args: unknown[]): Promise<unknown>
  $queryRaw(query: TemplateStringsArray | readonly string[], ...values: unknown[]): Promise<unknown>
}

/** The members of a Prisma client (or interactive transaction client) `prismaSqlDb` calls. */
export interface PrismaRawClientLike {
  $queryRawUnsafe(query: string, ...values: unknown[]): Promise<unknown>
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>
  $transaction?: unknown
}
