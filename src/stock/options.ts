import type { SourceReader, Store } from '../cache/types.js'
import { ConfigError } from '../errors.js'
import type { DistributedLock, InvalidationBus, PendingMarks } from '../invalidation/contracts.js'
import { assertTimeZone } from '../projection/dates.js'
import type { DecimalInput } from '../projection/types.js'
import type { Clock, Timers } from '../util/timers.js'
import type { StockSchema } from './schema.js'

export type {
  BusState,
  DistributedLock,
  InvalidationBus,
  InvalidationMessage,
  MarkSource,
  PendingMarks,
} from '../invalidation/contracts.js'
export type { Clock, Timers } from '../util/timers.js'

export interface MemoryTierOptions {
  /**
   * Most keys kept in L1. `0` turns L1 off: every read goes to L2 or the sources (no value is kept in-process, so
   * none can be stale there; `transition` events need a previous value in L1 and do not fire). @default 10_000
   */
  max?: number
  /** Ms an L1 entry lives (0: until evicted or invalidated). @default 0 */
  ttl?: number
}

export interface StockCacheOptions {
  /** The validated schema from `defineStockSchema`. */
  schema: StockSchema
  /** L3: reads the source tables. */
  reader: SourceReader
  /** L2: a shared store. @default none (L1 and L3 only) */
  store?: Store
  /** Cross-instance invalidation. @default none */
  bus?: InvalidationBus
  /** Asked by `get(p, { consistency: 'strong' })` for unprocessed marks. @default none */
  pendingMarks?: PendingMarks
  /** Cross-instance recompute lock. @default none (in-process locks only) */
  lock?: DistributedLock
  /** IANA zone that decides D0. @default 'UTC' */
  timeZone?: string
  /** D0..D(horizonDays-1). @default 29 */
  horizonDays?: number
  /** Decimal places of exact arithmetic. @default 3 */
  scale?: number
  /** 7-day minimum below this is ATTENTION. @default 0 */
  safetyStock?: DecimalInput
  /** A stock-out within D0..D(criticalDays) is CRITICAL. @default 7 */
  criticalDays?: number
  /** L1 (in-process LRU). @default { max: 10_000, ttl: 0 } */
  memory?: MemoryTierOptions
  /** Quiet ms after the last mark before a batch recompute. @default 500 */
  debounceMs?: number
  /** Longest ms a pending mark waits under a constant stream of writes. @default 2000 */
  maxWaitMs?: number
  /** Longest ms to wait for a product's lock. @default 10_000 */
  lockTimeoutMs?: number
  /** How old (ms since computed) a value may be to be served, flagged stale, when the sources fail. @default 300_000 */
  graceMs?: number
  /** Products per reader call. @default 500 */
  batchSize?: number
  /** Longest ms `get(p, { atLeast })` waits for a version to arrive. @default 10_000 */
  waitTimeoutMs?: number
  /** First retry delay of a failed background recompute or of a down L2 (doubles up to 30 s). @default 1000 */
  retryMs?: number
  /** When a `disableCacheTemporarily` block touched at least this many products, rebuild all instead. @default 20_000 */
  rebuildThreshold?: number
  /**
   * Longest ms a source read may take; past it the read fails with `ReadTimeoutError` (a `SourceUnavailableError`:
   * stale-if-error applies, the products stay dirty and are retried). 0 waits forever. @default 30_000
   */
  readTimeoutMs?: number
  /**
   * Re-read only the sources a mark names (its `reason`) and reuse the product's cached rows of the others. Faster,
   * but only sound when this cache sees every change of its sources, as it happens: a single instance (no shared
   * store, no bus) whose every writer marks through it inside transactions. Otherwise a value can mix rows read at
   * different moments (a state the database never had) or miss another consumer's change. @default false (every
   * recompute of a marked product re-reads all its sources, in one snapshot with the SQL reader)
   */
  selectiveReads?: boolean
  /** @default Date */
  clock?: Clock
  /** @default the global setTimeout/clearTimeout (unref'd) */
  timers?: Timers
}

export interface ResolvedOptions {
  timeZone: string
  horizonDays: number
  scale: number
  safetyStock: DecimalInput
  criticalDays: number
  memoryMax: number
  memoryTtl: number
  debounceMs: number
  maxWaitMs: number
  lockTimeoutMs: number
  graceMs: number
  batchSize: number
  waitTimeoutMs: number
  retryMs: number
  rebuildThreshold: number
  readTimeoutMs: number
  selectiveReads: boolean
}

const KNOWN = new Set([
  'schema',
  'reader',
  'store',
  'bus',
  'lock',
  'pendingMarks',
  'timeZone',
  'horizonDays',
  'scale',
  'safetyStock',
  'criticalDays',
  'memory',
  'debounceMs',
  'maxWaitMs',
  'lockTimeoutMs',
  'graceMs',
  'batchSize',
  'waitTimeoutMs',
  'retryMs',
  'rebuildThreshold',
  'readTimeoutMs',
  'selectiveReads',
  'clock',
  'timers',
])

function int(value: unknown, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`createStockCache: ${name} must be an integer from ${min} to ${max}, got ${String(value)}`, {
      option: name,
    })
  }
  return value
}

/** Check every option; a bad one is a ConfigError naming it. */
export function resolveOptions(o: StockCacheOptions): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new ConfigError('createStockCache expects an options object')
  for (const k of Object.keys(o)) {
    if (!KNOWN.has(k)) throw new ConfigError(`createStockCache: unknown option "${k}"`, { option: k })
  }
  const schema = o.schema as Partial<StockSchema> | undefined
  if (!schema || !Array.isArray(schema.sources) || typeof schema.sourcesForTable !== 'function') {
    throw new ConfigError('createStockCache: schema must come from defineStockSchema(...)', { option: 'schema' })
  }
  if (!o.reader || typeof o.reader.read !== 'function') {
    throw new ConfigError('createStockCache: reader must implement read(products, options)', { option: 'reader' })
  }
  if (o.store !== undefined) {
    for (const m of ['getMany', 'setMany', 'deleteMany', 'clear', 'close'] as const) {
      if (typeof (o.store as unknown as Record<string, unknown>)[m] !== 'function') {
        throw new ConfigError(`createStockCache: store lacks ${m}()`, { option: 'store' })
      }
    }
  }
  if (o.pendingMarks !== undefined && typeof o.pendingMarks?.pending !== 'function') {
    throw new ConfigError('createStockCache: pendingMarks must have pending(products)', { option: 'pendingMarks' })
  }
  if (o.clock !== undefined && typeof o.clock?.now !== 'function') {
    throw new ConfigError('createStockCache: clock must have now()', { option: 'clock' })
  }
  if (
    o.timers !== undefined &&
    (typeof o.timers?.setTimeout !== 'function' || typeof o.timers?.clearTimeout !== 'function')
  ) {
    throw new ConfigError('createStockCache: timers must have setTimeout and clearTimeout', { option: 'timers' })
  }
  const timeZone = o.timeZone ?? 'UTC'
  try {
    assertTimeZone(timeZone)
  } catch (cause) {
    throw new ConfigError(`createStockCache: timeZone ${JSON.stringify(timeZone)} is not an IANA time zone`, {
      option: 'timeZone',
      cause,
    })
  }
  const memory = o.memory ?? {}
  const debounceMs = int(o.debounceMs, 'debounceMs', 0, 3_600_000, 500)
  const maxWaitMs = int(o.maxWaitMs, 'maxWaitMs', 0, 3_600_000, Math.max(2000, debounceMs))
  if (maxWaitMs < debounceMs) {
    throw new ConfigError(`createStockCache: maxWaitMs (${maxWaitMs}) must be >= debounceMs (${debounceMs})`, {
      option: 'maxWaitMs',
    })
  }
  const selectiveReads = o.selectiveReads ?? false
  if (typeof selectiveReads !== 'boolean') {
    throw new ConfigError('createStockCache: selectiveReads must be a boolean', { option: 'selectiveReads' })
  }
  if (selectiveReads && (o.store?.capabilities?.shared === true || o.bus !== undefined)) {
    throw new ConfigError(
      'createStockCache: selectiveReads needs a single instance that sees every change: it cannot be used with a shared store or a bus (another instance may change sources this one would not re-read)',
      { option: 'selectiveReads' },
    )
  }
  const safetyStock = o.safetyStock ?? 0
  if (typeof safetyStock !== 'number' && typeof safetyStock !== 'string') {
    throw new ConfigError('createStockCache: safetyStock must be a decimal string or number', { option: 'safetyStock' })
  }
  return {
    timeZone,
    horizonDays: int(o.horizonDays, 'horizonDays', 1, 3660, 29),
    scale: int(o.scale, 'scale', 0, 9, 3),
    safetyStock,
    criticalDays: int(o.criticalDays, 'criticalDays', 0, 3660, 7),
    memoryMax: int(memory.max, 'memory.max', 0, 100_000_000, 10_000),
    memoryTtl: int(memory.ttl, 'memory.ttl', 0, 2 ** 31 - 1, 0),
    debounceMs,
    maxWaitMs,
    lockTimeoutMs: int(o.lockTimeoutMs, 'lockTimeoutMs', 1, 3_600_000, 10_000),
    graceMs: int(o.graceMs, 'graceMs', 0, 2 ** 31 - 1, 300_000),
    batchSize: int(o.batchSize, 'batchSize', 1, 100_000, 500),
    waitTimeoutMs: int(o.waitTimeoutMs, 'waitTimeoutMs', 0, 3_600_000, 10_000),
    retryMs: int(o.retryMs, 'retryMs', 1, 3_600_000, 1000),
    rebuildThreshold: int(o.rebuildThreshold, 'rebuildThreshold', 1, 1_000_000_000, 20_000),
    readTimeoutMs: int(o.readTimeoutMs, 'readTimeoutMs', 0, 2 ** 31 - 1, 30_000),
    selectiveReads,
  }
}

const warned = new Set<string>()

/** A risky but legal setup: one process warning per code. */
export function warnOnce(code: string, message: string): void {
  if (warned.has(code)) return
  warned.add(code)
  process.emitWarning(message, { code, type: 'StockcastWarning' })
}
