import mysql from 'mysql2/promise'
import pg from 'pg'
import { DataTypes, type Model, type ModelStatic, type Options, Sequelize } from 'sequelize'
import { createStockCache, type StockCache, type StockCacheOptions, type StockSchema } from 'stockcast'
import {
  type AttachSequelizeOptions,
  attachSequelize,
  type DetachSequelize,
  sequelizeReader,
  sequelizeStore,
} from '../src/index.js'
import { type Dialect, MYSQL_URL, PG_URL, uniqueName } from './services.js'

/** A Sequelize instance on a PostgreSQL schema or a MariaDB database of its own, dropped by `close()`. */
export interface TestDb {
  readonly dialect: Dialect
  readonly sequelize: Sequelize
  /** The schema (PostgreSQL) or database (MariaDB) the tables live in. */
  readonly name: string
  /** SQL on a connection of its own, outside Sequelize (what "another writer" does). Placeholders: `$1` / `?`. */
  sql(text: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>
  close(): Promise<void>
}

export async function testDb(dialect: Dialect, options: Partial<Options> = {}): Promise<TestDb> {
  const name = uniqueName('sc_sqz')
  if (dialect === 'postgres') {
    const admin = new pg.Pool({ connectionString: PG_URL, max: 2, options: `-c search_path=${name}` })
    await admin.query(`CREATE SCHEMA "${name}"`)
    const sequelize = new Sequelize(PG_URL, {
      logging: false,
      dialectOptions: { options: `-c search_path=${name}` },
      pool: { max: 10 },
      ...options,
    })
    return {
      dialect,
      sequelize,
      name,
      sql: async (text, params) => (await admin.query(text, params)).rows,
      async close() {
        await sequelize.close().catch(() => {})
        await admin.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`)
        await admin.end()
      },
    }
  }
  const root = await mysql.createConnection(MYSQL_URL)
  await root.query(`CREATE DATABASE \`${name}\``)
  await root.end()
  const url = new URL(MYSQL_URL)
  url.pathname = `/${name}`
  const admin = mysql.createPool({ uri: url.toString(), connectionLimit: 2, dateStrings: true })
  const sequelize = new Sequelize(url.toString(), { logging: false, pool: { max: 10 }, ...options })
  return {
    dialect,
    sequelize,
    name,
    sql: async (text, params) => {
      const [rows] = await admin.query(text, params)
      return Array.isArray(rows) ? (rows as Array<Record<string, unknown>>) : []
    },
    async close() {
      await sequelize.close().catch(() => {})
      await admin.query(`DROP DATABASE IF EXISTS \`${name}\``)
      await admin.end()
    },
  }
}

export type AnyModel = ModelStatic<Model<any, any>>

/**
 * The conformance tables as Sequelize models. Attribute names differ from column names on purpose (`product` for
 * `sku`, `movedOn` for `moved_on`): the hooks must find columns through `field`.
 */
export async function ccModels(sequelize: Sequelize): Promise<Record<string, AnyModel>> {
  const id = { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true }
  const product = { type: DataTypes.STRING(64), field: 'sku' }
  const qty = { type: DataTypes.DECIMAL(18, 3), allowNull: false }
  const opts = { timestamps: false }
  const models: Record<string, AnyModel> = {
    cc_movements: sequelize.define(
      'CcMovement',
      { id, product, qty, movedOn: { type: DataTypes.DATEONLY, field: 'moved_on' } },
      { ...opts, tableName: 'cc_movements' },
    ),
    cc_supply: sequelize.define(
      'CcSupply',
      { id, product, qty, due: { type: DataTypes.DATEONLY, allowNull: false } },
      { ...opts, tableName: 'cc_supply' },
    ),
    cc_demand: sequelize.define(
      'CcDemand',
      { id, product, qty, ship: { type: DataTypes.DATEONLY, allowNull: false } },
      { ...opts, tableName: 'cc_demand' },
    ),
  }
  for (const m of Object.values(models)) await m.sync()
  return models
}

/** Column-keyed row -> attribute-keyed values of a model. */
export function toAttributes(model: AnyModel, row: Record<string, unknown>): Record<string, unknown> {
  const byField = new Map(Object.entries(model.getAttributes()).map(([a, d]) => [d.field ?? a, a]))
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [byField.get(k) ?? k, v]))
}

/** A cache over Sequelize (reader and store through its pool) with the hooks attached. */
export function sequelizeCache(
  sequelize: Sequelize,
  schema: StockSchema,
  options: Partial<StockCacheOptions> = {},
  attach: AttachSequelizeOptions = {},
): { cache: StockCache; detach: DetachSequelize } {
  const cache = createStockCache({
    schema,
    reader: sequelizeReader(sequelize, schema),
    store: sequelizeStore(sequelize),
    ...options,
  })
  const detach = attachSequelize(sequelize, cache, schema, attach)
  return { cache, detach }
}

/** Marks stay pending (no background recompute): a marked product is one `peek` no longer answers. */
export const HOLD_MARKS: Partial<StockCacheOptions> = { debounceMs: 600_000, maxWaitMs: 600_000 }

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Process warnings with `code`, collected while `fn` runs. */
export async function warningsWithCode(code: string, fn: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = []
  const listener = (w: Error & { code?: string }) => {
    if (w.code === code) seen.push(w.message)
  }
  process.on('warning', listener)
  try {
    await fn()
    await new Promise((r) => setImmediate(r)) // warnings are emitted on the next tick
    await new Promise((r) => setImmediate(r))
  } finally {
    process.off('warning', listener)
  }
  return seen
}
