import { afterEach, describe, expect, it } from 'vitest'
import type { InvalidationBus, InvalidationMessage } from '../../src/index.js'

export interface BusConformanceOptions {
  /** Suite title. @default 'Bus conformance' */
  name?: string
  /** Longest ms a message may take to arrive in these tests. @default 5000 */
  deliveryMs?: number
}

/** Buses from one factory call with the same `channel` stand for instances sharing it; other channels are apart. */
export type MakeBus = (options: { channel: string }) => InvalidationBus | Promise<InvalidationBus>

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(5)
  }
}

/**
 * The contract every `InvalidationBus` keeps: what one instance publishes reaches every other subscriber of the
 * channel, whole and once (in any order), and nothing after unsubscribing. Call it from the bus's own test file.
 *
 * @example
 * ```ts
 * runBusConformance(({ channel }) => redisBus(redis, { channel }))
 * ```
 */
export function runBusConformance(makeBus: MakeBus, options: BusConformanceOptions = {}): void {
  const deliveryMs = options.deliveryMs ?? 5000
  describe(options.name ?? 'Bus conformance', () => {
    let n = 0
    const stops: Array<() => Promise<void>> = []
    const closers: Array<() => unknown> = []
    const channel = () => `bc_${process.pid}_${Date.now()}_${n++}`
    const make = async (ch: string) => {
      const bus = await makeBus({ channel: ch })
      const c = (bus as { close?: () => unknown }).close
      if (typeof c === 'function') closers.push(() => c.call(bus))
      return bus
    }
    const listen = async (bus: InvalidationBus) => {
      const got: InvalidationMessage[] = []
      const stop = await bus.subscribe((m) => got.push(m))
      stops.push(stop)
      return { got, stop }
    }
    afterEach(async () => {
      for (const s of stops.splice(0)) await s().catch(() => {})
      for (const c of closers.splice(0)) await c()
    })

    it("delivers a message to every other instance's subscriber, whole", async () => {
      const ch = channel()
      const [a, b, c] = [await make(ch), await make(ch), await make(ch)]
      const inB = await listen(b)
      const inC = await listen(c)
      const message = { products: ['P1', 'P2\u001fWH-1', 'ação "q"'], version: 1_795_000_000_000_123, origin: 'a' }
      await a.publish(message)
      await until(() => inB.got.length === 1 && inC.got.length === 1, deliveryMs, 'delivery to both subscribers')
      expect(inB.got[0]).toEqual(message)
      expect(inC.got[0]).toEqual(message)
    })

    // Order is not part of the contract: a message means "drop what is not newer than this version", which gives the
    // same result in any order (a Redis Cluster sends each PUBLISH through any node and reorders them).
    it('delivers each of many messages once', async () => {
      const ch = channel()
      const [a, b] = [await make(ch), await make(ch)]
      const inB = await listen(b)
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => a.publish({ products: [`P${i % 5}`], version: i + 1, origin: 'a' })),
      )
      await until(() => inB.got.length >= 50, deliveryMs, '50 messages')
      await sleep(50)
      expect(inB.got.map((m) => m.version).sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
    })

    it('carries 5 000 products in one message', async () => {
      const ch = channel()
      const [a, b] = [await make(ch), await make(ch)]
      const inB = await listen(b)
      const products = Array.from({ length: 5000 }, (_, i) => `PRODUCT-${i}`)
      await a.publish({ products, version: 7, origin: 'a' })
      await until(() => inB.got.length === 1, deliveryMs, 'the large message')
      expect(inB.got[0]!.products).toEqual(products)
    })

    it('keeps channels apart and delivers nothing after unsubscribing', async () => {
      const ch = channel()
      const [a, b, other] = [await make(ch), await make(ch), await make(channel())]
      const inB = await listen(b)
      const inOther = await listen(other)
      await a.publish({ products: ['X'], version: 1, origin: 'a' })
      await until(() => inB.got.length === 1, deliveryMs, 'the first message')
      await inB.stop()
      await a.publish({ products: ['Y'], version: 2, origin: 'a' })
      // A fresh subscriber sees the second message: the first one's unsubscribe must not have seen it.
      const inB2 = await listen(await make(ch))
      await a.publish({ products: ['Z'], version: 3, origin: 'a' })
      await until(() => inB2.got.length >= 1, deliveryMs, 'a message to the new subscriber')
      await sleep(100)
      expect(inB.got.map((m) => m.version)).toEqual([1])
      expect(inOther.got).toEqual([])
    })

    it('publishing with no subscriber resolves', async () => {
      const a = await make(channel())
      await a.publish({ products: ['NOBODY'], version: 1, origin: 'a' })
    })
  })
}
