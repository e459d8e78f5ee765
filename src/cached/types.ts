import type { Store } from '../cache/types.js'
import type { DistributedLock, InvalidationBus } from '../invalidation/contracts.js'
import type { AfterCommitTransaction, TransactionScope } from '../invalidation/scope.js'
import type { Clock, Timers } from '../util/timers.js'

/** A shared tier: a store and how long an entry may be served from it. */
export interface CacheTier {
  /** `memoryStore()`, `redisStore()` of @stockcast/redis, ... (values are JSON). */
  store: Store<unknown>
  /** The longest an entry is kept in this tier, whatever its own `ttl` (Redis 1 h, PostgreSQL 24 h). @default no cap */
  ttl?: number
}

/** Options of `createCache`. */
export interface CacheOptions {
  /** The cache's name: its metrics label, and the prefix of its keys and tags in shared stores and on the bus. */
  name: string
  /**
   * The shared tiers after memory, read in order (a Redis store, then a PostgreSQL one): a hit in a later tier is
   * copied to the earlier ones. `store` is the same as `tiers: [{ store }]`. @default none: memory only
   */
  tiers?: readonly CacheTier[]
  /** One shared tier. */
  store?: Store<unknown>
  /** Other instances drop their memory copies of invalidated keys and tags. @default none */
  bus?: InvalidationBus
  /** One call of a key's function at a time across instances (the store is read again once it is held). @default none */
  lock?: DistributedLock
  /** The memory tier (lru-cache). */
  memory?: {
    /** Most entries kept; 0: no memory tier. @default 10 000 */
    max?: number
    /** The longest an entry is served from memory, whatever its own `ttl`. @default no cap */
    ttl?: number
  }
  /** The `ttl` of entries that give none. @default 60 000 */
  ttl?: number
  /**
   * No entry is kept longer than this after it was computed, whatever its `ttl` and `graceMs`; tag stamps expire from
   * the shared tiers this long after the invalidation (they can outdate nothing older). @default 30 days
   */
  maxAge?: number
  /** Domain events and the tags each invalidates: `{ 'order.created': ['dashboard', 'seller-report'] }`. */
  events?: Readonly<Record<string, readonly string[]>>
  /** How long to wait for the distributed lock of a key. @default 10 000 */
  lockTimeoutMs?: number
  clock?: Clock
  timers?: Timers
}

/** How one key is cached (`cached()`, `get()` with a function, `set()`). */
export interface EntryOptions {
  /** Fresh for this long (ms). @default the cache's `ttl` */
  ttl?: number
  /**
   * Stale-while-revalidate: for this long after `ttl` the old value is served at once (flagged stale) and the
   * function runs once in the background to replace it. @default 0
   */
  swr?: number
  /**
   * Stale-if-error: for this long after `ttl`, when the function throws or passes `timeoutMs`, the last value is
   * served, flagged stale, instead of the error. @default 0
   */
  staleIfErrorMs?: number
  /**
   * The hard maximum age past `ttl`: an entry is never served (not even stale) later than `ttl + graceMs` after it
   * was computed, and every tier drops it then. @default the larger of `swr` and `staleIfErrorMs`
   */
  graceMs?: number
  /** Give up on the function after this many ms (stale-if-error applies). @default no timeout */
  timeoutMs?: number
  /** Tags: `invalidate({ tags })` drops every entry carrying one of them. @default none */
  tags?: readonly string[]
  /**
   * Tables the value is read from: a change capture (`sqlTableChanges` of @stockcast/sql, the Sequelize hooks, the
   * Prisma extension) calls `invalidate({ tables })` after each commit that changed one of their rows, whoever wrote
   * it. Names as the capture reports them (the table name, without schema). @default none
   */
  tables?: readonly string[]
}

/** Options of `cached(fn, options)`: how to key and tag a call from its arguments. */
export interface CachedOptions<A extends unknown[]> extends Omit<EntryOptions, 'tags' | 'tables'> {
  /** The key of a call: a string for a function without arguments, else a function of the arguments. */
  key: string | ((...args: A) => string)
  /** Tags of a call: a list, or a function of the arguments. */
  tags?: readonly string[] | ((...args: A) => readonly string[])
  /** Tables of a call: a list, or a function of the arguments. */
  tables?: readonly string[] | ((...args: A) => readonly string[])
}

/** What a read answers when asked for details (`getEntry`). */
export interface CacheResult<T> {
  value: T
  /** Served past its `ttl`: under `swr`, or because the function failed (stale-if-error, then `error` is set). */
  stale: boolean
  /**
   * Where it came from: `memory`, a shared tier (`tier1`, `tier2`, ...), or `fn` (computed now). A stale value
   * served because the function failed names the tier it was found in.
   */
  source: 'memory' | `tier${number}` | 'fn'
  /** Epoch ms the value was computed at (its function call started). */
  computedAt: number
  /** Why a stale value was served instead of a new one. */
  error?: Error
}

/** What `invalidate` takes. */
export interface InvalidateTarget {
  keys?: readonly string[]
  tags?: readonly string[]
  /** Domain events, turned into tags by the `events` map of the cache. */
  events?: readonly string[]
  /** Tables whose rows changed: every entry that declared one of them in `tables`. */
  tables?: readonly string[]
}

export interface InvalidateOptions {
  /** Act after this transaction commits, never if it rolls back. */
  tx?: TransactionScope | AfterCommitTransaction
}

/** One thing to warm: a key read before (its function is remembered) or a thunk that reads through the cache. */
export type WarmTarget = string | (() => Promise<unknown>) | { key: string; priority?: number } | WarmThunk

interface WarmThunk {
  run: () => Promise<unknown>
  priority?: number
}

export interface WarmOptions {
  /** Warm again every this many ms (on the cache's timers; `close()` stops it). @default once */
  every?: number
  /** Targets warmed at once. @default 4 */
  concurrency?: number
}

/** What a warm run did. */
export interface WarmReport {
  warmed: number
  failed: number
  /** Keys with no remembered function (never read through `cached()` / `get(key, fn)` here). */
  unknown: number
}

/** Counters of one cache since it was created. */
export interface CacheMetrics {
  name: string
  hits: { memory: number; tiers: number[] }
  misses: number
  /** Calls of a key's function. */
  calls: number
  /** Reads that joined a call already running for their key (single flight). */
  joins: number
  staleServed: { swr: number; error: number }
  /** Function calls that failed or timed out. */
  errors: number
  /** hits / reads (0 before the first read). */
  hitRatio: number
  /** Keys and tags invalidated (a table counts as a tag). */
  invalidations: { keys: number; tags: number }
  /** Values not cached because their key or a tag was invalidated while the function ran. */
  droppedSlowFills: number
  /** Shared tier calls that failed (reads fall through, writes are skipped). */
  tierErrors: number
}

/** Events of a general-purpose cache. */
export type CacheEvents = {
  error: { error: Error; operation: string; key?: string }
}

/** The general-purpose cache (`createCache`). */
export interface Cache {
  readonly name: string
  /**
   * Wrap `fn`: each call is answered from memory, then the shared tiers, then `fn` (one call per key at a time, in
   * this process and, with a `lock`, across instances). The result keeps `fn`'s signature.
   */
  cached<A extends unknown[], T>(
    fn: (...args: A) => Promise<T> | T,
    options: CachedOptions<A>,
  ): (...args: A) => Promise<T>
  /** The value of `key`; computed by `fn` when missing (get-or-set), else `undefined` when missing. */
  get<T>(key: string, fn?: () => Promise<T> | T, options?: EntryOptions): Promise<T | undefined>
  /** Like `get`, with where the value came from and whether it is stale. */
  getEntry<T>(key: string, fn: () => Promise<T> | T, options?: EntryOptions): Promise<CacheResult<T>>
  /** Store a value in every tier (it must survive JSON when a shared tier exists: else an `InvalidInputError`). */
  set<T>(key: string, value: T, options?: EntryOptions): Promise<void>
  /** Drop keys from every tier (and, with a bus, from other instances' memory). */
  delete(keys: string | readonly string[]): Promise<void>
  /** Drop keys, every entry of some tags, or the tags of domain events; after `tx` commits when given. */
  invalidate(target: InvalidateTarget, options?: InvalidateOptions): Promise<void>
  /** Warm keys read before (their remembered functions) or thunks, now and every `every` ms. */
  warm(
    targets: readonly WarmTarget[] | (() => readonly WarmTarget[] | Promise<readonly WarmTarget[]>),
    options?: WarmOptions,
  ): Promise<WarmReport>
  /** A scope: `invalidate(..., { tx })` inside it acts on commit and vanishes on rollback. */
  transaction(): TransactionScope
  metrics(): CacheMetrics
  on<K extends keyof CacheEvents>(type: K, handler: (event: CacheEvents[K]) => void): void
  off<K extends keyof CacheEvents>(type: K, handler: (event: CacheEvents[K]) => void): void
  /** Stop warming, unsubscribe from the bus, close the tiers' stores. */
  close(): Promise<void>
}
