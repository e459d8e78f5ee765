import { ConfigError, createStockCache, defaultTimers, type Timers, WaitTimeoutError } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { sqlChangeCapture, sqlReader } from '../src/index.js'
import {
  createCcTables,
  outboxCount,
  pgliteTestDb,
  pgTestDb,
  poisoningReader,
  sleep,
  stallingReader,
  type TestDb,
  until,
} from './capture-helpers.js'
import { describeService, pgDown, uniquePrefix } from './services.js'

const DIALECTS: Array<[string, () => Promise<TestDb>, string | null]> = [
  ['PostgreSQL', () => pgTestDb(8), pgDown],
  ['PGlite', pgliteTestDb, null],
]
const schema = changeCaptureSchema

for (const [name, make, down] of DIALECTS) {
  describeService(down, `outbox listener on ${name}`, () => {
    let t: TestDb
    let prefix: string
    beforeEach(async () => {
      t = await make()
      await createCcTables(t)
      prefix = uniquePrefix('sc')
    })
    afterEach(async () => {
      await t.close()
    })
    const move = (sku: string, qty: number) => t.sql('INSERT INTO cc_movements (sku, qty) VALUES ($1, $2)', [sku, qty])

    it('listen() before install() is a ConfigError', async () => {
      const cache = createStockCache({ schema, reader: sqlReader(t.db, schema) })
      await expect(sqlChangeCapture(t.db, schema, { prefix }).listen(cache)).rejects.toThrow(ConfigError)
      await cache.close()
    })

    it('a product whose recompute fails keeps its rows and is retried without spinning; others go on', async () => {
      const capture = sqlChangeCapture(t.db, schema, { prefix })
      await capture.install()
      const poisoned = new Set(['BAD'])
      const reader = poisoningReader(sqlReader(t.db, schema), poisoned)
      const cache = createStockCache({ schema, reader, debounceMs: 5, retryMs: 60_000 })
      cache.on('error', () => {}) // the cache reports the failed projection; the listener keeps the rows
      const listener = await capture.listen(cache)
      try {
        for (let i = 0; i < 5; i++) await move('BAD', 1)
        // Its rows stay, leased to the listener for the retry delay (it claims other products meanwhile).
        await until(() => reader.poisonedReads > 0, 5000, 'a first try of BAD')
        expect(await outboxCount(t, prefix)).toBe(5)
        // Another product goes on meanwhile (BAD's rows are not claimable while it waits).
        await move('GOOD', 4)
        await until(async () => (await capture.pending(['GOOD'])).size === 0, 5000, 'GOOD to be processed')
        expect((await cache.get('GOOD')).stockToday).toBe(4)
        // No spinning: the retries of BAD back off (200 ms, 400 ms, ...).
        const reads = reader.poisonedReads
        await sleep(1000)
        expect(reader.poisonedReads - reads).toBeLessThanOrEqual(4)
        await until(() => listener.status().oldestUnprocessedMs > 0, 3000, 'the age of the held row')
        await expect(listener.drain(300)).rejects.toThrow(WaitTimeoutError)
        // The source recovers: the held row is processed, nothing lost.
        poisoned.clear()
        await listener.drain(10_000)
        expect((await cache.get('BAD')).stockToday).toBe(5)
        expect(await outboxCount(t, prefix)).toBe(0)
        expect(listener.status().lastError).toBeNull()
        expect(listener.status().oldestUnprocessedMs).toBe(0)
      } finally {
        await listener.stop()
        await cache.close()
      }
    })

    it('every timer and clock read of the listener goes through the injected timers and clock', async () => {
      const pending = new Set<unknown>()
      const delays: number[] = []
      let clockReads = 0
      const timers: Timers = {
        setTimeout(fn, ms) {
          delays.push(ms)
          const h = defaultTimers.setTimeout(() => {
            pending.delete(h)
            fn()
          }, ms)
          pending.add(h)
          return h
        },
        clearTimeout(h) {
          pending.delete(h)
          defaultTimers.clearTimeout(h)
        },
      }
      const clock = {
        now: () => {
          clockReads++
          return Date.now()
        },
      }
      const capture = sqlChangeCapture(t.db, schema, { prefix, scanMs: 4321, pollMs: 37, timers, clock })
      await capture.install()
      const cache = createStockCache({ schema, reader: sqlReader(t.db, schema), debounceMs: 5 })
      const listener = await capture.listen(cache)
      await move('T1', 2)
      await listener.drain()
      expect((await cache.get('T1')).stockToday).toBe(2)
      expect(delays).toContain(4321) // the safety-net scan
      expect(clockReads).toBeGreaterThan(0)
      await listener.stop()
      expect(pending.size).toBe(0) // stop() cleared every timer it started
      await cache.close()
    })

    it('stop() finishes the batch in progress, then consumes nothing more', async () => {
      const capture = sqlChangeCapture(t.db, schema, { prefix })
      await capture.install()
      const chaos = stallingReader(sqlReader(t.db, schema))
      const cache = createStockCache({ schema, reader: chaos, debounceMs: 5 })
      const listener = await capture.listen(cache)
      chaos.stall()
      await move('S1', 2)
      await chaos.stalled
      let stopped = false
      const stopping = listener.stop().then(() => {
        stopped = true
      })
      await sleep(100)
      expect(stopped).toBe(false)
      chaos.release()
      await stopping
      expect(await outboxCount(t, prefix)).toBe(0)
      expect(listener.status()).toMatchObject({ running: false, processed: 1, lastError: null })
      await move('S1', 3)
      await sleep(200)
      expect(await outboxCount(t, prefix)).toBe(1)
      await cache.close()
    })

    it('a listener whose cache was closed stops, keeping the rows for others', async () => {
      const capture = sqlChangeCapture(t.db, schema, { prefix })
      await capture.install()
      const cache = createStockCache({ schema, reader: sqlReader(t.db, schema), debounceMs: 5 })
      const listener = await capture.listen(cache)
      await cache.close()
      await move('C1', 1)
      await until(() => !listener.status().running, 5000, 'the listener to stop')
      expect(listener.status().lastError?.name).toBe('ClosedError')
      expect(await outboxCount(t, prefix)).toBe(1)
      await listener.stop()
    })

    it('bulkImport: reads of touched products go to the sources meanwhile; one recompute at the end', async () => {
      const capture = sqlChangeCapture(t.db, schema, { prefix })
      await capture.install()
      const cache = createStockCache({ schema, reader: sqlReader(t.db, schema), debounceMs: 5 })
      const listener = await capture.listen(cache)
      try {
        await move('BK', 1)
        await listener.drain()
        expect((await cache.get('BK')).stockToday).toBe(1)
        const recomputes = cache.metrics().recomputes
        await capture.bulkImport(cache, async (session) => {
          await session.execute(`INSERT INTO cc_movements (sku, qty) SELECT 'BK', 1 FROM generate_series(1, 500)`)
          await session.execute(
            `INSERT INTO cc_movements (sku, qty) SELECT 'BK' || (i % 20), 1 FROM generate_series(1, 400) AS i`,
          )
        })
        await listener.drain()
        expect((await cache.get('BK')).stockToday).toBe(501)
        expect((await cache.get('BK7')).stockToday).toBe(20)
        // BK and BK0..BK19 once each (the block's settling batch); the listener recomputed nothing more.
        expect(cache.metrics().recomputes - recomputes).toBeLessThanOrEqual(22)
        expect((await cache.validate({ products: ['BK', 'BK0', 'BK7', 'BK19'] })).mismatches).toEqual([])
        expect(await outboxCount(t, prefix)).toBe(0)
      } finally {
        await listener.stop()
        await cache.close()
      }
    })
  })
}
