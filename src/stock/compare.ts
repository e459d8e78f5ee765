const IGNORED = new Set(['version', 'computedAt', 'stale', 'key', 'product', 'location'])

/** The first field where two projections differ (version, computedAt, stale and the key fields aside), or null. */
export function firstDifference(
  a: object,
  b: object,
  path = '',
): { field: string; cached: unknown; truth: unknown } | null {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  for (const k of keys) {
    if (path === '' && IGNORED.has(k)) continue
    const x = (a as Record<string, unknown>)[k]
    const y = (b as Record<string, unknown>)[k]
    const field = path === '' ? k : Array.isArray(a) ? `${path}[${k}]` : `${path}.${k}`
    if (x !== null && y !== null && typeof x === 'object' && typeof y === 'object') {
      const d = firstDifference(x, y, field)
      if (d !== null) return d
    } else if (!Object.is(x, y)) return { field, cached: x, truth: y }
  }
  return null
}
