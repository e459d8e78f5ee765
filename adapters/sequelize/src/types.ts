// Sequelize v6 typed structurally: only the members this adapter calls (no import of `sequelize`).

/** A Sequelize transaction (or savepoint: a transaction with a `parent`). */
export interface SequelizeTransactionLike {
  /** Run `fn` after the commit (Sequelize v6: after `COMMIT` returned, also for a savepoint's own commit). */
  afterCommit(fn: (transaction: any) => unknown): void
  /** The enclosing transaction when this one is a savepoint. */
  readonly parent?: SequelizeTransactionLike | undefined | null
  /** Savepoint name (Sequelize v6: `<id>-sp-<n>`, which can repeat within one transaction). */
  readonly name?: string
  /** Savepoints opened in this transaction. */
  readonly savepoints?: readonly SequelizeTransactionLike[]
  /** `'commit'` once committed. */
  readonly finished?: string | undefined
  /** The connection the transaction runs on. */
  readonly connection?: unknown
  rollback(): Promise<unknown>
}

/** An attribute definition of a model (`Model.rawAttributes[name]`). */
export interface SequelizeAttributeLike {
  /** The column name when it differs from the attribute name. */
  field?: string
  primaryKey?: boolean
  unique?: boolean | string | { name?: string }
}

/** A model class (`sequelize.define(...)` or `class X extends Model`). */
export interface SequelizeModelLike {
  readonly name: string
  readonly rawAttributes: Record<string, SequelizeAttributeLike>
  readonly primaryKeyAttributes?: readonly string[]
  readonly uniqueKeys?: Record<string, { fields?: readonly string[] }>
  /** The table: a name, or `{ tableName, schema }` when the model has a schema. */
  getTableName(): string | { tableName: string; schema?: string | undefined; toString(): string }
  findAll(options?: any): Promise<any[]>
  unscoped?(): SequelizeModelLike
  increment(fields: any, options?: any): Promise<any>
}

/** A connection manager's pool (a dedicated connection for sessions and LISTEN). */
export interface SequelizeConnectionManagerLike {
  getConnection(options?: any): Promise<unknown>
  releaseConnection(connection: any): unknown
  destroyConnection?(connection: any): Promise<unknown>
}

/** The members of a Sequelize v6 instance this adapter calls. */
export interface SequelizeLike {
  getDialect(): string
  query(sql: any, options?: any): Promise<any>
  transaction(options: any, autoCallback: (t: any) => Promise<any>): Promise<any>
  addHook(hookType: any, name: any, fn?: any): unknown
  removeHook(hookType: any, name: any): unknown
  readonly connectionManager: SequelizeConnectionManagerLike
  readonly modelManager?: { readonly models: readonly unknown[] }
  readonly options?: { readonly logging?: unknown }
}
