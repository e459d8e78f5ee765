import type pg from 'pg'
import { createStockCache } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { expect, it } from 'vitest'
import { sqlChangeCapture, sqlReader } from '../src/index.js'
import { capturePrefix } from './capture-dialects.js'
import { createCcTables, pgTestDb, sleep, type TestDb } from './capture-helpers.js'
import { describeService, pgDown } from './services.js'

// On PostgreSQL the outbox's bookkeeping (a claim's lease, the deletes after a batch) commits with
// synchronous_commit off for its own transaction: losing it in a crash only makes rows claimable again. Checked by
// the server's own count of WAL flushes, against plain statements on the same connection, and the connection's
// setting must be what it was afterwards.

const CONNECTIONS = 4

/** Each connection of `t`'s pool, at once (the pool opens the missing ones). */
async function everyConnection<T>(t: TestDb, fn: (c: pg.PoolClient) => Promise<T>): Promise<T[]> {
  const clients = await Promise.all(Array.from({ length: CONNECTIONS }, () => t.pool!.connect()))
  try {
    return await Promise.all(clients.map(fn))
  } finally {
    for (const c of clients) c.release()
  }
}

/** WAL flushes the server counted so far, once every connection of `t` has reported its own. */
async function walSyncs(t: TestDb): Promise<number> {
  await everyConnection(t, async (c) => {
    await c.query('SELECT pg_stat_force_next_flush()')
    await c.query('SELECT 1') // a statement ends: the backend reports its pending counts
  })
  await sleep(1200) // and other processes (the WAL writer) theirs, at most once a second
  const [r] = await t.sql('SELECT wal_sync::bigint AS n FROM pg_stat_wal')
  return Number(r!.n)
}

describeService(pgDown, 'outbox bookkeeping on PostgreSQL', () => {
  it('claims and deletes commit without waiting for a WAL flush; the connection keeps its synchronous_commit', async () => {
    const t = await pgTestDb(CONNECTIONS)
    try {
      await createCcTables(t)
      await t.sql('CREATE TABLE unsynced_control (id int PRIMARY KEY, n int NOT NULL)')
      await t.sql('INSERT INTO unsynced_control VALUES (1, 0)')
      const N = 40
      // Control: plain single-statement writes flush once each (else this check means nothing).
      const before = await walSyncs(t)
      for (let i = 0; i < N; i++) await t.sql('UPDATE unsynced_control SET n = n + 1 WHERE id = 1')
      const plain = (await walSyncs(t)) - before
      expect(plain, 'the server flushes WAL at each plain commit (fsync on)').toBeGreaterThanOrEqual(N)

      const prefix = capturePrefix()
      const capture = sqlChangeCapture(t.db, changeCaptureSchema, { prefix, batchSize: 1 })
      await capture.install()
      // N products in one statement: N outbox rows, and with batchSize 1 a claim and a delete per product.
      await t.sql(`INSERT INTO cc_movements (sku, qty) SELECT 'U' || g, g FROM generate_series(1, ${N}) AS g`)
      // No shared store: the batches write nothing but the outbox's leases and deletes (the reader only reads).
      const cache = createStockCache({ schema: changeCaptureSchema, reader: sqlReader(t.db, changeCaptureSchema) })
      const start = await walSyncs(t)
      const listener = await capture.listen(cache)
      await listener.drain(20_000)
      const status = listener.status()
      await listener.stop()
      const bookkeeping = (await walSyncs(t)) - start
      expect(status.processed).toBe(N)
      expect(status.batches).toBeGreaterThanOrEqual(N)
      // 2N commits: synced they would be >= 2N flushes; unsynced only the WAL writer's few background flushes.
      expect(bookkeeping, `WAL flushes for ${2 * N} bookkeeping commits (plain: ${plain} for ${N})`).toBeLessThan(N / 2)
      expect((await cache.get('U7')).stockToday).toBe(7)
      // set_config(..., true) ends with each statement's transaction: no connection of the pool keeps it.
      const settings = await everyConnection(t, async (c) => (await c.query('SHOW synchronous_commit')).rows[0])
      expect(settings.map((r) => r.synchronous_commit)).toEqual(Array(CONNECTIONS).fill('on'))
      await cache.close()
    } finally {
      await t.close()
    }
  })
})
