import {
  defineStockSchema,
  type MemorySource,
  type ReadOptions,
  type SourceInputs,
  type SourceReader,
  type StockSchema,
} from '../../src/index.js'

export const schema: StockSchema = defineStockSchema({
  onHand: [{ table: 'stock_movements', product: 'product_code', quantity: 'quantity' }],
  supply: [{ table: 'production_schedule', product: 'product_code', quantity: 'planned_qty', date: 'scheduled_for' }],
  demand: [
    { table: 'order_lines', product: 'product_code', quantity: 'open_qty', date: 'ship_date' },
    { table: 'quotations', product: 'product_code', quantity: 'qty', date: 'ship_date', pending: true },
  ],
})

export const locationSchema: StockSchema = defineStockSchema({
  onHand: [{ table: 'stock_movements', product: 'product_code', quantity: 'quantity', location: 'warehouse' }],
  supply: [],
  demand: [
    { table: 'order_lines', product: 'product_code', quantity: 'open_qty', date: 'ship_date', location: 'warehouse' },
  ],
})

/** A fake clock you move by hand. */
export class FakeClock {
  constructor(public ms = Date.parse('2026-11-22T12:00:00Z')) {}
  now = (): number => this.ms
  advance(ms: number): void {
    this.ms += ms
  }
}

/** The day `n` days after `base` (YYYY-MM-DD). */
export function addDays(base: string, n: number): string {
  const d = new Date(`${base}T00:00:00Z`)
  d.setUTCDate(d.getUTCDate() + n)
  return d.toISOString().slice(0, 10)
}

/**
 * Wraps a real reader (never a mock of the data): counts calls, can fail on command, and can hold a read
 * at a gate so a test can act while the read is "in the database".
 */
export class ControlledReader implements SourceReader {
  calls: Array<{ products: string[]; sources?: readonly string[] }> = []
  failWith: Error | undefined
  /** Reads block here until `release()` when set. */
  gate: { promise: Promise<void>; release: () => void; entered: Promise<void>; enter: () => void } | undefined
  concurrent = 0
  maxConcurrent = 0
  /** Per product: reads in progress (to detect overlapping recomputes). */
  readonly inProgress = new Map<string, number>()
  overlaps = 0

  constructor(readonly inner: SourceReader) {}

  hold(): void {
    let release!: () => void
    let enter!: () => void
    const promise = new Promise<void>((r) => (release = r))
    const entered = new Promise<void>((r) => (enter = r))
    this.gate = { promise, release, entered, enter }
  }

  release(): void {
    const g = this.gate
    this.gate = undefined
    g?.release()
  }

  async read(products: readonly string[], options?: ReadOptions): Promise<Map<string, SourceInputs>> {
    this.calls.push({ products: [...products], ...(options?.sources ? { sources: options.sources } : {}) })
    for (const p of products) {
      const n = (this.inProgress.get(p) ?? 0) + 1
      if (n > 1) this.overlaps++
      this.inProgress.set(p, n)
    }
    this.concurrent++
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent)
    try {
      if (this.failWith) throw this.failWith
      const gate = this.gate
      // Read the data first, like a database snapshot taken when the query starts.
      const result = await this.inner.read(products, options)
      if (gate) {
        gate.enter()
        await gate.promise
      }
      return result
    } finally {
      this.concurrent--
      for (const p of products) this.inProgress.set(p, (this.inProgress.get(p) ?? 1) - 1)
    }
  }

  products(): Promise<string[]> {
    return this.inner.products!()
  }
}

export function seed(
  db: MemorySource,
  product: string,
  qty: string | number,
  today?: string,
  demand?: Array<[number, string]>,
): void {
  db.insert('stock_movements', { product_code: product, quantity: qty })
  if (today && demand)
    for (const [d, q] of demand)
      db.insert('order_lines', { product_code: product, open_qty: q, ship_date: addDays(today, d) })
}

/** A small seeded PRNG (mulberry32): the same sequence for the same seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
