import { randomBytes } from 'node:crypto'
import {
  backoffDelay,
  type Clock,
  ClosedError,
  ConfigError,
  defaultTimers,
  every,
  InvalidInputError,
  KEY_SEPARATOR,
  type MarkSource,
  type StockCache,
  StockcastError,
  type StockSchema,
  type Timers,
  WaitTimeoutError,
} from 'stockcast'
import type { SqlDb, SqlDialect } from '../types.js'
import type { ListenerStatus, OutboxListener, SqlChangeCaptureOptions } from './types.js'

/** One leased outbox row: `product` changed, `id` is the mark's version. */
export interface OutboxRow {
  id: number
  product: string
}

/** What a claim leased, and (when the dialect measures it in the same statement) the outbox's oldest row age. */
export interface OutboxClaim {
  rows: OutboxRow[]
  /**
   * Age in ms of the oldest row in the outbox (leased or not) when the claim ran, by the database clock. Absent when
   * the dialect does not measure it in the claim, or when nothing was claimed: the consumer then asks `oldestAgeMs`.
   */
  oldestAgeMs?: number
}

/**
 * What a SQL dialect supplies to the shared outbox consumer. `sqlOutboxQueries` implements the members that are the
 * same SQL for PostgreSQL and MySQL/MariaDB; each dialect adds its claim, its wake-up (`subscribe`) and the age query.
 *
 * Rows are leased, never locked across work: a claim sets `lease_owner`/`lease_until` in one short transaction that
 * commits at once, so no transaction stays open while the cache recomputes (DDL such as `uninstall()` never queues
 * behind a consumer, and writers never wait for one). A lease that ends makes its rows claimable again: the rows of
 * a consumer that died come back to the others.
 */
export interface OutboxDialect {
  /**
   * Lease to `owner`, for `leaseMs`, every claimable row (no lease, or an expired one) of at most `limit` products:
   * the products of the oldest claimable rows, with all their claimable rows, so that the marks of one product made by
   * many statements and transactions are settled by one recompute. Only committed rows are leased.
   */
  claim(db: SqlDb, owner: string, limit: number, leaseMs: number): Promise<OutboxClaim>
  /** Delete those of these rows still leased to `owner`; resolves to the rows deleted. */
  delete(db: SqlDb, owner: string, ids: readonly number[]): Promise<number>
  /** Make the lease of those of these rows still leased to `owner` end `ms` from now (0: claimable at once). */
  hold(db: SqlDb, owner: string, ids: readonly number[], ms: number): Promise<void>
  /** Age in ms of the oldest row by the database clock (0 when empty). */
  oldestAgeMs(db: SqlDb): Promise<number>
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
   * Claimed batches that may recompute at once (claims themselves run one at a time). With one, a change committed
   * while a batch recomputes waits for that batch and then its own; with two it is claimed at once. @default 1
   */
  lanes?: number
}

/** Options of `startListener` (resolved from `SqlChangeCaptureOptions`). */
export interface OutboxListenerOptions {
  /** Products claimed per batch, each with all its claimable rows. @default 1000 */
  batchSize?: number
  /** A catch-up scan runs this often even without a wake-up, ms. @default 5000 */
  scanMs?: number
  /**
   * First delay before a failed batch, or a product whose recompute failed, is tried again (doubles per failure).
   * A product whose value the shared store did not take (another instance's write won) is retried after this
   * delay every time: that is contention, not a failure. @default 200
   */
  retryMs?: number
  /** Longest retry delay, ms. @default 30_000 */
  maxRetryMs?: number
  /** How long a claim leases its rows; a consumer that dies gives them back after this. @default 30_000 */
  leaseMs?: number
  /** Time source. @default Date */
  clock?: Clock
  /** Every timer the consumer starts. @default defaultTimers */
  timers?: Timers
}

/** Validated `SqlChangeCaptureOptions` (shared by the PostgreSQL and MySQL captures). */
export interface ResolvedCaptureOptions {
  prefix: string
  /** Outbox table as given (optionally schema-qualified). */
  outbox: string
  batchSize: number
  pollMs: number
  scanMs: number
  leaseMs: number
  clock: Clock
  timers: Timers
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/
const QUALIFIED = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/
const KNOWN = new Set(['outbox', 'prefix', 'batchSize', 'pollMs', 'scanMs', 'leaseMs', 'clock', 'timers'])
const systemClock: Clock = { now: () => Date.now() }

function intOption(value: unknown, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`sqlChangeCapture: ${name} must be an integer from ${min} to ${max}, got ${String(value)}`, {
      option: name,
    })
  }
  return value
}

/** The schema a capture is built for, checked once for both dialects. */
export function assertCaptureSchema(schema: StockSchema): void {
  if (!schema || !Array.isArray(schema.sources) || !Array.isArray(schema.related)) {
    throw new ConfigError('sqlChangeCapture: schema must come from defineStockSchema(...)', { option: 'schema' })
  }
}

/**
 * Check every option of `sqlChangeCapture`; a bad one is a `ConfigError` naming it. The outbox defaults to
 * `<prefix>_outbox` (`stockcast_outbox` with the default prefix).
 */
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
  const clock = options.clock ?? systemClock
  if (clock === null || typeof clock !== 'object' || typeof clock.now !== 'function') {
    throw new ConfigError('sqlChangeCapture: clock must be an object with now() (like Date)', { option: 'clock' })
  }
  const timers = options.timers ?? defaultTimers
  if (
    timers === null ||
    typeof timers !== 'object' ||
    typeof timers.setTimeout !== 'function' ||
    typeof timers.clearTimeout !== 'function'
  ) {
    throw new ConfigError(
      'sqlChangeCapture: timers must be an object with setTimeout(fn, ms) and clearTimeout(handle)',
      {
        option: 'timers',
      },
    )
  }
  return {
    prefix,
    outbox,
    batchSize: intOption(options.batchSize, 'batchSize', 1, 100_000, 1000),
    pollMs: intOption(options.pollMs, 'pollMs', 1, 3_600_000, 100),
    scanMs: intOption(options.scanMs, 'scanMs', 1, 3_600_000, 5000),
    leaseMs: intOption(options.leaseMs, 'leaseMs', 100, 86_400_000, 30_000),
    clock,
    timers,
  }
}

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v))

/**
 * PostgreSQL: a one-row `FROM` item that turns `synchronous_commit` off for the statement's own transaction, so the
 * outbox's bookkeeping (a claim's lease, the deletes and holds after a batch) commits without waiting for its WAL
 * flush: under a write load that wait was most of a batch's slowest round trips. It is safe because losing such a
 * commit in a server crash only makes rows claimable again, and a recompute is idempotent: a lost lease or hold
 * ends early, a lost delete leaves rows that are recomputed once more. WAL is replayed in order, so a lost
 * bookkeeping commit never outlives what was committed after it, and the shared store's values (written before the
 * deletes, with the connection's own setting) are not touched by it. `set_config(..., true)` is local to the
 * transaction: the connection's setting is back when it ends.
 */
export const UNSYNCED = `(SELECT set_config('synchronous_commit', 'off', true)) AS unsynced`

/** Ids per statement: MySQL/MariaDB placeholders, and bounded statements on PostgreSQL too. */
const CHUNK = 5000

/**
 * The members of `OutboxDialect` that are the same SQL for PostgreSQL and MySQL/MariaDB apart from placeholders and
 * time arithmetic. `outbox` is the quoted table name; its columns are `id`, `product`, `source_table`, `created_at`,
 * `lease_owner`, `lease_until`. `inTransaction` runs the writes (on MySQL/MariaDB: in READ COMMITTED, so that they
 * take no gap lock a writer's trigger insert could wait for).
 */
export function sqlOutboxQueries(
  dialect: SqlDialect,
  outbox: string,
  inTransaction: <T>(db: SqlDb, fn: (tx: SqlDb) => Promise<T>) => Promise<T> = (db, fn) => db.transaction(fn),
): Pick<OutboxDialect, 'delete' | 'hold' | 'maxId' | 'remaining'> {
  const pg = dialect === 'postgres'
  const ids = (chunk: readonly number[], start: number): string =>
    pg ? `ANY($${start}::bigint[])` : `(${chunk.map(() => '?').join(', ')})`
  const idParams = (chunk: readonly number[]): unknown[] => (pg ? [chunk] : [...chunk])
  const inIds = pg ? '= ' : 'IN '
  return {
    async delete(db, owner, list) {
      if (list.length === 0) return 0
      const statement = (tx: SqlDb, chunk: readonly number[]) =>
        tx.execute(
          `DELETE FROM ${outbox}${pg ? ` USING ${UNSYNCED}` : ''} WHERE lease_owner = ${pg ? '$1' : '?'} AND id ${inIds}${ids(chunk, 2)}`,
          [owner, ...idParams(chunk)],
        )
      // One statement on PostgreSQL needs no transaction around it (two round trips fewer per batch); more chunks,
      // and MySQL/MariaDB (READ COMMITTED, so no gap lock), run in one.
      if (pg && list.length <= CHUNK) return statement(db, list)
      return inTransaction(db, async (tx) => {
        let deleted = 0
        for (let i = 0; i < list.length; i += CHUNK) deleted += await statement(tx, list.slice(i, i + CHUNK))
        return deleted
      })
    },
    async hold(db, owner, list, ms) {
      if (list.length === 0) return
      const until = pg
        ? `clock_timestamp() + make_interval(secs => $2::float8 / 1000)`
        : 'TIMESTAMPADD(MICROSECOND, ?, NOW(3))'
      const statement = (tx: SqlDb, chunk: readonly number[]) =>
        tx.execute(
          `UPDATE ${outbox} SET lease_until = ${until}${pg ? ` FROM ${UNSYNCED}` : ''} WHERE lease_owner = ${pg ? '$1' : '?'} AND id ${inIds}${ids(chunk, 3)}`,
          pg ? [owner, ms, ...idParams(chunk)] : [ms * 1000, owner, ...idParams(chunk)],
        )
      if (pg && list.length <= CHUNK) {
        await statement(db, list)
        return
      }
      await inTransaction(db, async (tx) => {
        for (let i = 0; i < list.length; i += CHUNK) await statement(tx, list.slice(i, i + CHUNK))
      })
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
  /** Scan now. */
  wake(): void
  /** The cache it marks. */
  readonly cache: StockCache
}

/** Why rows of a product are still leased to this consumer after their batch. */
type HeldKind = 'failed' | 'deferred' | 'unstored'

interface Held {
  /**
   * The held rows by lease owner (the claim that took them). A product can have rows under several claims: rows
   * committed after a claim took its first ones are claimed by a later batch (another lane, or a retry), and each
   * claim holds its own.
   */
  leases: Map<string, number[]>
  /** The highest id the cache has been marked with for this product: rows up to it need no new mark. */
  maxId: number
  kind: HeldKind
  /** Failures in a row so far (a failed product's retry delay grows with them; lost races do not count). */
  attempt: number
  /** When the lease ends and the rows are claimable again (this consumer's clock). */
  until: number
}

/**
 * Consume an outbox into a cache, for any dialect. A batch leases the rows of up to `batchSize` products (the oldest
 * first, each with all its claimable rows), marks those products (`version` = the highest row id, no `reason`: every
 * source of a product is re-read, so a transaction whose rows span several statements is never served half-applied,
 * and a change another consumer took is never lost by merging with cached inputs), then
 * `flush({ units })` and deletes the rows of the units it reports `settled`. The rows of the other units stay leased
 * for a retry delay (failed: growing with each failure; a shared store that refused the value: `retryMs`, as a
 * growing delay there outlived the contention that caused it by up to `maxRetryMs`) or until the
 * `disableCacheTemporarily` block that deferred them has settled (`afterBulk`); other products go on meanwhile.
 *
 * The consumer is attached to the cache as a `MarkSource`: `cache.status().oldestUnprocessedMs` includes the age of
 * the oldest outbox row (measured at every batch, growing between measurements), and a `disableCacheTemporarily`
 * block asks it to `catchUp()` before the block settles.
 *
 * Scans run at start, on every wake-up, after a reconnect and every `scanMs`. Per consumer, claims run one at a time
 * in the order they mark, and up to the dialect's `lanes` claimed batches recompute at once (a wake-up while one batch
 * recomputes is claimed at once instead of after it), each deleting or holding its own rows when it is done. Several
 * consumers (processes) can share an outbox. Errors never escape: they are kept in
 * `status().lastError` and the batch is retried after a growing delay (`backoffDelay`).
 *
 * @example
 * ```ts
 * const dialect: OutboxDialect = {
 *   ...sqlOutboxQueries('postgres', '"stockcast_outbox"'),
 *   claim: ..., oldestAgeMs: ..., subscribe: ...,     // see postgres.ts, mysql.ts
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
  options: OutboxListenerOptions & { name?: string } = {},
): Promise<OutboxConsumer> {
  const consumer = new Consumer(db, dialect, cache, options.name ?? 'sql outbox', {
    batchSize: options.batchSize ?? 1000,
    scanMs: options.scanMs ?? 5000,
    retryMs: options.retryMs ?? 200,
    maxRetryMs: options.maxRetryMs ?? 30_000,
    leaseMs: options.leaseMs ?? 30_000,
    clock: options.clock ?? systemClock,
    timers: options.timers ?? defaultTimers,
  })
  await consumer.start()
  return consumer
}

class Consumer implements OutboxConsumer, MarkSource {
  readonly name: string
  readonly #db: SqlDb
  readonly #dialect: OutboxDialect
  readonly #cache: StockCache
  readonly #o: Required<OutboxListenerOptions>
  readonly #clock: Clock
  readonly #timers: Timers
  /** Lease owners of this consumer are `<id>.<claim number>`: unique per claim. */
  readonly #id = randomBytes(8).toString('hex')
  #claims = 0
  #running = false
  #stopping = false
  /** The loop currently running, if any. */
  #loop: Promise<void> | undefined
  /** Claimed batches still recomputing, deleting or holding their rows (at most the dialect's `lanes`). */
  readonly #lanes = new Set<Promise<void>>()
  /** The loop waits for a lane's end or a wake-up: this wakes it. */
  #onWake: (() => void) | undefined
  /** The first failure of a lane not yet reported by the loop. */
  #laneFailure: { cause: unknown } | undefined
  #again = false
  /** Deferred rows wait for the bulk block that deferred them: `afterBulk` asks to settle them. */
  #settleDeferred = false
  /** No batch before this time (a failed batch's retry delay). */
  #blockedUntil = 0
  #errorAttempt = 0
  #wakeTimer: unknown
  #wakeAt = 0
  #stopScan: (() => void) | undefined
  #unsubscribe: (() => Promise<void>) | undefined
  #detach: (() => void) | undefined
  /** Products whose leased rows were not settled by their batch. */
  readonly #held = new Map<string, Held>()
  /** The oldest row's age at the last measurement, and when that was (0: the outbox was empty). */
  #ageMs = 0
  #ageAt = 0
  readonly #status = { processed: 0, batches: 0, reconnects: 0, lastError: null as Error | null }

  constructor(db: SqlDb, dialect: OutboxDialect, cache: StockCache, name: string, o: Required<OutboxListenerOptions>) {
    this.#db = db
    this.#dialect = dialect
    this.#cache = cache
    this.name = name
    this.#o = o
    this.#clock = o.clock
    this.#timers = o.timers
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
    this.#detach = this.#cache.attachSource(this)
    this.#stopScan = every(this.#timers, this.#o.scanMs, () => this.wake())
    this.wake()
  }

  get cache(): StockCache {
    return this.#cache
  }

  // ---------------------------------------------------------------- MarkSource

  oldestUnprocessedMs(): number {
    // The oldest row stays until it is processed: between two measurements its age grows with the clock.
    return this.#ageMs === 0 ? 0 : this.#ageMs + Math.max(0, this.#clock.now() - this.#ageAt)
  }

  async catchUp(): Promise<void> {
    // Asked once, at the end of a bulk block: try now even during a failed batch's retry delay.
    this.#blockedUntil = 0
    this.wake()
    while (this.#loop !== undefined) await this.#loop
  }

  afterBulk(): void {
    this.#settleDeferred = true
    this.wake()
  }

  // ---------------------------------------------------------------- OutboxListener

  status(): ListenerStatus {
    const held = { failed: 0, unstored: 0, deferred: 0 }
    const now = this.#clock.now()
    for (const h of this.#held.values()) if (h.kind === 'deferred' || h.until > now) held[h.kind]++
    return { running: this.#running, ...this.#status, oldestUnprocessedMs: this.oldestUnprocessedMs(), held }
  }

  wake(): void {
    if (!this.#running) return
    this.#again = true
    this.#onWake?.()
    this.#kick()
  }

  async drain(timeoutMs = 30_000): Promise<void> {
    const deadline = this.#clock.now() + timeoutMs
    const upTo = await this.#dialect.maxId(this.#db)
    if (upTo === 0) return
    let pause = 5
    for (;;) {
      // Whoever drains wants it done now: retry failed work at once instead of waiting out its backoff (each turn;
      // a failure sets the backoff again for the background loop).
      this.#blockedUntil = 0
      await this.#retryHeldNow()
      this.wake()
      if (this.#loop !== undefined) await this.#loop
      if (!(await this.#dialect.remaining(this.#db, upTo))) return
      if (this.#clock.now() >= deadline) {
        const why = this.#status.lastError === null ? '' : ` (last error: ${this.#status.lastError.message})`
        throw new WaitTimeoutError(`drain: outbox rows up to id ${upTo} still unprocessed after ${timeoutMs} ms${why}`)
      }
      // Held rows (a failed or deferred product) or another consumer's batch: look again shortly.
      await new Promise<void>((r) => this.#timers.setTimeout(r, pause))
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
    // The batch in progress finishes (its rows are deleted or held); nothing new starts.
    await this.#loop
  }

  // ---------------------------------------------------------------- loop

  /** Start the loop unless it runs or waits for a retry delay. */
  #kick(): void {
    if (!this.#running || this.#loop !== undefined) return
    const wait = this.#blockedUntil - this.#clock.now()
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

  /** Stop timers, the wake-up subscription and the cache's view of this source. */
  async #halt(): Promise<void> {
    this.#running = false
    this.#stopScan?.()
    this.#stopScan = undefined
    if (this.#wakeTimer !== undefined) this.#timers.clearTimeout(this.#wakeTimer)
    this.#wakeTimer = undefined
    this.#detach?.()
    this.#detach = undefined
    const unsubscribe = this.#unsubscribe
    this.#unsubscribe = undefined
    await unsubscribe?.().catch((e: unknown) => this.#fail(e))
  }

  /** Wake up in `ms` (the earliest of the requested times wins). */
  #timer(ms: number): void {
    if (!this.#running) return
    const at = this.#clock.now() + ms
    if (this.#wakeTimer !== undefined) {
      if (this.#wakeAt <= at) return
      this.#timers.clearTimeout(this.#wakeTimer)
    }
    this.#wakeAt = at
    this.#wakeTimer = this.#timers.setTimeout(() => {
      this.#wakeTimer = undefined
      this.wake()
    }, ms)
  }

  #fail(cause: unknown): void {
    this.#status.lastError =
      cause instanceof Error ? cause : new StockcastError(`outbox listener: ${String(cause)}`, { cause })
  }

  async #measureAge(): Promise<void> {
    this.#ageMs = await this.#dialect.oldestAgeMs(this.#db)
    this.#ageAt = this.#clock.now()
  }

  async #run(): Promise<void> {
    try {
      while (this.#again && this.#running) {
        this.#again = false
        let more: boolean
        try {
          if (this.#settleDeferred) {
            this.#settleDeferred = false
            // Every lane's holds first: releasing held rows while their hold is still on its way would undo it.
            await this.#idle()
            this.#throwLaneFailure()
            await this.#releaseDeferred()
          }
          more = await this.#batch()
          this.#errorAttempt = 0
        } catch (cause) {
          this.#fail(cause)
          if (cause instanceof ClosedError) {
            // The cache was closed under us: stop consuming (the rows go back to other consumers).
            await this.#halt()
            return
          }
          const delay = backoffDelay(this.#errorAttempt++, this.#o.retryMs, this.#o.maxRetryMs)
          this.#blockedUntil = this.#clock.now() + delay
          this.#timer(delay)
          return
        }
        if (more) this.#again = true
      }
      // (The last claim found nothing, once every lane had finished, and measured the age after their deletes.)
      if (this.#running) this.#scheduleHeld()
    } catch (cause) {
      this.#fail(cause)
    } finally {
      // However the loop ends (stopped, closed, a failure), every lane's rows are deleted or held before it does.
      await this.#idle()
      const failure = this.#laneFailure
      this.#laneFailure = undefined
      if (failure !== undefined) this.#fail(failure.cause)
    }
  }

  /** Wake up when the earliest held lease ends (failed and unstored products are retried then). */
  #scheduleHeld(): void {
    const now = this.#clock.now()
    let next = Number.POSITIVE_INFINITY
    for (const h of this.#held.values()) if (h.kind !== 'deferred' && h.until > now) next = Math.min(next, h.until)
    // A few ms late: the lease ends by the database clock.
    if (next !== Number.POSITIVE_INFINITY) this.#timer(next - now + 5)
  }

  /** Resolves when a lane ends or `wake()` is called. */
  #laneEndOrWake(): Promise<void> {
    const woken = new Promise<void>((resolve) => {
      this.#onWake = resolve
    })
    return Promise.race([woken, ...this.#lanes]).finally(() => {
      this.#onWake = undefined
    })
  }

  /** Every lane finished (their failures are kept for the loop). */
  async #idle(): Promise<void> {
    while (this.#lanes.size > 0) await Promise.all(this.#lanes)
  }

  /** A lane's failure surfaces in the loop (which backs off, or stops on ClosedError) before it claims again. */
  #throwLaneFailure(): void {
    const failure = this.#laneFailure
    if (failure === undefined) return
    this.#laneFailure = undefined
    throw failure.cause
  }

  /**
   * Claim one batch and start its lane. Resolves to true when the outbox may hold more claimable rows. Claims run one
   * at a time, and each marks its products before the next claim runs, so marks keep the order of the claims.
   */
  async #batch(): Promise<boolean> {
    const lanes = this.#dialect.lanes ?? 1
    while (this.#lanes.size >= lanes) await Promise.race(this.#lanes)
    this.#throwLaneFailure()
    const owner = `${this.#id}.${++this.#claims}`
    const claim = await this.#dialect.claim(this.#db, owner, this.#o.batchSize, this.#o.leaseMs)
    const rows = claim.rows
    if (rows.length === 0) {
      if (this.#lanes.size > 0) {
        // Nothing claimable while lanes run: claim again when one ends (its rows may have been held) or a wake-up
        // comes, whichever is first. A lane stalled in its recompute must not hold up the next change.
        if (!this.#again) await this.#laneEndOrWake()
        this.#throwLaneFailure()
        return true
      }
      // No lane runs: the outbox is measured after their deletes, so an idle outbox reads as empty.
      this.#throwLaneFailure()
      await this.#measureAge()
      this.#forgetStale()
      return false
    }
    // Kept current during a backlog: the oldest row is measured at every batch, not only when the loop goes idle. By
    // the claim itself where the dialect can (PostgreSQL); otherwise on another connection while the batch runs (its
    // recompute does not wait for it).
    let age: Promise<void> | undefined
    if (claim.oldestAgeMs !== undefined) {
      this.#ageMs = claim.oldestAgeMs
      this.#ageAt = this.#clock.now()
    } else {
      age = this.#measureAge()
      age.catch(() => {}) // handled in the lane; until then a failure is no unhandled rejection
    }
    this.#status.batches++
    // `#process` marks before its first await: the next claim cannot run before these marks are made.
    const lane: Promise<void> = this.#lane(owner, rows, age).finally(() => this.#lanes.delete(lane))
    this.#lanes.add(lane)
    return true
  }

  /** One claimed batch: recompute, then delete or hold its rows. Never rejects: a failure is kept for the loop. */
  async #lane(owner: string, rows: readonly OutboxRow[], age: Promise<void> | undefined): Promise<void> {
    try {
      let settle: () => Promise<void>
      try {
        settle = await this.#process(owner, rows)
      } catch (cause) {
        // Give the rows back at once (best effort: otherwise they come back when the lease ends).
        await this.#dialect
          .hold(
            this.#db,
            owner,
            rows.map((r) => r.id),
            0,
          )
          .catch(() => {})
        throw cause
      }
      await settle()
      await age
    } catch (cause) {
      this.#laneFailure ??= { cause }
    }
  }

  /**
   * Marks (synchronously, before its first await) and recomputes a claim's products; resolves to the deletes and holds
   * of its rows, still to run.
   */
  async #process(owner: string, rows: readonly OutboxRow[]): Promise<() => Promise<void>> {
    const byProduct = new Map<string, { ids: number[]; max: number }>()
    const invalid: number[] = []
    for (const r of rows) {
      if (r.product === '' || r.product.includes(KEY_SEPARATOR)) {
        invalid.push(r.id)
        continue
      }
      let g = byProduct.get(r.product)
      if (g === undefined) {
        g = { ids: [], max: 0 }
        byProduct.set(r.product, g)
      }
      g.ids.push(r.id)
      if (r.id > g.max) g.max = r.id
    }
    if (invalid.length > 0) {
      this.#fail(
        new InvalidInputError(
          `outbox listener: ${invalid.length} row(s) name a product id the cache cannot hold (empty or with U+001F); dropped`,
        ),
      )
    }
    // Dropped with the batch's deletes (not counted as processed).
    const drop = async () => {
      if (invalid.length > 0) await this.#dialect.delete(this.#db, owner, invalid)
    }
    if (byProduct.size === 0) return drop
    // Rows up to the highest id a held product was marked with are marks the cache has already (it retries failed
    // products and recomputes deferred ones when the bulk block settles): settle them without another recompute.
    // Newer rows are new writes, and a product the shared store lacks is recomputed again: those are marked.
    const toMark: string[] = []
    let version = 0
    for (const [p, g] of byProduct) {
      const h = this.#held.get(p)
      if (h !== undefined && h.kind !== 'unstored' && g.max <= h.maxId) continue
      toMark.push(p)
      if (g.max > version) version = g.max
    }
    // No reason: every source of each product is re-read, in one pass.
    if (toMark.length > 0) this.#cache.markDirty(toMark, { version })
    const units = [...byProduct.keys()]
    const report = await this.#cache.flush({ units })
    const settled = new Set(report.settled ?? [])
    const failed = new Set(report.failed)
    const deferred = new Set(report.deferred)
    const unstored = new Set(report.unstored)
    // By lease owner: this claim's rows of settled products, and their rows still held under earlier claims (their
    // changes were committed before this claim, so this batch's recompute, which started after it, covers them).
    const done = new Map<string, number[]>([[owner, []]])
    const holds = new Map<number, number[]>()
    const now = this.#clock.now()
    for (const [p, g] of byProduct) {
      if (settled.has(p)) {
        pushAll(done, owner, g.ids)
        const h = this.#held.get(p)
        if (h !== undefined) {
          for (const [o, ids] of h.leases) if (o !== owner) pushAll(done, o, ids)
          this.#held.delete(p)
        }
        continue
      }
      // Recomputed, but the shared store did not take the value: other instances' strong reads compare with the
      // store, so the rows stay (they keep telling them) until a recompute is stored.
      const kind: HeldKind = deferred.has(p) ? 'deferred' : !failed.has(p) && unstored.has(p) ? 'unstored' : 'failed'
      const previous = this.#held.get(p)
      // Only failures in a row grow a failure's delay: lost races (unstored) and deferrals before it do not count.
      const attempt = kind === 'failed' && previous?.kind === 'failed' ? previous.attempt + 1 : 0
      const delay = this.#holdMs(kind, attempt)
      const leases = previous?.leases ?? new Map<string, number[]>()
      leases.set(owner, g.ids)
      this.#held.set(p, {
        leases,
        maxId: Math.max(previous?.maxId ?? 0, g.max),
        kind,
        attempt,
        until: now + delay,
      })
      pushAll(holds, delay, g.ids)
    }
    // Only rows still leased to this claim go: if the lease ran out and another consumer took them, they are its.
    // The lane runs this while the next claim may run (the rows stay leased to this claim until then).
    return async () => {
      await drop()
      await this.#deleteCounted(done)
      for (const [delay, ids] of holds) await this.#dialect.hold(this.#db, owner, ids, delay)
    }
  }

  /** Delete these rows, by lease owner, counting them as processed. */
  async #deleteCounted(byOwner: ReadonlyMap<string, readonly number[]>): Promise<void> {
    for (const [owner, ids] of byOwner) {
      // The count is read after the await: `processed += await ...` reads `processed` before it, and lanes' deletes
      // run at once (a count added meanwhile was lost).
      const deleted = await this.#dialect.delete(this.#db, owner, ids)
      this.#status.processed += deleted
    }
  }

  /** Give back at once the rows of products held for a retry delay (failed or unstored), so they are claimed again. */
  async #retryHeldNow(): Promise<void> {
    // Every lane's holds first: a hold still on its way would undo the retry.
    await this.#idle()
    const byOwner = new Map<string, number[]>()
    const now = this.#clock.now()
    for (const h of this.#held.values()) {
      if (h.kind === 'deferred' || h.until <= now) continue
      h.until = now
      for (const [owner, ids] of h.leases) pushAll(byOwner, owner, ids)
    }
    for (const [owner, ids] of byOwner) await this.#dialect.hold(this.#db, owner, ids, 0).catch(() => {})
  }

  /**
   * A bulk block settled: the products it deferred were recomputed by its settling pass. Their rows go without
   * another recompute (`flush({ units })` reports them settled); a product whose settling recompute failed is
   * retried like any failed product.
   */
  async #releaseDeferred(): Promise<void> {
    const products = [...this.#held].filter(([, h]) => h.kind === 'deferred').map(([p]) => p)
    if (products.length === 0) return
    const report = await this.#cache.flush({ units: products })
    const settled = new Set(report.settled ?? [])
    const stillDeferred = new Set(report.deferred)
    const unstored = new Set(report.unstored)
    const done = new Map<string, number[]>()
    const retry = new Map<string, number[]>()
    const now = this.#clock.now()
    for (const p of products) {
      const h = this.#held.get(p)!
      if (settled.has(p)) {
        for (const [owner, ids] of h.leases) pushAll(done, owner, ids)
        this.#held.delete(p)
      } else if (!stillDeferred.has(p)) {
        h.kind = unstored.has(p) ? 'unstored' : 'failed'
        h.until = now + this.#holdMs(h.kind, h.attempt)
        for (const [owner, ids] of h.leases) pushAll(retry, owner, ids)
      }
    }
    await this.#deleteCounted(done)
    const delay = backoffDelay(0, this.#o.retryMs, this.#o.maxRetryMs)
    for (const [owner, ids] of retry) await this.#dialect.hold(this.#db, owner, ids, delay)
  }

  /**
   * How long rows of a product stay leased to this consumer after its batch. A deferred product waits for its bulk
   * block (afterBulk), at most one lease. A failed one backs off. An unstored one lost a race with another
   * instance's write: it is retried after `retryMs` each time, since under contention such races repeat and a
   * growing delay held the rows (and kept every strong read recomputing) for up to `maxRetryMs` after it ended.
   */
  #holdMs(kind: HeldKind, attempt: number): number {
    if (kind === 'deferred') return this.#o.leaseMs
    if (kind === 'unstored') return backoffDelay(0, this.#o.retryMs, this.#o.maxRetryMs)
    return backoffDelay(attempt, this.#o.retryMs, this.#o.maxRetryMs)
  }

  /**
   * Nothing was claimable: a held product whose lease ended a while ago was not claimed by us, so another consumer
   * processed it. Forget it (it only spares a recompute and counts attempts).
   */
  #forgetStale(): void {
    const now = this.#clock.now()
    for (const [p, h] of this.#held) if (h.until + 1000 < now) this.#held.delete(p)
  }
}

/** Append `items` to the list of `key` in `map`. */
function pushAll<K, T>(map: Map<K, T[]>, key: K, items: readonly T[]): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [...items])
  else list.push(...items)
}

/** The `OutboxListener` a capture's `listen()` hands out for a consumer. */
export function asListener(consumer: OutboxConsumer): OutboxListener {
  return {
    status: () => consumer.status(),
    drain: (timeoutMs) => consumer.drain(timeoutMs),
    stop: () => consumer.stop(),
  }
}
