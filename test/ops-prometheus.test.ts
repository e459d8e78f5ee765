import * as client from 'prom-client'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { ConfigError, createCache, createStockCache, memorySource, type StockCache } from '../src/index.js'
import { PROMETHEUS_CONTENT_TYPE, prometheusText, registerPrometheus } from '../src/ops/prometheus.js'
import { schema } from './helpers/fixtures.js'

const caches: StockCache[] = []
afterEach(async () => {
  for (const c of caches.splice(0)) await c.close()
})

async function busyCache(): Promise<StockCache> {
  const db = memorySource(schema)
  const cache = createStockCache({ schema, reader: db.reader, debounceMs: 0 })
  caches.push(cache)
  db.attach(cache)
  for (let i = 0; i < 5; i++) db.insert('stock_movements', { product_code: `P${i}`, quantity: '3' })
  await cache.getMany(['P0', 'P1', 'P2', 'P3', 'P4'])
  await cache.get('P0')
  await cache.get('P1')
  db.insert('stock_movements', { product_code: 'P0', quantity: '1' })
  await cache.flush()
  return cache
}

/**
 * A strict check of the text exposition format (0.0.4): HELP and TYPE once per family before its samples, names and
 * label names legal, label values quoted and escaped, values numbers, histogram buckets cumulative and ending in +Inf
 * equal to `_count`. Returns the samples by `name{labels}`.
 */
function parseExposition(text: string): Map<string, number> {
  expect(text.endsWith('\n')).toBe(true)
  const samples = new Map<string, number>()
  const types = new Map<string, string>()
  const helped = new Set<string>()
  let current: string | undefined
  const name = '[a-zA-Z_:][a-zA-Z0-9_:]*'
  const labelPair = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"'
  const sampleLine = new RegExp(`^(${name})(\\{(?:${labelPair})(?:,${labelPair})*\\})? (-?[0-9.e+-]+|NaN|\\+Inf|-Inf)$`)
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue // the format ignores empty lines (prom-client puts one between families)
    if (line.startsWith('# HELP ')) {
      const m = new RegExp(`^# HELP (${name}) (.*)$`).exec(line)
      expect(m, line).not.toBeNull()
      expect(helped.has(m![1]!), `HELP twice: ${line}`).toBe(false)
      helped.add(m![1]!)
      current = m![1]
      continue
    }
    if (line.startsWith('# TYPE ')) {
      const m = new RegExp(`^# TYPE (${name}) (counter|gauge|histogram|summary|untyped)$`).exec(line)
      expect(m, line).not.toBeNull()
      expect(m![1]).toBe(current)
      types.set(m![1]!, m![2]!)
      continue
    }
    const m = sampleLine.exec(line)
    expect(m, `not a sample line: ${JSON.stringify(line)}`).not.toBeNull()
    const [, sampleName, labels = '', value] = m!
    const family = current!
    const type = types.get(family)
    if (type === 'histogram') expect(sampleName).toMatch(new RegExp(`^${family}_(bucket|sum|count)$`))
    else expect(sampleName).toBe(family)
    if (type === 'counter') expect(family.endsWith('_total')).toBe(true)
    const v = Number(value === '+Inf' ? Number.POSITIVE_INFINITY : value)
    expect(Number.isNaN(v) && value !== 'NaN').toBe(false)
    const key = `${sampleName}${labels}`
    expect(samples.has(key), `duplicate sample ${key}`).toBe(false)
    samples.set(key, v)
  }
  // Histograms: cumulative buckets, the last one +Inf and equal to _count.
  for (const [family, type] of types) {
    if (type !== 'histogram') continue
    const buckets = [...samples].filter(([k]) => k.startsWith(`${family}_bucket`))
    expect(buckets.length).toBeGreaterThan(1)
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]![1]).toBeGreaterThanOrEqual(buckets[i - 1]![1])
    expect(buckets.at(-1)![0]).toMatch(/le="\+Inf"/)
    const count = [...samples].find(([k]) => k.startsWith(`${family}_count`))![1]
    expect(buckets.at(-1)![1]).toBe(count)
  }
  return samples
}

describe('prometheusText', () => {
  it('writes every family in the strict text format, with the values of metrics() and status()', async () => {
    const cache = await busyCache()
    const text = prometheusText(cache)
    const s = parseExposition(text)
    const m = cache.metrics()
    expect(PROMETHEUS_CONTENT_TYPE).toBe('text/plain; version=0.0.4; charset=utf-8')
    expect(s.get('stockcast_gets_total{tier="l1",result="hit"}')).toBe(m.l1Hits)
    expect(s.get('stockcast_gets_total{tier="l1",result="miss"}')).toBe(m.l1Misses)
    expect(m.l1Hits).toBeGreaterThan(0)
    expect(s.get('stockcast_hit_ratio{tier="l1"}')).toBeCloseTo(m.l1Hits / (m.l1Hits + m.l1Misses), 12)
    expect(s.get('stockcast_recomputes_total')).toBe(m.recomputes)
    expect(m.recomputes).toBe(6) // five products, then P0 again after its write
    expect(s.get('stockcast_recompute_batch_duration_seconds_count')).toBe(m.batches)
    expect(m.batches).toBeGreaterThanOrEqual(2)
    expect(s.get('stockcast_queue_depth')).toBe(0)
    expect(s.get('stockcast_freshness_lag_seconds')).toBe(0)
    expect(s.get('stockcast_l1_entries')).toBe(5)
    expect(s.get('stockcast_marks_total')).toBe(m.marks)
    expect(s.get('stockcast_degraded{tier="l2"}')).toBe(0)
    for (const family of [
      'lock_waits_total',
      'lock_timeouts_total',
      'store_errors_total',
      'source_errors_total',
      'bus_messages_total{direction="received"}',
      'bus_messages_total{direction="published"}',
    ]) {
      expect(s.has(`stockcast_${family}`), family).toBe(true)
    }
  })

  it('puts constant labels on every sample, escaped, and takes another prefix', async () => {
    const cache = await busyCache()
    const s = parseExposition(prometheusText(cache, { labels: { cache: 'a "main"\\one\nx' }, prefix: 'erp_' }))
    const keys = [...s.keys()]
    expect(keys.length).toBeGreaterThan(20)
    for (const k of keys) {
      expect(k.startsWith('erp_')).toBe(true)
      expect(k).toContain('cache="a \\"main\\"\\\\one\\nx"')
    }
  })

  it('counts queue depth while products wait for their debounce', async () => {
    const db = memorySource(schema)
    const cache = createStockCache({ schema, reader: db.reader, debounceMs: 60_000, maxWaitMs: 60_000 })
    caches.push(cache)
    db.attach(cache)
    db.insert('stock_movements', { product_code: 'A', quantity: '1' })
    db.insert('stock_movements', { product_code: 'B', quantity: '1' })
    const s = parseExposition(prometheusText(cache))
    expect(s.get('stockcast_queue_depth')).toBe(2)
  })

  it('rejects bad options and a value that is not a cache with a ConfigError', async () => {
    const cache = await busyCache()
    expect(() => prometheusText(cache, { labels: { 'bad-name': 'x' } })).toThrow(ConfigError)
    expect(() => prometheusText(cache, { labels: { le: 'x' } })).toThrow(ConfigError)
    expect(() => prometheusText(cache, { prefix: '9x' })).toThrow(ConfigError)
    expect(() => prometheusText({} as StockCache)).toThrow(ConfigError)
  })
})

describe('registerPrometheus (prom-client)', () => {
  it("adds the families to a registry; prom-client's output passes the strict check and matches", async () => {
    const cache = await busyCache()
    const registry = new Registry()
    const unregister = registerPrometheus(cache, { registry, labels: { cache: 'main' } })
    const text = await registry.metrics()
    const s = parseExposition(text)
    const m = cache.metrics()
    expect(s.get('stockcast_gets_total{cache="main",tier="l1",result="hit"}')).toBe(m.l1Hits)
    expect(s.get('stockcast_recomputes_total{cache="main"}')).toBe(m.recomputes)
    expect(s.get('stockcast_recompute_batch_duration_seconds_count{cache="main"}')).toBe(m.batches)
    // Our own text and prom-client's carry the same samples.
    const ours = parseExposition(prometheusText(cache, { labels: { cache: 'main' } }))
    const norm = (k: string) => k.replace(/\{.*\}/, (l) => `{${l.slice(1, -1).split(',').sort().join(',')}}`)
    expect(new Set([...s.keys()].map(norm))).toEqual(new Set([...ours.keys()].map(norm)))
    // A second registration of the same names fails clearly and leaves the first in place.
    expect(() => registerPrometheus(cache, { registry })).toThrow(ConfigError)
    expect((await registry.metrics()).length).toBe(text.length)
    unregister()
    expect((await registry.metrics()).trim()).toBe('')
  })

  it('uses the global registry of the client module, and needs one of registry or client', async () => {
    const cache = await busyCache()
    const unregister = registerPrometheus(cache, { client })
    try {
      expect(await client.register.metrics()).toContain('stockcast_queue_depth 0')
    } finally {
      unregister()
    }
    expect(() => registerPrometheus(cache, {})).toThrow(ConfigError)
  })
})

describe('general-purpose caches (createCache) in the same exposition', () => {
  it('families stockcast_cache_* labelled by cache name, next to the stock families; one registry for all', async () => {
    const stock = await busyCache()
    const api = createCache({ name: 'api' })
    const agenda = createCache({ name: 'agenda' })
    const f = api.cached(async (k: string) => k.length, { key: (k) => k })
    await f('a')
    await f('a')
    await f('bb')
    await agenda.get('x', async () => 1)
    const s = parseExposition(prometheusText([stock, api, agenda]))
    expect(s.get('stockcast_cache_gets_total{cache="api",tier="memory",result="hit"}')).toBe(1)
    expect(s.get('stockcast_cache_gets_total{cache="api",tier="all",result="miss"}')).toBe(2)
    expect(s.get('stockcast_cache_calls_total{cache="api"}')).toBe(2)
    expect(s.get('stockcast_cache_calls_total{cache="agenda"}')).toBe(1)
    expect(s.get('stockcast_recomputes_total')).toBe(stock.metrics().recomputes)
    const registry = new Registry()
    const unregister = registerPrometheus([stock, api, agenda], { registry })
    const fromClient = parseExposition(await registry.metrics())
    expect(fromClient.get('stockcast_cache_hit_ratio{cache="api"}')).toBeCloseTo(1 / 3, 12)
    expect(fromClient.get('stockcast_queue_depth')).toBe(0)
    unregister()
    expect(() => prometheusText([api, createCache({ name: 'api' })])).toThrow(ConfigError)
    expect(() => prometheusText([stock, stock])).toThrow(ConfigError)
    expect(() => prometheusText([])).toThrow(ConfigError)
    await api.close()
    await agenda.close()
  })
})
