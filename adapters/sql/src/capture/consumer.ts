import {
  ClosedError,
  ConfigError,
  InvalidInputError,
  KEY_SEPARATOR,
  type StockCache,
  StockcastError,
  type StockSchema,
  WaitTimeoutError,
} from 'stockcast'
import type { SqlDb, SqlDialect } from '../types.js'
import type { ListenerStatus, OutboxListener, SqlChangeCaptureOptions } from './types.js'

/** One outbox row: a product changed by a statement on `table` (null: unknown), `id` is the mark's version. */
export interface OutboxRow {
  id: number
  product: string
  table: string | null
}

/**
 * What a SQL dialect supplies to the shared outbox consumer. `sqlOutboxQueries` implements the SQL members for
 * PostgreSQL and MySQL/MariaDB; a dialect adds its wake-up (`subscribe`) and the age query.
 */
export interface OutboxDialect {
  /** Oldest rows first, at most `limit`, locked `FOR UPDATE SKIP LOCKED` when `tx` is a transaction; none of the `exclude` ids. */
  claim(tx: SqlDb, limit: number, exclude: readonly number[]): Promise<OutboxRow[]>
  /** Delete these rows (ids that are gone already are ignored). */
  delete(tx: SqlDb, ids: readonly number[]): Promise<void>
  /** Make these rows name no table (whoever re-marks them re-reads every source). */
  widen(tx: SqlDb, ids: readonly number[]): Promise<void>
  /** Age in ms of the oldest row by the database clock (0 when empty). */
  oldestAgeMs(db: SqlDb): Promise<number>
  /** For each of these products with rows, the highest id. */
  pending(db: SqlDb, products: readonly string[]): Promise<Map<string, number>>
  /** The highest id now in the outbox (0 when empty). */
  maxId(db: SqlDb): Promise<number>
  /** Whether any row with `id <= upTo` is still in the outbox. */
  remaining(db: SqlDb, upTo: number): Promise<boolean>
  /**
   * Call `wake` when rows may have arrived (PostgreSQL LISTEN, or a poll timer) and `onReconnect` after a lost
   * wake-up connection came back. Resolves to the function that stops it.
   */
  subscribe(db: SqlDb, wake: () => void, onReconnect: () => void): Promise<() => Promise<void>>
  /**
   * Keep the claim transaction open while the cache recomputes (rows stay locked, other consumers skip them, a
   * consumer that dies releases them). False for a single-session database (PGlite), where an open transaction
   * would block the reader: rows are then read, recomputed and deleted without a lock. @default true
   */
  readonly lockWhileProcessing?: boolean
}

/** Options of `startListener` (resolved from `SqlChangeCaptureOptions`). */
export interface OutboxListenerOptions {
  /** Rows claimed per batch. @default 1000 */
  batchSize?: number
  /** A catch-up scan runs this often even without a wake-up, ms. @default 5000 */
  scanMs?: number
  /** First delay before a failed batch, or a product whose recompute failed, is tried again (doubles). @default 200 */
  retryMs?: number
  /** Longest retry delay, ms. @default 30_000 */
  maxRetryMs?: number
}

/** Validated `SqlChangeCaptureOptions` (shared by the PostgreSQL and MySQL captures). */
export interface ResolvedCaptureOptions {
  prefix: string
  /** Outbox table as given (optionally schema-qualified). */
  outbox: string
  batchSize: number
  pollMs: number
  scanMs: number
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/
const QUALIFIED = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/
const KNOWN = new Set(['outbox', 'prefix', 'batchSize', 'pollMs', 'scanMs'])

function intOption(value: unknown, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`sqlChangeCapture: ${name} must be an integer from ${min} to ${max}, got ${String(value)}`, {
      option: name,
    })
  }
  return value
}

/**
 * Check every option of `sqlChangeCapture`; a bad one is a `ConfigError` naming it. The outbox defaults to
 * `<prefix>_outbox` (`stockcast_outbox` with the default prefix).
 */
/** The schema a capture is built for, checked once for both dialects. */
export function assertCaptureSchema(schema: StockSchema): void {
  if (!schema || !Array.isArray(schema.sources) || !Array.isArray(schema.related)) {
    throw new ConfigError('sqlChangeCapture: schema must come from defineStockSchema(...)', { option: 'schema' })
  }
}

export function resolveCaptureOptions(options: SqlChangeCaptureOptions = {}): ResolvedCaptureOptions {
  if (options === null || typeof options !== 'object')
    throw new ConfigError('sqlChangeCapture: options must be an object')
  for (const k of Object.keys(options)) {
    if (!KNOWN.has(k)) throw new ConfigError(`sqlChangeCapture: unknown option "${k}"`, { option: k })
  }
  const prefix = options.prefix ?? 'stockcast'
  // Names built from the prefix (`<prefix>_capture_trunc`, `<prefix>_outbox`) must fit in 63 characters.
  if (typeof prefix !== 'string' || !IDENT.test(prefix) || prefix.length > 40) {
    throw new ConfigError(
      `sqlChangeCapture: prefix must be an identifier ([A-Za-z_][A-Za-z0-9_]*) of at most 40 characters, got ${JSON.stringify(prefix)}`,
      { option: 'prefix' },
    )
  }
  const outbox = options.outbox ?? `${prefix}_outbox`
  if (typeof outbox !== 'string' || !QUALIFIED.test(outbox) || outbox.split('.').some((part) => part.length > 50)) {
    throw new ConfigError(
      `sqlChangeCapture: outbox must be a table name like "stockcast_outbox" or "ops.stockcast_outbox" (parts of at most 50 characters), got ${JSON.stringify(outbox)}`,
      { option: 'outbox' },
    )
  }
  return {
    prefix,
    outbox,
    batchSize: intOption(options.batchSize, 'batchSize', 1, 100_000, 1000),
    pollMs: intOption(options.pollMs, 'pollMs', 1, 3_600_000, 100),
    scanMs: intOption(options.scanMs, 'scanMs', 1, 3_600_000, 5000),
  }
}

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v))

/**
 * The SQL members of `OutboxDialect`, the same for PostgreSQL and MySQL/MariaDB apart from placeholders.
 * `outbox` is the quoted table name; its columns are `id`, `product`, `source_table`, `created_at`.
 */
export function sqlOutboxQueries(
  dialect: SqlDialect,
  outbox: string,
): Pick<OutboxDialect, 'claim' | 'delete' | 'widen' | 'pending' | 'maxId' | 'remaining'> {
  const pg = dialect === 'postgres'
  const list = (values: readonly unknown[], start: number): string =>
    values.map((_, i) => (pg ? `$${start + i}` : '?')).join(', ')
  return {
    async claim(tx, limit, exclude) {
      const where = exclude.length === 0 ? '' : ` WHERE id NOT IN (${list(exclude, 2)})`
      const rows = await tx.query<{ id: unknown; product: string; source_table: string | null }>(
        `SELECT id, product, source_table FROM ${outbox}${where} ORDER BY id LIMIT ${pg ? '$1' : '?'} FOR UPDATE SKIP LOCKED`,
        [limit, ...exclude],
      )
      return rows.map((r) => ({ id: num(r.id), product: String(r.product), table: r.source_table ?? null }))
    },
    async delete(tx, ids) {
      // Bounded statements: a batch is at most batchSize rows, chunked anyway for MySQL's placeholder limit.
      for (let i = 0; i < ids.length; i += 5000) {
        const chunk = ids.slice(i, i + 5000)
        if (pg) await tx.execute(`DELETE FROM ${outbox} WHERE id = ANY($1::bigint[])`, [chunk])
        else await tx.execute(`DELETE FROM ${outbox} WHERE id IN (${list(chunk, 1)})`, chunk)
      }
    },
    async widen(tx, ids) {
      if (ids.length === 0) return
      if (pg) await tx.execute(`UPDATE ${outbox} SET source_table = NULL WHERE id = ANY($1::bigint[])`, [ids])
      else await tx.execute(`UPDATE ${outbox} SET source_table = NULL WHERE id IN (${list(ids, 1)})`, ids)
    },
    async pending(db, products) {
      const out = new Map<string, number>()
      if (products.length === 0) return out
      const rows = pg
        ? await db.query<{ product: string; v: unknown }>(
            `SELECT product, max(id) AS v FROM ${outbox} WHERE product = ANY($1::text[]) GROUP BY product`,
            [products],
          )
        : await db.query<{ product: string; v: unknown }>(
            `SELECT product, max(id) AS v FROM ${outbox} WHERE product IN (${list(products, 1)}) GROUP BY product`,
            products,
          )
      for (const r of rows) out.set(String(r.product), num(r.v))
      return out
    },
    async maxId(db) {
      const rows = await db.query<{ v: unknown }>(`SELECT max(id) AS v FROM ${outbox}`)
      return rows[0]?.v == null ? 0 : num(rows[0].v)
    },
    async remaining(db, upTo) {
      const rows = await db.query(`SELECT 1 AS x FROM ${outbox} WHERE id <= ${pg ? '$1' : '?'} LIMIT 1`, [upTo])
      return rows.length > 0
    },
  }
}

/** A running consumer, plus the hooks its capture uses. */
export interface OutboxConsumer extends OutboxListener {
  /** Scan now; `retryNow` also forgets the retry delays of held products (after a bulk import settled). */
  wake(retryNow?: boolean): void
  /** Scan now and resolve when the scan is over (rows of failed or deferred products may remain). */
  catchUp(): Promise<void>
  /** The cache it marks. */
  readonly cache: StockCache
}

interface Cooling {
  /** Not claimed again before this time (ms). */
  until: number
  attempt: number
  /** The row kept for it, which the cache has marked (later rows are new writes, not marked yet). */
  heldId: number
  /** Held because the shared store lacks the new value: re-mark it (the recompute writes the store again). */
  unstored: boolean
}

interface Outcome {
  claimed: number
  deleted: number
  progressed: boolean
}

/** Products whose rows are excluded from a claim at once (beyond that, the consumer waits as a whole). */
const MAX_EXCLUDED = 1000

/**
 * Consume an outbox into a cache, for any dialect: claim up to `batchSize` rows, mark their products
 * (`version` = the highest row id, `reason.tables` = the changed tables), `flush()`, then delete the rows of every
 * product that was recomputed, in the claim's transaction. Rows of products whose recompute failed or was
 * deferred (a `disableCacheTemporarily` block) stay, folded to one row per product, and are retried after a
 * growing delay; other products go on meanwhile.
 *
 * Scans run at start, on every wake-up, after a reconnect and every `scanMs`. One batch runs at a time per
 * consumer; several consumers (processes) can share an outbox. Errors never escape: they are kept in
 * `status().lastError` and the batch is retried after a growing delay.
 *
 * @example
 * ```ts
 * // A dialect: the shared SQL plus its wake-up and age query (see postgres.ts, mysql.ts).
 * const dialect: OutboxDialect = {
 *   ...sqlOutboxQueries('mysql', '`stockcast_outbox`'),
 *   oldestAgeMs: async (db) => ...,
 *   subscribe: async (_db, wake) => { const t = setInterval(wake, 100); return async () => clearInterval(t) },
 * }
 * const listener = await startListener(db, dialect, cache, { batchSize: 500 })
 * await listener.drain()
 * await listener.stop()
 * ```
 */
export async function startListener(
  db: SqlDb,
  dialect: OutboxDialect,
  cache: StockCache,
  options: OutboxListenerOptions = {},
): Promise<OutboxConsumer> {
  const consumer = new Consumer(db, dialect, cache, {
    batchSize: options.batchSize ?? 1000,
    scanMs: options.scanMs ?? 5000,
    retryMs: options.retryMs ?? 200,
    maxRetryMs: options.maxRetryMs ?? 30_000,
  })
  await consumer.start()
  return consumer
}

/**
 * The `OutboxListener` a capture's `listen()` hands out for a consumer, kept in the capture's set of running
 * consumers (which `bulkImport` wakes) until it is stopped.
 */
export function trackedListener(consumer: OutboxConsumer, running: Set<OutboxConsumer>): OutboxListener {
  running.add(consumer)
  return {
    status: () => consumer.status(),
    drain: (timeoutMs) => consumer.drain(timeoutMs),
    async stop() {
      running.delete(consumer)
      await consumer.stop()
    },
  }
}

class Consumer implements OutboxConsumer {
  readonly #db: SqlDb
  readonly #dialect: OutboxDialect
  readonly #cache: StockCache
  readonly #o: Required<OutboxListenerOptions>
  readonly #lock: boolean
  #running = false
  #stopping = false
  /** The loop currently running, if any. */
  #loop: Promise<void> | undefined
  #again = false
  /** No batch before this time (a failed batch's retry delay). */
  #blockedUntil = 0
  #errorAttempt = 0
  #wakeTimer: ReturnType<typeof setTimeout> | undefined
  #wakeAt = 0
  #scanTimer: ReturnType<typeof setInterval> | undefined
  #unsubscribe: (() => Promise<void>) | undefined
  readonly #cooling = new Map<string, Cooling>()
  readonly #status: Omit<ListenerStatus, 'running'> = {
    processed: 0,
    batches: 0,
    oldestUnprocessedMs: 0,
    reconnects: 0,
    lastError: null,
  }

  constructor(db: SqlDb, dialect: OutboxDialect, cache: StockCache, options: Required<OutboxListenerOptions>) {
    this.#db = db
    this.#dialect = dialect
    this.#cache = cache
    this.#o = options
    this.#lock = dialect.lockWhileProcessing !== false
  }

  async start(): Promise<void> {
    // Subscribe first, then scan: nothing committed between the two is missed.
    this.#unsubscribe = await this.#dialect.subscribe(
      this.#db,
      () => this.wake(),
      () => {
        this.#status.reconnects++
        this.wake()
      },
    )
    this.#running = true
    this.#scanTimer = setInterval(() => this.wake(), this.#o.scanMs)
    this.#scanTimer.unref?.()
    this.wake()
  }

  get cache(): StockCache {
    return this.#cache
  }

  async catchUp(): Promise<void> {
    this.wake()
    while (this.#loop !== undefined) await this.#loop
  }

  status(): ListenerStatus {
    return { running: this.#running, ...this.#status }
  }

  wake(retryNow = false): void {
    if (!this.#running) return
    if (retryNow) {
      const now = Date.now()
      for (const c of this.#cooling.values()) c.until = Math.min(c.until, now)
      this.#blockedUntil = 0
    }
    this.#again = true
    this.#kick()
  }

  /** Start the loop unless it runs or waits for a retry delay. */
  #kick(): void {
    if (!this.#running || this.#loop !== undefined) return
    const wait = this.#blockedUntil - Date.now()
    if (wait > 0) {
      this.#timer(wait)
      return
    }
    this.#loop = this.#run().finally(() => {
      this.#loop = undefined
      // A wake-up that arrived while the loop was finishing (its last query) is not lost.
      if (this.#again) this.#kick()
    })
  }

  async drain(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const upTo = await this.#dialect.maxId(this.#db)
    if (upTo === 0) return
    let pause = 5
    for (;;) {
      this.wake()
      if (this.#loop !== undefined) await this.#loop
      if (!(await this.#dialect.remaining(this.#db, upTo))) return
      if (Date.now() >= deadline) {
        const why = this.#status.lastError === null ? '' : ` (last error: ${this.#status.lastError.message})`
        throw new WaitTimeoutError(`drain: outbox rows up to id ${upTo} still unprocessed after ${timeoutMs} ms${why}`)
      }
      // Held rows (a failed or deferred product) or another consumer's batch: look again shortly.
      await new Promise((r) => setTimeout(r, pause))
      pause = Math.min(pause * 2, 100)
    }
  }

  async stop(): Promise<void> {
    if (this.#stopping) {
      await this.#loop
      return
    }
    this.#stopping = true
    await this.#halt()
    // The batch in progress finishes (its rows are deleted or released); nothing new starts.
    await this.#loop
  }

  /** Stop timers and the wake-up subscription. */
  async #halt(): Promise<void> {
    this.#running = false
    if (this.#scanTimer !== undefined) clearInterval(this.#scanTimer)
    if (this.#wakeTimer !== undefined) clearTimeout(this.#wakeTimer)
    this.#scanTimer = undefined
    this.#wakeTimer = undefined
    const unsubscribe = this.#unsubscribe
    this.#unsubscribe = undefined
    await unsubscribe?.().catch((e: unknown) => this.#fail(e))
  }

  /** Wake up in `ms` (the earliest of the requested times wins). */
  #timer(ms: number): void {
    if (!this.#running) return
    const at = Date.now() + ms
    if (this.#wakeTimer !== undefined) {
      if (this.#wakeAt <= at) return
      clearTimeout(this.#wakeTimer)
    }
    this.#wakeAt = at
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = undefined
      this.wake()
    }, ms)
    this.#wakeTimer.unref?.()
  }

  #fail(cause: unknown): void {
    this.#status.lastError =
      cause instanceof Error ? cause : new StockcastError(`outbox listener: ${String(cause)}`, { cause })
  }

  async #run(): Promise<void> {
    try {
      while (this.#again && this.#running) {
        this.#again = false
        let more: boolean
        try {
          more = await this.#batch()
          this.#errorAttempt = 0
        } catch (cause) {
          this.#fail(cause)
          if (cause instanceof ClosedError) {
            // The cache was closed under us: stop consuming (the rows stay for other consumers).
            await this.#halt()
            return
          }
          const delay = Math.min(this.#o.retryMs * 2 ** this.#errorAttempt++, this.#o.maxRetryMs)
          this.#blockedUntil = Date.now() + delay
          this.#timer(delay)
          return
        }
        if (more) this.#again = true
      }
      if (this.#running) {
        this.#status.oldestUnprocessedMs = await this.#dialect.oldestAgeMs(this.#db)
        // Held products come back when their delay is over.
        const now = Date.now()
        let next = Number.POSITIVE_INFINITY
        for (const c of this.#cooling.values()) if (c.until > now) next = Math.min(next, c.until)
        if (next !== Number.POSITIVE_INFINITY) this.#timer(next - now)
      }
    } catch (cause) {
      this.#fail(cause)
    }
  }

  /** One batch. Resolves to true when the outbox may hold more rows to process now. */
  async #batch(): Promise<boolean> {
    const now = Date.now()
    // Held rows wait for their delay; newer rows of the same products are new writes and are claimed (in a bulk
    // block that only adds a coalesced mark, so the block's one recompute covers the whole import).
    const exclude: number[] = []
    for (const c of this.#cooling.values()) if (c.until > now && exclude.length < MAX_EXCLUDED) exclude.push(c.heldId)
    let outcome: Outcome = { claimed: 0, deleted: 0, progressed: false }
    if (this.#lock) {
      await this.#db.transaction(async (tx) => {
        const rows = await this.#dialect.claim(tx, this.#o.batchSize, exclude)
        outcome = await this.#process(tx, rows)
      })
    } else {
      const rows = await this.#dialect.claim(this.#db, this.#o.batchSize, exclude)
      outcome = await this.#process(this.#db, rows)
    }
    if (outcome.claimed < this.#o.batchSize) {
      // Everything claimable was seen: a held product due by now whose row was not among it was processed
      // elsewhere (another consumer): forget it.
      for (const [p, c] of this.#cooling) if (c.until <= now) this.#cooling.delete(p)
    }
    if (outcome.claimed > 0) this.#status.batches++
    this.#status.processed += outcome.deleted
    // A full batch that made progress (rows deleted, or products newly held and so excluded from the next claim):
    // there may be more. A batch of rows held already: wait for their delay.
    return outcome.claimed === this.#o.batchSize && outcome.progressed
  }

  async #process(tx: SqlDb, rows: readonly OutboxRow[]): Promise<Outcome> {
    if (rows.length === 0) return { claimed: 0, deleted: 0, progressed: false }
    const byProduct = new Map<string, { ids: number[]; tables: Set<string> | null; max: number }>()
    const invalid: number[] = []
    for (const r of rows) {
      if (r.product === '' || r.product.includes(KEY_SEPARATOR)) {
        invalid.push(r.id)
        continue
      }
      let g = byProduct.get(r.product)
      if (g === undefined) {
        g = { ids: [], tables: new Set(), max: 0 }
        byProduct.set(r.product, g)
      }
      g.ids.push(r.id)
      if (r.id > g.max) g.max = r.id
      if (r.table === null) g.tables = null
      else g.tables?.add(r.table)
    }
    if (invalid.length > 0) {
      this.#fail(
        new InvalidInputError(
          `outbox listener: ${invalid.length} row(s) name a product id the cache cannot hold (empty or with U+001F); dropped`,
        ),
      )
    }
    // A row held back earlier was marked then; if the cache has recomputed that product since (it retries failed
    // products and recomputes deferred ones when the bulk block settles), the row goes without another recompute.
    // `peek` answers only a fresh entry of a product that is not dirty. Other rows of it are new writes: marked.
    const done: number[] = [...invalid]
    const toMark = new Map<string, { ids: number[]; tables: Set<string> | null; max: number }>()
    for (const [p, g] of byProduct) {
      const c = this.#cooling.get(p)
      if (c !== undefined && !c.unstored && g.ids.includes(c.heldId) && this.#cache.peek(p) !== undefined) {
        this.#cooling.delete(p)
        done.push(c.heldId)
        g.ids = g.ids.filter((id) => id !== c.heldId)
        if (g.ids.length === 0) continue
      }
      toMark.set(p, g)
    }
    const held: Array<{ product: string; keep: number; drop: number[]; deferred: boolean; unstored: boolean }> = []
    if (toMark.size > 0) {
      // Products changed on the same tables share one mark (one reason); each mark carries its highest row id.
      const marks = new Map<string, { products: string[]; tables: string[] | null; version: number }>()
      for (const [p, g] of toMark) {
        const tables = g.tables === null ? null : [...g.tables].sort()
        const key = tables === null ? '\u0000' : tables.join('\u0000')
        let m = marks.get(key)
        if (m === undefined) {
          m = { products: [], tables, version: 0 }
          marks.set(key, m)
        }
        m.products.push(p)
        if (g.max > m.version) m.version = g.max
      }
      for (const m of marks.values()) {
        this.#cache.markDirty(m.products, {
          version: m.version,
          ...(m.tables === null ? {} : { reason: { tables: m.tables } }),
        })
      }
      const report = await this.#cache.flush()
      const failed = new Set(report.failed)
      const deferred = new Set(report.deferred)
      // Recomputed, but the shared store did not take the value: other instances' strong reads compare with the
      // store, so the row stays (it keeps telling them) until a recompute is stored.
      const unstored = new Set(report.unstored)
      for (const [p, g] of toMark) {
        if (failed.has(p) || deferred.has(p) || unstored.has(p)) {
          // Keep one row per product (the oldest: its age is what status() reports; an earlier held row when
          // there is one); the others say nothing more, but their tables may differ: the kept row is widened to
          // name no table, so whoever re-marks it (after a crash, another instance) re-reads every source.
          const sorted = [...g.ids].sort((a, b) => a - b)
          const earlier = this.#cooling.get(p)?.heldId
          const keep = earlier !== undefined && earlier < sorted[0]! ? earlier : sorted[0]!
          held.push({
            product: p,
            keep,
            drop: sorted.filter((id) => id !== keep),
            deferred: !failed.has(p) && !unstored.has(p),
            unstored: !failed.has(p) && unstored.has(p),
          })
        } else {
          // Recomputed after every mark of it, the earlier held row's included: that row can go too.
          const earlier = this.#cooling.get(p)?.heldId
          if (earlier !== undefined && !g.ids.includes(earlier)) done.push(earlier)
          this.#cooling.delete(p)
          done.push(...g.ids)
        }
      }
    }
    const drop = held.flatMap((h) => h.drop)
    if (done.length + drop.length > 0) await this.#dialect.delete(tx, [...done, ...drop])
    const widened = held.filter((h) => h.drop.length > 0).map((h) => h.keep)
    if (widened.length > 0) await this.#dialect.widen(tx, widened)
    const now = Date.now()
    let newlyHeld = 0
    for (const h of held) {
      const previous = this.#cooling.get(h.product)
      if (previous === undefined) newlyHeld++
      const attempt = (previous?.attempt ?? 0) + 1
      // A deferred product waits for the bulk block to settle (a short delay; bulkImport wakes us anyway).
      const cap = h.deferred ? 1000 : this.#o.maxRetryMs
      this.#cooling.set(h.product, {
        until: now + Math.min(this.#o.retryMs * 2 ** (attempt - 1), cap),
        attempt,
        heldId: h.keep,
        unstored: h.unstored,
      })
    }
    return { claimed: rows.length, deleted: done.length, progressed: done.length > 0 || newlyHeld > 0 }
  }
}
