import type { CacheEngine } from '../cache/engine.js'
import { messageOf } from '../cache/store-facade.js'
import type { StockProjection } from '../cache/types.js'
import { ConfigError, SourceUnavailableError } from '../errors.js'
import type { PendingMarks } from '../invalidation/contracts.js'
import { firstDifference } from './compare.js'
import { keyOf } from './keys.js'

export interface StrongContext {
  engine: CacheEngine<StockProjection>
  pendingMarks: PendingMarks | undefined
}

/**
 * Strong reads: no committed write that finished before the read began is missed, whichever instance or consumer
 * saw it.
 * 1. Ask the mark source (the SQL outbox) for unprocessed marks of the products, one round trip, and mark them.
 * 2. A marked product is recomputed from the sources.
 * 3. An L1 hit is served as is without a shared store (every mark reaches this instance); with one, it is served only
 *    when the store holds the same content (another instance may have consumed the marks and recomputed: the SQL
 *    listener deletes outbox rows only after the store took the new value), else it is marked and recomputed.
 * 4. An L1 miss is recomputed from the sources: a store entry alone proves nothing about writes since.
 * 5. When the sources fail, the error reaches the caller: no stale-if-error for strong reads.
 */
export async function strongGetMany(
  ctx: StrongContext,
  products: readonly string[],
  location: string | null | undefined,
): Promise<Map<string, StockProjection>> {
  const { engine } = ctx
  await checkPending(ctx, products)
  const keys = products.map((p) => keyOf(p, location))
  if (engine.l2Shared && engine.l2 !== undefined) {
    const epoch = engine.freshness.current()
    const hits: Array<{ product: string; key: string; value: StockProjection }> = []
    for (let i = 0; i < products.length; i++) {
      const p = products[i]!
      if (engine.marks.isDirty(p)) continue
      const e = engine.l1.get(keys[i]!)
      if (e !== undefined && e.epoch === epoch) hits.push({ product: p, key: keys[i]!, value: e.value })
    }
    if (hits.length > 0) {
      const found = await engine.l2.getMany(hits.map((h) => h.key))
      for (const h of hits) {
        if (engine.marks.isDirty(h.product)) continue // a mark arrived meanwhile: recomputed below anyway
        const entry = found.get(h.key)
        if (entry === undefined || firstDifference(h.value, entry.value) !== null) {
          engine.metrics.strongStoreMismatches++
          // Marked first: a clean product's recompute could reuse the inputs this instance read before.
          engine.mark([h.product], { sources: null }, 'get')
        }
      }
    }
  }
  // Strict: a failed source read is an error, never an old value flagged stale (that would break the promise).
  const out = await engine.reads.readMany(keys, { skipL2: true, strict: true })
  const byProduct = new Map<string, StockProjection>()
  for (let i = 0; i < products.length; i++) {
    const v = out.get(keys[i]!)
    if (v !== undefined) byProduct.set(products[i]!, v)
  }
  return byProduct
}

/** Ask the mark source for unprocessed marks of these products and mark them (with their versions). */
export async function checkPending(ctx: StrongContext, products: readonly string[]): Promise<void> {
  const source = ctx.pendingMarks
  if (source === undefined) {
    throw new ConfigError(
      "consistency 'strong' needs a mark source: pass createStockCache({ pendingMarks }) (the SQL adapter's change capture)",
      { option: 'pendingMarks' },
    )
  }
  let pending: Map<string, number>
  try {
    pending = await source.pending(products)
  } catch (cause) {
    throw new SourceUnavailableError(`strong read: asking the mark source failed: ${messageOf(cause)}`, {
      tier: 'l3',
      cause,
      ...(products.length === 1 ? { productId: products[0]! } : {}),
    })
  }
  const { engine } = ctx
  engine.metrics.strongChecks++
  const asked = new Set(products)
  for (const [p, version] of pending) {
    if (!asked.has(p)) continue
    engine.metrics.strongMarks++
    engine.mark([p], { version, sources: null }, 'get')
  }
}
