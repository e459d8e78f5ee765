import type { ReadOptions, SourceInputs, SourceReader } from '../cache/types.js'
import { InvalidInputError } from '../errors.js'
import type { FlowRow, MovementRow } from '../projection/types.js'
import type { StockSchema, StockSource } from './schema.js'
import type { StockCache } from './stock-cache.js'

export type Row = Record<string, unknown>

export interface MemorySourceOptions {
  /** In-memory stand-ins for each source's SQL `where`, by source id or table. */
  filters?: Record<string, (row: Row, db: MemorySourceData) => boolean>
  /** For `related` tables: the products a changed row affects. */
  related?: Record<string, (row: Row, db: MemorySourceData) => string[]>
}

/** Read-only view of the tables (for filters and related lookups). */
export interface MemorySourceData {
  rows(table: string): IterableIterator<Row>
  get(table: string, id: number): Row | undefined
}

/** Writes grouped in one transaction: applied together on commit, discarded on rollback. */
export interface MemoryTransaction {
  insert(table: string, row: Row): number
  update(table: string, id: number, patch: Row): void
  delete(table: string, id: number): void
}

/**
 * An in-memory database of your source tables with change capture: a reader (L3) and, once attached to a cache,
 * marks for every committed write (old and new product on key changes; none on rollback).
 * It backs the demo, the model-based tests and the core's change-capture conformance run.
 *
 * @example
 * ```ts
 * const db = memorySource(schema)
 * const cache = createStockCache({ schema, reader: db.reader })
 * db.attach(cache)
 * await db.transaction((tx) => { tx.insert('stock_movements', { product_code: 'A', quantity: '5' }) })
 * ```
 */
export interface MemorySource extends MemorySourceData {
  readonly reader: SourceReader
  /** Send marks for committed writes to this cache (through a transaction scope per write transaction). */
  attach(cache: StockCache): void
  insert(table: string, row: Row): number
  update(table: string, id: number, patch: Row): void
  delete(table: string, id: number): void
  /** Run `fn` as one transaction: commit when it resolves, roll back when it throws. */
  transaction<T>(fn: (tx: MemoryTransaction) => Promise<T> | T): Promise<T>
  /** Row count of a table. */
  count(table: string): number
  /** Every product that appears in a source table. */
  products(): string[]
}

type Op =
  | { kind: 'insert'; table: string; id: number; row: Row }
  | { kind: 'update'; table: string; id: number; patch: Row }
  | { kind: 'delete'; table: string; id: number }

export function memorySource(schema: StockSchema, options: MemorySourceOptions = {}): MemorySource {
  const tables = new Map<string, Map<number, Row>>()
  const relatedTables = new Set(schema.related.map((r) => r.table))
  for (const t of [...schema.tables, ...relatedTables]) tables.set(t, new Map())
  let nextId = 1
  const caches: StockCache[] = []

  const table = (name: string): Map<number, Row> => {
    const t = tables.get(name)
    if (t === undefined) {
      throw new InvalidInputError(
        `memorySource: unknown table ${JSON.stringify(name)} (the schema names ${[...tables.keys()].join(', ')})`,
      )
    }
    return t
  }
  const data: MemorySourceData = {
    rows: (name) => table(name).values(),
    get: (name, id) => table(name).get(id),
  }
  const filterOf = (s: StockSource) => options.filters?.[s.id] ?? options.filters?.[s.table]

  /** Products (and the sources) a row of a table touches. */
  const touched = (name: string, row: Row | undefined, out: Set<string>): void => {
    if (row === undefined) return
    for (const s of schema.sourcesForTable(name)) {
      const p = row[s.product]
      if (typeof p === 'string' && p !== '') out.add(p)
    }
    if (relatedTables.has(name)) {
      const fn = options.related?.[name]
      if (fn === undefined)
        throw new InvalidInputError(`memorySource: related table ${name} needs options.related.${name}`)
      for (const p of fn(row, data)) out.add(p)
    }
  }

  /** Check every op against the state the earlier ops of the same transaction leave, before applying any. */
  const check = (ops: readonly Op[]): void => {
    const exists = new Map<string, Map<number, boolean>>()
    for (const op of ops) {
      const t = table(op.table)
      let overlay = exists.get(op.table)
      if (overlay === undefined) {
        overlay = new Map()
        exists.set(op.table, overlay)
      }
      const present = overlay.get(op.id) ?? t.has(op.id)
      if (op.kind !== 'insert' && !present) {
        throw new InvalidInputError(`memorySource: ${op.table} has no row ${op.id}; the transaction changed nothing`)
      }
      overlay.set(op.id, op.kind !== 'delete')
    }
  }

  /** Apply ops atomically; return the products and tables they touched (old and new values). */
  const apply = (ops: readonly Op[]): { products: Set<string>; tables: Set<string> } => {
    check(ops)
    const products = new Set<string>()
    const changed = new Set<string>()
    // Related lookups see the state before and after, so a status change marks through either side.
    for (const op of ops) {
      const t = table(op.table)
      changed.add(op.table)
      if (op.kind === 'insert') {
        t.set(op.id, { ...op.row })
        touched(op.table, t.get(op.id), products)
      } else if (op.kind === 'update') {
        const before = t.get(op.id)!
        touched(op.table, before, products)
        t.set(op.id, { ...before, ...op.patch })
        touched(op.table, t.get(op.id), products)
      } else {
        touched(op.table, t.get(op.id), products)
        t.delete(op.id)
      }
    }
    return { products, tables: changed }
  }

  const markAll = (products: Set<string>, changed: Set<string>): void => {
    if (products.size === 0) return
    const list = [...products]
    const tablesChanged = [...changed]
    const onlySources = tablesChanged.every((t) => schema.sourcesForTable(t).length > 0 && !relatedTables.has(t))
    for (const cache of caches) {
      const scope = cache.transaction()
      cache.markDirty(list, { tx: scope, reason: onlySources ? { tables: tablesChanged } : 'related change' })
      scope.commit()
    }
  }

  const txApi = (ops: Op[]): MemoryTransaction => ({
    insert(name, row) {
      table(name)
      const id = nextId++
      ops.push({ kind: 'insert', table: name, id, row: { ...row, id } })
      return id
    },
    update(name, id, patch) {
      table(name)
      ops.push({ kind: 'update', table: name, id, patch })
    },
    delete(name, id) {
      table(name)
      ops.push({ kind: 'delete', table: name, id })
    },
  })

  const runOps = (ops: Op[]): void => {
    const { products, tables: changed } = apply(ops)
    markAll(products, changed)
  }

  const reader: SourceReader = {
    async read(products, opts: ReadOptions = {}) {
      const wanted = new Set(products)
      const only = opts.sources ? new Set(opts.sources) : undefined
      const out = new Map<string, SourceInputs>()
      const bucket = (p: string): SourceInputs => {
        let b = out.get(p)
        if (b === undefined) {
          b = { onHand: [], supply: [], demand: [] }
          out.set(p, b)
        }
        return b
      }
      for (const s of schema.sources) {
        if (only !== undefined && !only.has(s.id)) continue
        const filter = filterOf(s)
        for (const row of table(s.table).values()) {
          const p = row[s.product]
          if (typeof p !== 'string' || !wanted.has(p)) continue
          if (filter !== undefined && !filter(row, data)) continue
          const quantity = row[s.quantity] as string | number
          const location = s.location === undefined ? undefined : (row[s.location] as string | null)
          if (s.kind === 'onHand') {
            const r: MovementRow = { quantity, source: s.id }
            if (s.date !== undefined) r.date = (row[s.date] as string | null) ?? null
            if (location !== undefined) r.location = location
            bucket(p).onHand.push(r)
          } else {
            const r: FlowRow = { date: row[s.date!] as string, quantity, source: s.id }
            if (s.pending) r.pending = true
            if (location !== undefined) r.location = location
            bucket(p)[s.kind].push(r)
          }
        }
      }
      return out
    },
    async products() {
      return api.products()
    },
  }

  const api: MemorySource = {
    reader,
    rows: data.rows,
    get: data.get,
    attach(cache) {
      caches.push(cache)
    },
    insert(name, row) {
      const ops: Op[] = []
      const id = txApi(ops).insert(name, row)
      runOps(ops)
      return id
    },
    update(name, id, patch) {
      const ops: Op[] = []
      txApi(ops).update(name, id, patch)
      runOps(ops)
    },
    delete(name, id) {
      const ops: Op[] = []
      txApi(ops).delete(name, id)
      runOps(ops)
    },
    async transaction(fn) {
      const ops: Op[] = []
      const result = await fn(txApi(ops))
      runOps(ops)
      return result
    },
    count(name) {
      return table(name).size
    },
    products() {
      const set = new Set<string>()
      for (const s of schema.sources) {
        for (const row of table(s.table).values()) {
          const p = row[s.product]
          if (typeof p === 'string' && p !== '') set.add(p)
        }
      }
      return [...set].sort()
    },
  }
  return api
}
