// The contracts between the invalidation engine and what lives outside it: other instances (bus, lock) and the
// change captures that feed it marks (the SQL outbox listener, ORM hooks).

/** A lock shared by several instances (Redis, PostgreSQL advisory locks): one recomputes a unit at a time. */
export interface DistributedLock {
  /** Acquire the lock of `key` within `timeoutMs`; resolves to its release function. */
  acquire(key: string, timeoutMs: number): Promise<() => Promise<void>>
}

/** A message that units (products) changed at `version`. */
export interface InvalidationMessage {
  products: string[]
  version: number
  /** Who sent it (peers ignore their own messages). */
  origin: string
}

/**
 * What a bus says about its own delivery: `degraded` when peers' messages may be lost from now on (its connection
 * went away), `recovered` once they are delivered again.
 */
export type BusState = 'degraded' | 'recovered'

/**
 * Pub/sub between instances: peers drop L1 entries older than the announced version. Delivery is at most once: a
 * message lost while a subscriber is connected cannot be noticed, so a bus reports the outages it can see through
 * `onState`, and the cache then serves nothing from L1 until the bus has recovered (and nothing it read before).
 */
export interface InvalidationBus {
  publish(message: InvalidationMessage): Promise<void>
  subscribe(
    handler: (message: InvalidationMessage) => void,
    onState?: (state: BusState, cause?: Error) => void,
  ): Promise<() => Promise<void>>
}

/** A source of marks that can be asked what is still unprocessed (the SQL adapter's outbox). */
export interface PendingMarks {
  /** For each of these products with unprocessed marks, the highest mark version. */
  pending(products: readonly string[]): Promise<Map<string, number>>
}

/**
 * A change capture attached to a cache with `cache.attachSource(source)` (the SQL outbox listener does it). The
 * engine asks it two things; the capture talks to the engine only through `markDirty` and `flush({ units })`.
 */
export interface MarkSource {
  /** A name for status and messages (`sql outbox stockcast_outbox`). */
  readonly name: string
  /**
   * Age in ms of the oldest change committed in the database that this source has not yet seen settled by a cache
   * (its oldest outbox row), as of its latest look; 0 when none. `status().oldestUnprocessedMs` reports the largest
   * of these and of the cache's own oldest pending mark.
   */
  oldestUnprocessedMs(): number
  /**
   * Hand every change committed before this call to the cache (mark it) and resolve. The engine calls it when the
   * outermost `disableCacheTemporarily` block's function has returned, still in bulk mode (`flush({ units })`
   * reports those units `deferred`), so writes made inside the block through any connection are settled in the
   * block's one pass.
   */
  catchUp(): Promise<void>
  /** Called once a `disableCacheTemporarily` block has settled: marks it held back as deferred can be settled now. */
  afterBulk?(): void
}

/**
 * The `InvalidationMessage` in a value a bus received (parsed JSON), or undefined when it is not one: `products`
 * strings, a finite numeric `version`, a string `origin`. Other fields are left out. For bus implementations.
 */
export function invalidationMessageOf(value: unknown): InvalidationMessage | undefined {
  const m = value as Partial<InvalidationMessage> | null
  if (
    m === null ||
    typeof m !== 'object' ||
    !Array.isArray(m.products) ||
    !m.products.every((p) => typeof p === 'string') ||
    typeof m.version !== 'number' ||
    !Number.isFinite(m.version) ||
    typeof m.origin !== 'string'
  ) {
    return undefined
  }
  return { products: m.products, version: m.version, origin: m.origin }
}
