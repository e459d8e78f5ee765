// @stockcast/sql: one public entry (types apart from values).
export type { SqlDb, SqlDialect } from './types.js'
export { fromPg } from './connection/postgres.js'
export type { PgClientLike, PgPoolLike } from './connection/postgres.js'
export { fromPGlite } from './connection/pglite.js'
export type { PGliteLike, PGliteTxLike } from './connection/pglite.js'
export { fromMysql } from './connection/mysql.js'
export type { MysqlConnectionLike, MysqlPoolLike } from './connection/mysql.js'
export type {
  ListenerStatus,
  OutboxListener,
  SqlChangeCapture,
  SqlChangeCaptureOptions,
  VerifyReport,
} from './capture/types.js'
// Filled in as the parts land: sqlReader (reader.ts), sqlStore (store.ts), sqlChangeCapture (capture/index.ts).
