import { createStockCache } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { sqlChangeCapture, sqlReader } from '../src/index.js'
import { createCcTables, outboxCount, pgTestDb, stallingReader, type TestDb, until } from './capture-helpers.js'
import { describeService, pgDown, uniquePrefix } from './services.js'

describeService(pgDown, 'sqlChangeCapture: a listener killed between claim and delete (PostgreSQL)', () => {
  let t: TestDb
  beforeEach(async () => {
    // No error listener added here: fromPg itself must survive a checked-out connection being killed.
    t = await pgTestDb(10)
    await createCcTables(t)
  })
  afterEach(async () => {
    await t.close()
  })

  it('leaves its claimed rows to the next listener: nothing lost', async () => {
    const prefix = uniquePrefix('sc')
    const schema = changeCaptureSchema
    const products = Array.from({ length: 20 }, (_, i) => `K${i}`)
    const captureA = sqlChangeCapture(t.db, schema, { prefix, scanMs: 60_000 })
    await captureA.install()
    for (const [i, p] of products.entries()) {
      await t.sql(`INSERT INTO cc_movements (sku, qty) VALUES ($1, $2)`, [p, i + 1])
    }
    const rows = await outboxCount(t, prefix)
    expect(rows).toBe(products.length)

    // Listener A claims the batch, marks its cache, and its recompute hangs.
    const chaos = stallingReader(sqlReader(t.db, schema))
    const cacheA = createStockCache({ schema, reader: chaos })
    chaos.stall()
    const listenerA = await captureA.listen(cacheA)
    await chaos.stalled
    const [claim] = await t.sql(
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'
          AND query LIKE '%SKIP LOCKED%' AND query LIKE $1`,
      [`%${prefix}_outbox%`],
    )
    expect(claim).toBeDefined()

    // Listener B, in another "process" (its own capture and cache), skips the locked rows meanwhile.
    const cacheB = createStockCache({ schema, reader: sqlReader(t.db, schema), debounceMs: 5 })
    const listenerB = await sqlChangeCapture(t.db, schema, { prefix, scanMs: 100 }).listen(cacheB)
    await new Promise((r) => setTimeout(r, 300))
    expect(listenerB.status().processed).toBe(0)
    expect(await outboxCount(t, prefix)).toBe(rows)

    // A dies between claim and delete: its transaction aborts, the rows are unlocked, B's safety-net scan takes them.
    await t.sql('SELECT pg_terminate_backend($1)', [claim!.pid])
    await until(async () => (await outboxCount(t, prefix)) === 0, 10_000, 'listener B to take over')
    expect(listenerB.status().processed).toBe(rows)
    for (const [i, p] of products.entries()) expect((await cacheB.get(p)).stockToday).toBe(i + 1)
    const report = await cacheB.validate({ products })
    expect(report.mismatches).toEqual([])
    expect(report.checked).toBe(products.length)

    // A's recompute finally returns; its delete fails on the dead connection: recorded, not thrown.
    chaos.release()
    await until(() => listenerA.status().lastError !== null, 10_000, "listener A's error")
    expect(listenerA.status().processed).toBe(0)
    expect(listenerA.status().lastError!.message).toMatch(/terminat|connection/i)
    await listenerA.stop()
    await listenerB.stop()
    await cacheA.close()
    await cacheB.close()
    expect(await outboxCount(t, prefix)).toBe(0)
  })
})
