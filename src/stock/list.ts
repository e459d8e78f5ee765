import type { CacheEngine } from '../cache/engine.js'
import type { ListOrder, StockProjection, StoreListQuery } from '../cache/types.js'
import { ConfigError, InvalidInputError } from '../errors.js'
import { tryParseDate } from '../projection/dates.js'
import type { StockStatus } from '../projection/types.js'
import { KEY_SEPARATOR } from './keys.js'

/** What `cache.list()` takes. */
export interface ListQuery {
  /** Only these statuses. @default every status */
  status?: StockStatus | readonly StockStatus[]
  /** Only keys whose first stock-out falls on a day before this one (`YYYY-MM-DD`). */
  stockoutBefore?: string
  /** Only keys whose 7-day minimum (`minClosing7d`) is below this. */
  minClosingBelow?: number
  /** This location's keys. @default null: products' roll-ups */
  location?: string | null
  /** Ascending by this field, then by key. `firstStockoutDate` lists only keys that run out. @default 'minClosing7d' */
  orderBy?: ListOrder
  /** Items per page, 1 to 10 000. @default 100 */
  limit?: number
  /** The `cursor` of the page before. */
  cursor?: string
}

/** One page of a listing. */
export interface ListPage {
  items: StockProjection[]
  /** Pass it as `cursor` for the next page; null on the last one. */
  cursor: string | null
  /** Where it was answered: L1 (it held every product) or the store's columns. */
  source: 'l1' | 'store'
}

const STATUSES: readonly StockStatus[] = ['OK', 'ATTENTION', 'CRITICAL']
const ORDERS: readonly ListOrder[] = ['minClosing7d', 'firstStockoutDate', 'computedAt']

/** Compare by code point (the order of UTF-8 bytes, which an SQL store's byte keys sort in). */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x !== y) {
      // Surrogates (code points above U+FFFF) sort after U+E000..U+FFFF.
      const fx = x >= 0xd800 && x <= 0xdfff ? x + 0x2000 : x >= 0xe000 ? x - 0x800 : x
      const fy = y >= 0xd800 && y <= 0xdfff ? y + 0x2000 : y >= 0xe000 ? y - 0x800 : y
      return fx - fy
    }
  }
  return a.length - b.length
}

function base64url(text: string): string {
  const bytes = new TextEncoder().encode(text)
  let bin = ''
  for (const b of bytes) bin += String.fromCharCode(b)
  return btoa(bin).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '')
}

function fromBase64url(text: string): string {
  const bin = atob(text.replaceAll('-', '+').replaceAll('_', '/'))
  const bytes = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i)
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes)
}

/** The value a projection is ordered by (null: it has none, so it is not listed in that order). */
export function orderValue(p: StockProjection, orderBy: ListOrder): number | string | null {
  return orderBy === 'minClosing7d' ? p.minClosing7d : orderBy === 'computedAt' ? p.computedAt : p.firstStockoutDate
}

/** Checks a query and turns it into the store's form (the cursor decoded). */
export function resolveListQuery(q: ListQuery | undefined): StoreListQuery {
  if (q !== undefined && (q === null || typeof q !== 'object')) {
    throw new InvalidInputError('list: the query must be an object')
  }
  const query = q ?? {}
  let statuses: readonly string[] | null = null
  if (query.status !== undefined) {
    const list = typeof query.status === 'string' ? [query.status] : query.status
    if (!Array.isArray(list) || list.length === 0 || list.some((s) => !STATUSES.includes(s))) {
      throw new InvalidInputError(
        `list: status must be one or more of ${STATUSES.join(', ')}, got ${JSON.stringify(query.status)}`,
      )
    }
    statuses = [...new Set(list)]
  }
  const stockoutBefore = query.stockoutBefore ?? null
  if (stockoutBefore !== null && (typeof stockoutBefore !== 'string' || Number.isNaN(tryParseDate(stockoutBefore)))) {
    throw new InvalidInputError(`list: stockoutBefore must be a date YYYY-MM-DD, got ${JSON.stringify(stockoutBefore)}`)
  }
  const minClosingBelow = query.minClosingBelow ?? null
  if (minClosingBelow !== null && !(typeof minClosingBelow === 'number' && Number.isFinite(minClosingBelow))) {
    throw new InvalidInputError(`list: minClosingBelow must be a finite number, got ${String(minClosingBelow)}`)
  }
  const location = query.location ?? null
  if (location !== null && (typeof location !== 'string' || location === '' || location.includes(KEY_SEPARATOR))) {
    throw new InvalidInputError(
      `list: location must be a non-empty string without U+001F, got ${JSON.stringify(location)}`,
    )
  }
  const orderBy = query.orderBy ?? 'minClosing7d'
  if (!ORDERS.includes(orderBy)) {
    throw new InvalidInputError(`list: orderBy must be one of ${ORDERS.join(', ')}, got ${JSON.stringify(orderBy)}`)
  }
  const limit = query.limit ?? 100
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) {
    throw new InvalidInputError(`list: limit must be an integer from 1 to 10 000, got ${String(limit)}`)
  }
  let after: StoreListQuery['after'] = null
  if (query.cursor !== undefined) {
    const bad = () => new InvalidInputError(`list: cursor ${JSON.stringify(query.cursor)} is not one list() returned`)
    if (typeof query.cursor !== 'string') throw bad()
    let parsed: unknown
    try {
      parsed = JSON.parse(fromBase64url(query.cursor))
    } catch {
      throw bad()
    }
    if (
      !Array.isArray(parsed) ||
      parsed.length !== 3 ||
      parsed[0] !== orderBy ||
      typeof parsed[2] !== 'string' ||
      (orderBy === 'firstStockoutDate' ? typeof parsed[1] !== 'string' : typeof parsed[1] !== 'number')
    ) {
      throw bad()
    }
    after = { value: parsed[1] as number | string, key: parsed[2] }
  }
  return { statuses, stockoutBefore, minClosingBelow, location, orderBy, after, limit }
}

/** The cursor that continues after `last`. */
export function cursorAfter(last: StockProjection, orderBy: ListOrder): string {
  return base64url(JSON.stringify([orderBy, orderValue(last, orderBy), last.key]))
}

/** True when `p` is in the listing `q` describes (before its cursor and limit). */
export function matches(p: StockProjection, q: StoreListQuery): boolean {
  if (q.location === null ? p.location !== null : p.location !== q.location) return false
  if (q.statuses !== null && !q.statuses.includes(p.status)) return false
  if (q.stockoutBefore !== null && (p.firstStockoutDate === null || !(p.firstStockoutDate < q.stockoutBefore))) {
    return false
  }
  if (q.minClosingBelow !== null && !(p.minClosing7d < q.minClosingBelow)) return false
  if (q.orderBy === 'firstStockoutDate' && p.firstStockoutDate === null) return false
  return true
}

/** Ascending by the order value, then by key: negative when `a` comes first. */
export function compareListed(a: StockProjection, b: StockProjection, orderBy: ListOrder): number {
  const x = orderValue(a, orderBy)!
  const y = orderValue(b, orderBy)!
  if (x !== y) return x < y ? -1 : 1
  return compareKeys(a.key, b.key)
}

/** True when `p` comes after the cursor position. */
export function isAfter(p: StockProjection, q: StoreListQuery): boolean {
  if (q.after === null) return true
  const v = orderValue(p, q.orderBy)!
  if (v !== q.after.value) return v > q.after.value
  return compareKeys(p.key, q.after.key) > 0
}

/**
 * An index of L1 by status, kept by the memory tier's change hook, so a listing reads only the statuses it asks
 * for. `complete` says whether L1 holds every product: set after `rebuildAll()` put them all there, and void once
 * any key leaves L1 (evicted, expired, dropped, cleared) until the next one.
 */
export class StatusIndex {
  readonly #byStatus = new Map<string, Map<string, StockProjection>>(STATUSES.map((s) => [s, new Map()]))
  readonly #statusOf = new Map<string, string>()

  change(key: string, value: StockProjection | undefined): void {
    const old = this.#statusOf.get(key)
    if (old !== undefined) this.#byStatus.get(old)!.delete(key)
    if (value === undefined) {
      this.#statusOf.delete(key)
      return
    }
    this.#statusOf.set(key, value.status)
    this.#byStatus.get(value.status)?.set(key, value)
  }

  /** One page from L1: only the asked statuses are read. */
  page(q: StoreListQuery): StockProjection[] {
    const hits: StockProjection[] = []
    for (const s of q.statuses ?? STATUSES) {
      for (const p of this.#byStatus.get(s)?.values() ?? []) if (matches(p, q) && isAfter(p, q)) hits.push(p)
    }
    hits.sort((a, b) => compareListed(a, b, q.orderBy))
    return hits.slice(0, q.limit)
  }
}

/** What a listing needs from its cache. */
export interface ListContext {
  engine: CacheEngine<StockProjection>
  index: StatusIndex
  /** True while L1 holds every product (see `StatusIndex`). */
  complete(): boolean
  /** D0 of now. */
  today(): string
  /** Fresh values (recomputed when marked or of another day), as `getMany` serves them. */
  getMany(products: readonly string[], location: string | null): Promise<Map<string, StockProjection>>
}

/**
 * `cache.list()`: pending marks are recomputed first (a listing is as fresh as `getMany`), then the page comes from
 * L1's status index when L1 holds every product, else from the store's columns (`Store.list`), else it is a
 * `ConfigError`: nothing scans every projection. A value of another day, or one still marked (its recompute
 * failed), is read again through `getMany`, and left out when it no longer matches.
 */
export async function listPage(ctx: ListContext, query: ListQuery | undefined): Promise<ListPage> {
  const q = resolveListQuery(query)
  const engine = ctx.engine
  engine.assertOpen()
  await engine.flush()
  let found: StockProjection[]
  let source: ListPage['source']
  if (ctx.complete()) {
    found = ctx.index.page(q)
    source = 'l1'
  } else {
    const l2 = engine.l2
    if (l2 === undefined || !l2.canList) {
      throw new ConfigError(
        'list: needs every product in L1 (memory.max at least the number of keys, no ttl, after rebuildAll()) or a ' +
          'store that lists (sqlStore)',
        { option: 'store' },
      )
    }
    found = (await l2.list(q)).map(([, e]) => e.value)
    source = 'store'
  }
  const cursor = found.length === q.limit ? cursorAfter(found.at(-1)!, q.orderBy) : null
  const today = ctx.today()
  const again = new Set(found.filter((p) => p.today !== today || engine.marks.isDirty(p.product)).map((p) => p.product))
  let items = found
  if (again.size > 0) {
    const fresh = await ctx.getMany([...again], q.location)
    items = []
    for (const p of found) {
      const v = again.has(p.product) ? fresh.get(p.product) : p
      if (v !== undefined && matches(v, q)) items.push(v)
    }
  }
  return { items, cursor, source }
}
