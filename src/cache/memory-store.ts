import { InvalidInputError } from '../errors.js'
import type { StockProjection, Store, StoreEntry } from './types.js'

export interface MemoryStoreOptions<V = StockProjection> {
  /** Keys are kept under this prefix; `clear()` removes only them. @default 'stockcast:' */
  prefix?: string
  /** A map shared by several stores (simulates a shared L2 in tests). @default a new Map */
  map?: Map<string, StoreEntry<V>>
  /** Time source for `expiresAt`. @default Date */
  clock?: { now(): number }
}

/**
 * An in-process L2 store. Useful in tests and single-process apps; the SQL and Redis stores share across processes.
 *
 * @example
 * ```ts
 * const cache = createStockCache({ schema, reader, store: memoryStore() })
 * ```
 */
export function memoryStore<V = StockProjection>(options: MemoryStoreOptions<V> = {}): Store<V> {
  const prefix = options.prefix ?? 'stockcast:'
  if (typeof prefix !== 'string')
    throw new InvalidInputError('memoryStore: prefix must be a string', { option: 'prefix' })
  const map = options.map ?? new Map<string, StoreEntry<V>>()
  const clock = options.clock ?? Date
  let closed = false
  const check = () => {
    if (closed) throw new InvalidInputError('memoryStore: the store is closed')
  }
  return {
    capabilities: { shared: false },
    async getMany(keys) {
      check()
      const out = new Map<string, StoreEntry<V>>()
      const now = clock.now()
      for (const k of keys) {
        const e = map.get(prefix + k)
        if (e === undefined) continue
        if (e.expiresAt !== undefined && e.expiresAt <= now) map.delete(prefix + k)
        else out.set(k, e)
      }
      return out
    },
    async setMany(entries) {
      check()
      const written = new Set<string>()
      for (const [k, e] of entries) {
        const cur = map.get(prefix + k)
        if (cur !== undefined && cur.version > e.version) {
          written.delete(k)
          continue
        }
        written.add(k)
        map.set(
          prefix + k,
          e.expiresAt === undefined
            ? { value: e.value, version: e.version, computedAt: e.computedAt }
            : { value: e.value, version: e.version, computedAt: e.computedAt, expiresAt: e.expiresAt },
        )
      }
      return written
    },
    async deleteMany(keys) {
      check()
      for (const k of keys) map.delete(prefix + k)
    },
    async clear() {
      check()
      for (const k of [...map.keys()]) if (k.startsWith(prefix)) map.delete(k)
    },
    async close() {
      closed = true
    },
  }
}
