export { sleep, until } from '../../../test-support/wait.js'

import { PGlite } from '@electric-sql/pglite'
import pg from 'pg'
import {
  createStockCache,
  type SourceReader,
  type StockCache,
  type StockCacheOptions,
  type StockSchema,
} from 'stockcast'
import type { CaptureWriter, ChangeCaptureHarness } from 'stockcast/conformance'
import type { OutboxListener, SqlChangeCapture, SqlChangeCaptureOptions } from '../src/capture/types.js'
import { fromPGlite, fromPg, type SqlDb, sqlChangeCapture, sqlReader } from '../src/index.js'
import { PG_URL, uniquePrefix } from './services.js'

/** A database to test on: a pool on a PostgreSQL schema of its own, or a fresh in-memory PGlite. */
export interface TestDb {
  readonly kind: 'postgres' | 'pglite'
  readonly db: SqlDb
  /** Raw SQL outside the adapter (what "any writer" does). */
  sql(text: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>
  /** The pool (PostgreSQL only). */
  readonly pool?: pg.Pool
  /** The PostgreSQL schema the tables live in (search_path of every pool connection). */
  readonly schemaName: string
  close(): Promise<void>
}

/**
 * A pool (like `pgPool()`) whose connections all use a new schema, dropped by close: parallel runs never collide.
 * `onClient` sees every new connection.
 */
export async function pgTestDb(max = 10, onClient?: (client: pg.PoolClient) => void): Promise<TestDb> {
  const schemaName = uniquePrefix('sc_test').toLowerCase()
  const admin = new pg.Client({ connectionString: PG_URL })
  await admin.connect()
  await admin.query(`CREATE SCHEMA "${schemaName}"`)
  await admin.end()
  const pool = poolOn(schemaName, max)
  if (onClient) pool.on('connect', onClient)
  return {
    kind: 'postgres',
    db: fromPg(pool),
    pool,
    schemaName,
    sql: async (text, params) => (await pool.query(text, params)).rows,
    async close() {
      await pool.query(`DROP SCHEMA IF EXISTS "${schemaName}" CASCADE`)
      await pool.end()
    },
  }
}

/** Another pool on the same schema (writers apart from the cache's connections). */
export function poolOn(schemaName: string, max: number): pg.Pool {
  return new pg.Pool({ connectionString: PG_URL, max, options: `-c search_path=${schemaName}` })
}

/** A fresh in-memory PGlite. */
export async function pgliteTestDb(): Promise<TestDb> {
  const pglite = new PGlite()
  await pglite.waitReady
  return {
    kind: 'pglite',
    db: fromPGlite(pglite),
    schemaName: 'public',
    sql: async (text, params) => (await pglite.query<Record<string, unknown>>(text, params)).rows,
    close: () => pglite.close(),
  }
}

/** The conformance tables (`changeCaptureSchema`). */
export async function createCcTables(t: TestDb): Promise<void> {
  await t.sql(`CREATE TABLE cc_movements (id serial PRIMARY KEY, sku text, qty numeric(18,3) NOT NULL, moved_on date)`)
  await t.sql(`CREATE TABLE cc_supply (id serial PRIMARY KEY, sku text, qty numeric(18,3) NOT NULL, due date NOT NULL)`)
  await t.sql(
    `CREATE TABLE cc_demand (id serial PRIMARY KEY, sku text, qty numeric(18,3) NOT NULL, ship date NOT NULL)`,
  )
}

/** Plain SQL writes through `run` (a pool, a PGlite, or one transaction's connection). */
export function sqlWriter(run: (text: string, params?: unknown[]) => Promise<unknown[]>): CaptureWriter {
  return {
    async insert(table, row) {
      const cols = Object.keys(row)
      const rows = (await run(
        `INSERT INTO "${table}" (${cols.map((c) => `"${c}"`).join(', ')}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING id`,
        cols.map((c) => row[c]),
      )) as Array<{ id: number }>
      return Number(rows[0]!.id)
    },
    async update(table, id, patch) {
      const cols = Object.keys(patch)
      await run(
        `UPDATE "${table}" SET ${cols.map((c, i) => `"${c}" = $${i + 1}`).join(', ')} WHERE id = $${cols.length + 1}`,
        [...cols.map((c) => patch[c]), id],
      )
    },
    async delete(table, id) {
      await run(`DELETE FROM "${table}" WHERE id = $1`, [id])
    },
  }
}

export interface CaptureSetup {
  capture: SqlChangeCapture
  cache: StockCache
  listener: OutboxListener
  /** Stop the listener and close the cache. */
  close(): Promise<void>
}

/** Install the capture, build a cache on the SQL reader (strong reads through the outbox) and start a listener. */
export async function startCapture(
  t: TestDb,
  schema: StockSchema,
  options: {
    capture?: SqlChangeCaptureOptions
    cache?: Partial<StockCacheOptions>
    reader?: (reader: SourceReader) => SourceReader
  } = {},
): Promise<CaptureSetup> {
  const capture = sqlChangeCapture(t.db, schema, { prefix: uniquePrefix('sc'), ...options.capture })
  await capture.install()
  const base = sqlReader(t.db, schema)
  const cache = createStockCache({
    schema,
    reader: options.reader ? options.reader(base) : base,
    pendingMarks: capture,
    debounceMs: 5,
    ...options.cache,
  })
  const listener = await capture.listen(cache)
  return {
    capture,
    cache,
    listener,
    async close() {
      await listener.stop()
      await cache.close()
    },
  }
}

/** The conformance harness: writes with plain SQL (any writer), settles by draining the listener. */
export async function captureHarness(make: () => Promise<TestDb>, schema: StockSchema): Promise<ChangeCaptureHarness> {
  const t = await make()
  await createCcTables(t)
  const setup = await startCapture(t, schema)
  const writer = sqlWriter((text, params) => t.sql(text, params))
  return {
    cache: setup.cache,
    ...writer,
    async transaction(fn) {
      await t.db.transaction(async (tx) => {
        await fn(sqlWriter((text, params) => tx.query(text, params)))
      })
    },
    settle: () => setup.listener.drain(),
    async close() {
      await setup.close()
      await setup.capture.uninstall()
      await t.close()
    },
  }
}

/** Rows in the outbox of a capture (by its default name `<prefix>_outbox`). */
export async function outboxCount(t: TestDb, prefix: string): Promise<number> {
  const rows = await t.sql(`SELECT count(*)::int AS n FROM "${prefix}_outbox"`)
  return Number(rows[0]!.n)
}

/** A reader that stalls on command (a chaos wrapper around the real one, not a mock). */
export interface StallingReader extends SourceReader {
  /** From now on, reads wait until `release()`. */
  stall(): void
  release(): void
  /** Resolves when a read is waiting. */
  readonly stalled: Promise<void>
}

/** With `only`, only reads that include that product stall. */
export function stallingReader(base: SourceReader, only?: string): StallingReader {
  let gate: Promise<void> | undefined
  let open: (() => void) | undefined
  let entered: () => void = () => {}
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
      open?.()
    },
    async read(products, options) {
      if (gate !== undefined && (only === undefined || products.includes(only))) {
        entered()
        await gate
      }
      return base.read(products, options)
    },
    products: base.products ? () => base.products!() : undefined,
  }
}

/**
 * A reader that returns a bad quantity for the products in `poisoned` (a chaos wrapper around the real one): their
 * projection fails, each on its own, as bad data in a source row would.
 */
export function poisoningReader(base: SourceReader, poisoned: Set<string>): SourceReader & { poisonedReads: number } {
  const reader = {
    poisonedReads: 0,
    async read(products: readonly string[], options?: Parameters<SourceReader['read']>[1]) {
      const out = await base.read(products, options)
      for (const p of products) {
        if (!poisoned.has(p)) continue
        reader.poisonedReads++
        out.set(p, { onHand: [{ quantity: 'not a number', source: 'cc_movements' }], supply: [], demand: [] })
      }
      return out
    },
  }
  return reader
}
