import type { CacheEngine } from '../cache/engine.js'
import { messageOf } from '../cache/store-facade.js'
import type { SourceReader, StockProjection } from '../cache/types.js'
import { ConfigError, SourceUnavailableError } from '../errors.js'
import type { StockSchema } from './schema.js'
import type { MarkReason, RebuildProgress, RebuildReport } from './types.js'

/** The source ids a mark's reason names (by source id or table), or null: re-read every source. */
export function sourcesOf(
  schema: StockSchema,
  sourceIds: ReadonlySet<string>,
  reason: MarkReason | undefined,
): string[] | null {
  if (reason === undefined) return null
  const names = typeof reason === 'string' ? [reason] : [...(reason.sources ?? []), ...(reason.tables ?? [])]
  if (names.length === 0) return null
  const out = new Set<string>()
  for (const n of names) {
    if (sourceIds.has(n)) out.add(n)
    else {
      const byTable = schema.sourcesForTable(n)
      if (byTable.length === 0) return null // unknown or related table: re-read everything
      for (const s of byTable) out.add(s.id)
    }
  }
  return [...out]
}

/** `cache.rebuildAll()`: recompute every product the reader lists, in batches, reporting progress. */
export async function rebuildAll(
  engine: CacheEngine<StockProjection>,
  reader: SourceReader,
  options: { onProgress?: (p: RebuildProgress) => void },
): Promise<RebuildReport> {
  if (typeof reader.products !== 'function') {
    throw new ConfigError('rebuildAll: the reader has no products() method to list every product', {
      option: 'reader',
    })
  }
  const clock = engine.clock
  const started = clock.now()
  let products: string[]
  try {
    products = await reader.products()
  } catch (cause) {
    throw new SourceUnavailableError(`rebuildAll: listing products failed: ${messageOf(cause)}`, {
      tier: 'l3',
      cause,
    })
  }
  let keys = 0
  let failed = 0
  await engine.refresh(products, undefined, (result, done) => {
    for (const r of result.values()) {
      if ('error' in r) failed++
      else keys += r.values.size
    }
    options.onProgress?.({ done, total: products.length, elapsedMs: clock.now() - started })
  })
  engine.metrics.rebuilds++
  return { products: products.length, keys, failed, ms: clock.now() - started }
}
