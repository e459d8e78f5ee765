// L1 read path: stockcast get/peek on warmed products against a raw LRUCache and other caches, in one run.
//
// Every task reads the same 1 000 keys in the same order; one task call reads each key once (a batch of 1 000
// reads), so timer overhead and resolution stay far below a sample. Figures are tinybench's median throughput
// times the batch.

import { BentoCache, bentostore } from 'bentocache'
import { memoryDriver } from 'bentocache/drivers/memory'
import { createCache } from 'cache-manager'
import { LRUCache } from 'lru-cache'
import { createStockCache } from 'stockcast'
import { Bench } from 'tinybench'
import {
  fmtInt,
  fmtRatio,
  isMain,
  medianOpsPerSec,
  printTable,
  productIds,
  rme,
  schema,
  seededSource,
  verdict,
  versionOf,
} from './lib.mjs'

const KEYS = 1000

/**
 * `STOCKCAST_BEFORE=<path to another build's dist/index.js>` adds that build's get and peek to the same run (to
 * compare two versions of stockcast against the same baselines).
 */
export async function beforeBuild() {
  const path = process.env.STOCKCAST_BEFORE
  if (!path) return undefined
  const { pathToFileURL } = await import('node:url')
  return import(pathToFileURL(path).href)
}
const TARGET_GET = 0.7
const TARGET_PEEK = 0.5

export async function main({ time = 1000, warmupTime = 250 } = {}) {
  console.log('## l1-get: reads of warmed keys (1 000 keys, rotated in the same order for every task)')
  console.log(
    `lru-cache ${versionOf('lru-cache')}, cache-manager ${versionOf('cache-manager')}, bentocache ${versionOf('bentocache')}, tinybench ${versionOf('tinybench')}`,
  )

  const keys = productIds('P', KEYS)
  const db = seededSource(keys)
  const cache = createStockCache({ schema, reader: db.reader })
  const warmed = await cache.getMany(keys)
  if (warmed.size !== KEYS) throw new Error(`getMany warmed ${warmed.size} of ${KEYS} products`)
  const old = await beforeBuild()
  const oldCache = old?.createStockCache({ schema, reader: db.reader })
  if (oldCache !== undefined) await oldCache.getMany(keys)

  // The baselines and the other caches hold the very same projection objects.
  const lru = new LRUCache({ max: KEYS })
  const cm = createCache()
  const bento = new BentoCache({
    default: 'l1',
    stores: { l1: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000, serialize: false })) },
  })
  const bentoSerialized = new BentoCache({
    default: 'l1',
    stores: { l1: bentostore().useL1Layer(memoryDriver({ maxItems: 10_000 })) },
  })
  for (const [k, v] of warmed) {
    lru.set(k, v)
    await cm.set(k, v)
    await bento.set({ key: k, value: v })
    await bentoSerialized.set({ key: k, value: v })
  }

  // One function per task (not one shared loop taking a callback), so each call site stays monomorphic.
  let hits = 0
  const rawLru = () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if (lru.get(keys[i]) !== undefined) n++
    hits += n
  }
  const awaitedLru = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if ((await lru.get(keys[i])) !== undefined) n++
    hits += n
  }
  const stockGet = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if ((await cache.get(keys[i])) !== undefined) n++
    hits += n
  }
  const stockPeek = () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if (cache.peek(keys[i]) !== undefined) n++
    hits += n
  }
  const oldGet = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if ((await oldCache.get(keys[i])) !== undefined) n++
    hits += n
  }
  const oldPeek = () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if (oldCache.peek(keys[i]) !== undefined) n++
    hits += n
  }
  const cmGet = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if ((await cm.get(keys[i])) !== undefined) n++
    hits += n
  }
  const bentoGet = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if ((await bento.get({ key: keys[i] })) !== undefined) n++
    hits += n
  }
  const bentoSerializedGet = async () => {
    let n = 0
    for (let i = 0; i < KEYS; i++) if ((await bentoSerialized.get({ key: keys[i] })) !== undefined) n++
    hits += n
  }

  const tasks = [
    ['A: lru.get(key) (sync)', rawLru],
    ['B: await lru.get(key)', awaitedLru],
    ['stockcast await cache.get(p)', stockGet],
    ['stockcast cache.peek(p)', stockPeek],
    ...(oldCache === undefined
      ? []
      : [
          ['before: await cache.get(p)', oldGet],
          ['before: cache.peek(p)', oldPeek],
        ]),
    ['cache-manager await cm.get(key)', cmGet],
    ['bentocache await get({ key })', bentoGet],
    ['bentocache, serialize: true (default)', bentoSerializedGet],
  ]

  // Every read must hit; run each loop once so all tasks start from the same shared-code (lru-cache) state.
  for (const [name, fn] of tasks) {
    hits = 0
    await fn()
    if (hits !== KEYS) throw new Error(`${name}: ${hits} of ${KEYS} reads hit after warming`)
  }

  const before = cache.metrics()
  const bench = new Bench({ name: 'l1-get', time, warmupTime, warmup: true, throws: true })
  for (const [name, fn] of tasks) bench.add(name, fn)
  await bench.run()
  const after = cache.metrics()

  const ops = new Map(bench.tasks.map((t) => [t.name, medianOpsPerSec(t, KEYS)]))
  const a = ops.get('A: lru.get(key) (sync)')
  const b = ops.get('B: await lru.get(key)')
  const vs = { sync: ['A', a], async: ['B', b] }
  const kindOf = new Map([
    ['A: lru.get(key) (sync)', 'sync'],
    ['stockcast cache.peek(p)', 'sync'],
    ['before: cache.peek(p)', 'sync'],
  ])
  const targets = new Map([
    ['stockcast await cache.get(p)', TARGET_GET],
    ['stockcast cache.peek(p)', TARGET_PEEK],
    ['before: await cache.get(p)', TARGET_GET],
    ['before: cache.peek(p)', TARGET_PEEK],
  ])
  const rows = bench.tasks.map((t) => {
    const [baseName, base] = vs[kindOf.get(t.name) ?? 'async']
    const ratio = ops.get(t.name) / base
    const target = targets.get(t.name)
    return [
      t.name,
      fmtInt(ops.get(t.name)),
      `±${rme(t).toFixed(1)}%`,
      `${fmtRatio(ratio)} vs ${baseName}`,
      target === undefined ? '' : `>= ${target}`,
      target === undefined ? '' : verdict(ratio, target),
    ]
  })
  console.log()
  printTable(['task', 'median ops/s', 'rme', 'ratio', 'target', ''], rows)
  console.log()
  const l1Hits = after.l1Hits - before.l1Hits
  const recomputes = after.recomputes - before.recomputes
  const misses = after.l1Misses - before.l1Misses
  console.log(
    `stockcast during the run: ${fmtInt(l1Hits)} L1 hits, ${misses} L1 misses, ${recomputes} recomputes (get must stay on the L1 path)`,
  )
  console.log(
    `ratios: sync reads vs A (raw lru.get), async reads vs B (awaited lru.get); targets are reported, never enforced`,
  )

  if (oldCache !== undefined) console.log(`before: ${process.env.STOCKCAST_BEFORE}`)
  await cache.close()
  await oldCache?.close()
  await cm.disconnect?.()
  await bento.disconnectAll()
  await bentoSerialized.disconnectAll()
  return { a, b, get: ops.get('stockcast await cache.get(p)'), peek: ops.get('stockcast cache.peek(p)') }
}

if (isMain(import.meta.url)) await main()
