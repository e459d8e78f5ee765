// @stockcast/prisma: one public entry (types apart from values).
export type { StockcastPrismaExtension } from './extension.js'
export { stockcastExtension } from './extension.js'
export type { PrismaSqlDbOptions } from './sql-db.js'
export { prismaSqlDb } from './sql-db.js'
export type { StockcastTablesExtension, StockcastTablesOptions, TablesCache } from './tables.js'
export { stockcastTables, TABLES_FAILED_WARNING } from './tables.js'
export type {
  ModelMapping,
  PrismaClientLike,
  PrismaDmmfLike,
  PrismaDmmfModelLike,
  PrismaRawClientLike,
  StockcastExtensionOptions,
} from './types.js'
