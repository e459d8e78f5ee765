import { createStockCache, defineStockSchema, type StockCache, type Store } from 'stockcast'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { sqlChangeCapture, sqlReader, sqlStore } from '../src/index.js'
import { outboxCount, pgliteTestDb, pgTestDb, sleep, type TestDb, until } from './capture-helpers.js'
import { describeService, pgDown, uniquePrefix } from './services.js'

const DIALECTS: Array<[string, () => Promise<TestDb>, string | null]> = [
  ['PostgreSQL', () => pgTestDb(6), pgDown],
  ['PGlite', pgliteTestDb, null],
]

const schema = defineStockSchema({ onHand: [{ table: 'mi_movements', product: 'sku', quantity: 'qty' }] })

// Two instances over one database and one shared store, no bus, no L1 ttl. Instance A runs the outbox listener;
// instance B only reads. After A consumed the outbox rows of a write, B's strong read must not serve its old L1 value:
// the rows are gone, so B compares its L1 entry with the shared store, which A wrote before deleting them.
for (const [name, make, down] of DIALECTS) {
  describeService(down, `strong reads across instances on ${name}`, () => {
    let t: TestDb
    const caches: StockCache[] = []
    const stops: Array<() => Promise<void>> = []
    beforeEach(async () => {
      t = await make()
      await t.sql('CREATE TABLE mi_movements (id serial PRIMARY KEY, sku text NOT NULL, qty numeric(18,3) NOT NULL)')
    })
    afterEach(async () => {
      for (const s of stops.splice(0)) await s()
      for (const c of caches.splice(0)) await c.close()
      await t.close()
    })

    it('B reads the write A consumed: strong from the shared store, default from its own L1 until told', async () => {
      const prefix = uniquePrefix('mi')
      const capture = sqlChangeCapture(t.db, schema, { prefix })
      await capture.install()
      const store = sqlStore(t.db, { table: `${prefix}_projections` })
      await store.install()
      const instance = () => {
        const c = createStockCache({
          schema,
          reader: sqlReader(t.db, schema),
          store,
          pendingMarks: capture,
          debounceMs: 0,
          memory: { ttl: 0 },
        })
        caches.push(c)
        return c
      }
      const a = instance()
      const b = instance()
      const listener = await capture.listen(a)
      stops.push(() => listener.stop())

      await t.sql(`INSERT INTO mi_movements (sku, qty) VALUES ('M1', 5)`)
      await listener.drain()
      expect((await b.get('M1', { consistency: 'strong' })).stockToday).toBe(5)
      expect((await b.get('M1')).stockToday).toBe(5) // B's L1 holds it now

      await t.sql(`INSERT INTO mi_movements (sku, qty) VALUES ('M1', 2)`)
      await listener.drain() // A recomputed M1, wrote the store, deleted the outbox rows
      expect(await capture.pending(['M1'])).toEqual(new Map())
      expect((await a.get('M1')).stockToday).toBe(7)
      // Without a bus B's default read still answers from its own L1 (the documented trade-off)...
      expect((await b.get('M1')).stockToday).toBe(5)
      // ...but a strong read does not.
      const strong = await b.get('M1', { consistency: 'strong' })
      expect(strong.stockToday).toBe(7)
      expect(b.metrics().strongStoreMismatches).toBe(1)
      expect((await b.get('M1')).stockToday).toBe(7)
      // Nothing changed since: B's L1 and the store agree, and the strong read answers from L1.
      await b.flush()
      const again = await b.get('M1', { consistency: 'strong' })
      expect(again.stockToday).toBe(7)
      expect(b.metrics().strongStoreMismatches).toBe(1)
      expect((await b.validate({ products: ['M1'] })).mismatches).toEqual([])
    })

    it("get(p, { atLeast }) on B with an outbox position taken after the commit on A's side: the write is in the value", async () => {
      const prefix = uniquePrefix('mi')
      const capture = sqlChangeCapture(t.db, schema, { prefix })
      await capture.install()
      const store = sqlStore(t.db, { table: `${prefix}_projections` })
      await store.install()
      const make = () => {
        const c = createStockCache({ schema, reader: sqlReader(t.db, schema), store, pendingMarks: capture })
        caches.push(c)
        return c
      }
      const a = make()
      const b = make()
      const listener = await capture.listen(a)
      stops.push(() => listener.stop())
      const position = async () => Number((await t.sql(`SELECT max(id) AS n FROM "${prefix}_outbox"`))[0]!.n)

      await t.sql(`INSERT INTO mi_movements (sku, qty) VALUES ('M2', 5)`)
      await listener.drain()
      expect((await b.get('M2')).stockToday).toBe(5) // in B's L1 now
      // The writer commits and takes the outbox position as its token; the listener may not have run yet.
      await t.sql(`INSERT INTO mi_movements (sku, qty) VALUES ('M2', 2)`)
      const early = await position()
      expect((await b.get('M2', { atLeast: early })).stockToday).toBe(7)
      // Once A has consumed and stored it, B's L1 may still hold 5 (no bus): the token still gets the write.
      await t.sql(`INSERT INTO mi_movements (sku, qty) VALUES ('M2', 1)`)
      const late = await position()
      await listener.drain()
      expect((await b.get('M2', { atLeast: late })).stockToday).toBe(8)
    })

    it("A's store write fails: the outbox row stays (B's strong read still sees it) until a recompute is stored", async () => {
      const prefix = uniquePrefix('mi')
      const capture = sqlChangeCapture(t.db, schema, { prefix })
      await capture.install()
      const table = sqlStore(t.db, { table: `${prefix}_projections` })
      await table.install()
      // A's view of the shared store: its writes fail while `down` (B's reads of the same table work).
      let down = false
      const storeOfA: Store = {
        capabilities: { shared: true },
        getMany: (keys) => table.getMany(keys),
        setMany: (entries) => (down ? Promise.reject(new Error('store write refused')) : table.setMany(entries)),
        deleteMany: (keys) => table.deleteMany(keys),
        clear: () => table.clear(),
        close: async () => {}, // the table store is B's too
      }
      const options = { schema, reader: sqlReader(t.db, schema), pendingMarks: capture, memory: { ttl: 0 } }
      const a = createStockCache({ ...options, store: storeOfA, debounceMs: 0 })
      const b = createStockCache({ ...options, store: table, debounceMs: 0 })
      a.on('error', () => {})
      caches.push(a, b)
      const listener = await capture.listen(a)
      stops.push(() => listener.stop())

      await t.sql(`INSERT INTO mi_movements (sku, qty) VALUES ('M2', 5)`)
      await listener.drain()
      expect((await b.get('M2', { consistency: 'strong' })).stockToday).toBe(5)

      down = true
      await t.sql(`INSERT INTO mi_movements (sku, qty) VALUES ('M2', 2)`)
      // A recomputes it (its L1 has it)...
      await until(() => a.peek('M2')?.stockToday === 7, 10_000, 'A to recompute M2')
      // ...but the store did not take it: the row stays, through the listener's retries (drain() would wait for it).
      await sleep(600)
      expect(await outboxCount(t, prefix)).toBe(1)
      expect((await b.get('M2', { consistency: 'strong' })).stockToday).toBe(7)

      down = false
      await until(async () => (await outboxCount(t, prefix)) === 0, 15_000, 'the stored recompute and the row deleted')
      const entry = (await table.getMany(['M2'])).get('M2')
      expect(entry?.value.stockToday).toBe(7)
      expect(listener.status().lastError).toBeNull()
    })
  })
}
