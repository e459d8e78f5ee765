import type { Timers } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { fromPg } from '../src/index.js'
import { createCcTables, outboxCount, pgTestDb, startCapture, type TestDb, until } from './capture-helpers.js'
import { describeService, pgDown, pgPool, uniquePrefix } from './services.js'

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

describeService(pgDown, 'listen: the reconnect backoff runs on the injected timers', () => {
  it('waits for the injected timer (100 ms first), then listens again', async () => {
    const pool = pgPool(4)
    const db = fromPg(pool)
    const channel = uniquePrefix('ln').toLowerCase()
    const scheduled: { fn: () => void; ms: number }[] = []
    const timers: Timers = {
      setTimeout(fn, ms) {
        const h = { fn, ms }
        scheduled.push(h)
        return h
      },
      clearTimeout(h) {
        const i = scheduled.indexOf(h as (typeof scheduled)[number])
        if (i >= 0) scheduled.splice(i, 1)
      },
    }
    const got: string[] = []
    let reconnects = 0
    const stop = await db.listen!(
      channel,
      (p) => got.push(p),
      () => reconnects++,
      { timers },
    )
    try {
      const pidOf = async () =>
        (
          await pool.query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1`, [
            `LISTEN ${channel}`,
          ])
        ).rows[0]?.pid as number | undefined
      const first = await pidOf()
      expect(first).toBeDefined()
      await pool.query('SELECT pg_terminate_backend($1)', [first])
      await until(() => scheduled.length === 1, 5000, 'the reconnect to be scheduled')
      expect(scheduled[0]!.ms).toBe(100)
      // Nothing happens on its own: the global timers are not used.
      await new Promise((r) => setTimeout(r, 300))
      expect(reconnects).toBe(0)
      scheduled.shift()!.fn()
      await until(() => reconnects === 1, 5000, 'the reconnect')
      const second = await pidOf()
      expect(second).toBeDefined()
      expect(second).not.toBe(first)
      await pool.query(`SELECT pg_notify($1, 'after')`, [channel])
      await until(() => got.includes('after'), 5000, 'a notification on the new connection')
      expect(scheduled).toEqual([])
    } finally {
      await stop()
      await pool.end()
    }
  })
})
