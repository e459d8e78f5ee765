// @stockcast/sequelize: one public entry (types apart from values).
import {
  type SqlReader,
  type SqlReaderOptions,
  type SqlStore,
  type SqlStoreOptions,
  sqlReader,
  sqlStore,
} from '@stockcast/sql'
import type { StockSchema } from 'stockcast'
import { fromSequelize } from './connection.js'
import type { SequelizeLike } from './types.js'

export type { AttachSequelizeOptions, DetachSequelize } from './attach.js'
export { attachSequelize, UNMAPPED_MODEL_WARNING } from './attach.js'
export type { FromSequelizeOptions } from './connection.js'
export { fromSequelize } from './connection.js'
export { RAW_WRITE_WARNING } from './raw-writes.js'
export type { AttachSequelizeTablesOptions, DetachSequelizeTables, TablesCache } from './tables.js'
export { attachSequelizeTables, TABLES_FAILED_WARNING } from './tables.js'
export type {
  SequelizeAttributeLike,
  SequelizeConnectionManagerLike,
  SequelizeLike,
  SequelizeModelLike,
  SequelizeTransactionLike,
} from './types.js'

/**
 * The SQL adapter's set-based reader (L3) over Sequelize's pool: `sqlReader(fromSequelize(sequelize), schema)`.
 *
 * @example
 * ```ts
 * const cache = createStockCache({ schema, reader: sequelizeReader(sequelize, schema), store: sequelizeStore(sequelize) })
 * ```
 */
export function sequelizeReader(
  sequelize: SequelizeLike | (() => SequelizeLike),
  schema: StockSchema,
  options?: SqlReaderOptions,
): SqlReader {
  return sqlReader(fromSequelize(sequelize), schema, options)
}

/**
 * The SQL adapter's table store (L2) over Sequelize's pool: `sqlStore(fromSequelize(sequelize), options)`. The table
 * (`stockcast_projections` by default) is created on first use.
 *
 * @example
 * ```ts
 * const store = sequelizeStore(sequelize, { table: 'stockcast_projections' })
 * ```
 */
export function sequelizeStore(sequelize: SequelizeLike | (() => SequelizeLike), options?: SqlStoreOptions): SqlStore {
  return sqlStore(fromSequelize(sequelize), options)
}
