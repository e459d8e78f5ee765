import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  ConfigError,
  createStockCache,
  type ErrorEvent,
  memorySource,
  type StockCache,
  type StockCacheOptions,
} from '../src/index.js'
import { startJobs } from '../src/ops/jobs.js'
import { until } from '../test-support/wait.js'
import { FakeTimers, settle } from './helpers/fake-timers.js'
import { addDays, ControlledReader, FakeClock, schema } from './helpers/fixtures.js'

const caches: StockCache[] = []
afterEach(async () => {
  for (const c of caches.splice(0)) await c.close()
})

const TODAY = '2026-11-22'

const MIN = 60_000

function setup(at: string, n = 20, extra: Partial<StockCacheOptions> = {}) {
  const clock = new FakeClock(Date.parse(at))
  const timers = new FakeTimers(clock)
  const db = memorySource(schema)
  const products: string[] = []
  for (let i = 0; i < n; i++) {
    products.push(`P${i}`)
    db.insert('stock_movements', { product_code: `P${i}`, quantity: String(5 + i) })
    db.insert('order_lines', { product_code: `P${i}`, open_qty: '2', ship_date: addDays(TODAY, 1 + (i % 9)) })
  }
  const reader = new ControlledReader(db.reader)
  const cache = createStockCache({ schema, reader, clock, timers, debounceMs: 0, ...extra })
  caches.push(cache)
  db.attach(cache)
  return { clock, timers, db, reader, cache, products }
}

describe('startJobs', () => {
  it('rollover: prepares before midnight, swaps at midnight (no recompute on read), then prepares the next day', async () => {
    const { clock, timers, cache, products, reader } = setup('2026-11-22T23:00:00Z')
    await cache.getMany(products)
    const jobs = startJobs(cache, { rollover: { aheadMs: 5 * MIN }, clock, timers })
    expect(jobs.status().rollover!.nextAt).toBe(Date.parse('2026-11-22T23:55:00Z'))
    await timers.advance(55 * MIN)
    expect(jobs.status().rollover!.last).toMatchObject({ phase: 'prepared', date: '2026-11-23', prepared: 20 })
    const reads = reader.calls.length
    await timers.advance(5 * MIN + 10)
    const m0 = cache.metrics()
    const got = await cache.getMany(products)
    expect(cache.metrics().recomputes).toBe(m0.recomputes)
    expect(reader.calls.length).toBe(reads)
    expect([...got.values()].every((p) => p.today === '2026-11-23')).toBe(true)
    expect(jobs.status().rollover!.last).toMatchObject({ phase: 'warmed', today: '2026-11-23' })
    expect(jobs.status().rollover!.nextAt).toBe(Date.parse('2026-11-23T23:55:00Z'))
    expect(jobs.status().rollover!.failures).toBe(0)
  })

  it('rollover started within aheadMs of midnight prepares at once', async () => {
    const { timers, cache, products, clock } = setup('2026-11-22T23:58:00Z', 5)
    await cache.getMany(products)
    const jobs = startJobs(cache, { rollover: true, clock, timers })
    await timers.advance(1)
    expect(jobs.status().rollover!.last).toMatchObject({ phase: 'prepared', prepared: 5 })
  })

  it('refreshStale: recomputes values older than afterMs, oldest first, at most batch per run', async () => {
    const { clock, timers, cache, products } = setup('2026-11-22T10:00:00Z', 10)
    await cache.getMany(products.slice(0, 4))
    clock.advance(5 * MIN)
    await cache.getMany(products.slice(4))
    const jobs = startJobs(cache, { refreshStale: { afterMs: 15 * MIN, every: MIN, batch: 3 }, clock, timers })
    await timers.advance(11 * MIN) // the first 4 are 16 min old, the others 11
    const last = jobs.status().refreshStale!.last!
    expect(last).toMatchObject({ refreshed: 3, older: 4 })
    const fresh = cache.entries({ order: 'computedAt' })
    expect(fresh.filter((e) => e.computedAt < clock.ms - 15 * MIN).length).toBe(1)
    await timers.advance(MIN)
    expect(jobs.status().refreshStale!.last).toMatchObject({ refreshed: 1, older: 1 })
  })

  it('warm: remembers the hot list in a file and warms it after a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stockcast-warm-'))
    const file = join(dir, 'hot.json')
    const first = setup('2026-11-22T10:00:00Z', 10)
    await first.cache.get('P7')
    await first.cache.get('P3')
    const jobs = startJobs(first.cache, { warm: { every: MIN, file }, clock: first.clock, timers: first.timers })
    await first.timers.advance(1) // the first run comes at once with a file
    await until(() => jobs.status().warm!.runs === 1)
    expect(jobs.status().warm!.last).toMatchObject({ products: 2, warmed: 2, failed: 0 })
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(['P3', 'P7'])
    await first.cache.close()
    // A restart: an empty L1, the list from the file.
    const second = setup('2026-11-22T10:05:00Z', 10)
    expect(second.cache.peek('P7')).toBeUndefined()
    const again = startJobs(second.cache, { warm: { every: MIN, file }, clock: second.clock, timers: second.timers })
    await second.timers.advance(1)
    await until(() => again.status().warm!.runs === 1)
    expect(second.cache.peek('P7')!.stockToday).toBe(12)
    expect(second.cache.peek('P3')).toBeDefined()
    expect(second.cache.peek('P1')).toBeUndefined()
  })

  it('warm: takes the products from a function', async () => {
    const { clock, timers, cache } = setup('2026-11-22T10:00:00Z', 10)
    const jobs = startJobs(cache, { warm: { every: MIN, products: () => ['P1', 'P2', 'P9'] }, clock, timers })
    await timers.advance(MIN)
    expect(jobs.status().warm!.last).toMatchObject({ products: 3, warmed: 3 })
    expect(cache.peek('P9')).toBeDefined()
  })

  it('dirtySweep: retries products left dirty by a failing source, backing off, until they recover', async () => {
    const { clock, timers, cache, db, reader } = setup('2026-11-22T10:00:00Z', 3, { retryMs: 60 * MIN })
    await cache.getMany(['P0', 'P1', 'P2'])
    reader.failWith = new Error('database down')
    db.insert('stock_movements', { product_code: 'P1', quantity: '100' })
    await settle()
    expect(cache.status().dirty).toBe(1)
    const jobs = startJobs(cache, { dirtySweep: { every: 30_000, maxBackoffMs: 120_000 }, clock, timers })
    await timers.advance(30_000)
    expect(jobs.status().dirtySweep!.last).toMatchObject({ dirty: 1, recomputed: 0, failed: 1 })
    expect(jobs.status().dirtySweep!.nextAt! - clock.ms).toBe(60_000)
    await timers.advance(60_000)
    expect(jobs.status().dirtySweep!.nextAt! - clock.ms).toBe(120_000)
    reader.failWith = undefined
    await timers.advance(120_000)
    // The engine's own retry (every 30 s at most) may have got there first: either way the product is clean, and a
    // sweep that finds nothing left goes back to its normal pace.
    const last = jobs.status().dirtySweep!.last!
    expect(last.failed ?? 0).toBe(0)
    expect(cache.status().dirty).toBe(0)
    expect(cache.peek('P1')!.stockToday).toBe(106)
    expect(jobs.status().dirtySweep!.nextAt! - clock.ms).toBe(30_000)
  })

  it('precision: samples on a schedule, emits an error naming the mismatching products, and repairs them', async () => {
    const { timers, cache, db, clock } = setup('2026-11-22T10:00:00Z', 4)
    await cache.getMany(['P0', 'P1', 'P2', 'P3'])
    const row = [...db.rows('stock_movements')].find((r) => r.product_code === 'P2')!
    db.get('stock_movements', row.id as number)!.quantity = '50' // a write no capture saw
    const errors: ErrorEvent[] = []
    cache.on('error', (e) => errors.push(e))
    const jobs = startJobs(cache, { precision: { sample: 10, every: 10 * MIN }, clock, timers })
    await timers.advance(10 * MIN)
    expect(jobs.status().precision!.last).toMatchObject({ checked: 4, mismatches: 1 })
    expect(errors).toHaveLength(1)
    expect(errors[0]!.operation).toBe('validate')
    expect(errors[0]!.error.code).toBe('E_MISMATCH')
    expect(errors[0]!.error.products).toEqual(['P2'])
    await cache.flush()
    expect(cache.peek('P2')!.stockToday).toBe(50)
  })

  it('close() stops every job; run() runs one now; bad options are ConfigErrors', async () => {
    const { clock, timers, cache } = setup('2026-11-22T10:00:00Z', 2)
    expect(() => startJobs(cache, {})).toThrow(ConfigError)
    expect(() => startJobs(cache, { refreshStale: { afterMs: -1 } })).toThrow(ConfigError)
    expect(() => startJobs(cache, { warm: { top: 1.5 } })).toThrow(ConfigError)
    expect(() => startJobs({} as StockCache, { rollover: true })).toThrow(ConfigError)
    const before = timers.pending
    const jobs = startJobs(cache, {
      refreshStale: true,
      rollover: true,
      warm: { products: () => ['P0'] },
      dirtySweep: true,
      precision: true,
      clock,
      timers,
    })
    expect(timers.pending).toBeGreaterThanOrEqual(before + 5) // one per job (and the day clock's midnight timer)
    expect(await jobs.run('warm')).toMatchObject({ products: 1, warmed: 1 })
    await expect(jobs.run('nope' as never)).rejects.toThrow(ConfigError)
    await cache.close()
    expect(timers.pending).toBe(0)
    for (const s of Object.values(jobs.status())) expect(s.nextAt).toBeNull()
    await timers.advance(24 * 60 * MIN)
    expect(jobs.status().precision!.runs).toBe(0)
  })

  it('a warm file that is not JSON is ignored, and rewritten by the next run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stockcast-warm-'))
    const file = join(dir, 'hot.json')
    writeFileSync(file, 'not json')
    const { clock, timers, cache } = setup('2026-11-22T10:00:00Z', 3)
    await cache.get('P2')
    const jobs = startJobs(cache, { warm: { file, every: MIN }, clock, timers })
    await timers.advance(1)
    await until(() => jobs.status().warm!.runs === 1)
    expect(jobs.status().warm!.failures).toBe(0)
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(['P2'])
  })
})
