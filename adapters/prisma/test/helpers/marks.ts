import type { StockCache } from 'stockcast'
import { expect } from 'vitest'

/**
 * Probes of which products a write marked, for a cache that holds its marks (`HOLD_MARKS`): a primed product's
 * `peek` turns undefined exactly when it is marked. `cacheOf`/`errorsOf` are read at each call (set in `beforeAll`).
 */
export function markProbes(cacheOf: () => StockCache, errorsOf: () => readonly unknown[] = () => []) {
  return {
    /** Load products into L1 (clean). */
    async prime(products: readonly string[]): Promise<void> {
      await cacheOf().getMany(products)
      for (const p of products) expect(cacheOf().peek(p), `${p} primed`).toBeDefined()
    },
    /** The products among these that are marked, sorted. */
    markedOf(products: readonly string[]): string[] {
      return products.filter((p) => cacheOf().peek(p) === undefined).sort()
    },
    /** After recomputing what is marked, the cache agrees with the tables on these products; nothing was reported. */
    async truthMatches(products: readonly string[]): Promise<void> {
      await cacheOf().flush()
      const report = await cacheOf().validate({ products })
      expect(report.mismatches).toEqual([])
      expect(report.checked).toBe(new Set(products).size)
      expect(errorsOf()).toEqual([])
    },
  }
}
