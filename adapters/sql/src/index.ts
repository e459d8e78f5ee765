// @stockcast/sql: one public entry (types apart from values).

export type { SqlBus, SqlBusOptions } from './bus.js'
export { sqlBus } from './bus.js'
export { sqlChangeCapture } from './capture/index.js'
// For the ORM adapters: the dialect-aware `:name` scanner of `related` queries (literals, comments, casts skipped).
export { rewriteNamedParams, scanSql } from './capture/related.js'
export type {
  ListenerStatus,
  OutboxListener,
  SqlChangeCapture,
  SqlChangeCaptureOptions,
  VerifyReport,
} from './capture/types.js'
export type { ListenConnectionLike, ListenWithReconnectOptions } from './connection/listen.js'
export { listenWithReconnect } from './connection/listen.js'
export type { MysqlConnectionLike, MysqlPoolLike } from './connection/mysql.js'
export { fromMysql } from './connection/mysql.js'
export type { PGliteLike, PGliteTxLike } from './connection/pglite.js'
export { fromPGlite } from './connection/pglite.js'
export type { PgClientLike, PgPoolLike } from './connection/postgres.js'
export { fromPg } from './connection/postgres.js'
export type { SqlLock, SqlLockOptions } from './lock.js'
export { sqlLock } from './lock.js'
export type { SqlReader, SqlReaderOptions } from './reader.js'
export { sqlReader } from './reader.js'
export type { SqlStore, SqlStoreOptions } from './store.js'
export { sqlStore } from './store.js'
export type {
  SqlTableChanges,
  SqlTableChangesOptions,
  TableChangesListener,
  TableChangesStatus,
  TableChangesVerifyReport,
  TableInvalidationTarget,
} from './tables/index.js'
export { sqlTableChanges } from './tables/index.js'
export type { SqlDb, SqlDialect } from './types.js'
export type { SqlWebhookState, SqlWebhookStateOptions } from './webhook-state.js'
export { sqlWebhookState } from './webhook-state.js'
