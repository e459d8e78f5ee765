import type { Timers } from 'stockcast'

/** What `listen()` invalidates: anything with `invalidate({ tables })`, such as a `createCache` cache. */
export interface TableInvalidationTarget {
  invalidate(target: { tables: string[] }): Promise<unknown>
}

export interface SqlTableChangesOptions {
  /** The tables to watch (`orders` or `schema.orders`): identifiers only. Changes are reported by bare table name. */
  tables: readonly string[]
  /**
   * Names of the objects `install()` creates: `<prefix>_table_changes` (the changes table), `<prefix>_table_changes_fn`
   * and triggers named `<prefix>_table_changes` (PostgreSQL), `<prefix>_tc_<table>_<ins|upd|del>` (MySQL/MariaDB).
   * One prefix, one set of watched tables: `install()` removes the triggers of tables no longer listed.
   * @default 'stockcast'
   */
  prefix?: string
  /** Poll interval of a listener whose connection cannot LISTEN (MySQL/MariaDB). @default 200 */
  pollMs?: number
  /** Catch-up scan interval of a LISTEN-ing listener (lost notifications, rows whose commit is pending). @default 1000 */
  scanMs?: number
  /** Rows older than this are deleted by the listeners. @default 600000 (10 min) */
  retainMs?: number
  /** Runs polls, catch-up scans, retention sweeps and retry backoff. @default stockcast's `defaultTimers` */
  timers?: Timers
}

/** What `verify()` reports. */
export interface TableChangesVerifyReport {
  ok: boolean
  /** The version of the objects this package creates. */
  expectedVersion: number
  missing: string[]
  /** Objects of this prefix that the current options would not create (a table no longer watched). */
  extra: string[]
  /** Objects that exist but differ from what this version creates (or are disabled). */
  outdated: string[]
}

export interface TableChangesStatus {
  running: boolean
  /** Change rows read and handed on since start. */
  processed: number
  /** The highest change id read. */
  lastId: number
  /** Failed scans and invalidations (each retried). */
  errors: number
  /** Times every watched table was invalidated because rows may have been missed (start not included). */
  gaps: number
  /** Ids below `lastId` not seen yet (uncommitted or rolled back writes), still looked for. */
  pendingIds: number
  lastError: Error | null
}

export interface TableChangesListener {
  status(): TableChangesStatus
  /** Scan now (resolves once the scan, and its invalidations, are done). */
  scan(): Promise<void>
  /** Stop listening (UNLISTEN, timers cleared). */
  stop(): Promise<void>
}

export interface SqlTableChanges {
  /** Create the changes table, the function and the triggers (idempotent: no DDL when `verify()` is ok). */
  install(): Promise<void>
  /** Remove every object of this prefix: triggers (on any table), function, changes table. */
  uninstall(): Promise<void>
  verify(): Promise<TableChangesVerifyReport>
  /** Invalidate `targets` (one cache or several) after each commit that changed a watched table. */
  listen(targets: TableInvalidationTarget | readonly TableInvalidationTarget[]): Promise<TableChangesListener>
}

/** A scan's answer: rows above `after` or among `holes`, plus the table's id range (and the snapshot on PostgreSQL). */
export interface ScanResult {
  rows: Array<{ id: number; tbl: string }>
  /** The lowest / highest id in the table (null when empty). */
  low: number | null
  high: number | null
  /** PostgreSQL: xmin / xmax of the snapshot the rows were read in. */
  xmin?: bigint
  xmax?: bigint
}

/** The dialect side of `sqlTableChanges`. */
export interface TablesDialect {
  /** The NOTIFY channel (PostgreSQL), or null (poll). */
  readonly channel: string | null
  install(): Promise<void>
  uninstall(): Promise<void>
  verify(): Promise<TableChangesVerifyReport>
  /** Whether the changes table exists. */
  exists(): Promise<boolean>
  /** Rows with id > `after` or id in `holes`, ordered by id, at most `limit`. */
  scan(after: number, holes: readonly number[], limit: number): Promise<ScanResult>
  /** The id range and the missing ids inside it (as ranges), for a listener's start. */
  baseline(): Promise<{ high: number | null; gaps: Array<[from: number, to: number]>; xmax?: bigint }>
  /** Delete the rows up to the newest one older than `retainMs` (a prefix by id). Resolves to the rows deleted. */
  prune(retainMs: number): Promise<number>
}
