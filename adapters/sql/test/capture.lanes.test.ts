import { createStockCache } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { sqlChangeCapture, sqlReader } from '../src/index.js'
import { capturePrefix, DIALECTS, type DialectDb } from './capture-dialects.js'
import { sleep, stallingReader, until } from './capture-helpers.js'
import { describeService } from './services.js'

// Lanes: on PostgreSQL (and PGlite) a consumer claims the next batch while one recomputes, so a change committed
// meanwhile is not held up by it. MySQL/MariaDB keeps one lane: the later change waits for the batch before it.

const schema = changeCaptureSchema

for (const d of DIALECTS) {
  describeService(d.down, `outbox lanes on ${d.name}`, () => {
    let t: DialectDb
    beforeEach(async () => {
      t = await d.make()
    })
    afterEach(async () => {
      await t.close()
    })

    const lanes = d.name.startsWith('MariaDB') || d.name.startsWith('MySQL') ? 1 : 2
    it(
      lanes === 2
        ? 'a change committed while a batch recomputes is recomputed at once, not after that batch'
        : 'one lane: a change committed while a batch recomputes waits for that batch',
      async () => {
        const prefix = capturePrefix()
        const capture = sqlChangeCapture(t.db, schema, { prefix, scanMs: 100, pollMs: 20 })
        await capture.install()
        const gated = stallingReader(sqlReader(t.db, schema), 'LANE-A')
        gated.stall() // reads that include LANE-A wait until release()
        const cache = createStockCache({ schema, reader: gated, debounceMs: 0 })
        const listener = await capture.listen(cache)
        try {
          await t.sql('INSERT INTO cc_movements (sku, qty) VALUES (?, ?)', ['LANE-A', 1])
          await gated.stalled // the batch of LANE-A recomputes (and waits)
          await t.sql('INSERT INTO cc_movements (sku, qty) VALUES (?, ?)', ['LANE-B', 5])
          if (lanes === 2) {
            await until(() => cache.peek('LANE-B')?.stockToday === 5, 5000, 'LANE-B recomputed beside LANE-A')
            await until(() => listener.status().processed === 1, 5000, "LANE-B's row deleted")
            expect(await t.outboxCount(prefix)).toBe(1) // LANE-A's row, still leased to its batch
          } else {
            await sleep(600) // many polls
            expect(cache.peek('LANE-B')).toBeUndefined()
            expect(listener.status().processed).toBe(0)
            expect(await t.outboxCount(prefix)).toBe(2)
          }
          expect(cache.peek('LANE-A')).toBeUndefined()
          gated.release()
          await listener.drain(10_000)
          expect(listener.status()).toMatchObject({ processed: 2, lastError: null })
          expect(await t.outboxCount(prefix)).toBe(0)
          expect(cache.peek('LANE-A')?.stockToday).toBe(1)
          expect((await cache.get('LANE-B')).stockToday).toBe(5)
        } finally {
          gated.release()
          await listener.stop()
          await cache.close()
        }
      },
    )

    it('rows of one product held under two claims (a bulk block deferred both) all go when the block settles', async () => {
      const prefix = capturePrefix()
      const capture = sqlChangeCapture(t.db, schema, { prefix, scanMs: 100, pollMs: 20 })
      await capture.install()
      const cache = createStockCache({ schema, reader: sqlReader(t.db, schema), debounceMs: 0 })
      const listener = await capture.listen(cache)
      try {
        await cache.disableCacheTemporarily(async () => {
          // Two claims take this product's rows, one row each; the block defers both (each held for leaseMs).
          await t.sql('INSERT INTO cc_movements (sku, qty) VALUES (?, ?)', ['HELD-TWICE', 1])
          await until(() => listener.status().held.deferred === 1, 5000, 'the first claim deferred')
          const batches = listener.status().batches
          await t.sql('INSERT INTO cc_movements (sku, qty) VALUES (?, ?)', ['HELD-TWICE', 2])
          await until(() => listener.status().batches > batches, 5000, 'the second claim')
          await until(async () => (await t.outboxCount(prefix)) === 2 && listener.status().held.deferred === 1, 5000)
        })
        // Both claims' rows go once the block has settled: none waits out its lease (30 s).
        await listener.drain(5000)
        expect(await t.outboxCount(prefix)).toBe(0)
        expect(listener.status()).toMatchObject({ processed: 2, lastError: null })
        expect((await cache.get('HELD-TWICE')).stockToday).toBe(3)
      } finally {
        await listener.stop()
        await cache.close()
      }
    })
  })
}
