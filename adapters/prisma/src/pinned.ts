type Obj = Record<string, unknown>

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v)

/** A value a filter can pin a product field to: what the write sends and the cache keys by (`String(v)`). */
const isPin = (v: unknown): v is string | number | bigint =>
  typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint'

/** The values one field filter allows, when it allows only known values: `v`, `{ equals: v }`, `{ in: [v, ...] }`. */
function pinsOf(filter: unknown): ReadonlyArray<string | number | bigint> | null {
  if (isPin(filter)) return [filter]
  if (!isObj(filter) || filter.constructor !== Object) return null
  const keys = Object.keys(filter)
  // Any other key (mode, not, gt, a second operator...) widens or changes the match: not pinned.
  if (keys.length !== 1) return null
  if (keys[0] === 'equals') return isPin(filter.equals) ? [filter.equals] : null
  if (keys[0] === 'in') return Array.isArray(filter.in) && filter.in.every(isPin) ? filter.in : null
  return null
}

/**
 * The product values a write's top-level `where` pins every product field to, or null when one field is not pinned
 * (not there, or filtered any other way: `mode`, `not`, ranges, only inside `AND`/`OR`/`NOT`, a field reference...).
 * Every row the write can match has, in each product field, one of the returned values: those values are a superset
 * of the rows' old products (other keys of the `where` only narrow the match further).
 */
export function pinnedProducts(
  where: unknown,
  productFields: readonly string[],
): ReadonlyArray<string | number | bigint> | null {
  if (!isObj(where) || productFields.length === 0) return null
  const out: Array<string | number | bigint> = []
  for (const f of productFields) {
    const pins = pinsOf(where[f])
    if (pins === null) return null
    out.push(...pins)
  }
  return out
}
