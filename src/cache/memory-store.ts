import { InvalidInputError } from '../errors.js'
import type { Store, StoreEntry } from './types.js'

export interface MemoryStoreOptions {
  /** Keys are kept under this prefix; `clear()` removes only them. @default 'stockcast:' */
  prefix?: string
  /** A map shared by several stores (simulates a shared L2 in tests). @default a new Map */
  map?: Map<string, StoreEntry>
}

/**
 * An in-process L2 store. Useful in tests and single-process apps; the SQL and Redis stores share across processes.
 *
 * @example
 * ```ts
 * const cache = createStockCache({ schema, reader, store: memoryStore() })
 * ```
 */
export function memoryStore(options: MemoryStoreOptions = {}): Store {
  const prefix = options.prefix ?? 'stockcast:'
  if (typeof prefix !== 'string')
    throw new InvalidInputError('memoryStore: prefix must be a string', { option: 'prefix' })
  const map = options.map ?? new Map<string, StoreEntry>()
  let closed = false
  const check = () => {
    if (closed) throw new InvalidInputError('memoryStore: the store is closed')
  }
  return {
    capabilities: { shared: false },
    async getMany(keys) {
      check()
      const out = new Map<string, StoreEntry>()
      for (const k of keys) {
        const e = map.get(prefix + k)
        if (e !== undefined) out.set(k, e)
      }
      return out
    },
    async setMany(entries) {
      check()
      for (const [k, e] of entries) {
        const cur = map.get(prefix + k)
        if (cur !== undefined && cur.version > e.version) continue
        map.set(prefix + k, { value: e.value, version: e.version, computedAt: e.computedAt })
      }
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
