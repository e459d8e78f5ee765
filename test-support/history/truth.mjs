// The history checker's truth: the source tables replayed from a snapshot and the history's row images, aggregated
// here in JS with the schema's where/related semantics (never through sqlReader, which is under test), then
// projected by the core's pure calculator `projectStock`. Also the fingerprint that reads and truth states are
// compared by.
import { projectStock } from 'stockcast'
import { COUNTING_STATUSES, TABLE_KEYS } from './workload.mjs'

/** Tables whose rows name a product (column 1 of the image); `orders` is the related table. */
const SOURCE_TABLES = ['movements', 'production', 'order_lines', 'picking_items']

/**
 * The value a read is compared by: D0, stockToday, status, first stock-out day, every day's closing and, when it
 * differs from the firm series anywhere, closingWithPending. Equal fingerprints = equal for every field the checker
 * looks at.
 */
export function fingerprint(p) {
  const closing = p.days.map((d) => d.closing)
  const withPending = p.days.map((d) => d.closingWithPending)
  const pending = withPending.some((v, i) => v !== closing[i]) ? withPending.join(',') : ''
  return [p.today, p.stockToday, p.status, p.firstStockoutDate ?? '-', closing.join(','), pending].join('|')
}

/** A fingerprint's fields, for messages. */
export function parseFingerprint(fp) {
  const [today, stockToday, status, stockout, closing, pending] = fp.split('|')
  return {
    today,
    stockToday: Number(stockToday),
    status,
    firstStockoutDate: stockout === '-' ? null : stockout,
    closing: closing.split(',').map(Number),
    closingWithPending: pending === '' ? null : pending.split(',').map(Number),
  }
}

/** A short human form: `stock 12.5 OK out - D0 3 D7 -1 D28 4`. */
export function describeFingerprint(fp) {
  const f = parseFingerprint(fp)
  const c = f.closing
  return `stock ${f.stockToday} ${f.status} out ${f.firstStockoutDate ?? '-'} D0 ${c[0]} D7 ${c[7]} D28 ${c[c.length - 1]}`
}

/** What differs between two fingerprints (`read` against `truth`), e.g. `stockToday 5 (truth 7); closing D3..D28`. */
export function diffFingerprints(read, truth) {
  const a = parseFingerprint(read)
  const b = parseFingerprint(truth)
  const out = []
  for (const k of ['today', 'stockToday', 'status', 'firstStockoutDate']) {
    if (a[k] !== b[k]) out.push(`${k} ${a[k]} (truth ${b[k]})`)
  }
  const days = []
  for (let i = 0; i < Math.max(a.closing.length, b.closing.length); i++) if (a.closing[i] !== b.closing[i]) days.push(i)
  if (days.length > 0) {
    const first = days[0]
    out.push(
      `closing differs on ${days.length} day(s) from D${first} (D${first}: ${a.closing[first]}, truth ${b.closing[first]})`,
    )
  }
  if (String(a.closingWithPending) !== String(b.closingWithPending)) out.push('closingWithPending differs')
  return out.length === 0 ? 'equal' : out.join('; ')
}

/**
 * The projection inputs of one product from table rows (images `[id, ...columns]` in workload.mjs TABLES order),
 * with the schema's semantics: every movement is balance; production is supply on its date; an order line is demand
 * while `picking_batch_id IS NULL`; a picking item is demand while an order of its batch is OPEN or QUOTED.
 */
export function inputsOf(rowsOfProduct, statusByBatch) {
  const inputs = { onHand: [], supply: [], demand: [] }
  for (const r of rowsOfProduct.movements) inputs.onHand.push({ quantity: r[2] })
  for (const r of rowsOfProduct.production) inputs.supply.push({ date: r[3], quantity: r[2] })
  for (const r of rowsOfProduct.order_lines) if (r[4] === null) inputs.demand.push({ date: r[3], quantity: r[2] })
  for (const r of rowsOfProduct.picking_items) {
    if (COUNTING_STATUSES.has(statusByBatch.get(r[4]))) inputs.demand.push({ date: r[3], quantity: r[2] })
  }
  return inputs
}

/** The truth of one product: the calculator over `inputsOf`, with the caches' options (UTC, defaults). */
export function truthProjection(inputs, today) {
  return projectStock(inputs, { today, timeZone: 'UTC' })
}

/**
 * The source tables in memory: rows by table and id, an index by product, and the statuses by batch. `apply` replays
 * one commit's changes and returns the products whose truth may have changed.
 */
export class Replay {
  constructor(snapshot) {
    /** table -> id -> image */
    this.rows = Object.fromEntries(TABLE_KEYS.map((k) => [k, new Map()]))
    /** product -> table -> Set(id) */
    this.byProduct = new Map()
    for (const k of TABLE_KEYS) for (const img of snapshot[k] ?? []) this.#put(k, img)
  }

  #index(table, img, add) {
    if (!SOURCE_TABLES.includes(table)) return
    const p = img[1]
    let m = this.byProduct.get(p)
    if (m === undefined) {
      m = Object.fromEntries(SOURCE_TABLES.map((k) => [k, new Set()]))
      this.byProduct.set(p, m)
    }
    if (add) m[table].add(img[0])
    else m[table].delete(img[0])
  }

  #put(table, img) {
    const old = this.rows[table].get(img[0])
    if (old !== undefined) this.#index(table, old, false)
    this.rows[table].set(img[0], img)
    this.#index(table, img, true)
  }

  #drop(table, id) {
    const old = this.rows[table].get(id)
    if (old === undefined) return
    this.#index(table, old, false)
    this.rows[table].delete(id)
  }

  /** Products of picking items in these batches. */
  #productsOfBatches(batches, out) {
    if (batches.size === 0) return
    for (const img of this.rows.picking_items.values()) if (batches.has(img[4])) out.add(img[1])
  }

  /**
   * Apply one commit's changes (`[table, old image | null, new image | null]` in statement order). Throws when an
   * image does not match the replayed row (the history would be unsound). Returns the products it may change.
   */
  apply(changes) {
    const affected = new Set()
    const batches = new Set()
    for (const [table, old, img] of changes) {
      if (table !== 'orders') continue
      if (old !== null) batches.add(old[1])
      if (img !== null) batches.add(img[1])
    }
    this.#productsOfBatches(batches, affected)
    for (const [table, old, img] of changes) {
      // In statement order: a row changed twice in one transaction shows the first change's image as its old one.
      const id = (old ?? img)[0]
      const cur = this.rows[table].get(id)
      if (old !== null && (cur === undefined || JSON.stringify(cur) !== JSON.stringify(old))) {
        throw new Error(
          `history replay: ${table} row ${id} was ${JSON.stringify(cur)} here, the writer saw ${JSON.stringify(old)}`,
        )
      }
      if (old === null && cur !== undefined) throw new Error(`history replay: ${table} row ${id} inserted twice`)
      if (table !== 'orders') {
        if (old !== null) affected.add(old[1])
        if (img !== null) affected.add(img[1])
      }
      if (img === null) this.#drop(table, id)
      else this.#put(table, img)
    }
    this.#productsOfBatches(batches, affected)
    return affected
  }

  statusByBatch() {
    const m = new Map()
    for (const img of this.rows.orders.values()) m.set(img[1], img[2])
    return m
  }

  /** Rows of a product per source table (from the index). */
  rowsOf(product) {
    const ids = this.byProduct.get(product)
    const out = {}
    for (const k of SOURCE_TABLES) out[k] = ids === undefined ? [] : [...ids[k]].map((id) => this.rows[k].get(id))
    return out
  }

  /** Rows of a product found by scanning every table (the index's cross-check). */
  scanRowsOf(product) {
    const out = {}
    for (const k of SOURCE_TABLES) out[k] = [...this.rows[k].values()].filter((r) => r[1] === product)
    return out
  }

  /** The fingerprint of a product's truth now. */
  fingerprintOf(product, today, statusByBatch = this.statusByBatch(), scan = false) {
    const rows = scan ? this.scanRowsOf(product) : this.rowsOf(product)
    return fingerprint(truthProjection(inputsOf(rows, statusByBatch), today))
  }

  /** Every table as sorted images (to compare with the database). */
  dump() {
    const out = {}
    for (const k of TABLE_KEYS) out[k] = [...this.rows[k].values()].sort((a, b) => a[0] - b[0])
    return out
  }
}
