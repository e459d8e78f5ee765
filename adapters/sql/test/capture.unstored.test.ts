import { createStockCache, type StockProjection, type Store } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { sqlChangeCapture, sqlReader, sqlStore } from '../src/index.js'
import { capturePrefix, DIALECTS, type DialectDb } from './capture-dialects.js'
import { until } from './capture-helpers.js'
import { describeService } from './services.js'

// A product whose new value the shared store did not take (another instance's write won the race) keeps its outbox
// rows and is retried. That is contention, not a failure: it is retried after retryMs each time. With a delay that
// doubled per race, a product that lost a few races in a busy minute stayed held for up to 30 s after the
// contention ended (the history checker's drains waited 11-25 s for such rows).

const schema = changeCaptureSchema

/** A shared SQL store where another instance's write wins the next `races` writes of `key`. */
function contendedStore(
  inner: Store,
  key: string,
  races: number,
  afterRaces?: () => void,
): Store & { writes: number[] } {
  const writes: number[] = []
  let left = races
  return {
    writes,
    capabilities: { shared: true },
    getMany: (keys) => inner.getMany(keys),
    deleteMany: (keys) => inner.deleteMany(keys),
    clear: () => inner.clear(),
    close: () => inner.close(),
    async setMany(entries) {
      await inner.setMany(entries)
      const mine = entries.find(([k]) => k === key)
      if (mine === undefined) return
      writes.push(Date.now())
      if (left <= 0) return
      left--
      if (left === 0) afterRaces?.()
      // The other instance's value (computed from another snapshot), one version above: the store keeps it, the
      // read-back sees it, and this instance's next write (a higher version again) replaces it.
      const [, e] = mine
      const other: StockProjection = { ...e.value, stockToday: e.value.stockToday + 1000 }
      await inner.setMany([[key, { ...e, value: other, version: e.version + 1 }]])
    },
  }
}

for (const d of DIALECTS) {
  describeService(d.down, `a product the shared store did not take, on ${d.name}`, () => {
    let t: DialectDb
    beforeEach(async () => {
      t = await d.make()
    })
    afterEach(async () => {
      await t.close()
    })

    it('is retried after retryMs each time (no growing delay), then settles and the store holds the truth', async () => {
      const prefix = capturePrefix()
      const RACES = 5
      const base = sqlStore(t.db, { table: `${prefix}_store` })
      const store = contendedStore(base, 'U1', RACES)
      const capture = sqlChangeCapture(t.db, schema, { prefix, scanMs: 100, pollMs: 20 })
      await capture.install()
      const cache = createStockCache({
        schema,
        reader: sqlReader(t.db, schema),
        store,
        pendingMarks: capture,
        debounceMs: 5,
        memory: { ttl: 60_000 },
      })
      const listener = await capture.listen(cache)
      try {
        await t.sql('INSERT INTO cc_movements (sku, qty) VALUES (?, ?)', ['U1', 7])
        await until(async () => (await t.outboxCount(prefix)) === 0, 20_000, 'the rows of U1 to be processed')
        // One write per race, then the one the store kept.
        expect(store.writes.length).toBe(RACES + 1)
        const gaps = store.writes.slice(1).map((at, i) => at - store.writes[i]!)
        // retryMs is 200: a doubling delay makes the fifth gap 3.2 s; a fixed one keeps every gap near 200 ms (2.5 s: load).
        expect(Math.max(...gaps), `gaps between retries: ${gaps.join(', ')} ms`).toBeLessThan(2500)
        expect((await base.getMany(['U1'])).get('U1')?.value.stockToday).toBe(7)
        expect((await cache.get('U1', { consistency: 'strong' })).stockToday).toBe(7)
        expect(listener.status().held).toEqual({ failed: 0, unstored: 0, deferred: 0 })
      } finally {
        await listener.stop()
        await cache.close()
        await capture.uninstall()
        await base.drop()
      }
    })

    it('a failure after lost races backs off from retryMs: races are not failures', async () => {
      const prefix = capturePrefix()
      const RACES = 5
      const base = sqlStore(t.db, { table: `${prefix}_store` })
      const reader = sqlReader(t.db, schema)
      let failReads = 0
      // After the last lost race, the next read of the sources fails once (a terminated connection, say).
      const store = contendedStore(base, 'U2', RACES, () => {
        failReads = 1
      })
      const failing = {
        ...reader,
        read: async (...args: Parameters<typeof reader.read>) => {
          if (failReads > 0) {
            failReads--
            throw new Error('injected: connection terminated')
          }
          return reader.read(...args)
        },
      }
      const capture = sqlChangeCapture(t.db, schema, { prefix, scanMs: 100, pollMs: 20 })
      await capture.install()
      const cache = createStockCache({
        schema,
        reader: failing,
        store,
        pendingMarks: capture,
        debounceMs: 5,
        memory: { ttl: 60_000 },
      })
      cache.on('error', () => {})
      const listener = await capture.listen(cache)
      try {
        await t.sql('INSERT INTO cc_movements (sku, qty) VALUES (?, ?)', ['U2', 9])
        await until(async () => (await t.outboxCount(prefix)) === 0, 20_000, 'the rows of U2 to be processed')
        const drained = Date.now()
        expect(failReads).toBe(0)
        expect(store.writes.length).toBe(RACES + 1)
        // Every wait, the failed attempt's included, is about retryMs (200 ms); counting the five races as failures
        // made the failure's delay 200 ms x 2^5 = 6.4 s.
        const waits = [...store.writes.slice(1).map((at, i) => at - store.writes[i]!), drained - store.writes.at(-1)!]
        expect(Math.max(...waits), `waits: ${waits.join(', ')} ms`).toBeLessThan(2500)
        expect((await base.getMany(['U2'])).get('U2')?.value.stockToday).toBe(9)
        expect(listener.status().held).toEqual({ failed: 0, unstored: 0, deferred: 0 })
      } finally {
        await listener.stop()
        await cache.close()
        await capture.uninstall()
        await base.drop()
      }
    })
  })
}
