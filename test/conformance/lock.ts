import { afterAll, describe, expect, it } from 'vitest'
import { LockTimeoutError } from '../../src/errors.js'
import type { DistributedLock } from '../../src/index.js'

export interface LockConformanceOptions {
  /** Suite title. @default 'Lock conformance' */
  name?: string
  /**
   * The factory honours `{ ttlMs }`: a lock ends by itself after it, and the late release of a lock that ended must
   * not release the next owner's. Locks that end with their holder's session (PostgreSQL advisory locks) say false.
   * @default true
   */
  expires?: boolean
}

/**
 * Two locks from one factory call stand for two instances (processes) sharing the lock service; `namespace` keeps
 * the suite's keys apart from other runs.
 */
export type MakeLock = (options: { namespace: string; ttlMs: number }) => DistributedLock | Promise<DistributedLock>

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * The contract every `DistributedLock` keeps. Call it from the lock's own test file.
 *
 * @example
 * ```ts
 * runLockConformance(({ namespace, ttlMs }) => redisLock(redis, { prefix: namespace, ttlMs }))
 * ```
 */
export function runLockConformance(makeLock: MakeLock, options: LockConformanceOptions = {}): void {
  const expires = options.expires ?? true
  describe(options.name ?? 'Lock conformance', () => {
    let n = 0
    const closers: Array<() => unknown> = []
    const two = async (ttlMs = 10_000) => {
      const namespace = `lc-${process.pid}-${Date.now()}-${n++}:`
      const a = await makeLock({ namespace, ttlMs })
      const b = await makeLock({ namespace, ttlMs })
      for (const l of [a, b]) {
        const c = (l as { close?: () => unknown }).close
        if (typeof c === 'function') closers.push(() => c.call(l))
      }
      return [a, b] as const
    }
    afterAll(async () => {
      for (const c of closers.splice(0)) await c()
    })

    it('excludes a second holder of the same key until the first releases', async () => {
      const [a, b] = await two()
      const releaseA = await a.acquire('P1', 1000)
      let bHas = false
      const bWaits = b.acquire('P1', 5000).then((r) => {
        bHas = true
        return r
      })
      await sleep(150)
      expect(bHas).toBe(false)
      await releaseA()
      const releaseB = await bWaits
      expect(bHas).toBe(true)
      await releaseB()
    })

    it('does not block other keys', async () => {
      const [a, b] = await two()
      const r1 = await a.acquire('K1', 1000)
      const r2 = await b.acquire('K2', 1000)
      await r1()
      await r2()
    })

    it('fails with LockTimeoutError when the key stays held past timeoutMs', async () => {
      const [a, b] = await two()
      const release = await a.acquire('T', 1000)
      const t0 = Date.now()
      const err = await b.acquire('T', 200).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(LockTimeoutError)
      expect(Date.now() - t0).toBeGreaterThanOrEqual(150)
      await release()
      // Free again: it can be taken at once.
      await (await b.acquire('T', 1000))()
    })

    it('a release called twice releases once (it never frees the next holder)', async () => {
      const [a, b] = await two()
      const releaseA = await a.acquire('D', 1000)
      await releaseA()
      const releaseB = await b.acquire('D', 1000)
      await releaseA()
      const err = await a.acquire('D', 150).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(LockTimeoutError)
      await releaseB()
    })

    it('serialises many holders across instances: never two at once', async () => {
      const [a, b] = await two()
      let inside = 0
      let most = 0
      let done = 0
      await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const release = await (i % 2 === 0 ? a : b).acquire('S', 20_000)
          inside++
          most = Math.max(most, inside)
          await sleep(2)
          inside--
          done++
          await release()
        }),
      )
      expect(done).toBe(20)
      expect(most).toBe(1)
    })

    if (expires) {
      it('ends by itself after ttlMs; the first holder releasing late does not free the second', async () => {
        const [a, b] = await two(1000)
        const releaseA = await a.acquire('E', 1000)
        // A "dies": its lock ends with the ttl and B takes it.
        const releaseB = await b.acquire('E', 5000)
        await releaseA()
        const err = await a.acquire('E', 100).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(LockTimeoutError)
        await releaseB()
      })
    }
  })
}
