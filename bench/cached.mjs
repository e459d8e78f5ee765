// The general-purpose cache (`createCache`, issue 14): L1 hit throughput of `cached()` and `get(key, fn)` against
// bentocache `getOrSet` and cache-manager `wrap` in the same run, then a tag invalidation over 10 000 keys.
//
// Part 1 reads the same 1 000 warm keys in the same order in every task; one task call reads each key once (a batch
// of 1 000 reads), so timer overhead stays far below a sample. Figures are tinybench's median throughput times the
// batch. Part 2 times single calls with performance.now() (medians of ROUNDS rounds, one fresh tag per round).

import { performance } from 'node:perf_hooks'
import { BentoCache, bentostore } from 'bentocache'
import { MemoryDriver, memoryDriver } from 'bentocache/drivers/memory'
import { createCache as createCacheManager } from 'cache-manager'
import { LRUCache } from 'lru-cache'
import { createCache, memoryStore } from 'stockcast'
import { Bench } from 'tinybench'
import { fmtInt, fmtRatio, isMain, medianOpsPerSec, pct, printTable, rme, versionOf } from './lib.mjs'

const KEYS = 1000
const TAG_KEYS = 10_000
const TAGS = 100
const ROUNDS = 15
/** Back-to-back invalidations of one tag each, after the rounds (tags ROUNDS.. ROUNDS + BURST - 1). */
const BURST = 30
const HOUR = 3_600_000

/** What every cache holds for key `k`: one object per key, the same object in every cache of part 1. */
const makeValue = (k) => ({ key: k, price: k.length * 7, tags: ['bench'] })

export async function main({ time = 1000, warmupTime = 250 } = {}) {
  console.log('## cached: the general-purpose cache (createCache) against bentocache and cache-manager')
  console.log(
    `stockcast ${versionOf('stockcast')}, bentocache ${versionOf('bentocache')}, cache-manager ${versionOf('cache-manager')}, lru-cache ${versionOf('lru-cache')}, tinybench ${versionOf('tinybench')}`,
  )
  const l1 = await l1Hits({ time, warmupTime })
  const tags = await tagInvalidation()
  return { ...l1, ...tags }
}

// ------------------------------------------------------------------ part 1: L1 hits

async function l1Hits({ time, warmupTime }) {
  console.log()
  console.log(`### L1 hits: ${fmtInt(KEYS)} warm keys, every read a memory hit (ops/s per read)`)
  const keys = Array.from({ length: KEYS }, (_, i) => `item:${String(i).padStart(4, '0')}`)
  const values = new Map(keys.map((k) => [k, makeValue(k)]))
  // Every library's function counts its calls: after warming, none may run.
  const loads = { stockcast: 0, bento: 0, bentoSerialized: 0, cm: 0 }

  const cache = createCache({ name: 'bench', ttl: HOUR, memory: { max: 10_000 } })
  const load = cache.cached(
    (k) => {
      loads.stockcast++
      return values.get(k)
    },
    { key: (k) => k },
  )
  const lru = new LRUCache({ max: KEYS })
  const cm = createCacheManager({ ttl: HOUR })
  const bento = new BentoCache({
    default: 'l1',
    stores: { l1: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000, serialize: false })) },
  })
  const bentoSerialized = new BentoCache({
    default: 'l1',
    stores: { l1: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000 })) },
  })
  for (const k of keys) {
    await load(k)
    lru.set(k, values.get(k))
    await cm.wrap(k, () => {
      loads.cm++
      return values.get(k)
    })
    await bento.getOrSet({
      key: k,
      ttl: HOUR,
      factory: () => {
        loads.bento++
        return values.get(k)
      },
    })
    await bentoSerialized.getOrSet({
      key: k,
      ttl: HOUR,
      factory: () => {
        loads.bentoSerialized++
        return values.get(k)
      },
    })
  }
  const warmed = { ...loads }
  for (const [name, n] of Object.entries(warmed)) {
    if (n !== KEYS) throw new Error(`${name}: warming called the function ${n} times for ${KEYS} keys`)
  }

  // One function per task (not one shared loop taking a callback), so each call site stays monomorphic. The
  // functions handed to get / getOrSet / wrap are written inline, the way callers write them.
  let found = 0
  const rawLru = () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if (lru.get(keys[i]) !== undefined) n++
    found += n
  }
  const awaitedLru = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if ((await lru.get(keys[i])) !== undefined) n++
    found += n
  }
  const stockCached = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if ((await load(keys[i])) !== undefined) n++
    found += n
  }
  const stockGet = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) {
      const k = keys[i]
      if ((await cache.get(k, () => values.get(k))) !== undefined) n++
    }
    found += n
  }
  const bentoGetOrSet = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) {
      const k = keys[i]
      if ((await bento.getOrSet({ key: k, ttl: HOUR, factory: () => values.get(k) })) !== undefined) n++
    }
    found += n
  }
  const bentoSerializedGetOrSet = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) {
      const k = keys[i]
      if ((await bentoSerialized.getOrSet({ key: k, ttl: HOUR, factory: () => values.get(k) })) !== undefined) n++
    }
    found += n
  }
  const cmWrap = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) {
      const k = keys[i]
      if ((await cm.wrap(k, () => values.get(k))) !== undefined) n++
    }
    found += n
  }

  const A = 'A: lru.get(key) (sync)'
  const B = 'B: await lru.get(key)'
  const CACHED = 'stockcast await fn(key) (cached())'
  const GET = 'stockcast await cache.get(key, fn)'
  const BENTO = 'bentocache await getOrSet({ key, factory })'
  const BENTO_SER = 'bentocache getOrSet, serialize: true (default)'
  const CM = 'cache-manager await wrap(key, fn)'
  const tasks = [
    [A, rawLru],
    [B, awaitedLru],
    [CACHED, stockCached],
    [GET, stockGet],
    [BENTO, bentoGetOrSet],
    [BENTO_SER, bentoSerializedGetOrSet],
    [CM, cmWrap],
  ]
  for (const [name, fn] of tasks) {
    found = 0
    await fn()
    if (found !== KEYS) throw new Error(`${name}: ${found} of ${KEYS} reads answered a value after warming`)
  }

  const before = cache.metrics()
  const bench = new Bench({ name: 'cached-l1', time, warmupTime, warmup: true, throws: true })
  for (const [name, fn] of tasks) bench.add(name, fn)
  await bench.run()
  const after = cache.metrics()

  const ops = new Map(bench.tasks.map((t) => [t.name, medianOpsPerSec(t, KEYS)]))
  const cachedOps = ops.get(CACHED)
  const getOps = ops.get(GET)
  // Target (issue 14): cached() faster than bentocache getOrSet and cache-manager wrap.
  const targets = new Set([BENTO, CM])
  const rows = bench.tasks.map((t) => [
    t.name,
    fmtInt(ops.get(t.name)),
    `±${rme(t).toFixed(1)}%`,
    fmtRatio(cachedOps / ops.get(t.name)),
    fmtRatio(getOps / ops.get(t.name)),
    targets.has(t.name) ? '> 1' : '',
    targets.has(t.name) ? (cachedOps > ops.get(t.name) ? 'PASS' : 'BELOW') : '',
  ])
  console.log()
  printTable(['task', 'median ops/s', 'rme', 'cached() ÷ this', 'get() ÷ this', 'target', ''], rows)
  console.log()
  const hits = after.hits.memory - before.hits.memory
  const misses = after.misses - before.misses
  const calls = after.calls - before.calls
  const lateLoads = Object.entries(loads)
    .map(([name, n]) => `${name} ${n - warmed[name]}`)
    .join(', ')
  console.log(
    `stockcast during the run: ${fmtInt(hits)} memory hits, ${misses} misses, ${calls} function calls (must be 0); functions called after warming: ${lateLoads}`,
  )
  console.log("ratios: stockcast reads per second ÷ the row's; the target is cached() > bentocache and cache-manager")

  await cache.close()
  await cm.disconnect()
  await bento.disconnectAll()
  await bentoSerialized.disconnectAll()
  return { cached: cachedOps, get: getOps, bento: ops.get(BENTO), cm: ops.get(CM), lru: ops.get(A) }
}

// ------------------------------------------------------------------ part 2: tag invalidation

/** `memoryStore()` counting the keys each call touches (reads, writes and deletes apart). */
function countingStore() {
  const inner = memoryStore({ prefix: 'bench:' })
  const n = { getMany: 0, keysRead: 0, setMany: 0, keysWritten: 0, deleteMany: 0, keysDeleted: 0 }
  return {
    n,
    reset: () => {
      for (const k of Object.keys(n)) n[k] = 0
    },
    store: {
      capabilities: { shared: true },
      getMany(keys) {
        n.getMany++
        n.keysRead += keys.length
        return inner.getMany(keys)
      },
      setMany(entries) {
        n.setMany++
        n.keysWritten += entries.length
        return inner.setMany(entries)
      },
      deleteMany(keys) {
        n.deleteMany++
        n.keysDeleted += keys.length
        return inner.deleteMany(keys)
      },
      clear: () => inner.clear(),
      close: () => inner.close(),
    },
  }
}

/** A bentocache memory driver counting the keys each call touches. */
class CountingMemoryDriver extends MemoryDriver {
  static n = { get: 0, set: 0, delete: 0 }
  get(key) {
    CountingMemoryDriver.n.get++
    return super.get(key)
  }
  set(key, value, ttl) {
    CountingMemoryDriver.n.set++
    return super.set(key, value, ttl)
  }
  delete(key) {
    CountingMemoryDriver.n.delete++
    return super.delete(key)
  }
  static reset() {
    CountingMemoryDriver.n = { get: 0, set: 0, delete: 0 }
  }
}

const timed = async (fn) => {
  const t0 = performance.now()
  const r = await fn()
  return [performance.now() - t0, r]
}
const median = (xs) => pct(xs, 50)
/** Until Date.now() has passed `t + 1`: both caches outdate what was computed in the invalidation's millisecond. */
const pastMs = async (t) => {
  while (Date.now() <= t + 1) await new Promise((resolve) => setTimeout(resolve, 1))
}
/** Single-call times: microseconds with one decimal below 1 ms. */
const fmtMs = (ms) => (ms < 1 ? `${(ms * 1000).toFixed(1)} us` : `${ms.toFixed(2)} ms`)
const itemKey = (i) => `item:${String(i).padStart(5, '0')}`
const tagOf = (i) => `tag:${i % TAGS}`

async function tagInvalidation() {
  console.log()
  console.log(
    `### Tag invalidation: ${fmtInt(TAG_KEYS)} keys under ${TAGS} tags (${TAG_KEYS / TAGS} keys each), median of ${ROUNDS} rounds, one fresh tag per round`,
  )
  // Round r invalidates tag r; its next read is of key r (tag r); the untouched key carries tag TAGS - 1 - r, which
  // no round invalidates (ROUNDS < TAGS / 2).
  if (ROUNDS * 2 > TAGS) throw new Error('ROUNDS must leave untouched tags')
  const rows = []

  // stockcast: memory, then one shared tier (memoryStore counting the keys each call touches).
  const counting = countingStore()
  const cache = createCache({ name: 'bench', store: counting.store, ttl: HOUR, memory: { max: 2 * TAG_KEYS } })
  const read = cache.cached((i) => ({ i, at: Date.now() }), { key: itemKey, tags: (i) => [tagOf(i)] })
  for (let i = 0; i < TAG_KEYS; i++) await read(i)
  const s = { inv: [], invWritten: [], invDeleted: [], next: [], nextCalls: [], nextKeys: [], again: [], untouched: [] }
  let againCalls = 0
  let untouchedCalls = 0
  let dropped = cache.metrics().droppedSlowFills
  for (let r = 0; r < ROUNDS; r++) {
    counting.reset()
    const t = Date.now()
    const [inv] = await timed(() => cache.invalidate({ tags: [tagOf(r)] }))
    await pastMs(t + inv)
    s.inv.push(inv)
    s.invWritten.push(counting.n.keysWritten)
    s.invDeleted.push(counting.n.keysDeleted)
    counting.reset()
    let m = cache.metrics()
    const [next, value] = await timed(() => read(r))
    if (value.i !== r) throw new Error(`read(${r}) answered ${JSON.stringify(value)}`)
    s.next.push(next)
    s.nextCalls.push(cache.metrics().calls - m.calls)
    s.nextKeys.push(counting.n.keysRead + counting.n.keysWritten + counting.n.keysDeleted)
    // The read after it: a memory hit if the recomputed value was kept.
    m = cache.metrics()
    const [again] = await timed(() => read(r))
    s.again.push(again)
    againCalls += cache.metrics().calls - m.calls
    m = cache.metrics()
    const [untouched] = await timed(() => read(TAGS - 1 - r))
    s.untouched.push(untouched)
    untouchedCalls += cache.metrics().calls - m.calls
  }
  dropped = cache.metrics().droppedSlowFills - dropped
  const metrics = cache.metrics()
  const sBurst = await burst(
    (tag) => cache.invalidate({ tags: [tag] }),
    read,
    () => cache.metrics().calls,
  )
  await cache.close()
  rows.push([
    'stockcast invalidate({ tags: [tag] })',
    fmtMs(median(s.inv)),
    `${median(s.invWritten)} written, ${median(s.invDeleted)} deleted (max ${Math.max(...s.invWritten) + Math.max(...s.invDeleted)})`,
    fmtMs(median(s.next)),
    `${Math.max(...s.nextCalls)} call, ${median(s.nextKeys)} store keys`,
    fmtMs(median(s.again)),
    `${againCalls}`,
    fmtMs(median(s.untouched)),
    `${untouchedCalls}`,
  ])

  // bentocache, memory only (its memory driver is L1 only): deleteByTag writes one tag entry, checked on reads.
  CountingMemoryDriver.reset()
  const bento = new BentoCache({
    default: 'l1',
    stores: {
      l1: bentostore().useL1Layer({
        options: { maxItems: 2 * TAG_KEYS + TAGS, serialize: false },
        factory: (config) => new CountingMemoryDriver(config),
      }),
    },
  })
  let bentoCalls = 0
  const bentoRead = (i) =>
    bento.getOrSet({
      key: itemKey(i),
      ttl: HOUR,
      tags: [tagOf(i)],
      factory: () => {
        bentoCalls++
        return { i }
      },
    })
  for (let i = 0; i < TAG_KEYS; i++) await bentoRead(i)
  const b = { inv: [], invWritten: [], invDeleted: [], next: [], nextCalls: [], nextKeys: [], again: [], untouched: [] }
  let bAgainCalls = 0
  let bUntouchedCalls = 0
  for (let r = 0; r < ROUNDS; r++) {
    CountingMemoryDriver.reset()
    const t = Date.now()
    const [inv] = await timed(() => bento.deleteByTag({ tags: [tagOf(r)] }))
    await pastMs(t + inv)
    b.inv.push(inv)
    b.invWritten.push(CountingMemoryDriver.n.set)
    b.invDeleted.push(CountingMemoryDriver.n.delete)
    CountingMemoryDriver.reset()
    let c = bentoCalls
    const [next, value] = await timed(() => bentoRead(r))
    if (value.i !== r) throw new Error(`bentocache read(${r}) answered ${JSON.stringify(value)}`)
    b.next.push(next)
    b.nextCalls.push(bentoCalls - c)
    b.nextKeys.push(CountingMemoryDriver.n.get + CountingMemoryDriver.n.set + CountingMemoryDriver.n.delete)
    c = bentoCalls
    const [again] = await timed(() => bentoRead(r))
    b.again.push(again)
    bAgainCalls += bentoCalls - c
    c = bentoCalls
    const [untouched] = await timed(() => bentoRead(TAGS - 1 - r))
    b.untouched.push(untouched)
    bUntouchedCalls += bentoCalls - c
  }
  const bBurst = await burst(
    (tag) => bento.deleteByTag({ tags: [tag] }),
    bentoRead,
    () => bentoCalls,
  )
  await bento.disconnectAll()
  rows.push([
    'bentocache deleteByTag({ tags: [tag] })',
    fmtMs(median(b.inv)),
    `${median(b.invWritten)} written, ${median(b.invDeleted)} deleted (max ${Math.max(...b.invWritten) + Math.max(...b.invDeleted)})`,
    fmtMs(median(b.next)),
    `${Math.max(...b.nextCalls)} call, ${median(b.nextKeys)} driver keys`,
    fmtMs(median(b.again)),
    `${bAgainCalls}`,
    fmtMs(median(b.untouched)),
    `${bUntouchedCalls}`,
  ])

  console.log()
  printTable(
    [
      'invalidation',
      'time',
      'keys touched by it',
      'next read, invalidated key',
      'it made',
      'read after that',
      'calls',
      'untouched key',
      'calls',
    ],
    rows,
  )
  console.log()
  console.log(
    `stockcast: ${metrics.invalidations.tags} tag invalidations, ${dropped} recomputed values not kept (droppedSlowFills) over ${ROUNDS} rounds`,
  )
  console.log(
    `"calls" columns: function calls summed over the ${ROUNDS} rounds (an untouched key must make none; the read after a recompute none if the value was kept)`,
  )
  console.log(
    `p90 of invalidate: stockcast ${fmtMs(pct(s.inv, 90))}, bentocache ${fmtMs(pct(b.inv, 90))}; bentocache's counts are its L1 driver's get/set/delete calls`,
  )
  console.log()
  console.log(
    `burst: ${BURST} invalidations back to back (one tag each), then, once the clock has moved on, two reads of a key of the last tag (1 call expected: the second read is a hit)`,
  )
  printTable(
    ['', 'per invalidation', 'calls of the two reads', 'ms until its value is kept'],
    [
      ['stockcast', fmtMs(sBurst.per), `${sBurst.calls}`, `${sBurst.keptAfter.toFixed(0)}`],
      ['bentocache', fmtMs(bBurst.per), `${bBurst.calls}`, `${bBurst.keptAfter.toFixed(0)}`],
    ],
  )
  return { invalidate: median(s.inv), bentoInvalidate: median(b.inv) }
}

/**
 * BURST invalidations of tags ROUNDS.. in a loop, then reads of key `ROUNDS + BURST - 1` (its tag was invalidated
 * last) once Date.now() has moved past the burst, until a read makes no call: `calls` of the first two reads, and how
 * long after the burst the value was first kept.
 */
async function burst(invalidate, read, calls) {
  const t0 = performance.now()
  for (let j = 0; j < BURST; j++) await invalidate(tagOf(ROUNDS + j))
  const per = (performance.now() - t0) / BURST
  const end = Date.now()
  await pastMs(end)
  const key = ROUNDS + BURST - 1
  const c0 = calls()
  await read(key)
  await read(key)
  const two = calls() - c0
  // How long until a recompute is kept (bounded: 10 x BURST ms).
  let keptAfter = Date.now() - end
  for (;;) {
    const c = calls()
    await read(key)
    if (calls() === c || Date.now() - end > 10 * BURST) break
    await new Promise((resolve) => setTimeout(resolve, 1))
    keptAfter = Date.now() - end
  }
  return { per, calls: two, keptAfter }
}

if (isMain(import.meta.url)) await main()
