import type pg from 'pg'
import { createStockCache, defineStockSchema, firstDifference, type StockCache } from 'stockcast'
import { dayFromToday } from 'stockcast/conformance'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { OutboxListener } from '../src/capture/types.js'
import { fromPg, type SqlDb, sqlChangeCapture, sqlReader, sqlStore } from '../src/index.js'
import { outboxCount, pgTestDb, poolOn, sleep, type TestDb } from './capture-helpers.js'
import { describeService, pgDown, uniquePrefix } from './services.js'

const schema = defineStockSchema({
  onHand: [{ table: 'cx_movements', product: 'sku', quantity: 'qty' }],
  supply: [{ table: 'cx_supply', product: 'sku', quantity: 'qty', date: 'due' }],
  demand: [
    {
      table: 'cx_picking',
      product: 'sku',
      quantity: 'qty',
      date: 'ship',
      where: "EXISTS (SELECT 1 FROM cx_orders o WHERE o.batch = cx_picking.batch AND o.status = 'OPEN')",
    },
  ],
  related: [{ table: 'cx_orders', products: 'SELECT sku FROM cx_picking WHERE batch = :batch' }],
})

const PRODUCTS = Array.from({ length: 120 }, (_, i) => `CX${i}`)
const BATCHES = 40
/** Each batch's picking items name 3 fixed products (a picking item never changes product or batch). */
const batchProducts = (b: number) => [0, 1, 2].map((k) => PRODUCTS[(b * 3 + k) % PRODUCTS.length]!)
const WRITE_MS = 5000

const rnd = (n: number) => Math.floor(Math.random() * n)
const pick = <T>(list: readonly T[]): T => list[rnd(list.length)]!
const qty = () => (rnd(20001) / 1000 - 5).toFixed(3)

describeService(pgDown, 'sqlChangeCapture under concurrent writers (PostgreSQL)', () => {
  let t: TestDb
  let writers: pg.Pool
  let wdb: SqlDb
  beforeAll(async () => {
    t = await pgTestDb(24)
    writers = poolOn(t.schemaName, 8)
    wdb = fromPg(writers)
    await t.sql(`CREATE TABLE cx_movements (id serial PRIMARY KEY, sku text NOT NULL, qty numeric(18,3) NOT NULL)`)
    await t.sql(
      `CREATE TABLE cx_supply (id serial PRIMARY KEY, sku text NOT NULL, qty numeric(18,3) NOT NULL, due date NOT NULL)`,
    )
    await t.sql(`CREATE TABLE cx_orders (id serial PRIMARY KEY, batch int NOT NULL UNIQUE, status text NOT NULL)`)
    await t.sql(
      `CREATE TABLE cx_picking (id serial PRIMARY KEY, sku text NOT NULL, qty numeric(18,3) NOT NULL, ship date NOT NULL, batch int NOT NULL)`,
    )
    for (const p of PRODUCTS) await t.sql(`INSERT INTO cx_movements (sku, qty) VALUES ($1, 50), ($1, 1.5)`, [p])
    for (let b = 0; b < BATCHES; b++) {
      await t.sql(`INSERT INTO cx_orders (batch, status) VALUES ($1, 'OPEN')`, [b])
      for (const p of batchProducts(b)) {
        await t.sql(`INSERT INTO cx_picking (sku, qty, ship, batch) VALUES ($1, $2, $3, $4)`, [
          p,
          (1 + rnd(9)).toFixed(3),
          dayFromToday(rnd(10)),
          b,
        ])
      }
    }
  })
  afterAll(async () => {
    await writers?.end()
    await t?.close()
  })

  // One instance with both listeners; or strong reads on a second instance that shares the store but runs no
  // listener and has no bus (it learns nothing but what the outbox and the shared store tell its strong reads).
  for (const instances of [1, 2] as const) {
    it(`8 connections of random transactions: strong reads never miss a commit; validate() finds 0 mismatches (${instances === 1 ? 'one instance' : 'strong reads on another instance'})`, async () => {
      const prefix = uniquePrefix('sc')
      const capture = sqlChangeCapture(t.db, schema, { prefix })
      await capture.install()
      const store = instances === 2 ? sqlStore(t.db, { table: `${prefix}_projections` }) : undefined
      await store?.install()
      const cache: StockCache = createStockCache({
        schema,
        reader: sqlReader(t.db, schema),
        pendingMarks: capture,
        debounceMs: 20,
        ...(store === undefined ? {} : { store, memory: { ttl: 600_000 } }),
      })
      // The instance the readers use (the same one, or a second one over the shared store).
      const reading: StockCache =
        store === undefined
          ? cache
          : createStockCache({
              schema,
              reader: sqlReader(t.db, schema),
              store,
              pendingMarks: capture,
              debounceMs: 20,
              memory: { ttl: 600_000 },
            })
      // The truth: a cache whose refresh() reads the sources every time.
      const truth = createStockCache({ schema, reader: sqlReader(t.db, schema) })
      // Two consumers on the same outbox (SKIP LOCKED shares the work).
      const listeners: OutboxListener[] = [
        await capture.listen(cache),
        await sqlChangeCapture(t.db, schema, { prefix }).listen(cache),
      ]
      await cache.getMany(PRODUCTS)
      if (reading !== cache) await reading.getMany(PRODUCTS)

      // Per product: transactions begun and finished. A product with none in flight and none begun during a check
      // had the same committed state throughout the check.
      const begun = new Map<string, number>(PRODUCTS.map((p) => [p, 0]))
      const ended = new Map<string, number>(PRODUCTS.map((p) => [p, 0]))
      const stats = { commits: 0, rollbacks: 0, aborted: 0, strongChecked: 0, strongSkipped: 0, reads: 0 }
      let writing = true

      // Each step touches exactly the products it declares: an UPDATE or DELETE of a row picked by a subquery also
      // pins its sku, since under READ COMMITTED a concurrent key change can move that row to another product before
      // the statement locks it (PostgreSQL re-checks only id), and the step would then change an undeclared product
      // (seen once in ten runs as "the truth moved with no write in flight").
      type Step = { touches: string[]; run: (tx: SqlDb) => Promise<void> }
      const steps = (): Step => {
        const a = pick(PRODUCTS)
        const b = pick(PRODUCTS)
        const batch = rnd(BATCHES)
        const options: Step[] = [
          {
            touches: [a],
            run: async (tx) => {
              await tx.execute('INSERT INTO cx_movements (sku, qty) VALUES ($1, $2)', [a, qty()])
            },
          },
          {
            touches: [a],
            run: async (tx) => {
              await tx.execute(
                'UPDATE cx_movements SET qty = $2 WHERE id = (SELECT id FROM cx_movements WHERE sku = $1 ORDER BY random() LIMIT 1) AND sku = $1',
                [a, qty()],
              )
            },
          },
          {
            // Key change: a movement moves from a to b.
            touches: [a, b],
            run: async (tx) => {
              await tx.execute(
                'UPDATE cx_movements SET sku = $2 WHERE id = (SELECT id FROM cx_movements WHERE sku = $1 ORDER BY random() LIMIT 1) AND sku = $1',
                [a, b],
              )
            },
          },
          {
            touches: [a],
            run: async (tx) => {
              await tx.execute(
                'DELETE FROM cx_movements WHERE id = (SELECT id FROM cx_movements WHERE sku = $1 ORDER BY random() LIMIT 1) AND sku = $1',
                [a],
              )
            },
          },
          {
            touches: [a],
            run: async (tx) => {
              await tx.execute('INSERT INTO cx_supply (sku, qty, due) VALUES ($1, $2, $3)', [
                a,
                (1 + rnd(5)).toFixed(3),
                dayFromToday(rnd(12)),
              ])
            },
          },
          {
            touches: batchProducts(batch),
            run: async (tx) => {
              await tx.execute('UPDATE cx_picking SET qty = qty + 1, ship = $2 WHERE batch = $1', [
                batch,
                dayFromToday(rnd(10)),
              ])
            },
          },
          {
            // Related table: the order's status decides whether its picking items count as demand.
            touches: batchProducts(batch),
            run: async (tx) => {
              await tx.execute(
                `UPDATE cx_orders SET status = CASE status WHEN 'OPEN' THEN 'CLOSED' ELSE 'OPEN' END WHERE batch = $1`,
                [batch],
              )
            },
          },
        ]
        const first = pick(options)
        if (Math.random() < 0.3) {
          const second = pick(options)
          return {
            touches: [...new Set([...first.touches, ...second.touches])],
            run: async (tx) => {
              await first.run(tx)
              await second.run(tx)
            },
          }
        }
        return first
      }

      const writer = async () => {
        while (writing) {
          const step = steps()
          const rollback = Math.random() < 0.2
          for (const p of step.touches) begun.set(p, begun.get(p)! + 1)
          try {
            await wdb.transaction(async (tx) => {
              await step.run(tx)
              if (rollback) throw new Error('rollback')
            })
            stats.commits++
          } catch (e) {
            if ((e as Error).message === 'rollback') stats.rollbacks++
            else stats.aborted++ // a deadlock between two writers: PostgreSQL aborts one
          } finally {
            for (const p of step.touches) ended.set(p, ended.get(p)! + 1)
          }
          await sleep(rnd(4))
        }
      }

      const failures: string[] = []
      const reader = async (strong: boolean) => {
        while (writing) {
          const p = pick(PRODUCTS)
          if (!strong) {
            await reading.get(p)
            stats.reads++
            // An L1 hit resolves at once: yield to the event loop or the writers' I/O starves.
            await new Promise((r) => setImmediate(r))
            continue
          }
          const before = begun.get(p)!
          if (ended.get(p) !== before) {
            stats.strongSkipped++
            await sleep(1)
            continue
          }
          const s0 = await truth.refresh(p)
          const got = await reading.get(p, { consistency: 'strong' })
          const s1 = await truth.refresh(p)
          if (begun.get(p) !== before) {
            stats.strongSkipped++
            continue
          }
          stats.strongChecked++
          const d01 = firstDifference(s0, s1)
          const d = firstDifference(got, s0)
          if (d01 !== null) failures.push(`${p}: the truth moved with no write in flight: ${JSON.stringify(d01)}`)
          if (d !== null) failures.push(`${p}: strong read missed a commit: ${JSON.stringify(d)}`)
        }
      }

      const started = Date.now()
      const running = [
        ...Array.from({ length: 8 }, () => writer()),
        reader(true),
        reader(true),
        reader(true),
        reader(false),
        reader(false),
      ]
      await sleep(WRITE_MS)
      writing = false
      await Promise.all(running)
      const elapsed = Date.now() - started

      for (const l of listeners) await l.drain(30_000)
      await cache.flush()
      const report = await cache.validate({ products: PRODUCTS })
      const lag = listeners.map((l) => l.status())
      console.info(
        `[capture concurrency] ${elapsed} ms: ${stats.commits} commits, ${stats.rollbacks} rollbacks, ${stats.aborted} aborted; ` +
          `${stats.strongChecked} strong reads checked (${stats.strongSkipped} skipped: a write in flight), ${stats.reads} default reads; ` +
          `listeners processed ${lag.map((s) => s.processed).join(' + ')} rows in ${lag.map((s) => s.batches).join(' + ')} batches`,
      )
      expect(failures).toEqual([])
      expect(stats.commits).toBeGreaterThan(200)
      expect(stats.strongChecked).toBeGreaterThan(50)
      expect(report.mismatches).toEqual([])
      expect(report.checked).toBe(PRODUCTS.length)
      expect(await outboxCount(t, prefix)).toBe(0)
      for (const s of lag) expect(s.lastError).toBeNull()
      for (const l of listeners) await l.stop()
      if (reading !== cache) await reading.close()
      await cache.close()
      await truth.close()
      await capture.uninstall()
    })
  }
})
