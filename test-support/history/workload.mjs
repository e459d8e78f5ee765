// The history checker's stock schema (DESIGN.md section 2, one table per role) and the random transactions its
// writer processes run. Shared by the writer processes (writer.mjs), the cache processes (cache-process.mjs) and the
// orchestrator (run.mjs). Plain ESM: child processes run it with node as users would.

/** Statuses of an order (a picking batch); its picking items count as demand while it is OPEN or QUOTED. */
export const ORDER_STATUSES = ['OPEN', 'QUOTED', 'CLOSED', 'SHIPPED']
export const COUNTING_STATUSES = new Set(['OPEN', 'QUOTED'])

/**
 * The row image of each table: the columns logged (in this order) and replayed. `kind` says how a value is
 * normalized: `num` exact decimal string, `date` YYYY-MM-DD, `int` integer or null, `text`.
 */
export const TABLES = {
  movements: [
    ['product_code', 'text'],
    ['quantity', 'num'],
  ],
  production: [
    ['product_code', 'text'],
    ['planned_qty', 'num'],
    ['scheduled_for', 'date'],
  ],
  order_lines: [
    ['product_code', 'text'],
    ['open_qty', 'num'],
    ['ship_date', 'date'],
    ['picking_batch_id', 'int'],
  ],
  orders: [
    ['picking_batch_id', 'int'],
    ['status', 'text'],
  ],
  picking_items: [
    ['product_code', 'text'],
    ['qty', 'num'],
    ['ship_date', 'date'],
    ['picking_batch_id', 'int'],
  ],
}
export const TABLE_KEYS = Object.keys(TABLES)

/** Table names of a run: every object of a run starts with its prefix (lower case: PostgreSQL folds names). */
export function tableNames(prefix) {
  const p = prefix.toLowerCase()
  return {
    products: `${p}_products`,
    movements: `${p}_movements`,
    production: `${p}_production`,
    order_lines: `${p}_order_lines`,
    orders: `${p}_orders`,
    picking_items: `${p}_picking_items`,
    history: `${p}_history`,
    store: `${p}_projections`,
  }
}

/** The `defineStockSchema` declaration of a run (the user's mapping of the tables above). */
export function schemaSpec(prefix) {
  const t = tableNames(prefix)
  return {
    onHand: [{ table: t.movements, product: 'product_code', quantity: 'quantity' }],
    supply: [{ table: t.production, product: 'product_code', quantity: 'planned_qty', date: 'scheduled_for' }],
    demand: [
      {
        table: t.order_lines,
        product: 'product_code',
        quantity: 'open_qty',
        date: 'ship_date',
        where: 'picking_batch_id IS NULL',
      },
      {
        table: t.picking_items,
        product: 'product_code',
        quantity: 'qty',
        date: 'ship_date',
        where: `EXISTS (SELECT 1 FROM ${t.orders} o WHERE o.picking_batch_id = ${t.picking_items}.picking_batch_id AND o.status IN ('OPEN','QUOTED'))`,
      },
    ],
    related: [
      {
        table: t.orders,
        products: `SELECT product_code FROM ${t.picking_items} WHERE picking_batch_id = :picking_batch_id`,
      },
    ],
  }
}

/** CREATE TABLE statements for a dialect. */
export function ddl(dialect, prefix) {
  const t = tableNames(prefix)
  if (dialect === 'postgres') {
    return [
      `CREATE TABLE ${t.products} (code text PRIMARY KEY)`,
      `CREATE TABLE ${t.movements} (id bigserial PRIMARY KEY, product_code text NOT NULL, quantity numeric(18,3) NOT NULL)`,
      `CREATE INDEX ON ${t.movements} (product_code)`,
      `CREATE TABLE ${t.production} (id bigserial PRIMARY KEY, product_code text NOT NULL, planned_qty numeric(18,3) NOT NULL, scheduled_for date NOT NULL)`,
      `CREATE INDEX ON ${t.production} (product_code)`,
      `CREATE TABLE ${t.order_lines} (id bigserial PRIMARY KEY, product_code text NOT NULL, open_qty numeric(18,3) NOT NULL, ship_date date NOT NULL, picking_batch_id int NULL)`,
      `CREATE INDEX ON ${t.order_lines} (product_code)`,
      `CREATE TABLE ${t.orders} (id bigserial PRIMARY KEY, picking_batch_id int NOT NULL UNIQUE, status text NOT NULL)`,
      `CREATE TABLE ${t.picking_items} (id bigserial PRIMARY KEY, product_code text NOT NULL, qty numeric(18,3) NOT NULL, ship_date date NOT NULL, picking_batch_id int NOT NULL)`,
      `CREATE INDEX ON ${t.picking_items} (product_code)`,
      `CREATE INDEX ON ${t.picking_items} (picking_batch_id)`,
      `CREATE TABLE ${t.history} (seq bigserial PRIMARY KEY, writer text NOT NULL, rec_us bigint NOT NULL, changes text NOT NULL)`,
    ]
  }
  const id = 'id BIGINT AUTO_INCREMENT PRIMARY KEY'
  const inno = 'ENGINE=InnoDB DEFAULT CHARSET=utf8mb4'
  return [
    `CREATE TABLE ${t.products} (code VARCHAR(32) PRIMARY KEY) ${inno}`,
    `CREATE TABLE ${t.movements} (${id}, product_code VARCHAR(32) NOT NULL, quantity DECIMAL(18,3) NOT NULL, INDEX (product_code)) ${inno}`,
    `CREATE TABLE ${t.production} (${id}, product_code VARCHAR(32) NOT NULL, planned_qty DECIMAL(18,3) NOT NULL, scheduled_for DATE NOT NULL, INDEX (product_code)) ${inno}`,
    `CREATE TABLE ${t.order_lines} (${id}, product_code VARCHAR(32) NOT NULL, open_qty DECIMAL(18,3) NOT NULL, ship_date DATE NOT NULL, picking_batch_id INT NULL, INDEX (product_code)) ${inno}`,
    `CREATE TABLE ${t.orders} (${id}, picking_batch_id INT NOT NULL UNIQUE, status VARCHAR(16) NOT NULL) ${inno}`,
    `CREATE TABLE ${t.picking_items} (${id}, product_code VARCHAR(32) NOT NULL, qty DECIMAL(18,3) NOT NULL, ship_date DATE NOT NULL, picking_batch_id INT NOT NULL, INDEX (product_code), INDEX (picking_batch_id)) ${inno}`,
    `CREATE TABLE ${t.history} (seq BIGINT AUTO_INCREMENT PRIMARY KEY, writer VARCHAR(32) NOT NULL, rec_us BIGINT NOT NULL, changes LONGTEXT NOT NULL) ${inno}`,
  ]
}

/** The select list of a table's row image (id first), as strings the drivers return exactly. */
export function selectList(dialect, table) {
  const cols = TABLES[table].map(([c, kind]) => {
    if (dialect === 'postgres' && kind === 'num') return `${c}::text AS ${c}`
    if (dialect === 'postgres' && kind === 'date') return `to_char(${c}, 'YYYY-MM-DD') AS ${c}`
    if (dialect === 'mysql' && kind === 'num') return `CAST(${c} AS CHAR) AS ${c}`
    if (dialect === 'mysql' && kind === 'date') return `DATE_FORMAT(${c}, '%Y-%m-%d') AS ${c}`
    return c
  })
  return ['id', ...cols].join(', ')
}

/** A database row (from `selectList`) as a row image: `[id, ...values in TABLES order]`. */
export function imageOf(table, row) {
  const out = [Number(row.id)]
  for (const [c, kind] of TABLES[table]) {
    const v = row[c]
    if (kind === 'int') out.push(v === null || v === undefined ? null : Number(v))
    else out.push(String(v))
  }
  return out
}

// ------------------------------------------------------------------ randomness and dates

/** A small seeded PRNG (mulberry32): the same seed gives the same workload mix. */
export function prng(seed) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (list) => list[Math.floor(next() * list.length)],
    chance: (p) => next() < p,
  }
}

/** `YYYY-MM-DD` of today (UTC, the caches' default time zone) plus `days`. */
export function dayFrom(today, days) {
  const ms = Date.parse(`${today}T00:00:00Z`) + days * 86_400_000
  return new Date(ms).toISOString().slice(0, 10)
}

export const utcToday = (now = Date.now()) => new Date(now).toISOString().slice(0, 10)

/** A date around today: some overdue, most inside the horizon (D0..D28), some beyond it. */
export function randomDate(rng, today) {
  const r = rng.next()
  if (r < 0.12) return dayFrom(today, -1 - rng.int(6))
  if (r < 0.88) return dayFrom(today, rng.int(29))
  return dayFrom(today, 29 + rng.int(15))
}

/** A decimal with 3 places in [lo, hi). */
export function randomQty(rng, lo, hi) {
  const v = lo + rng.next() * (hi - lo)
  return (Math.round(v * 1000) / 1000).toFixed(3)
}

/** Products P00..P(n-1); batches 1..m. */
export const productList = (n) => Array.from({ length: n }, (_, i) => `P${String(i).padStart(2, '0')}`)
export const batchList = (m) => Array.from({ length: m }, (_, i) => i + 1)

/** A product, skewed: a third of the picks fall on the first fifth of the list, so transactions collide often. */
export function pickProduct(rng, products) {
  if (rng.chance(0.35)) return products[rng.int(Math.max(1, Math.floor(products.length / 5)))]
  return rng.pick(products)
}

/**
 * The seed rows of a run (before the capture is installed): per product 2 movements, 1 production row, 2 order
 * lines; per batch an order and 3 picking items.
 */
export function seedRows(products, batches, today, seed) {
  const rng = prng(seed)
  const rows = { movements: [], production: [], order_lines: [], orders: [], picking_items: [] }
  for (const p of products) {
    rows.movements.push([p, randomQty(rng, 10, 60)], [p, randomQty(rng, -5, 10)])
    rows.production.push([p, randomQty(rng, 1, 30), randomDate(rng, today)])
    rows.order_lines.push([p, randomQty(rng, 1, 25), randomDate(rng, today), null])
    rows.order_lines.push([
      p,
      randomQty(rng, 1, 25),
      randomDate(rng, today),
      rng.chance(0.3) ? rng.pick(batches) : null,
    ])
  }
  for (const b of batches) {
    rows.orders.push([b, rng.pick(ORDER_STATUSES)])
    for (let i = 0; i < 3; i++)
      rows.picking_items.push([pickProduct(rng, products), randomQty(rng, 1, 15), randomDate(rng, today), b])
  }
  return rows
}

// ------------------------------------------------------------------ transaction plans

/**
 * Steps: each names the products and batches it may touch (locked up front, in order, by the writer) and what it
 * does. Kinds:
 *   mv_ins, mv_upd, mv_move, mv_del         stock_movements (onHand): insert, quantity, product code change, delete
 *   pr_ins, pr_upd, pr_move, pr_del         production (supply)
 *   ol_ins, ol_upd, ol_toggle, ol_move, ol_del   order lines (demand where picking_batch_id IS NULL)
 *   pi_ins, pi_upd, pi_move, pi_batch, pi_del    picking items (demand while their order is OPEN/QUOTED)
 *   flip                                    order status change (the related table)
 *   ship                                    an order line shipped: open_qty down (or deleted), a negative movement
 *   produce                                 a production row done: deleted, a positive movement
 *   bulk                                    one UPDATE over the movements of several products
 */
export function planTransaction(rng, products, batches) {
  const steps = []
  const n = rng.chance(0.6) ? 1 : 2 + rng.int(3)
  for (let i = 0; i < n; i++) steps.push(planStep(rng, products, batches))
  return steps
}

const KINDS = [
  ['mv_ins', 8],
  ['mv_upd', 6],
  ['mv_move', 4],
  ['mv_del', 3],
  ['pr_ins', 4],
  ['pr_upd', 4],
  ['pr_move', 2],
  ['pr_del', 2],
  ['ol_ins', 4],
  ['ol_upd', 4],
  ['ol_toggle', 3],
  ['ol_move', 2],
  ['ol_del', 2],
  ['pi_ins', 3],
  ['pi_upd', 3],
  ['pi_move', 2],
  ['pi_batch', 2],
  ['pi_del', 2],
  ['flip', 6],
  ['ship', 4],
  ['produce', 3],
  ['bulk', 2],
]
const TOTAL = KINDS.reduce((s, [, w]) => s + w, 0)

function planStep(rng, products, batches) {
  let r = rng.int(TOTAL)
  let kind = KINDS[0][0]
  for (const [k, w] of KINDS) {
    if (r < w) {
      kind = k
      break
    }
    r -= w
  }
  const a = pickProduct(rng, products)
  let b = pickProduct(rng, products)
  if (b === a) b = products[(products.indexOf(a) + 1) % products.length]
  const x = rng.pick(batches)
  let y = rng.pick(batches)
  if (y === x) y = batches[(batches.indexOf(x) + 1) % batches.length]
  const seed = rng.int(2 ** 30)
  switch (kind) {
    case 'mv_move':
    case 'pr_move':
    case 'ol_move':
      return { kind, products: [a, b], batches: [], a, b, seed }
    case 'pi_ins':
    case 'pi_upd':
    case 'pi_del':
      return { kind, products: [a], batches: [x], a, x, seed }
    case 'pi_move':
      return { kind, products: [a, b], batches: [x], a, b, x, seed }
    case 'pi_batch':
      return { kind, products: [a], batches: [x, y], a, x, y, seed }
    case 'flip':
      return { kind, products: [], batches: [x], x, seed }
    case 'bulk': {
      const set = new Set([a])
      const k = 2 + rng.int(4)
      while (set.size < k) set.add(rng.pick(products))
      return { kind, products: [...set], batches: [], seed }
    }
    default:
      return { kind, products: [a], batches: [], a, seed }
  }
}
