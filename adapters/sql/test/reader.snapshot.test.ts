import { defineStockSchema, type StockSchema } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type SqlDb, type SqlReaderOptions, sqlReader } from '../src/index.js'
import { closingOf, READER_DBS, type ReaderDb } from './reader-dbs.js'
import { describeService } from './services.js'

// Regression: read() ran one query per source (up to 4 at once on different pool connections, or one after another),
// each in its own snapshot. A writer that ships 10 units (the order line's open quantity and the stock both drop by
// 10, in one transaction) committing between them made a read see the stock before and the order line after: a
// closing of 100 or 80 where the truth is 90 before and after. Every source of a call, and every batch of a call
// larger than batchSize, must come from one snapshot.

/** Reads and writer commits each test waits for (whichever comes last), so the writer overlaps many reads. */
const READS = 120
const COMMITS = 150
const CAP = 5000

for (const c of READER_DBS) {
  describeService(c.down, `sqlReader reads every source in one snapshot on ${c.name}`, () => {
    let t: ReaderDb
    let stock: string
    let lines: string
    // A sleep inside one source's statement widens the gap between two statements (PGlite needs none: a writer's
    // transaction runs between any two of the reader's statements).
    const slow =
      c.kind === 'postgres' ? '(SELECT true FROM pg_sleep(0.002))' : c.kind === 'mysql' ? 'SLEEP(0.002) = 0' : 'true'
    let schema: StockSchema

    beforeAll(async () => {
      t = await c.open()
      stock = t.table('snap_stock')
      lines = t.table('snap_lines')
      const int = c.kind === 'mysql' ? 'INT' : 'integer'
      await t.sql(`CREATE TABLE ${t.q(stock)} (id ${int} PRIMARY KEY, product_code varchar(20), qty numeric(18,3))`)
      await t.sql(
        `CREATE TABLE ${t.q(lines)} (id ${int} PRIMARY KEY, product_code varchar(20), open_qty numeric(18,3), ship_date date)`,
      )
      const v = (n: number) => Array.from({ length: n }, (_, i) => t.ph(i + 1)).join(', ')
      for (const [id, p] of [
        [1, 'X'],
        [2, 'Y'],
      ] as const) {
        await t.sql(`INSERT INTO ${t.q(stock)} VALUES (${v(3)})`, [id, p, '100'])
        await t.sql(`INSERT INTO ${t.q(lines)} VALUES (${v(4)})`, [id, p, '10', '2026-03-02'])
      }
      schema = defineStockSchema({
        onHand: [{ table: stock, product: 'product_code', quantity: 'qty', where: slow, id: 'stock' }],
        demand: [{ table: lines, product: 'product_code', quantity: 'open_qty', date: 'ship_date', id: 'lines' }],
      })
    })
    afterAll(async () => {
      await t?.close()
    })

    /**
     * Runs `write` in a loop (one transaction per call, `k` alternating -10 / +10) while `read` runs, until both have
     * done enough; returns every value read that is not `expected`.
     */
    const race = async (
      write: (run: (sql: string, params?: unknown[]) => Promise<unknown>, k: number) => Promise<void>,
      read: () => Promise<number>,
      expected: number,
    ) => {
      let commits = 0
      let stop = false
      const writer = (async () => {
        for (let k = -10; !stop; k = -k) {
          await t.writeTx((run) => write(run, k))
          commits++
        }
      })()
      const wrong: number[] = []
      let reads = 0
      try {
        while ((reads < READS || commits < COMMITS) && reads < CAP) {
          const got = await read()
          reads++
          if (got !== expected) wrong.push(got)
        }
      } finally {
        stop = true
        await writer
      }
      expect(commits).toBeGreaterThanOrEqual(COMMITS) // the writer really ran alongside the reads
      return { wrong, reads, commits }
    }

    const ship = async (run: (sql: string, params?: unknown[]) => Promise<unknown>, k: number) => {
      await run(`UPDATE ${t.q(stock)} SET qty = qty + ${k} WHERE id = 1`)
      await run(`UPDATE ${t.q(lines)} SET open_qty = open_qty + ${k} WHERE id = 1`)
    }

    const cases: Array<[string, SqlReaderOptions]> = [
      ['default options', {}],
      // What a single-session database always did: one source after another.
      ['sources read one after another (concurrency: 1)', { concurrency: 1 }],
    ]
    for (const [label, options] of cases) {
      it(`a transaction moving quantity between two sources is read whole (${label})`, async () => {
        const reader = sqlReader(t.db, schema, options)
        const { wrong } = await race(ship, async () => closingOf((await reader.read(['X'])).get('X')!), 90)
        expect(wrong).toEqual([])
      })
    }

    it('a call larger than batchSize is one snapshot across its batches', async () => {
      // Each product is its own batch; the writer moves 10 units of stock from X to Y and back.
      const transfer = async (run: (sql: string, params?: unknown[]) => Promise<unknown>, k: number) => {
        await run(`UPDATE ${t.q(stock)} SET qty = qty + ${k} WHERE id = 1`)
        await run(`UPDATE ${t.q(stock)} SET qty = qty - ${k} WHERE id = 2`)
      }
      // A connection without snapshot() (the ORM adapters' SqlDb) reads the whole call in one statement instead.
      const withoutSnapshot: SqlDb = { ...t.db, snapshot: undefined }
      const runs: Array<[SqlDb, SqlReaderOptions]> = [
        [t.db, { batchSize: 1 }],
        [t.db, { batchSize: 1, concurrency: 1 }],
        [withoutSnapshot, { batchSize: 1 }],
      ]
      for (const [db, options] of runs) {
        const reader = sqlReader(db, schema, options)
        const { wrong } = await race(
          transfer,
          async () => {
            const got = await reader.read(['X', 'Y'])
            return closingOf(got.get('X')!) + closingOf(got.get('Y')!)
          },
          180,
        )
        expect(wrong).toEqual([])
      }
    })
  })
}
