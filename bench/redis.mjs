// @stockcast/redis on the local Redis (REDIS_URL, default redis://127.0.0.1:6379), baselines in the same run:
// - an L2 hit through `get()` (L1 off: `memory.max` 0; reads rotate over 1 000 keys) against a raw ioredis GET +
//   JSON.parse of the same projection stored as JSON (what an application caching it by hand does), both sequential
//   (one awaited read at a time);
// - `getMany(100)` of L2 hits against 100 sequential raw GET + JSON.parse and 100 sequential `get()`;
// - bus propagation between two processes: a child subscribes with redisBus, the parent publishes; latency is the
//   receive time minus the send time carried in the message (one machine, one clock).
// Medians over alternating rounds; figures only, nothing asserted.

import { fork } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { redisBus, redisStore } from '@stockcast/redis'
import Redis from 'ioredis'
import { createStockCache } from 'stockcast'
import { fmtRatio, isMain, printTable, productIds, schema, seededSource, versionOf } from './lib.mjs'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const KEYS = 1000
const ROUNDS = 7
const OPS = 2000

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]
}

/** Mean µs per call of `fn(i)` over `n` sequential awaited calls. */
async function perCall(n, fn) {
  const t0 = performance.now()
  for (let i = 0; i < n; i++) await fn(i)
  return ((performance.now() - t0) * 1000) / n
}

async function busChild() {
  const redis = new Redis(REDIS_URL)
  const bus = redisBus(redis, { channel: process.env.BENCH_CHANNEL })
  const lat = []
  await bus.subscribe((m) => {
    if (m.origin === 'end') {
      process.send({ lat })
      return
    }
    lat.push(performance.timeOrigin + performance.now() - m.version / 1000)
  })
  process.send({ ready: true })
}

export async function main() {
  console.log('## redis: L2 hits through get() and getMany, bus propagation between processes')
  console.log(`ioredis ${versionOf('ioredis')}, Redis at ${REDIS_URL}`)
  const redis = new Redis(REDIS_URL)
  const prefix = `bench-${process.pid}:`
  const keys = productIds('R', KEYS)
  const db = seededSource(keys)
  const store = redisStore(redis, { prefix })
  // Warm the store through a cache, then read with one whose L1 is off.
  const writer = createStockCache({ schema, reader: db.reader, store, memory: { max: 0 } })
  const warm = await writer.getMany(keys)
  await writer.close()
  const reader = createStockCache({
    schema,
    reader: db.reader,
    store: redisStore(redis, { prefix }),
    memory: { max: 0 },
  })
  // The baseline's copy: each projection as plain JSON under a key of its own.
  const rawKey = (k) => `${prefix}raw:${k}`
  for (const [k, v] of warm) await redis.set(rawKey(k), JSON.stringify(v))
  const entryText = await redis.get(`${prefix}{${keys[0]}}`)
  const jsonText = await redis.get(rawKey(keys[0]))
  console.log(
    `entry ${entryText.length} bytes (projectionCodec with its header); the same projection as JSON ${jsonText.length} bytes`,
  )

  const raw = (i) => redis.get(rawKey(keys[i % KEYS])).then((t) => JSON.parse(t))
  const viaGet = (i) => reader.get(keys[i % KEYS])
  const chunks = Array.from({ length: KEYS / 100 }, (_, c) => keys.slice(c * 100, c * 100 + 100))
  const viaGetMany = (i) => reader.getMany(chunks[i % chunks.length])
  const raw100 = async (i) => {
    for (const k of chunks[i % chunks.length]) JSON.parse(await redis.get(rawKey(k)))
  }
  const get100 = async (i) => {
    for (const k of chunks[i % chunks.length]) await reader.get(k)
  }

  // Warm-up, then alternating rounds.
  await perCall(500, raw)
  await perCall(500, viaGet)
  await perCall(20, viaGetMany)
  const r = { raw: [], get: [], many: [], raw100: [], get100: [] }
  for (let round = 0; round < ROUNDS; round++) {
    r.raw.push(await perCall(OPS, raw))
    r.get.push(await perCall(OPS, viaGet))
    r.many.push(await perCall(100, viaGetMany))
    r.raw100.push(await perCall(20, raw100))
    r.get100.push(await perCall(20, get100))
  }
  const m = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)]))
  const l2 = reader.metrics()
  printTable(
    ['read (sequential, awaited)', 'median µs/call', 'ratio', 'target'],
    [
      ['raw ioredis GET + JSON.parse', m.raw.toFixed(1), '1.00', ''],
      ['stockcast get() L2 hit (L1 off)', m.get.toFixed(1), `${fmtRatio(m.get / m.raw)} x raw`, '<= 1.10 x'],
      ['100 x raw GET + JSON.parse', m.raw100.toFixed(1), '1.00', ''],
      ['100 x stockcast get() L2 hit', m.get100.toFixed(1), `${fmtRatio(m.get100 / m.raw100)} x`, ''],
      ['stockcast getMany(100) L2 hits', m.many.toFixed(1), `${fmtRatio(m.raw100 / m.many)} x faster`, ''],
    ],
  )
  console.log(`(reader: ${l2.l2Hits} L2 hits, ${l2.l1Hits} L1 hits, ${l2.recomputes} recomputes)`)
  await reader.close()
  await store.clear()
  for (const k of keys) await redis.del(rawKey(k))

  // Bus propagation between two processes.
  const channel = `bench-bus-${process.pid}`
  const child = fork(fileURLToPath(import.meta.url), ['--bus-child'], {
    env: { ...process.env, BENCH_CHANNEL: channel },
  })
  await new Promise((res) => child.once('message', res))
  const bus = redisBus(redis, { channel })
  const N = 2000
  for (let i = 0; i < N; i++) {
    await bus.publish({
      products: [keys[i % KEYS]],
      version: Math.round((performance.timeOrigin + performance.now()) * 1000),
      origin: 'bench',
    })
    if (i % 10 === 0) await new Promise((res) => setTimeout(res, 1))
  }
  const result = new Promise((res) => child.on('message', (msg) => msg.lat && res(msg.lat)))
  await bus.publish({ products: [], version: 0, origin: 'end' })
  const lat = await result
  child.kill()
  printTable(
    ['bus: publish -> peer handler (2 processes)', 'messages', 'p50 ms', 'p99 ms', 'max ms', 'target p99'],
    [
      [
        'redisBus',
        String(lat.length),
        pct(lat, 50).toFixed(3),
        pct(lat, 99).toFixed(3),
        Math.max(...lat).toFixed(3),
        '< 5 ms',
      ],
    ],
  )
  await redis.quit()
}

if (process.argv.includes('--bus-child')) await busChild()
else if (isMain(import.meta.url)) await main()
