import { afterEach, describe, expect, it } from 'vitest'
import {
  type Cache,
  ClosedError,
  ConfigError,
  createCache,
  type InvalidationBus,
  type InvalidationMessage,
  InvalidInputError,
  memoryStore,
  type Store,
  type StoreEntry,
} from '../src/index.js'
import { FakeTimers, settle } from './helpers/fake-timers.js'
import { FakeClock } from './helpers/fixtures.js'

const caches: Cache[] = []
afterEach(async () => {
  for (const c of caches.splice(0)) await c.close()
})

function make(options: Partial<Parameters<typeof createCache>[0]> = {}, clock = new FakeClock()) {
  const timers = new FakeTimers(clock)
  const cache = createCache({ name: 'test', clock, timers, ...options })
  caches.push(cache)
  return { clock, timers, cache }
}

/** A memory store that counts its calls (the real memoryStore underneath). */
function countingStore(clock: FakeClock) {
  const inner = memoryStore({ clock }) as unknown as Store<unknown>
  const calls = { getMany: 0, setMany: 0, deleteMany: 0, keysWritten: 0, keysDeleted: 0 }
  let failing = false
  const store: Store<unknown> = {
    async getMany(keys) {
      calls.getMany++
      if (failing) throw new Error('store down')
      return inner.getMany(keys)
    },
    async setMany(entries: ReadonlyArray<readonly [string, StoreEntry<unknown>]>) {
      calls.setMany++
      calls.keysWritten += entries.length
      if (failing) throw new Error('store down')
      return inner.setMany(entries)
    },
    async deleteMany(keys) {
      calls.deleteMany++
      calls.keysDeleted += keys.length
      if (failing) throw new Error('store down')
      return inner.deleteMany(keys)
    },
    clear: () => inner.clear(),
    close: async () => {},
    capabilities: { shared: true },
  }
  return {
    store,
    calls,
    fail: (on: boolean) => {
      failing = on
    },
  }
}

/** An in-process bus: what one subscriber publishes, the others receive (the InvalidationBus contract). */
function localBus(): InvalidationBus {
  const handlers = new Set<(m: InvalidationMessage) => void>()
  return {
    async publish(m) {
      for (const h of handlers) h(structuredClone(m))
    },
    async subscribe(handler) {
      handlers.add(handler)
      return async () => {
        handlers.delete(handler)
      }
    },
  }
}

describe('createCache: read path', () => {
  it('memory, then a shared tier, then the function; per-tier hits counted', async () => {
    const clock = new FakeClock()
    const shared = countingStore(clock)
    const a = make({ store: shared.store }, clock)
    let calls = 0
    const load = a.cache.cached(async (id: string) => ({ id, n: ++calls }), { key: (id) => `user:${id}`, ttl: 1000 })
    expect(await load('u1')).toEqual({ id: 'u1', n: 1 })
    expect(await load('u1')).toEqual({ id: 'u1', n: 1 })
    expect(a.cache.metrics()).toMatchObject({ calls: 1, misses: 1, hits: { memory: 1, tiers: [0] } })
    // Another instance on the same store: a tier hit, then memory.
    const b = make({ store: shared.store }, clock)
    const loadB = b.cache.cached(async (id: string) => ({ id, n: -1 }), { key: (id) => `user:${id}`, ttl: 1000 })
    expect(await loadB('u1')).toEqual({ id: 'u1', n: 1 })
    expect(await loadB('u1')).toEqual({ id: 'u1', n: 1 })
    expect(b.cache.metrics()).toMatchObject({ calls: 0, hits: { memory: 1, tiers: [1] } })
  })

  it('expires after ttl: the function runs again', async () => {
    const { clock, cache } = make()
    let n = 0
    const f = cache.cached(async () => ++n, { key: 'k', ttl: 1000 })
    expect(await f()).toBe(1)
    clock.advance(999)
    expect(await f()).toBe(1)
    clock.advance(1)
    expect(await f()).toBe(2)
  })

  it('stale-while-revalidate: serves the old value at once, refreshes once in the background', async () => {
    const { clock, cache } = make()
    let n = 0
    let release: () => void = () => {}
    const f = async () => {
      n++
      if (n > 1) await new Promise<void>((r) => (release = r))
      return n
    }
    expect((await cache.getEntry('k', f, { ttl: 1000, swr: 5000 })).value).toBe(1)
    clock.advance(1500)
    const r1 = await cache.getEntry('k', f, { ttl: 1000, swr: 5000 })
    const r2 = await cache.getEntry('k', f, { ttl: 1000, swr: 5000 })
    expect([r1.value, r1.stale, r2.value, r2.stale]).toEqual([1, true, 1, true])
    expect(n).toBe(2) // one background call for both reads
    release()
    await settle()
    const r3 = await cache.getEntry('k', f, { ttl: 1000, swr: 5000 })
    expect([r3.value, r3.stale]).toEqual([2, false])
    clock.advance(1000 + 5000)
    n = 10
    expect((await cache.getEntry('k', async () => 99, { ttl: 1000, swr: 5000 })).value).toBe(99) // past swr: waits
  })

  it('stale-if-error: serves the last value flagged while the function fails, throws past the window, recovers', async () => {
    const { clock, cache } = make()
    let down = false
    const f = async () => {
      if (down) throw new Error('api down')
      return 'fresh'
    }
    const opts = { ttl: 1000, staleIfErrorMs: 10_000 }
    expect(await cache.get('k', f, opts)).toBe('fresh')
    down = true
    clock.advance(2000)
    const r = await cache.getEntry('k', f, opts)
    expect(r).toMatchObject({ value: 'fresh', stale: true, source: 'memory' })
    expect(r.error?.message).toContain('api down')
    clock.advance(10_000)
    await expect(cache.get('k', f, opts)).rejects.toThrow(/api down/)
    down = false
    expect(await cache.getEntry('k', f, opts)).toMatchObject({ value: 'fresh', stale: false, source: 'fn' })
    expect(cache.metrics().staleServed.error).toBe(1)
  })

  it('timeoutMs: a function that hangs gives way to the stale value', async () => {
    const { clock, timers, cache } = make()
    expect(await cache.get('k', async () => 'old', { ttl: 100, staleIfErrorMs: 60_000, timeoutMs: 500 })).toBe('old')
    clock.advance(200)
    const pending = cache.getEntry('k', () => new Promise<string>(() => {}), {
      ttl: 100,
      staleIfErrorMs: 60_000,
      timeoutMs: 500,
    })
    await settle() // the call starts after the tiers were looked up
    await timers.advance(500)
    expect(await pending).toMatchObject({ value: 'old', stale: true })
  })

  it("a key's function that reads its own key through the cache is an InvalidInputError, not a deadlock", async () => {
    const { cache } = make()
    const self = cache.cached(async (): Promise<number> => (await self()) + 1, { key: 'loop' })
    await expect(self()).rejects.toThrow(/would wait for itself/)
    // Another key inside is fine, and so is the same key in another cache.
    const other = make().cache
    const inner = cache.cached(async () => 41, { key: 'inner' })
    const outer = cache.cached(async () => (await inner()) + (await other.get('loop', async () => 1))!, {
      key: 'outer',
    })
    expect(await outer()).toBe(42)
  })

  it('single flight: 1 000 concurrent calls of a key run the function once', async () => {
    const { cache } = make()
    let calls = 0
    const f = cache.cached(
      async () => {
        calls++
        await new Promise((r) => setTimeout(r, 10))
        return 'v'
      },
      { key: 'hot', ttl: 60_000 },
    )
    const all = await Promise.all(Array.from({ length: 1000 }, () => f()))
    expect(all.every((v) => v === 'v')).toBe(true)
    expect(calls).toBe(1)
    expect(cache.metrics().joins).toBe(999)
  })

  it('memory past its ttl: a fresher entry another instance put in the shared tier wins over swr', async () => {
    const clock = new FakeClock()
    const shared = countingStore(clock)
    const a = make({ store: shared.store }, clock)
    const b = make({ store: shared.store }, clock)
    expect(await a.cache.get('k', async () => 'old', { ttl: 1000, swr: 60_000 })).toBe('old')
    clock.advance(1500)
    await b.cache.set('k', 'new', { ttl: 1000 }) // another instance refreshed it
    const r = await a.cache.getEntry('k', async () => 'a-call', { ttl: 1000, swr: 60_000 })
    expect(r).toMatchObject({ value: 'new', stale: false, source: 'tier1' })
  })

  it('get without a function answers undefined when missing; set stores in every tier', async () => {
    const clock = new FakeClock()
    const shared = countingStore(clock)
    const { cache } = make({ store: shared.store }, clock)
    expect(await cache.get('nope')).toBeUndefined()
    await cache.set('k', { a: [1, 'x', null] }, { ttl: 5000 })
    expect(await cache.get('k')).toEqual({ a: [1, 'x', null] })
    const b = make({ store: shared.store }, clock)
    expect(await b.cache.get('k')).toEqual({ a: [1, 'x', null] })
  })
})

describe('createCache: invalidation', () => {
  it('keys: dropped from every tier', async () => {
    const clock = new FakeClock()
    const shared = countingStore(clock)
    const { cache } = make({ store: shared.store }, clock)
    let n = 0
    const f = cache.cached(async () => ++n, { key: 'k' })
    await f()
    await cache.invalidate({ keys: ['k'] })
    expect(await f()).toBe(2)
    const b = make({ store: shared.store }, clock)
    expect(await b.cache.get('k')).toBe(2)
    await cache.delete('k')
    // Without a bus, B's memory copy stays (up to memory.ttl); an instance that reads the shared tier finds nothing.
    expect(await b.cache.get('k')).toBe(2)
    const c = make({ store: shared.store }, clock)
    expect(await c.cache.get('k', async () => 'recomputed')).toBe('recomputed')
  })

  it('tags: O(tags) (one stamp per tag, no key touched), seen by another instance through the shared tier', async () => {
    const clock = new FakeClock()
    const shared = countingStore(clock)
    const a = make({ store: shared.store }, clock)
    let n = 0
    const bySeller = a.cache.cached(async (s: string, day: number) => `${s}/${day}/${++n}`, {
      key: (s, day) => `report:${s}:${day}`,
      tags: (s) => [`seller:${s}`],
    })
    for (let d = 0; d < 50; d++) await bySeller('s1', d)
    await bySeller('s2', 0)
    const before = { ...shared.calls }
    a.clock.advance(1)
    await a.cache.invalidate({ tags: ['seller:s1'] })
    expect(shared.calls.keysWritten - before.keysWritten).toBe(1) // the tag's stamp
    expect(shared.calls.keysDeleted - before.keysDeleted).toBe(0)
    expect(await bySeller('s1', 3)).toMatch(/^s1\/3\/52$/)
    expect(await bySeller('s2', 0)).toBe('s2/0/51') // untouched
    // Instance B reads s1/4 from the store: its tag stamp there says it is outdated.
    const b = make({ store: shared.store }, clock)
    expect(await b.cache.get('report:s1:4')).toBeUndefined()
    expect(await b.cache.get('report:s2:0')).toBe('s2/0/51')
  })

  it('a burst of invalidations does not keep values of a tag from being cached after the clock moved on', async () => {
    const { clock, cache } = make()
    let calls = 0
    const read = cache.cached(() => ++calls, { key: 'k', tags: ['b'] })
    for (let i = 0; i < 100; i++) await cache.invalidate({ tags: [`a${i}`] })
    await cache.invalidate({ tags: ['b'] })
    clock.advance(50)
    await read()
    await read()
    expect(calls).toBe(1)
    expect(cache.metrics().droppedSlowFills).toBe(0)
  })

  it('tables: an entry declaring a table is dropped by invalidate({ tables }); user tags cannot collide', async () => {
    const { clock, cache } = make()
    let n = 0
    const totals = cache.cached(async (c: string) => `${c}${++n}`, {
      key: (c) => `totals:${c}`,
      tables: ['orders', 'payments'],
    })
    const other = cache.cached(async () => `o${++n}`, { key: 'other', tables: ['customers'] })
    await totals('a')
    await other()
    clock.advance(1)
    await cache.invalidate({ tables: ['payments'] })
    expect(await totals('a')).toBe('a3')
    expect(await other()).toBe('o2')
    await expect(cache.invalidate({ tags: ['\u001etable:orders'] })).rejects.toThrow(InvalidInputError)
    await expect(cache.invalidate({ tables: [''] })).rejects.toThrow(InvalidInputError)
  })

  it('maxAge caps every entry, and tag stamps expire from the tiers after it', async () => {
    const clock = new FakeClock()
    const shared = countingStore(clock)
    const { cache } = make({ store: shared.store, maxAge: 10_000 }, clock)
    let n = 0
    const f = cache.cached(async () => ++n, { key: 'k', ttl: 3_600_000, tags: ['t'] })
    await f()
    clock.advance(9_999)
    expect(await f()).toBe(1)
    clock.advance(1)
    expect(await f()).toBe(2)
    await cache.invalidate({ tags: ['t'] })
    const stamp = (await shared.store.getMany(['test\u001ftag\u001ft'])).get('test\u001ftag\u001ft')
    expect(stamp?.expiresAt).toBe(clock.ms + 10_000)
  })

  it('events map to tags; an unknown event is an InvalidInputError and invalidates nothing', async () => {
    const { cache, clock } = make({ events: { 'order.created': ['dashboard', 'seller-report'] } })
    let n = 0
    const dash = cache.cached(async () => ++n, { key: 'dashboard:main', tags: ['dashboard'] })
    await dash()
    clock.advance(1)
    await expect(cache.invalidate({ events: ['order.creatd'] })).rejects.toThrow(InvalidInputError)
    expect(await dash()).toBe(1)
    await cache.invalidate({ events: ['order.created'] })
    expect(await dash()).toBe(2)
  })

  it('inside a transaction: acts on commit, vanishes on rollback', async () => {
    const { cache } = make()
    let n = 0
    const f = cache.cached(async () => ++n, { key: 'k', tags: ['t'] })
    await f()
    const tx = cache.transaction()
    await cache.invalidate({ keys: ['k'] }, { tx })
    expect(await f()).toBe(1)
    tx.rollback()
    expect(await f()).toBe(1)
    const tx2 = cache.transaction()
    await cache.invalidate({ tags: ['t'] }, { tx: tx2 })
    expect(await f()).toBe(1)
    tx2.commit()
    await settle()
    expect(await f()).toBe(2)
  })

  it('a value computed while its key was invalidated is served but not cached (no slow fill)', async () => {
    const { cache } = make()
    let release: () => void = () => {}
    let n = 0
    const f = cache.cached(
      async () => {
        n++
        if (n === 1) await new Promise<void>((r) => (release = r))
        return n
      },
      { key: 'k' },
    )
    const first = f()
    await settle()
    await cache.invalidate({ keys: ['k'] })
    release()
    expect(await first).toBe(1)
    expect(await f()).toBe(2)
    expect(cache.metrics().droppedSlowFills).toBe(1)
  })

  it('with a bus, another instance drops its memory copy of an invalidated key and tag', async () => {
    const bus = localBus()
    const a = make({ bus })
    const b = make({ bus })
    await settle()
    let na = 0
    let nb = 0
    const fa = a.cache.cached(async () => ++na, { key: 'k', tags: ['t'] })
    const fb = b.cache.cached(async () => ++nb, { key: 'k', tags: ['t'] })
    const gb = b.cache.cached(async () => `g${++nb}`, { key: 'g', tags: ['t'] })
    await fa()
    await fb()
    await gb()
    b.clock.advance(5)
    a.clock.advance(5)
    await a.cache.invalidate({ keys: ['k'] })
    expect(await fb()).toBe(3)
    a.clock.advance(5)
    b.clock.advance(5)
    await a.cache.invalidate({ tags: ['t'] })
    expect(await gb()).toBe('g4')
  })
})

describe('createCache: warming, errors, bad input', () => {
  it('warms remembered keys and thunks, by priority, now and every `every` ms; close() stops it', async () => {
    const { cache, clock, timers } = make()
    let n = 0
    const f = cache.cached(async (id: string) => `${id}${++n}`, { key: (id) => `a:${id}`, ttl: 1000 })
    await f('x')
    clock.advance(2000)
    const order: string[] = []
    const report = await cache.warm(
      [{ key: 'a:x', priority: 1 }, { run: async () => order.push('thunk'), priority: 5 }, 'a:never-read'],
      { every: 60_000, concurrency: 1 },
    )
    expect(report).toEqual({ warmed: 2, failed: 0, unknown: 1 })
    expect(order).toEqual(['thunk'])
    expect(await cache.get('a:x')).toBe('x2')
    clock.advance(2000)
    await timers.advance(58_000) // to the tick, 60 s after warm() started
    expect(await cache.get('a:x')).toBe('x3')
    await cache.close()
    await timers.advance(60_000)
    expect(n).toBe(3)
  })

  it('a value a shared tier cannot keep is an InvalidInputError at set; memory-only caches take it', async () => {
    const clock = new FakeClock()
    const shared = countingStore(clock)
    const { cache } = make({ store: shared.store }, clock)
    await expect(cache.set('d', { when: new Date() })).rejects.toThrow(/when is a Date object/)
    await expect(cache.set('m', new Map())).rejects.toThrow(InvalidInputError)
    await expect(cache.set('u', { a: undefined })).rejects.toThrow(/a is undefined/)
    await expect(cache.set('n', [1, Number.NaN])).rejects.toThrow(/\[1\] is NaN/)
    expect(shared.calls.setMany).toBe(0)
    const local = make()
    await local.cache.set('d', new Map([[1, 2]]))
    expect(await local.cache.get('d')).toEqual(new Map([[1, 2]]))
  })

  it('a failing shared tier: reads fall through to the function, errors are reported, answers keep coming', async () => {
    const clock = new FakeClock()
    const shared = countingStore(clock)
    const { cache } = make({ store: shared.store }, clock)
    const errors: string[] = []
    cache.on('error', (e) => errors.push(e.operation))
    shared.fail(true)
    expect(await cache.get('k', async () => 'v')).toBe('v')
    expect(await cache.get('k', async () => 'w')).toBe('v') // memory
    expect(errors).toContain('tier1')
    expect(cache.metrics().tierErrors).toBeGreaterThan(0)
  })

  it('a tier that was down: skipped until a probe succeeds, then it gets the deletes and tag stamps it missed', async () => {
    const clock = new FakeClock()
    const shared = countingStore(clock)
    const a = make({ store: shared.store }, clock)
    let n = 0
    const f = a.cache.cached(async (k: string) => `${k}${++n}`, { key: (k) => k, tags: ['t'] })
    await f('x')
    await f('y')
    shared.fail(true)
    clock.advance(1)
    await a.cache.invalidate({ keys: ['x'] })
    await a.cache.invalidate({ tags: ['t'] })
    const callsWhileDown = shared.calls.getMany
    expect(await f('z')).toBe('z3') // computed; the tier is skipped, not called again
    expect(shared.calls.getMany).toBe(callsWhileDown)
    shared.fail(false)
    await a.timers.advance(1000) // the probe: deletes what was missed, then the tag stamp is written again
    await settle()
    // Another instance without a bus: x is gone from the tier, y is outdated by the stamp.
    const b = make({ store: shared.store }, clock)
    expect(await b.cache.get('x')).toBeUndefined()
    expect(await b.cache.get('y')).toBeUndefined()
  })

  it('rejects bad keys, options and config with typed errors', async () => {
    expect(() => createCache({ name: '' })).toThrow(ConfigError)
    expect(() => createCache({ name: 'x', ttl: -1 })).toThrow(ConfigError)
    expect(() => createCache({ name: 'x', memory: { max: 1.5 } })).toThrow(ConfigError)
    const { cache } = make()
    await expect(cache.get('')).rejects.toThrow(InvalidInputError)
    await expect(cache.get(42 as unknown as string)).rejects.toThrow(InvalidInputError)
    await expect(cache.get('k', async () => 1, { ttl: -5 })).rejects.toThrow(InvalidInputError)
    const bad = cache.cached(async (n: number) => n, { key: (n) => (n > 0 ? `k${n}` : (undefined as never)) })
    await expect(bad(0)).rejects.toThrow(InvalidInputError)
    await expect(cache.invalidate({ tags: 'x' as unknown as string[] })).rejects.toThrow(InvalidInputError)
    await cache.close()
    await expect(cache.get('k', async () => 1)).rejects.toThrow(ClosedError)
  })
})
