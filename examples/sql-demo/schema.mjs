// The example ERP schema and its stockcast mapping (DESIGN.md section 2), shared by the demo and the benchmarks.
import { defineStockSchema } from 'stockcast'

export const DDL = `
CREATE TABLE IF NOT EXISTS stock_movements (
  id bigserial PRIMARY KEY, product_code text NOT NULL, quantity numeric(15,3) NOT NULL, moved_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS production_schedule (
  id bigserial PRIMARY KEY, product_code text NOT NULL, planned_qty numeric(15,3) NOT NULL, scheduled_for date NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
  id bigserial PRIMARY KEY, picking_batch_id text, status text NOT NULL DEFAULT 'OPEN');
CREATE TABLE IF NOT EXISTS order_lines (
  id bigserial PRIMARY KEY, order_id bigint, product_code text NOT NULL, open_qty numeric(15,3) NOT NULL,
  ship_date date NOT NULL, picking_batch_id text);
CREATE TABLE IF NOT EXISTS pre_picking_items (
  id bigserial PRIMARY KEY, product_code text NOT NULL, selected_qty numeric(15,3) NOT NULL,
  edited_ship_date date NOT NULL, status text NOT NULL);
CREATE TABLE IF NOT EXISTS picking_items (
  id bigserial PRIMARY KEY, picking_batch_id text NOT NULL, product_code text NOT NULL, qty numeric(15,3) NOT NULL,
  ship_date date NOT NULL);
CREATE INDEX IF NOT EXISTS stock_movements_product ON stock_movements (product_code);
CREATE INDEX IF NOT EXISTS production_schedule_product ON production_schedule (product_code);
CREATE INDEX IF NOT EXISTS order_lines_product ON order_lines (product_code);
CREATE INDEX IF NOT EXISTS pre_picking_items_product ON pre_picking_items (product_code);
CREATE INDEX IF NOT EXISTS picking_items_product ON picking_items (product_code);
CREATE INDEX IF NOT EXISTS picking_items_batch ON picking_items (picking_batch_id);
CREATE INDEX IF NOT EXISTS orders_batch ON orders (picking_batch_id);
`

export const TABLES = [
  'picking_items',
  'pre_picking_items',
  'order_lines',
  'orders',
  'production_schedule',
  'stock_movements',
]

export const schema = defineStockSchema({
  onHand: [{ table: 'stock_movements', product: 'product_code', quantity: 'quantity' }],
  supply: [{ table: 'production_schedule', product: 'product_code', quantity: 'planned_qty', date: 'scheduled_for' }],
  demand: [
    {
      table: 'order_lines',
      product: 'product_code',
      quantity: 'open_qty',
      date: 'ship_date',
      where: 'picking_batch_id IS NULL',
    },
    {
      table: 'pre_picking_items',
      product: 'product_code',
      quantity: 'selected_qty',
      date: 'edited_ship_date',
      where: "status IN ('CREATED','RECOMPOSED')",
    },
    {
      table: 'picking_items',
      product: 'product_code',
      quantity: 'qty',
      date: 'ship_date',
      where:
        "EXISTS (SELECT 1 FROM orders o WHERE o.picking_batch_id = picking_items.picking_batch_id AND o.status IN ('OPEN','QUOTED'))",
    },
  ],
  related: [
    { table: 'orders', products: 'SELECT product_code FROM picking_items WHERE picking_batch_id = :picking_batch_id' },
  ],
})

/** Seed `n` products with movements, orders, pre-pickings, pickings and production, set-based. */
export async function seed(db, n) {
  const sku = `'SKU-' || lpad(g::text, 5, '0')`
  await db.execute(
    `INSERT INTO stock_movements (product_code, quantity)
    SELECT ${sku}, round((random() * 500)::numeric, 3) FROM generate_series(1, $1) g`,
    [n],
  )
  await db.execute(
    `INSERT INTO order_lines (product_code, open_qty, ship_date)
    SELECT ${sku}, round((random() * 80)::numeric, 1), current_date + (floor(random() * 32) - 2)::int
    FROM generate_series(1, $1) g, generate_series(1, 4) k`,
    [n],
  )
  await db.execute(
    `INSERT INTO production_schedule (product_code, planned_qty, scheduled_for)
    SELECT ${sku}, round((random() * 200)::numeric), current_date + floor(random() * 20)::int
    FROM generate_series(1, $1) g WHERE random() < 0.6`,
    [n],
  )
  await db.execute(
    `INSERT INTO pre_picking_items (product_code, selected_qty, edited_ship_date, status)
    SELECT ${sku}, 10, current_date + floor(random() * 10)::int,
           (ARRAY['CREATED','RECOMPOSED','CANCELLED'])[1 + floor(random() * 3)::int]
    FROM generate_series(1, $1) g WHERE random() < 0.3`,
    [n],
  )
  await db.execute(
    `INSERT INTO orders (picking_batch_id, status)
    SELECT 'B' || g, (ARRAY['OPEN','QUOTED','SHIPPED'])[1 + (g % 3)] FROM generate_series(1, $1 / 10) g`,
    [n],
  )
  await db.execute(
    `INSERT INTO picking_items (picking_batch_id, product_code, qty, ship_date)
    SELECT 'B' || (1 + floor(random() * ($1 / 10))::int), ${sku}, 5, current_date + floor(random() * 7)::int
    FROM generate_series(1, $1) g WHERE random() < 0.5`,
    [n],
  )
}
