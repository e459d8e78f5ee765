import { StockcastError } from '../errors.js'
import type { BusState, InvalidationBus } from '../invalidation/contracts.js'
import type { MemoryTier, Versioned } from './memory-tier.js'
import type { Metrics } from './metrics.js'
import { messageOf } from './store-facade.js'

export interface BusLinkHooks {
  degraded(error: StockcastError): void
  recovered(): void
  error(error: StockcastError): void
}

/**
 * An engine's link to its invalidation bus: peers' messages drop older L1 entries, this engine's recomputes are
 * announced, and L1 is suspended (keeps and serves nothing) until the subscription holds and whenever the bus
 * reports that messages may be lost, so a peer's invalidation missed meanwhile is never covered by an L1 hit.
 */
export class BusLink<V extends Versioned> {
  readonly #bus: InvalidationBus
  readonly #l1: MemoryTier<V>
  readonly #metrics: Metrics
  readonly #hooks: BusLinkHooks
  readonly #origin = Math.random().toString(36).slice(2)
  readonly #unsubscribe: Promise<() => Promise<void>>
  #stopped = false
  /** The bus reported a lost connection (or could not subscribe): L1 is suspended. */
  #down = false

  constructor(bus: InvalidationBus, l1: MemoryTier<V>, metrics: Metrics, hooks: BusLinkHooks) {
    this.#bus = bus
    this.#l1 = l1
    this.#metrics = metrics
    this.#hooks = hooks
    this.#unsubscribe = bus.subscribe(
      (msg) => {
        if (msg.origin === this.#origin || this.#stopped) return
        metrics.busReceived++
        for (const p of msg.products) l1.dropOlder(p, msg.version)
      },
      (state, cause) => this.#state(state, cause),
    )
    // Until the subscription holds, peers' messages would be missed: L1 keeps nothing (reads go to L2 / L3).
    l1.suspend()
    this.#unsubscribe.then(
      () => {
        if (!this.#down) l1.resume()
      },
      (cause) => {
        // No subscription: L1 stays empty (correct, slower).
        this.#down = true
        hooks.error(new StockcastError(`invalidation bus subscribe failed: ${messageOf(cause)}`, { cause }))
      },
    )
  }

  /** True while the bus reports that peers' messages may be lost (L1 serves nothing meanwhile). */
  get degraded(): boolean {
    return this.#down
  }

  /** Announce that these units were recomputed at `version` (peers drop older L1 entries). */
  publish(units: readonly string[], version: number): void {
    this.#metrics.busPublished++
    this.#bus.publish({ products: [...units], version, origin: this.#origin }).catch((cause) => {
      this.#metrics.busPublishErrors++
      this.#hooks.error(new StockcastError(`invalidation bus publish failed: ${messageOf(cause)}`, { cause }))
    })
  }

  /** Ignore messages and state changes from now on (the engine is closing). */
  stop(): void {
    this.#stopped = true
  }

  /** Unsubscribe (errors are swallowed: the bus is going away with the engine). */
  async close(): Promise<void> {
    this.#stopped = true
    try {
      await (await this.#unsubscribe)()
    } catch {
      // nothing to unsubscribe, or the bus is gone
    }
  }

  /**
   * The bus lost its connection: peers' invalidations may be lost from now on, so L1 keeps nothing and serves
   * nothing until it has recovered, and then nothing read before (a read that straddles the outage is not kept).
   */
  #state(state: BusState, cause?: Error): void {
    if (this.#stopped) return
    if (state === 'degraded') {
      if (this.#down) return
      this.#down = true
      this.#l1.suspend()
      this.#metrics.degraded++
      this.#hooks.degraded(
        new StockcastError(
          `invalidation bus degraded: ${cause?.message ?? 'connection lost'}; L1 serves nothing until it recovers`,
          cause === undefined ? {} : { cause },
        ),
      )
    } else if (state === 'recovered') {
      if (!this.#down) return
      this.#down = false
      this.#l1.resume()
      this.#metrics.recovered++
      this.#hooks.recovered()
    }
  }
}
