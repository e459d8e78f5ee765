import { changeCaptureSchema } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { createCcTables, outboxCount, pgTestDb, startCapture, type TestDb, until } from './capture-helpers.js'
import { describeService, pgDown, uniquePrefix } from './services.js'

describeService(pgDown, 'sqlChangeCapture: the LISTEN connection is lost (PostgreSQL)', () => {
  let t: TestDb
  beforeEach(async () => {
    t = await pgTestDb(8)
    await createCcTables(t)
  })
  afterEach(async () => {
    await t.close()
  })

  it('reconnects, catches up from the outbox, loses nothing', async () => {
    const prefix = uniquePrefix('sc')
    // The safety-net scan is far away: the catch-up must come from the reconnect itself.
    const s = await startCapture(t, changeCaptureSchema, { capture: { prefix, scanMs: 600_000 } })
    try {
      await t.sql(`INSERT INTO cc_movements (sku, qty) VALUES ('L1', 1)`)
      await until(async () => (await outboxCount(t, prefix)) === 0, 5000, 'the first notification')
      expect((await s.cache.get('L1')).stockToday).toBe(1)

      const [listen] = await t.sql(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1`,
        [`LISTEN ${prefix.toLowerCase()}_outbox`],
      )
      expect(listen).toBeDefined()
      await t.sql('SELECT pg_terminate_backend($1)', [listen!.pid])
      // Written while nobody listens: these notifications are lost.
      await t.sql(`INSERT INTO cc_movements (sku, qty) VALUES ('L1', 10), ('L2', 5)`)
      await t.sql(`UPDATE cc_movements SET sku = 'L3' WHERE sku = 'L2'`)

      await until(() => s.listener.status().reconnects >= 1, 10_000, 'the reconnect')
      await until(async () => (await outboxCount(t, prefix)) === 0, 10_000, 'the catch-up scan')
      expect((await s.cache.get('L1')).stockToday).toBe(11)
      expect((await s.cache.get('L2')).stockToday).toBe(0)
      expect((await s.cache.get('L3')).stockToday).toBe(5)
      // Notifications flow again on the new connection.
      await t.sql(`INSERT INTO cc_movements (sku, qty) VALUES ('L3', 1)`)
      await until(async () => (await outboxCount(t, prefix)) === 0, 5000, 'a notification after the reconnect')
      expect((await s.cache.get('L3')).stockToday).toBe(6)
      expect((await s.cache.validate({ products: ['L1', 'L2', 'L3'] })).mismatches).toEqual([])
      expect(s.listener.status()).toMatchObject({ running: true, reconnects: 1 })
    } finally {
      await s.close()
    }
  })
})
