import { LRUCache } from 'lru-cache'

/** What every cached value carries: the version it was computed at and when. */
export interface Versioned {
  version: number
  computedAt: number
}

/** One L1 entry. The promise is made once, so an L1 hit returns it without allocating. */
export interface L1Entry<V> {
  value: V
  promise: Promise<V>
  /** The freshness epoch it was written under. */
  epoch: number
  /** What the loader keeps beside the value (the stock loader: the product's source rows). */
  extra?: unknown
}

export interface MemoryTierOptions<V = unknown> {
  /** Most keys kept; 0: L1 is off (keeps nothing). */
  max: number
  /** Ms an entry lives (0: until evicted or invalidated). */
  ttl: number
  now: () => number
  /** The unit a key belongs to (a product for a location key); the unit's own key when it is one. */
  unitOf: (key: string) => string
  /** Told of every value kept (`value`) and every key dropped (`undefined`): an index a front end keeps. */
  onChange?: (key: string, value: V | undefined) => void
}

/**
 * L1 on lru-cache: frozen values handed out without a copy, a version guard on every write (an older value never
 * replaces a newer one), and an index from a unit to its other keys (a product's locations).
 */
export class MemoryTier<V extends Versioned> {
  readonly lru: LRUCache<string, L1Entry<V>>
  readonly #others = new Map<string, Set<string>>()
  readonly #unitOf: (key: string) => string
  readonly #off: boolean
  readonly #onChange: ((key: string, value: V | undefined) => void) | undefined
  #generation = 0
  #suspended = false
  /** Keys dropped for any reason but a newer value (evicted, expired, deleted, cleared). */
  removals = 0

  constructor(o: MemoryTierOptions<V>) {
    this.#onChange = o.onChange
    this.#unitOf = o.unitOf
    this.#off = o.max === 0
    this.lru = new LRUCache<string, L1Entry<V>>({
      max: Math.max(1, o.max),
      ...(o.ttl > 0 ? { ttl: o.ttl, perf: { now: o.now } } : {}),
      dispose: (_value, key, reason) => {
        if (reason === 'set') return
        this.removals++
        this.#unindex(key)
        this.#onChange?.(key, undefined)
      },
    })
  }

  get size(): number {
    return this.lru.size
  }

  /** The fresh-by-TTL entry (lru-cache `get`: counts as a use). */
  get(key: string): L1Entry<V> | undefined {
    return this.lru.get(key)
  }

  /** Whatever is held, expired or not, without counting a use. */
  peek(key: string): L1Entry<V> | undefined {
    return this.lru.peek(key, { allowStale: true })
  }

  has(key: string): boolean {
    return this.lru.has(key)
  }

  /** True while L1 holds a key other than a unit's own (a product's location). */
  get hasLocationKeys(): boolean {
    return this.#others.size > 0
  }

  /** The unit's own key and every other key of it held in L1. */
  keysOf(unit: string): string[] {
    const others = this.#others.get(unit)
    return others === undefined ? [unit] : [unit, ...others]
  }

  /**
   * Bumped whenever L1 stops being trustworthy (its bus lost or regained its connection). A writer reads it before
   * its read starts and passes it to `set`: a value read before the bump is not kept.
   */
  get generation(): number {
    return this.#generation
  }

  /** True while writes are refused (the bus is down: peers' invalidations may be lost). */
  get suspended(): boolean {
    return this.#suspended
  }

  /** Drop everything and keep nothing until `resume()`. */
  suspend(): void {
    this.#suspended = true
    this.#generation++
    this.clear()
  }

  /** Keep values again, but only those read from now on. */
  resume(): void {
    this.#suspended = false
    this.#generation++
    this.clear()
  }

  /**
   * Write unless a newer value is held; `extra` is kept from the held entry when the version is the same. Refused
   * while suspended, or when `generation` (read before the value was) is not the current one.
   */
  set(key: string, value: V, epoch: number, extra?: unknown, generation?: number): boolean {
    if (this.#off || this.#suspended || (generation !== undefined && generation !== this.#generation)) return false
    const cur = this.peek(key)
    if (
      cur !== undefined &&
      (cur.value.version > value.version ||
        (cur.value.version === value.version && cur.value.computedAt > value.computedAt))
    ) {
      return false
    }
    const entry: L1Entry<V> = { value, promise: Promise.resolve(value), epoch }
    if (extra !== undefined) entry.extra = extra
    else if (cur?.extra !== undefined && cur.value.version === value.version) entry.extra = cur.extra
    this.lru.set(key, entry)
    this.#onChange?.(key, value)
    const unit = this.#unitOf(key)
    if (unit !== key) {
      let set = this.#others.get(unit)
      if (set === undefined) {
        set = new Set()
        this.#others.set(unit, set)
      }
      set.add(key)
    }
    return true
  }

  delete(key: string): void {
    this.lru.delete(key)
  }

  /**
   * Drop every key of a unit whose value is not newer than `version` (a peer announced its recompute). An equal
   * version is dropped too: two instances can stamp the same millisecond, and a re-read costs less than a stale hit.
   */
  dropOlder(unit: string, version: number): number {
    let n = 0
    for (const key of this.keysOf(unit)) {
      const e = this.peek(key)
      if (e !== undefined && e.value.version <= version) {
        this.lru.delete(key)
        n++
      }
    }
    return n
  }

  keys(): IterableIterator<string> {
    return this.lru.keys()
  }

  /** The `n` least recently used keys (for refresh jobs). */
  oldest(n: number): string[] {
    const out: string[] = []
    for (const k of this.lru.rkeys()) {
      if (out.length >= n) break
      out.push(k)
    }
    return out
  }

  /** The `n` most recently used keys (for warming). */
  recent(n: number): string[] {
    const out: string[] = []
    for (const k of this.lru.keys()) {
      if (out.length >= n) break
      out.push(k)
    }
    return out
  }

  clear(): void {
    this.lru.clear()
    this.#others.clear()
  }

  #unindex(key: string): void {
    const unit = this.#unitOf(key)
    if (unit === key) return
    const set = this.#others.get(unit)
    if (set === undefined) return
    set.delete(key)
    if (set.size === 0) this.#others.delete(unit)
  }
}
