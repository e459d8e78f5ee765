import { randomBytes } from 'node:crypto'
import { createStockCache } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { sqlChangeCapture, sqlReader } from '../src/index.js'
import { capturePrefix, DIALECTS, type DialectDb } from './capture-dialects.js'
import { describeService } from './services.js'

// Any product the source column accepts is capturable (issue 10 item 5): the outbox's (product, id) btree index of
// version 1 refused entries over ~2.7 kB on PostgreSQL, and with it the writer's insert; MariaDB's VARCHAR(255)
// product (and the bulk table's VARBINARY(1020)) refused longer ones too.

const schema = changeCaptureSchema

for (const d of DIALECTS) {
  describeService(d.down, `long product codes on ${d.name}`, () => {
    let t: DialectDb
    beforeEach(async () => {
      t = await d.make()
    })
    afterEach(async () => {
      await t.close()
    })

    it('a 10 kB product code (incompressible): the raw insert commits, the listener recomputes it, a strong read sees it', async () => {
      const prefix = capturePrefix()
      const capture = sqlChangeCapture(t.db, schema, { prefix, pollMs: 20 })
      await capture.install()
      // Incompressible: PostgreSQL compresses index entries, so a repeated character would fit in any index.
      const long = `L${randomBytes(7500).toString('base64')}`
      const other = `${long.slice(0, -1)}#` // the same first 9 999 characters
      const cache = createStockCache({ schema, reader: sqlReader(t.db, schema), pendingMarks: capture })
      const reading = createStockCache({ schema, reader: sqlReader(t.db, schema), pendingMarks: capture })
      expect((await reading.get(long)).stockToday).toBe(0)
      const listener = await capture.listen(cache)
      try {
        await t.sql('INSERT INTO cc_movements (sku, qty) VALUES (?, 4), (?, 1)', [long, other])
        // Not consumed yet by `reading` (it has no listener): pending() finds the long product by its hash.
        expect([...(await capture.pending([long, 'nope'])).keys()]).toEqual([long])
        expect((await reading.get(long, { consistency: 'strong' })).stockToday).toBe(4)
        await listener.drain()
        expect((await cache.get(long)).stockToday).toBe(4)
        expect((await cache.get(other)).stockToday).toBe(1)
        // Inside a bulk import too (MariaDB records it in its bulk table first).
        await capture.bulkImport(cache, async (s) => {
          await s.execute(
            t.kind === 'mysql'
              ? 'INSERT INTO cc_movements (sku, qty) VALUES (?, 2)'
              : 'INSERT INTO cc_movements (sku, qty) VALUES ($1, 2)',
            [long],
          )
          await s.execute(
            t.kind === 'mysql'
              ? 'UPDATE cc_movements SET qty = 3 WHERE sku = ?'
              : 'UPDATE cc_movements SET qty = 3 WHERE sku = $1',
            [other],
          )
        })
        await listener.drain()
        expect((await cache.get(long)).stockToday).toBe(6)
        expect((await cache.get(other)).stockToday).toBe(3)
        expect((await cache.validate({ products: [long, other] })).mismatches).toEqual([])
        expect(await t.outboxCount(prefix)).toBe(0)
        expect(listener.status().lastError).toBeNull()
      } finally {
        await listener.stop()
        await cache.close()
        await reading.close()
        await capture.uninstall()
      }
    })
  })
}
