import { StoreUnavailableError } from '../errors.js'
import { backoffDelay } from '../util/backoff.js'
import { release, retain } from '../util/shared.js'
import type { StockProjection, Store, StoreEntry, StoreListQuery } from './types.js'

export interface StoreFacadeHooks {
  onError(error: StoreUnavailableError): void
  onDegraded(error: StoreUnavailableError): void
  onRecovered(): void
  now(): number
  setTimer(fn: () => void, ms: number): unknown
  clearTimer(handle: unknown): void
}

/**
 * The key a recovery probe reads: never a product's (no product id is empty, and U+001F only separates a product
 * from its location), and storable as text by every store (PostgreSQL text rejects U+0000).
 */
export const PROBE_KEY = '\u001fstockcast-probe'

/**
 * Every L2 call goes through here. A failure is reported (error, then degraded once), the call answers as a miss,
 * and L2 is left alone until a background probe succeeds (recovered). Keys whose write or delete failed are
 * remembered ("debt"): they are never read from L2 and are deleted there before L2 is used again, so an old
 * entry cannot come back after an outage.
 */
export class StoreFacade<V = StockProjection> {
  readonly #store: Store<V>
  readonly #hooks: StoreFacadeHooks
  readonly #retryMs: number
  #degraded = false
  #retryTimer: unknown = undefined
  #attempt = 0
  readonly #debt = new Set<string>()
  #closed = false
  hits = 0
  misses = 0
  errors = 0

  constructor(store: Store<V>, hooks: StoreFacadeHooks, retryMs: number) {
    this.#store = store
    this.#hooks = hooks
    this.#retryMs = retryMs
    retain(store)
  }

  get degraded(): boolean {
    return this.#degraded
  }

  get debt(): number {
    return this.#debt.size
  }

  async getMany(keys: readonly string[]): Promise<Map<string, StoreEntry<V>>> {
    if (this.#degraded || keys.length === 0) {
      this.misses += keys.length
      return new Map()
    }
    try {
      const found = await this.#store.getMany(keys)
      if (this.#debt.size > 0) for (const k of found.keys()) if (this.#debt.has(k)) found.delete(k)
      // An entry past its expiry is not served, whether or not the store has dropped it yet.
      const now = this.#hooks.now()
      for (const [k, e] of found) if (e.expiresAt !== undefined && e.expiresAt <= now) found.delete(k)
      this.hits += found.size
      this.misses += keys.length - found.size
      return found
    } catch (cause) {
      this.#fail('getMany', cause, [])
      this.misses += keys.length
      return new Map()
    }
  }

  /** True when the store can answer listings (`Store.list`). */
  get canList(): boolean {
    return typeof this.#store.list === 'function'
  }

  /**
   * A listing from the store. Unlike a read, it cannot answer "miss": it fails with `StoreUnavailableError` while L2
   * is degraded, or while writes it missed (debt) are not settled, since its rows could then be older than L1.
   */
  async list(q: StoreListQuery): Promise<Array<[string, StoreEntry<V>]>> {
    if (this.#degraded || this.#debt.size > 0) {
      throw new StoreUnavailableError(
        this.#degraded
          ? 'L2 store is degraded: list() reads it again once it recovers'
          : `L2 store missed ${this.#debt.size} write(s): list() reads it again once they are settled`,
        { tier: 'l2' },
      )
    }
    try {
      return await this.#store.list!(q)
    } catch (cause) {
      this.#fail('list', cause, [])
      throw new StoreUnavailableError(`L2 store list() failed: ${messageOf(cause)}`, { tier: 'l2', cause })
    }
  }

  /**
   * `ok`: the store took the entries; false when it is degraded or the write failed (the keys become debt).
   * `written`: the keys the store says it wrote, when it says (see `Store.setMany`).
   */
  async setMany(
    entries: ReadonlyArray<readonly [string, StoreEntry<V>]>,
  ): Promise<{ ok: boolean; written?: ReadonlySet<string> }> {
    if (entries.length === 0) return { ok: true }
    if (this.#degraded) {
      for (const [k] of entries) this.#debt.add(k)
      return { ok: false }
    }
    try {
      const written = await this.#store.setMany(entries)
      for (const [k] of entries) this.#debt.delete(k)
      return written instanceof Set ? { ok: true, written } : { ok: true }
    } catch (cause) {
      this.#fail(
        'setMany',
        cause,
        entries.map(([k]) => k),
      )
      return { ok: false }
    }
  }

  async deleteMany(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return
    if (this.#degraded) {
      for (const k of keys) this.#debt.add(k)
      return
    }
    try {
      await this.#store.deleteMany(keys)
    } catch (cause) {
      this.#fail('deleteMany', cause, keys)
    }
  }

  /** Direct calls that must not be swallowed (clear, close). */
  async clear(): Promise<void> {
    try {
      await this.#store.clear()
      this.#debt.clear()
    } catch (cause) {
      throw new StoreUnavailableError(`L2 store clear() failed: ${messageOf(cause)}`, { tier: 'l2', cause })
    }
  }

  /** Closes the store unless another open cache uses the same store object. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#retryTimer !== undefined) this.#hooks.clearTimer(this.#retryTimer)
    this.#retryTimer = undefined
    if (release(this.#store)) await this.#store.close()
  }

  #fail(op: string, cause: unknown, failedKeys: readonly string[]): void {
    for (const k of failedKeys) this.#debt.add(k)
    this.errors++
    const error = new StoreUnavailableError(
      `L2 store ${op}() failed: ${messageOf(cause)}; reads fall through to the sources until it recovers`,
      { tier: 'l2', cause },
    )
    this.#hooks.onError(error)
    if (!this.#degraded) {
      this.#degraded = true
      this.#attempt = 0
      this.#hooks.onDegraded(error)
      this.#scheduleProbe()
    }
  }

  #scheduleProbe(): void {
    if (this.#closed) return
    const delay = backoffDelay(this.#attempt++, this.#retryMs)
    this.#retryTimer = this.#hooks.setTimer(() => {
      this.#retryTimer = undefined
      void this.probe()
    }, delay)
  }

  /** Try L2 once: settle the debt, then leave degraded mode. Returns true when L2 is usable again. */
  async probe(): Promise<boolean> {
    if (!this.#degraded) return true
    try {
      await this.#store.getMany([PROBE_KEY])
      if (this.#debt.size > 0) {
        const keys = [...this.#debt]
        await this.#store.deleteMany(keys)
        for (const k of keys) this.#debt.delete(k)
      }
      this.#degraded = false
      this.#hooks.onRecovered()
      return true
    } catch (cause) {
      this.errors++
      this.#hooks.onError(
        new StoreUnavailableError(`L2 store still unavailable: ${messageOf(cause)}`, { tier: 'l2', cause }),
      )
      this.#scheduleProbe()
      return false
    }
  }
}

export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
