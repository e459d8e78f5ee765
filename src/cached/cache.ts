import { AsyncLocalStorage } from 'node:async_hooks'
import { LRUCache } from 'lru-cache'
import mitt, { type Emitter } from 'mitt'
import { StoreFacade } from '../cache/store-facade.js'
import type { StoreEntry } from '../cache/types.js'
import { ClosedError, ConfigError, InvalidInputError, SourceUnavailableError, StockcastError } from '../errors.js'
import type { InvalidationMessage } from '../invalidation/contracts.js'
import { TransactionScope } from '../invalidation/scope.js'
import { isWellFormedText } from '../util/text.js'
import { type Clock, defaultTimers, every, type Timers, withTimeout } from '../util/timers.js'
import { assertSerializable } from './serializable.js'
import type {
  Cache,
  CachedOptions,
  CacheEvents,
  CacheMetrics,
  CacheOptions,
  CacheResult,
  EntryOptions,
  InvalidateOptions,
  InvalidateTarget,
  WarmOptions,
  WarmReport,
  WarmTarget,
} from './types.js'

/** One cached value with its times (epoch ms), as every tier keeps it. */
interface Envelope<T = unknown> {
  v: T
  /** When its function call started: an invalidation at or after this instant outdates it. */
  at: number
  /** Fresh until. */
  fresh: number
  /** Served under swr until. */
  swr: number
  /** Served when the function fails until. */
  sie: number
  /** Never served after (the hard maximum age). */
  keep: number
  tags: readonly string[]
}

/** An entry found in a tier, and which. */
interface Found {
  env: Envelope
  source: CacheResult<unknown>['source']
}

interface Flight {
  promise: Promise<CacheResult<unknown>>
  /** The key was invalidated while the call ran: its value is served to the callers but not cached. */
  invalidated: boolean
}

interface Remembered {
  fn: () => unknown
  options: EntryOptions
}

const SEP = '\u001f'
/** The flights (cache instance and key) whose functions the current async context runs inside. */
const running = new AsyncLocalStorage<ReadonlySet<string>>()
let nextCacheId = 1

/** Tags of tables live in their own namespace: a user's tag cannot start with U+001E. */
const TABLE = '\u001etable:'
const tableTags = (tables: readonly string[]): string[] => tables.map((t) => TABLE + t)
const MAX_KEY = 1024
const nonNegative = (v: unknown, name: string): number => {
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) {
    throw new ConfigError(`${name} must be a non-negative number of ms, got ${String(v)}`, { option: name })
  }
  return v
}

function checkKey(key: unknown, where: string): string {
  if (typeof key !== 'string' || key === '') {
    throw new InvalidInputError(`${where}: a key must be a non-empty string, got ${JSON.stringify(key) ?? String(key)}`)
  }
  if (key.length > MAX_KEY) throw new InvalidInputError(`${where}: key longer than ${MAX_KEY} characters`, { key })
  if (!isWellFormedText(key) || key.includes(SEP)) {
    throw new InvalidInputError(`${where}: key ${JSON.stringify(key)} has an unpaired surrogate or U+001F`, { key })
  }
  return key
}

function checkTags(tags: unknown, where: string): readonly string[] {
  if (tags === undefined) return []
  if (!Array.isArray(tags)) throw new InvalidInputError(`${where}: tags must be an array of strings`)
  for (const t of tags) {
    checkKey(t, `${where} (tag)`)
    if ((t as string).startsWith('\u001e')) throw new InvalidInputError(`${where}: a tag cannot start with U+001E`)
  }
  return tags as readonly string[]
}

/** Table names: letters, digits, `_` and `$` (as SQL names them unquoted), or any name without U+001F. */
function checkTables(tables: unknown, where: string): readonly string[] {
  if (tables === undefined) return []
  if (!Array.isArray(tables)) throw new InvalidInputError(`${where}: tables must be an array of table names`)
  for (const t of tables) checkKey(t, `${where} (table)`)
  return tables as readonly string[]
}

/**
 * A general-purpose tiered cache on stockcast's machinery: memory (lru-cache), then shared tiers (any `Store`:
 * memory, Redis, SQL), then the function; one call per key at a time (and across instances with a `lock`),
 * stale-while-revalidate, stale-if-error, versioned tags (an invalidation touches one stamp per tag, never a scan of
 * keys), domain events mapped to tags, invalidation after commit, warming, and a bus so other instances drop their
 * memory copies.
 *
 * @example
 * const cache = createCache({ name: 'api', tiers: [{ store: redisStore(redis), ttl: 3_600_000 }], bus: redisBus(redis) })
 * const ranking = cache.cached(async (seller: string) => loadRanking(seller), {
 *   key: (seller) => `ranking:${seller}`, ttl: 60_000, swr: 300_000, tags: (seller) => [`seller:${seller}`],
 * })
 * await ranking('s-42')
 * await cache.invalidate({ tags: ['seller:s-42'] })
 */
export function createCache(options: CacheOptions): Cache {
  return new GeneralCache(options)
}

class GeneralCache implements Cache {
  readonly name: string
  readonly #clock: Clock
  readonly #timers: Timers
  readonly #memory: LRUCache<string, Envelope> | undefined
  readonly #memoryTtl: number
  /** Each shared tier behind the store facade: a failure answers as a miss, the tier is skipped until a probe succeeds,
   * and keys whose write or delete failed are deleted there before it is used again. */
  readonly #tiers: ReadonlyArray<{ store: StoreFacade<unknown>; ttl: number }>
  /** Per tier: tag stamps whose write failed, written again when the tier recovers. */
  readonly #pendingStamps: Array<Map<string, number>> = []
  /** Per tier: keys whose write it missed while down, written again from memory when it recovers. */
  readonly #unwritten: Array<Set<string>> = []
  readonly #ttl: number
  readonly #maxAge: number
  readonly #events: ReadonlyMap<string, readonly string[]>
  readonly #lockTimeoutMs: number
  readonly #o: CacheOptions
  readonly #flights = new Map<string, Flight>()
  readonly #remembered: LRUCache<string, Remembered>
  /** Tag -> the instant it was last invalidated (entries computed from then on are unaffected). */
  readonly #tagStamps = new Map<string, number>()
  readonly #emitter: Emitter<CacheEvents> = mitt<CacheEvents>()
  readonly #origin = Math.random().toString(36).slice(2)
  readonly #id = `${nextCacheId++}${SEP}`
  readonly #stops: Array<() => void> = []
  #unsubscribe: Promise<() => Promise<void>> | undefined
  /** The bus may have lost messages: memory serves nothing until it recovers. */
  #busDown = false
  #lastStamp = 0
  #closed = false
  readonly #m = {
    memoryHits: 0,
    tierHits: [] as number[],
    misses: 0,
    calls: 0,
    joins: 0,
    swr: 0,
    staleError: 0,
    errors: 0,
    keyInvalidations: 0,
    tagInvalidations: 0,
    droppedSlowFills: 0,
    tierErrors: 0,
  }

  constructor(o: CacheOptions) {
    if (o === null || typeof o !== 'object') throw new ConfigError('createCache: options must be an object')
    if (typeof o.name !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(o.name)) {
      throw new ConfigError(
        `createCache: name must be 1-64 letters, digits, _ . : or -, got ${JSON.stringify(o.name)}`,
        { option: 'name' },
      )
    }
    this.#o = o
    this.name = o.name
    this.#clock = o.clock ?? Date
    this.#timers = o.timers ?? defaultTimers
    this.#ttl = nonNegative(o.ttl ?? 60_000, 'ttl')
    this.#maxAge = nonNegative(o.maxAge ?? 30 * 86_400_000, 'maxAge')
    if (this.#maxAge === 0) throw new ConfigError('maxAge must be positive', { option: 'maxAge' })
    this.#lockTimeoutMs = nonNegative(o.lockTimeoutMs ?? 10_000, 'lockTimeoutMs')
    const max = o.memory?.max ?? 10_000
    if (!Number.isInteger(max) || max < 0) {
      throw new ConfigError(`memory.max must be a non-negative integer, got ${String(max)}`, { option: 'memory.max' })
    }
    this.#memoryTtl = nonNegative(o.memory?.ttl ?? Number.POSITIVE_INFINITY, 'memory.ttl')
    this.#memory = max === 0 ? undefined : new LRUCache<string, Envelope>({ max })
    this.#remembered = new LRUCache<string, Remembered>({ max: Math.max(max, 1000) })
    if (o.store !== undefined && o.tiers !== undefined) {
      throw new ConfigError('createCache: give either store or tiers, not both', { option: 'store' })
    }
    const tiers = o.tiers ?? (o.store === undefined ? [] : [{ store: o.store }])
    this.#tiers = tiers.map((t, i) => {
      if (t === null || typeof t !== 'object' || typeof t.store?.getMany !== 'function') {
        throw new ConfigError(`tiers[${i}].store must be a Store (getMany, setMany, deleteMany)`, {
          option: 'tiers',
        })
      }
      const ttl = nonNegative(t.ttl ?? Number.POSITIVE_INFINITY, `tiers[${i}].ttl`)
      this.#pendingStamps.push(new Map())
      this.#unwritten.push(new Set())
      const store = new StoreFacade<unknown>(
        t.store,
        {
          onError: (error) => this.#tierError(error, i),
          onDegraded: () => {},
          onRecovered: () => {
            this.#rewriteStamps(i)
            this.#rewriteEntries(i)
          },
          now: () => this.#clock.now(),
          setTimer: (fn, ms) => this.#timers.setTimeout(fn, ms),
          clearTimer: (h) => this.#timers.clearTimeout(h),
        },
        1000,
      )
      return { store, ttl }
    })
    this.#m.tierHits = this.#tiers.map(() => 0)
    const events = new Map<string, readonly string[]>()
    for (const [name, tags] of Object.entries(o.events ?? {})) events.set(name, checkTags(tags, `events.${name}`))
    this.#events = events
    if (o.bus !== undefined) this.#subscribe()
  }

  // ------------------------------------------------------------------ reads

  cached<A extends unknown[], T>(
    fn: (...args: A) => Promise<T> | T,
    options: CachedOptions<A>,
  ): (...args: A) => Promise<T> {
    if (typeof fn !== 'function') throw new ConfigError('cached: fn must be a function', { option: 'fn' })
    if (options === null || typeof options !== 'object') {
      throw new ConfigError('cached: options with a key are required', { option: 'key' })
    }
    const { key, tags, tables, ...entry } = options
    if (typeof key !== 'string' && typeof key !== 'function') {
      throw new ConfigError('cached: key must be a string or a function of the arguments', { option: 'key' })
    }
    if (typeof key === 'string') checkKey(key, 'cached')
    this.#entryOptions(entry, 'cached')
    if (tags !== undefined && typeof tags !== 'function') checkTags(tags, 'cached')
    if (tables !== undefined && typeof tables !== 'function') checkTables(tables, 'cached')
    const mem = this.#memory
    const clock = this.#clock
    return (...args: A) => {
      try {
        const raw = typeof key === 'string' ? key : key(...args)
        // The hit path, inline: a key found in memory was checked when it was stored.
        if (mem !== undefined && !this.#busDown && typeof raw === 'string') {
          const env = mem.get(raw)
          if (env !== undefined && clock.now() < env.fresh && (env.tags.length === 0 || this.#tagsCurrent(env))) {
            this.#m.memoryHits++
            return Promise.resolve(env.v as T)
          }
        }
        const k = checkKey(raw, 'cached (key function)')
        const t = tags === undefined ? undefined : typeof tags === 'function' ? tags(...args) : tags
        if (t !== undefined) checkTags(t, 'cached (tags function)')
        const tb = tables === undefined ? undefined : typeof tables === 'function' ? tables(...args) : tables
        if (tb !== undefined) checkTables(tb, 'cached (tables function)')
        const o = t === undefined && tb === undefined ? entry : { ...entry, tags: t, tables: tb }
        return this.#read(k, () => fn(...args), o).then((r) => r.value as T)
      } catch (error) {
        return Promise.reject(error)
      }
    }
  }

  async get<T>(key: string, fn?: () => Promise<T> | T, options: EntryOptions = {}): Promise<T | undefined> {
    checkKey(key, 'get')
    if (fn === undefined) {
      this.#assertOpen()
      const found = await this.#lookup(key, this.#clock.now())
      return found === undefined || found.env.fresh <= this.#clock.now() ? undefined : (found.env.v as T)
    }
    return (await this.getEntry(key, fn, options)).value
  }

  async getEntry<T>(key: string, fn: () => Promise<T> | T, options: EntryOptions = {}): Promise<CacheResult<T>> {
    checkKey(key, 'getEntry')
    if (typeof fn !== 'function') throw new InvalidInputError('getEntry: fn must be a function')
    this.#entryOptions(options, 'getEntry')
    return (await this.#read(key, fn, options)) as CacheResult<T>
  }

  async #read(key: string, fn: () => unknown, options: EntryOptions): Promise<CacheResult<unknown>> {
    this.#assertOpen()
    const now = this.#clock.now()
    // Memory, inline: a hit is one LRU lookup, a time compare and the tag stamps of the entry.
    const mem = this.#memory
    if (mem !== undefined && !this.#busDown) {
      const env = mem.get(key)
      if (env !== undefined && now < env.fresh && this.#tagsCurrent(env)) {
        this.#m.memoryHits++
        return { value: env.v, stale: false, source: 'memory', computedAt: env.at }
      }
    }
    const found = await this.#lookup(key, now)
    if (found !== undefined && now < found.env.fresh) {
      return { value: found.env.v, stale: false, source: found.source, computedAt: found.env.at }
    }
    this.#m.misses++
    if (found !== undefined && now < found.env.swr) {
      // Stale-while-revalidate: the old value now, one call in the background.
      this.#m.swr++
      if (!this.#flights.has(key)) {
        this.#call(key, fn, options, found).catch((error: unknown) => this.#error(error, 'swr', key))
      }
      return { value: found.env.v, stale: true, source: found.source, computedAt: found.env.at }
    }
    // Remembered for warm(): the keys whose function ran here.
    this.#remembered.set(key, { fn, options })
    return this.#call(key, fn, options, found)
  }

  /**
   * The entry of a key: the first fresh one in memory, then each shared tier (a tier hit is copied to the tiers
   * before it), else the newest one still usable past its ttl (for swr and stale-if-error), else undefined.
   */
  async #lookup(key: string, now: number): Promise<Found | undefined> {
    const mem = this.#memory
    // A usable entry past its ttl (for swr or stale-if-error) is kept while the tiers are asked for a fresher one.
    let best: Found | undefined
    if (mem !== undefined && !this.#busDown) {
      const env = mem.get(key)
      if (env !== undefined) {
        if (now < env.keep && this.#tagsCurrent(env)) {
          if (now < env.fresh) return { env, source: 'memory' }
          best = { env, source: 'memory' }
        } else mem.delete(key)
      }
    }
    for (let i = 0; i < this.#tiers.length; i++) {
      const tier = this.#tiers[i]!
      const entry = (await tier.store.getMany([this.#storeKey(key)])).get(this.#storeKey(key))
      const env = envelopeOf(entry?.value)
      if (env === undefined || now >= env.keep) continue
      if (env.tags.length > 0 && !(await this.#sharedTagsCurrent(env, i))) continue
      if (best !== undefined && env.at <= best.env.at) continue
      if (now >= env.fresh) {
        best = { env, source: `tier${i + 1}` }
        continue
      }
      this.#m.tierHits[i]!++
      this.#remember(key, env, i)
      return { env, source: `tier${i + 1}` }
    }
    return best
  }

  /** Call the key's function once (joining a call already running), cache its value, or serve stale on error. */
  #call(
    key: string,
    fn: () => unknown,
    options: EntryOptions,
    stale: Found | undefined,
  ): Promise<CacheResult<unknown>> {
    const current = this.#flights.get(key)
    if (current !== undefined) {
      if (running.getStore()?.has(this.#id + key)) {
        // The key's own function reads the key: joining would wait for itself forever.
        return Promise.reject(
          new InvalidInputError(
            `the function of ${JSON.stringify(key)} reads ${JSON.stringify(key)} through the same cache: it would wait for itself; call the underlying function instead`,
            { key },
          ),
        )
      }
      this.#m.joins++
      return current.promise
    }
    const flight: Flight = { promise: undefined as never, invalidated: false }
    flight.promise = this.#run(key, fn, options, stale, flight).finally(() => {
      if (this.#flights.get(key) === flight) this.#flights.delete(key)
    })
    this.#flights.set(key, flight)
    return flight.promise
  }

  async #run(
    key: string,
    fn: () => unknown,
    options: EntryOptions,
    found: Found | undefined,
    flight: Flight,
  ): Promise<CacheResult<unknown>> {
    const stale = found?.env
    let release: (() => Promise<void>) | undefined
    try {
      if (this.#o.lock !== undefined) {
        release = await this.#o.lock.acquire(`cached${SEP}${this.name}${SEP}${key}`, this.#lockTimeoutMs)
        // Another instance may have called the function while this one waited.
        const now = this.#clock.now()
        const again = await this.#lookup(key, now)
        if (again !== undefined && now < again.env.fresh && (stale === undefined || again.env.at > stale.at)) {
          return { value: again.env.v, stale: false, source: again.source, computedAt: again.env.at }
        }
      }
      const at = this.#clock.now()
      this.#m.calls++
      const inside = new Set(running.getStore())
      inside.add(this.#id + key)
      const call = running.run(inside, () => Promise.resolve().then(fn))
      const value =
        options.timeoutMs === undefined
          ? await call
          : await withTimeout(
              call,
              options.timeoutMs,
              this.#timers,
              () =>
                new SourceUnavailableError(
                  `the function of ${JSON.stringify(key)} did not answer within timeoutMs=${options.timeoutMs}`,
                  { key, option: 'timeoutMs' },
                ),
            )
      const env = this.#envelope(value, at, options)
      if (flight.invalidated || !this.#tagsCurrent(env)) this.#m.droppedSlowFills++
      else await this.#store(key, env, false)
      return { value, stale: false, source: 'fn', computedAt: at }
    } catch (cause) {
      this.#m.errors++
      const error =
        cause instanceof StockcastError
          ? cause
          : new SourceUnavailableError(
              `the function of ${JSON.stringify(key)} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
              { key, cause },
            )
      const now = this.#clock.now()
      if (stale !== undefined && now < stale.sie && now < stale.keep && this.#tagsCurrent(stale)) {
        this.#m.staleError++
        this.#error(error, 'call', key)
        return { value: stale.v, stale: true, source: found!.source, computedAt: stale.at, error }
      }
      throw error
    } finally {
      if (release !== undefined) {
        await release().catch((cause: unknown) => this.#error(cause, 'unlock', key))
      }
    }
  }

  // ------------------------------------------------------------------ writes

  async set<T>(key: string, value: T, options: EntryOptions = {}): Promise<void> {
    checkKey(key, 'set')
    this.#entryOptions(options, 'set')
    this.#assertOpen()
    const env = this.#envelope(value, this.#clock.now(), options)
    await this.#store(key, env, true)
    const f = this.#flights.get(key)
    if (f !== undefined) f.invalidated = true // a call running now read the old state: its value must not win
  }

  /** Put an entry in memory and every shared tier; `strict`: an unstorable value throws (set), else it is reported. */
  async #store(key: string, env: Envelope, strict: boolean): Promise<void> {
    if (this.#tiers.length > 0) {
      try {
        assertSerializable(env.v, key)
      } catch (error) {
        if (strict) throw error
        this.#error(error, 'store', key)
        this.#memory?.set(key, env, { ttl: this.#memoryTtlOf(env) })
        return
      }
    }
    if (!this.#busDown) this.#memory?.set(key, env, { ttl: this.#memoryTtlOf(env) })
    await Promise.all(this.#tiers.map((_t, i) => this.#writeTier(i, key, env)))
  }

  #memoryTtlOf(env: Envelope): number {
    const left = Math.min(env.keep - this.#clock.now(), this.#memoryTtl)
    return left === Number.POSITIVE_INFINITY ? 0 : Math.max(1, Math.ceil(left))
  }

  async #writeTier(i: number, key: string, env: Envelope): Promise<void> {
    const tier = this.#tiers[i]!
    const expiresAt = Math.min(env.keep, env.at + tier.ttl)
    const entry: StoreEntry<unknown> = {
      value: env,
      version: env.at,
      computedAt: env.at,
      ...(Number.isFinite(expiresAt) ? { expiresAt } : {}),
    }
    const { ok } = await tier.store.setMany([[this.#storeKey(key), entry]])
    // Not written (the tier is down): written from memory when it recovers, if memory still holds it then.
    if (!ok && this.#memory !== undefined && this.#unwritten[i]!.size < this.#memory.max) this.#unwritten[i]!.add(key)
  }

  /** Tier `i` is back: write the entries it missed that memory still holds, current (the facade deleted them first). */
  #rewriteEntries(i: number): void {
    const keys = [...this.#unwritten[i]!]
    this.#unwritten[i]!.clear()
    const now = this.#clock.now()
    for (const key of keys) {
      const env = this.#memory?.peek(key)
      if (env !== undefined && now < env.keep && this.#tagsCurrent(env)) void this.#writeTier(i, key, env)
    }
  }

  /** A tier hit: copy it to memory and to the tiers before `i`. */
  #remember(key: string, env: Envelope, i: number): void {
    if (!this.#busDown) this.#memory?.set(key, env, { ttl: this.#memoryTtlOf(env) })
    for (let j = 0; j < i; j++) void this.#writeTier(j, key, env)
  }

  async delete(keys: string | readonly string[]): Promise<void> {
    await this.invalidate({ keys: typeof keys === 'string' ? [keys] : keys })
  }

  async invalidate(target: InvalidateTarget, options: InvalidateOptions = {}): Promise<void> {
    if (target === null || typeof target !== 'object') {
      throw new InvalidInputError('invalidate: expected { keys?, tags?, events? }')
    }
    const keys = [...checkTags(target.keys, 'invalidate (keys)')]
    const tags = new Set(checkTags(target.tags, 'invalidate (tags)'))
    for (const t of tableTags(checkTables(target.tables, 'invalidate (tables)'))) tags.add(t)
    for (const event of checkTags(target.events, 'invalidate (events)')) {
      const mapped = this.#events.get(event)
      if (mapped === undefined) {
        throw new InvalidInputError(
          `invalidate: unknown event ${JSON.stringify(event)} (the cache's events map names ${[...this.#events.keys()].join(', ') || 'none'})`,
        )
      }
      for (const t of mapped) tags.add(t)
    }
    this.#assertOpen()
    if (options.tx !== undefined) {
      if (typeof options.tx.afterCommit !== 'function') {
        throw new InvalidInputError('invalidate: tx must be a transaction scope or have afterCommit(fn)')
      }
      options.tx.afterCommit(() => {
        this.#invalidateNow(keys, [...tags]).catch((error: unknown) => this.#error(error, 'invalidate'))
      })
      return
    }
    await this.#invalidateNow(keys, [...tags])
  }

  async #invalidateNow(keys: readonly string[], tags: readonly string[]): Promise<void> {
    if (this.#closed) return
    const stamp = this.#stamp()
    for (const k of keys) this.#dropLocal(k)
    for (const t of tags) this.#tagStamps.set(t, Math.max(this.#tagStamps.get(t) ?? 0, stamp))
    this.#m.keyInvalidations += keys.length
    this.#m.tagInvalidations += tags.length
    const work: Array<Promise<unknown>> = []
    this.#tiers.forEach((tier, i) => {
      if (keys.length > 0) {
        work.push(tier.store.deleteMany(keys.map((k) => this.#storeKey(k))))
      }
      if (tags.length > 0) {
        // One stamp per tag: entries computed before it are outdated wherever they are; nothing is scanned.
        const entries = tags.map((t) => [this.#tagKey(t), this.#stampEntry(stamp)] as const)
        work.push(
          tier.store.setMany(entries).then(({ ok }) => {
            // Not written (the tier is down): written again when it recovers (the facade deletes the tag key first).
            if (!ok)
              for (const t of tags) this.#pendingStamps[i]!.set(t, Math.max(this.#pendingStamps[i]!.get(t) ?? 0, stamp))
          }),
        )
      }
    })
    if (this.#o.bus !== undefined) {
      const products = [
        ...keys.map((k) => `k${SEP}${this.name}${SEP}${k}`),
        ...tags.map((t) => `t${SEP}${this.name}${SEP}${t}`),
      ]
      if (products.length > 0) {
        work.push(
          this.#o.bus
            .publish({ products, version: stamp, origin: this.#origin })
            .catch((cause: unknown) => this.#error(cause, 'publish')),
        )
      }
    }
    await Promise.all(work)
  }

  #dropLocal(key: string): void {
    this.#memory?.delete(key)
    const f = this.#flights.get(key)
    if (f !== undefined) f.invalidated = true
  }

  /**
   * The clock, never below a stamp this instance gave (a clock stepping back cannot un-invalidate a tag). Not one
   * above it: a burst of invalidations in one millisecond must not push stamps into the future, where they would
   * outdate values computed after them.
   */
  #stamp(): number {
    this.#lastStamp = Math.max(this.#clock.now(), this.#lastStamp)
    return this.#lastStamp
  }

  #tagsCurrent(env: Envelope): boolean {
    for (const t of env.tags) {
      const s = this.#tagStamps.get(t)
      if (s !== undefined && s >= env.at) return false
    }
    return true
  }

  /** Tags of an entry read from shared tier `i`: their stamps come from that tier (another instance may have set them). */
  async #sharedTagsCurrent(env: Envelope, i: number): Promise<boolean> {
    const keys = env.tags.map((t) => this.#tagKey(t))
    const tier = this.#tiers[i]!.store
    const got = await tier.getMany(keys)
    // The tier failed meanwhile: its tag stamps are unknown, so the entry is not trusted.
    if (tier.degraded) return false
    env.tags.forEach((t, j) => {
      const s = (got.get(keys[j]!)?.value as { stamp?: unknown } | undefined)?.stamp
      if (typeof s === 'number') this.#tagStamps.set(t, Math.max(this.#tagStamps.get(t) ?? 0, s))
    })
    return this.#tagsCurrent(env)
  }

  transaction(): TransactionScope {
    return new TransactionScope(() => {})
  }

  // ------------------------------------------------------------------ warming

  async warm(
    targets: readonly WarmTarget[] | (() => readonly WarmTarget[] | Promise<readonly WarmTarget[]>),
    options: WarmOptions = {},
  ): Promise<WarmReport> {
    this.#assertOpen()
    const concurrency = options.concurrency ?? 4
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new InvalidInputError(`warm: concurrency must be a positive integer, got ${String(concurrency)}`)
    }
    if (options.every !== undefined) nonNegative(options.every, 'warm.every')
    if (typeof targets !== 'function' && !Array.isArray(targets)) {
      throw new InvalidInputError('warm: targets must be an array or a function returning one')
    }
    const once = async (): Promise<WarmReport> => {
      const list = [...(typeof targets === 'function' ? await targets() : targets)]
      const prio = (t: WarmTarget) => (typeof t === 'object' ? (t.priority ?? 0) : 0)
      list.sort((a, b) => prio(b) - prio(a))
      const report: WarmReport = { warmed: 0, failed: 0, unknown: 0 }
      let next = 0
      const worker = async () => {
        while (next < list.length && !this.#closed) {
          const t = list[next++]!
          const run = this.#warmRun(t)
          if (run === undefined) {
            report.unknown++
            continue
          }
          try {
            await run()
            report.warmed++
          } catch (error) {
            report.failed++
            this.#error(error, 'warm', typeof t === 'string' ? t : undefined)
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, worker))
      return report
    }
    const first = await once()
    if (options.every !== undefined && options.every > 0) {
      this.#stops.push(
        every(this.#timers, options.every, () => {
          once().catch((error: unknown) => this.#error(error, 'warm'))
        }),
      )
    }
    return first
  }

  /** What warming one target runs: a remembered key's function (a read that refreshes what is no longer fresh). */
  #warmRun(t: WarmTarget): (() => Promise<unknown>) | undefined {
    if (typeof t === 'function') return t
    if (typeof t === 'object' && 'run' in t && typeof t.run === 'function') return t.run
    const key = typeof t === 'string' ? t : (t as { key: string }).key
    checkKey(key, 'warm')
    const r = this.#remembered.get(key)
    if (r === undefined) return undefined
    return () => this.#read(key, r.fn, r.options)
  }

  // ------------------------------------------------------------------ bus

  #subscribe(): void {
    const bus = this.#o.bus!
    if (typeof bus.publish !== 'function' || typeof bus.subscribe !== 'function') {
      throw new ConfigError('bus must be an InvalidationBus (publish, subscribe)', { option: 'bus' })
    }
    // Until the subscription holds, a peer's invalidation could be missed: memory serves nothing.
    this.#busDown = true
    const prefixK = `k${SEP}${this.name}${SEP}`
    const prefixT = `t${SEP}${this.name}${SEP}`
    this.#unsubscribe = bus.subscribe(
      (msg: InvalidationMessage) => {
        if (msg.origin === this.#origin || this.#closed) return
        for (const p of msg.products) {
          if (p.startsWith(prefixK)) this.#dropLocal(p.slice(prefixK.length))
          else if (p.startsWith(prefixT)) {
            const t = p.slice(prefixT.length)
            this.#tagStamps.set(t, Math.max(this.#tagStamps.get(t) ?? 0, msg.version))
          }
        }
      },
      (state) => {
        if (state === 'degraded') {
          this.#busDown = true
          this.#memory?.clear()
        } else {
          this.#memory?.clear()
          this.#busDown = false
        }
      },
    )
    this.#unsubscribe.then(
      () => {
        this.#busDown = false
      },
      (cause: unknown) => this.#error(cause, 'subscribe'),
    )
  }

  // ------------------------------------------------------------------ the rest

  metrics(): CacheMetrics {
    const m = this.#m
    const hits = m.memoryHits + m.tierHits.reduce((a, b) => a + b, 0)
    const reads = hits + m.misses
    return {
      name: this.name,
      hits: { memory: m.memoryHits, tiers: [...m.tierHits] },
      misses: m.misses,
      calls: m.calls,
      joins: m.joins,
      staleServed: { swr: m.swr, error: m.staleError },
      errors: m.errors,
      hitRatio: reads === 0 ? 0 : hits / reads,
      invalidations: { keys: m.keyInvalidations, tags: m.tagInvalidations },
      droppedSlowFills: m.droppedSlowFills,
      tierErrors: m.tierErrors,
    }
  }

  on<K extends keyof CacheEvents>(type: K, handler: (event: CacheEvents[K]) => void): void {
    this.#emitter.on(type, handler)
  }

  off<K extends keyof CacheEvents>(type: K, handler: (event: CacheEvents[K]) => void): void {
    this.#emitter.off(type, handler)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const stop of this.#stops.splice(0)) stop()
    await Promise.allSettled([...this.#flights.values()].map((f) => f.promise))
    if (this.#unsubscribe !== undefined) {
      try {
        await (await this.#unsubscribe)()
      } catch {
        // the bus is going away with the cache
      }
    }
    for (const t of this.#tiers) await t.store.close().catch(() => {})
    for (const p of this.#pendingStamps) p.clear()
    for (const u of this.#unwritten) u.clear()
    this.#memory?.clear()
  }

  #envelope(value: unknown, at: number, options: EntryOptions): Envelope {
    const ttl = options.ttl ?? this.#ttl
    const swr = options.swr ?? 0
    const sie = options.staleIfErrorMs ?? 0
    const grace = options.graceMs ?? Math.max(swr, sie)
    // No entry outlives `maxAge`: a tag stamp older than that can outdate nothing, so tiers may drop it.
    const keep = Math.min(at + ttl + grace, at + this.#maxAge)
    const fresh = Math.min(at + ttl, keep)
    return {
      v: value,
      at,
      fresh,
      swr: Math.min(fresh + Math.min(swr, grace), keep),
      sie: Math.min(fresh + Math.min(sie, grace), keep),
      keep,
      tags:
        options.tables === undefined || options.tables.length === 0
          ? checkTags(options.tags, 'tags')
          : [...checkTags(options.tags, 'tags'), ...tableTags(checkTables(options.tables, 'tables'))],
    }
  }

  #entryOptions(o: EntryOptions, where: string): void {
    if (o === null || typeof o !== 'object') throw new InvalidInputError(`${where}: options must be an object`)
    for (const name of ['ttl', 'swr', 'staleIfErrorMs', 'graceMs', 'timeoutMs'] as const) {
      const v = o[name]
      if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) {
        throw new InvalidInputError(`${where}: ${name} must be a non-negative number of ms, got ${String(v)}`)
      }
    }
    if (o.tags !== undefined) checkTags(o.tags, where)
    if (o.tables !== undefined) checkTables(o.tables, where)
  }

  /** A tag stamp as a tier keeps it: it expires once no entry it could outdate can exist (`maxAge` after it). */
  #stampEntry(stamp: number): StoreEntry<unknown> {
    const expiresAt = stamp + this.#maxAge
    return Number.isFinite(expiresAt)
      ? { value: { stamp }, version: stamp, computedAt: stamp, expiresAt }
      : { value: { stamp }, version: stamp, computedAt: stamp }
  }

  #storeKey(key: string): string {
    return `${this.name}${SEP}${key}`
  }

  #tagKey(tag: string): string {
    return `${this.name}${SEP}tag${SEP}${tag}`
  }

  #assertOpen(): void {
    if (this.#closed) throw new ClosedError(`cache ${this.name} is closed`)
  }

  /** Tier `i` is back: write the tag stamps it missed (again later if it fails once more). */
  #rewriteStamps(i: number): void {
    const pending = this.#pendingStamps[i]!
    if (pending.size === 0) return
    const stamps = [...pending]
    pending.clear()
    const entries = stamps.map(([t, stamp]) => [this.#tagKey(t), this.#stampEntry(stamp)] as const)
    void this.#tiers[i]!.store.setMany(entries).then(({ ok }) => {
      if (!ok) for (const [t, stamp] of stamps) pending.set(t, Math.max(pending.get(t) ?? 0, stamp))
    })
  }

  #tierError(cause: unknown, i: number): void {
    this.#m.tierErrors++
    this.#error(cause, `tier${i + 1}`)
  }

  #error(cause: unknown, operation: string, key?: string): void {
    const error = cause instanceof Error ? cause : new StockcastError(String(cause))
    this.#emitter.emit('error', key === undefined ? { error, operation } : { error, operation, key })
  }
}

/** An envelope read back from a shared tier (JSON), or undefined when it is not one. */
function envelopeOf(value: unknown): Envelope | undefined {
  const e = value as Partial<Envelope> | null | undefined
  if (e === null || typeof e !== 'object') return undefined
  if (
    typeof e.at !== 'number' ||
    typeof e.fresh !== 'number' ||
    typeof e.swr !== 'number' ||
    typeof e.sie !== 'number' ||
    !Array.isArray(e.tags) ||
    !('v' in e)
  ) {
    return undefined
  }
  // JSON turns Infinity into null: a missing bound is no bound.
  return { ...(e as Envelope), keep: typeof e.keep === 'number' ? e.keep : Number.POSITIVE_INFINITY }
}
