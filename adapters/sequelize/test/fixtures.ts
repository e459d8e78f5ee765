import { DataTypes, type Sequelize } from 'sequelize'
import { defineStockSchema, type StockCache } from 'stockcast'
import { expect } from 'vitest'
import type { AnyModel } from './helpers.js'

/**
 * The schema of the operation tests: movements (on hand) and paranoid order lines (demand; soft-deleted lines do not
 * count), plus batches whose lines a `related` query finds.
 */
export const opsSchema = defineStockSchema({
  onHand: [{ table: 'ops_movements', product: 'sku', quantity: 'qty' }],
  demand: [
    {
      table: 'ops_lines',
      product: 'product_code',
      quantity: 'open_qty',
      date: 'ship_date',
      where:
        "deleted_at IS NULL AND EXISTS (SELECT 1 FROM ops_batches b WHERE b.code = ops_lines.batch_code AND b.status = 'OPEN')",
    },
  ],
  related: [{ table: 'ops_batches', products: 'SELECT product_code FROM ops_lines WHERE batch_code = :code' }],
})

export interface OpsModels {
  Movement: AnyModel
  Line: AnyModel
  Batch: AnyModel
}

/** Models of `opsSchema`; attribute names differ from columns (`product` -> sku, underscored lines). */
export async function opsModels(sequelize: Sequelize): Promise<OpsModels> {
  const Movement = sequelize.define(
    'Movement',
    {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      product: { type: DataTypes.STRING(64), field: 'sku', allowNull: false },
      qty: { type: DataTypes.DECIMAL(18, 3), allowNull: false },
      ref: { type: DataTypes.STRING(64), unique: true },
    },
    { tableName: 'ops_movements', timestamps: false },
  )
  const Batch = sequelize.define(
    'Batch',
    {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      code: { type: DataTypes.STRING(32), allowNull: false },
      status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'OPEN' },
    },
    { tableName: 'ops_batches', timestamps: false },
  )
  const Line = sequelize.define(
    'Line',
    {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      productCode: { type: DataTypes.STRING(64), allowNull: false },
      openQty: { type: DataTypes.DECIMAL(18, 3), allowNull: false },
      shipDate: { type: DataTypes.DATEONLY, allowNull: false },
      batchCode: { type: DataTypes.STRING(32), allowNull: false },
    },
    { tableName: 'ops_lines', underscored: true, paranoid: true, timestamps: true },
  )
  await Movement.sync()
  await Batch.sync()
  await Line.sync()
  return { Movement, Line, Batch }
}

/** `YYYY-MM-DD` of today + n (UTC, the cache's default time zone). */
export function day(n: number): string {
  const d = new Date()
  d.setUTCDate(d.getUTCDate() + n)
  return d.toISOString().slice(0, 10)
}

let counter = 0
/** Product ids unique to this test run. */
export function skus(n: number, tag = 'P'): string[] {
  counter++
  return Array.from({ length: n }, (_, i) => `${tag}${process.pid}-${counter}-${i}`)
}

/** Load the products into L1 so that a mark shows as `peek() === undefined`. */
export async function warm(cache: StockCache, products: readonly string[]): Promise<void> {
  for (const p of products) await cache.get(p)
  for (const p of products) expect(cache.peek(p), `${p} is cached`).toBeDefined()
}

export function expectMarked(cache: StockCache, products: readonly string[]): void {
  for (const p of products) expect(cache.peek(p), `${p} is marked`).toBeUndefined()
}

export function expectUnmarked(cache: StockCache, products: readonly string[]): void {
  for (const p of products) expect(cache.peek(p), `${p} is not marked`).toBeDefined()
}

/** Cache and sources agree for these products (reads recompute what was marked). */
export async function expectTruth(cache: StockCache, products: readonly string[]): Promise<void> {
  for (const p of products) await cache.get(p)
  const report = await cache.validate({ products })
  expect(report.mismatches).toEqual([])
  expect(report.checked).toBeGreaterThanOrEqual(products.length)
}
