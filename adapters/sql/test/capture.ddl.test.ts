import { createStockCache, type SourceReader } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { sqlChangeCapture, sqlReader } from '../src/index.js'
import { capturePrefix, DIALECTS, type DialectDb } from './capture-dialects.js'
import { sleep, until } from './capture-helpers.js'
import { describeService } from './services.js'

// DDL next to a running listener (issue 10 item 9). A claim used to hold its transaction open while the cache
// recomputed: uninstall() (DROP TRIGGER on the source tables, then DROP TABLE on the outbox) queued behind that
// transaction, whose recompute read the source tables on other connections, queued behind uninstall's locks: a
// deadlock across connections that PostgreSQL cannot see (on MariaDB uninstall waited for the whole recompute).
// Now a claim commits at once, and install()/uninstall() wait for their locks a bounded time, outbox first.

const schema = changeCaptureSchema

/** A reader that, once stalled, waits for `release()` and then reads the tables (as a slow recompute would). */
function gatedReader(base: SourceReader) {
  let gate: Promise<void> | undefined
  let open = () => {}
  let entered = () => {}
  const stalled = new Promise<void>((r) => {
    entered = r
  })
  return {
    stalled,
    stall() {
      gate = new Promise<void>((r) => {
        open = r
      })
    },
    release() {
      gate = undefined
      open()
    },
    async read(products: readonly string[], options?: Parameters<SourceReader['read']>[1]) {
      if (gate !== undefined) {
        entered()
        await gate
      }
      return base.read(products, options)
    },
  }
}

for (const d of DIALECTS) {
  describeService(d.down, `install() and uninstall() next to a running listener on ${d.name}`, () => {
    let t: DialectDb
    beforeEach(async () => {
      t = await d.make()
    })
    afterEach(async () => {
      await t.close()
    })

    /** Start a listener whose recompute is stalled in the middle of a batch. */
    async function stalledListener(prefix: string) {
      const capture = sqlChangeCapture(t.db, schema, { prefix, pollMs: 20 })
      await capture.install()
      const reader = gatedReader(sqlReader(t.db, schema))
      const cache = createStockCache({ schema, reader, debounceMs: 5 })
      cache.on('error', () => {})
      const listener = await capture.listen(cache)
      await t.sql('INSERT INTO cc_movements (sku, qty) VALUES (?, 1), (?, 2)', ['D1', 'D2'])
      await listener.drain()
      reader.stall()
      await t.sql('INSERT INTO cc_movements (sku, qty) VALUES (?, 3)', ['D1'])
      await reader.stalled
      return { capture, cache, listener, reader }
    }

    /** How long `op` takes while the listener's recompute stays stalled (released after at most 3 s either way). */
    async function timedWhileStalled(reader: { release(): void }, op: () => Promise<void>): Promise<number> {
      const t0 = Date.now()
      let done = false
      const running = op().finally(() => {
        done = true
      })
      await Promise.race([running, sleep(3000)])
      const elapsed = done ? Date.now() - t0 : Number.POSITIVE_INFINITY
      // The recompute goes on now: it reads the source tables (before, they were locked by a waiting DDL).
      reader.release()
      await running
      return elapsed
    }

    it('uninstall() completes within bounded time while a batch is being recomputed', async () => {
      const prefix = capturePrefix()
      const { cache, listener, reader, capture } = await stalledListener(prefix)
      const elapsed = await timedWhileStalled(reader, () => capture.uninstall())
      expect(elapsed).toBeLessThan(2500)
      expect(await capture.verify()).toMatchObject({ installedVersion: null })
      // The listener's delete finds no outbox any more: an error it keeps, not a crash.
      await until(() => listener.status().lastError !== null, 10_000, "the listener's error")
      await listener.stop()
      await cache.close()
    })

    it('install() of a new version completes within bounded time while a batch is being recomputed', async () => {
      const prefix = capturePrefix()
      const { cache, listener, reader, capture } = await stalledListener(prefix)
      // What an older version left: install() has DDL to do.
      await t.sql(`UPDATE ${t.quote(`${prefix}_meta`)} SET value = '1' WHERE ${t.quote('key')} = 'version'`)
      expect((await capture.verify()).ok).toBe(false)
      const elapsed = await timedWhileStalled(reader, () => capture.install())
      expect(elapsed).toBeLessThan(2500)
      expect((await capture.verify()).ok).toBe(true)
      await listener.drain(10_000)
      expect((await cache.get('D1')).stockToday).toBe(4)
      expect(listener.status().lastError).toBeNull()
      await listener.stop()
      await cache.close()
      await capture.uninstall()
    })
  })
}
