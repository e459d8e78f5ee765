import type { Clock, PendingMarks, StockCache, Timers } from 'stockcast'
import type { SqlDb } from '../types.js'

export interface SqlChangeCaptureOptions {
  /** Outbox table (one row per changed product per statement or row). @default `${prefix}_outbox` ('stockcast_outbox') */
  outbox?: string
  /** Prefix of the trigger and function names this adapter creates. @default 'stockcast' */
  prefix?: string
  /**
   * Products a listener claims per batch, each with all its unprocessed rows (so the marks of one product made by many
   * statements and transactions cost one recompute). @default 1000
   */
  batchSize?: number
  /** MySQL/MariaDB: how often the listener polls the outbox, ms. @default 100 */
  pollMs?: number
  /** PostgreSQL: a catch-up scan runs this often even without a notification (safety net), ms. @default 5000 */
  scanMs?: number
  /**
   * How long a listener's claim leases its outbox rows, ms. A listener that dies (or stalls) mid-batch gives its rows
   * back to the other listeners when the lease ends; a lease that ends while its listener is still recomputing only
   * costs a second recompute. Keep it well above a batch's recompute time. @default 30_000
   */
  leaseMs?: number
  /** Time source of the listener (retry delays, lease bookkeeping, the backlog's age). @default Date */
  clock?: Clock
  /**
   * Every timer the capture starts (polling, scans, retries, `drain()` pauses, DDL retries): inject fake ones to drive
   * them in tests. @default defaultTimers from stockcast (unref'd global timers)
   */
  timers?: Timers
}

/** What `verify()` found: the original system's "verify triggers" command. */
export interface VerifyReport {
  /** True when every expected object exists at the expected version and nothing extra is there. */
  ok: boolean
  /** The version `install()` recorded, or null when never installed. */
  installedVersion: number | null
  /** The version this package installs. */
  expectedVersion: number
  /** Expected objects (triggers, functions, tables) that do not exist. */
  missing: string[]
  /** Objects with our prefix that this schema would not create (a table removed from the schema). */
  extra: string[]
  /** Objects that exist but differ from what this version creates. */
  outdated: string[]
}

export interface ListenerStatus {
  running: boolean
  /** Outbox rows processed (deleted) since start. */
  processed: number
  batches: number
  /**
   * Age in ms of the oldest outbox row not yet processed (0 when empty): measured at every batch, growing with the
   * clock in between. The cache's `status().oldestUnprocessedMs` includes it.
   */
  oldestUnprocessedMs: number
  /** Reconnects after a lost connection (PostgreSQL). */
  reconnects: number
  lastError: Error | null
  /**
   * Products whose rows this listener holds back: `failed` (the recompute failed) and `unstored` (the shared store
   * did not take the value) until their retry delay ends, `deferred` until a `disableCacheTemporarily` block settles.
   */
  held: { failed: number; unstored: number; deferred: number }
}

/** A running outbox consumer. */
export interface OutboxListener {
  status(): ListenerStatus
  /** Resolve once the outbox holds no row that was committed before this call (tests, shutdown). */
  drain(timeoutMs?: number): Promise<void>
  /** Stop consuming; rows being processed are finished first, unclaimed rows stay for the next consumer. */
  stop(): Promise<void>
}

/** Triggers + outbox: captures writes made by any client, in the writer's own transaction. */
export interface SqlChangeCapture extends PendingMarks {
  readonly db: SqlDb
  /** Create (idempotently, with a recorded version) the outbox, the store table's companion objects and triggers. */
  install(): Promise<void>
  /** Remove the triggers, functions and the outbox. */
  uninstall(): Promise<void>
  /** Missing, extra or outdated objects. */
  verify(): Promise<VerifyReport>
  /** Consume the outbox into the cache: mark, recompute, then delete the rows. */
  listen(cache: StockCache): Promise<OutboxListener>
  /**
   * Run a bulk import: `cache.disableCacheTemporarily` around `fn`, with the session `fn` writes through set up so
   * that the triggers cost little (dialect-specific; see the README).
   */
  bulkImport<T>(cache: StockCache, fn: (session: SqlDb) => Promise<T>): Promise<T>
}
