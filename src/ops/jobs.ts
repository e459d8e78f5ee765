import { readFile } from 'node:fs/promises'
import { ConfigError, StockcastError } from '../errors.js'
import type { StockCache } from '../stock/types.js'
import { backoffDelay } from '../util/backoff.js'
import { writeFileAtomic } from '../util/files.js'
import { type Clock, defaultTimers, type Timers } from '../util/timers.js'

/** Refresh values older than `afterMs`, oldest first, in batches (a safety net for changes no capture saw). */
export interface RefreshStaleJob {
  /** Values computed longer ago than this are recomputed. @default 900 000 (15 min) */
  afterMs?: number
  /** How often to look. @default 60 000 */
  every?: number
  /** Most products recomputed per run. @default 200 */
  batch?: number
}

/** Prepare the next day before midnight and swap it in at midnight (`cache.prepareRollover()`), then warm. */
export interface RolloverJob {
  /** How long before the configured time zone's midnight to prepare. @default 300 000 (5 min) */
  aheadMs?: number
}

/** Keep the most read products hot: recompute them when they left L1, and after restarts and rollovers. */
export interface WarmJob {
  /** How many products. @default 1 000 */
  top?: number
  /** How often. @default 300 000 (5 min) */
  every?: number
  /** The products to keep hot. @default the `top` most recently used products in L1 */
  products?: () => readonly string[] | Promise<readonly string[]>
  /**
   * A JSON file that remembers the hot list across restarts: read when the jobs start (and warmed at once), written
   * after each run (atomically: a temp file renamed). @default none: after a restart the list starts empty
   */
  file?: string
}

/** Recompute products left dirty (a lock timeout, a source error), backing off while it keeps failing. */
export interface DirtySweepJob {
  /** How often to look; a product must have been dirty this long. @default 30 000 */
  every?: number
  /** The longest wait between sweeps while they keep failing. @default 300 000 */
  maxBackoffMs?: number
}

/** `validate({ sample })` on a schedule; mismatches are reported as an `error` event (`MismatchError`). */
export interface PrecisionJob {
  /** Products compared per run. @default 100 */
  sample?: number
  /** How often. @default 600 000 (10 min) */
  every?: number
  /** Mark mismatching products for recompute. @default true */
  repair?: boolean
}

export type JobName = 'refreshStale' | 'rollover' | 'warm' | 'dirtySweep' | 'precision'

export interface JobsOptions {
  refreshStale?: boolean | RefreshStaleJob
  rollover?: boolean | RolloverJob
  warm?: boolean | WarmJob
  dirtySweep?: boolean | DirtySweepJob
  precision?: boolean | PrecisionJob
  /** The cache's clock (pass the one given to `createStockCache`). @default Date */
  clock?: Clock
  /** The cache's timers (pass the ones given to `createStockCache`). @default the global timers, unref'd */
  timers?: Timers
  /** Told when a run fails (the job runs again at its next time). */
  onError?: (error: StockcastError, job: JobName) => void
}

export interface JobStatus {
  runs: number
  failures: number
  /** Epoch ms of the last run's start, or null. */
  lastRunAt: number | null
  lastMs: number | null
  /** What the last run did (job-specific figures). */
  last: Readonly<Record<string, number | string>> | null
  lastError: string | null
  /** Epoch ms of the next run, or null when stopped. */
  nextAt: number | null
  running: boolean
}

/** The handle `startJobs` returns. */
export interface Jobs {
  /** Run one job now (waits for a run in progress first) and return what it did. */
  run(job: JobName): Promise<Readonly<Record<string, number | string>>>
  status(): Partial<Record<JobName, JobStatus>>
  /** Stop every timer and wait for runs in progress. `cache.close()` calls it. */
  stop(): Promise<void>
}

const positive = (v: unknown, name: string, allowZero = false): number => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    throw new ConfigError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${String(v)}`, {
      option: name,
    })
  }
  return v
}
const integer = (v: unknown, name: string): number => {
  const n = positive(v, name)
  if (!Number.isInteger(n)) throw new ConfigError(`${name} must be an integer, got ${String(v)}`, { option: name })
  return n
}
const pick = <T extends object>(v: boolean | T | undefined, name: string): T | undefined => {
  if (v === undefined || v === false) return undefined
  if (v === true) return {} as T
  if (typeof v !== 'object' || v === null) {
    throw new ConfigError(`${name} must be true, false or an options object`, { option: name })
  }
  return v
}

interface Job {
  name: JobName
  status: JobStatus
  body: () => Promise<Record<string, number | string>>
  /** The delay before the next run, given whether this one failed. */
  next: (failed: boolean) => number
  current: Promise<unknown> | undefined
  timer: unknown
}

/**
 * Start maintenance jobs on a stock cache: each is opt-in (`true` or its options), runs on the cache's timers, never
 * overlaps itself, and stops when the cache closes.
 *
 * @example
 * const jobs = startJobs(cache, {
 *   rollover: true,                        // prepare tomorrow 5 min before midnight, swap it in at midnight
 *   warm: { top: 2000, file: '/var/lib/app/hot-products.json' },
 *   refreshStale: { afterMs: 15 * 60_000 },
 *   dirtySweep: true,
 *   precision: { sample: 200, every: 10 * 60_000 },
 * })
 */
export function startJobs(cache: StockCache, options: JobsOptions): Jobs {
  if (typeof cache?.prepareRollover !== 'function' || typeof cache.onClose !== 'function') {
    throw new ConfigError('startJobs: expected a stock cache (createStockCache)', { option: 'cache' })
  }
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError('startJobs: options must be an object naming the jobs to run', { option: 'options' })
  }
  const clock = options.clock ?? Date
  const timers = options.timers ?? defaultTimers
  const refresh = pick<RefreshStaleJob>(options.refreshStale, 'refreshStale')
  const rollover = pick<RolloverJob>(options.rollover, 'rollover')
  const warm = pick<WarmJob>(options.warm, 'warm')
  const sweep = pick<DirtySweepJob>(options.dirtySweep, 'dirtySweep')
  const precision = pick<PrecisionJob>(options.precision, 'precision')
  if (!refresh && !rollover && !warm && !sweep && !precision) {
    throw new ConfigError('startJobs: no job selected (refreshStale, rollover, warm, dirtySweep, precision)', {
      option: 'options',
    })
  }
  const jobs = new Map<JobName, Job>()
  let stopped = false

  const add = (name: JobName, body: Job['body'], next: Job['next'], first: number) => {
    const job: Job = {
      name,
      body,
      next,
      current: undefined,
      timer: undefined,
      status: {
        runs: 0,
        failures: 0,
        lastRunAt: null,
        lastMs: null,
        last: null,
        lastError: null,
        nextAt: null,
        running: false,
      },
    }
    jobs.set(name, job)
    arm(job, first)
  }
  const arm = (job: Job, ms: number) => {
    if (stopped) return
    if (job.timer !== undefined) timers.clearTimeout(job.timer)
    const delay = Math.max(0, Math.min(ms, 2 ** 31 - 1))
    job.status.nextAt = clock.now() + delay
    job.timer = timers.setTimeout(() => {
      job.timer = undefined
      void runJob(job).then(
        () => arm(job, job.next(false)),
        () => arm(job, job.next(true)),
      )
    }, delay)
  }
  const runJob = async (job: Job): Promise<Record<string, number | string>> => {
    while (job.current !== undefined) await job.current.catch(() => {})
    const started = clock.now()
    job.status.running = true
    job.status.lastRunAt = started
    const p = job.body()
    job.current = p
    try {
      const result = await p
      job.status.runs++
      job.status.last = result
      job.status.lastError = null
      return result
    } catch (cause) {
      job.status.runs++
      job.status.failures++
      const error =
        cause instanceof StockcastError
          ? cause
          : new StockcastError(`job ${job.name} failed: ${cause instanceof Error ? cause.message : String(cause)}`, {
              cause,
            })
      job.status.lastError = error.message
      options.onError?.(error, job.name)
      throw error
    } finally {
      job.status.running = false
      job.status.lastMs = clock.now() - started
      job.current = undefined
    }
  }

  if (refresh) {
    const afterMs = positive(refresh.afterMs ?? 900_000, 'refreshStale.afterMs')
    const every = positive(refresh.every ?? 60_000, 'refreshStale.every')
    const batch = integer(refresh.batch ?? 200, 'refreshStale.batch')
    add(
      'refreshStale',
      async () => {
        const before = clock.now() - afterMs
        const old = cache.entries({ order: 'computedAt' }).filter((e) => e.computedAt < before)
        const products = [...new Set(old.map((e) => e.product))].slice(0, batch)
        if (products.length === 0) return { refreshed: 0, failed: 0, older: 0 }
        cache.markDirty(products, { reason: { note: 'refresh-stale' } })
        const r = await cache.flush({ units: products })
        return { refreshed: r.recomputed, failed: r.failed.length, older: old.length }
      },
      () => every,
      every,
    )
  }

  let hot: string[] = []
  let warmFileRead: Promise<void> | undefined
  const warmBody = warm
    ? (() => {
        const top = integer(warm.top ?? 1000, 'warm.top')
        if (warm.products !== undefined && typeof warm.products !== 'function') {
          throw new ConfigError('warm.products must be a function returning product ids', { option: 'warm.products' })
        }
        if (warm.file !== undefined && (typeof warm.file !== 'string' || warm.file === '')) {
          throw new ConfigError('warm.file must be a file path', { option: 'warm.file' })
        }
        const file = warm.file
        warmFileRead =
          file === undefined
            ? Promise.resolve()
            : readFile(file, 'utf8').then(
                (text) => {
                  let list: unknown
                  try {
                    list = JSON.parse(text)
                  } catch {
                    return // not ours, or cut short: the next run rewrites it
                  }
                  if (Array.isArray(list)) hot = list.filter((p): p is string => typeof p === 'string').slice(0, top)
                },
                () => {}, // no file yet
              )
        return async () => {
          await warmFileRead
          let products: string[]
          if (warm.products !== undefined) products = [...(await warm.products())].slice(0, top)
          else {
            const recent = [...new Set(cache.entries({ order: 'recent', limit: top * 2 }).map((e) => e.product))]
            // Keep the remembered list's products (after a restart L1 starts empty) behind the ones in use now.
            products = [...new Set([...recent, ...hot])].slice(0, top)
          }
          hot = products
          let warmed = 0
          let failed = 0
          for (let i = 0; i < products.length; i += 500) {
            const chunk = products.slice(i, i + 500)
            try {
              warmed += (await cache.getMany(chunk)).size
            } catch {
              failed += chunk.length
            }
          }
          if (file !== undefined) {
            await writeFileAtomic(file, JSON.stringify(products))
          }
          return { products: products.length, warmed, failed }
        }
      })()
    : undefined
  if (warm && warmBody) {
    const every = positive(warm.every ?? 300_000, 'warm.every')
    // The first run comes at once when a remembered list exists (a restart), else after `every`.
    add('warm', warmBody, () => every, warm.file === undefined ? every : 0)
  }

  if (rollover) {
    const aheadMs = positive(rollover.aheadMs ?? 300_000, 'rollover.aheadMs', true)
    let phase: 'prepare' | 'after' = 'prepare'
    let preparedFor = -1
    const nextDelay = () => {
      const s = cache.status()
      if (phase === 'after') return s.dayEndsAt + 1 - clock.now()
      return s.dayEndsAt === preparedFor ? s.dayEndsAt + 1 - clock.now() : s.dayEndsAt - aheadMs - clock.now()
    }
    add(
      'rollover',
      async (): Promise<Record<string, number | string>> => {
        if (phase === 'prepare') {
          const r = await cache.prepareRollover()
          preparedFor = r.startsAt
          phase = 'after'
          return { phase: 'prepared', date: r.date, prepared: r.prepared, read: r.read, skipped: r.skipped }
        }
        // The day moved (the values were swapped in); warm what was not.
        phase = 'prepare'
        const today = cache.status().today
        const out: Record<string, number | string> = { phase: 'warmed', today }
        if (jobs.has('warm')) out.warmed = Number((await runJob(jobs.get('warm')!)).warmed)
        return out
      },
      (failed) => (failed ? Math.min(60_000, Math.max(0, nextDelay())) : nextDelay()),
      nextDelay(),
    )
  }

  if (sweep) {
    const every = positive(sweep.every ?? 30_000, 'dirtySweep.every')
    const maxBackoffMs = positive(sweep.maxBackoffMs ?? 300_000, 'dirtySweep.maxBackoffMs')
    let attempt = 0
    add(
      'dirtySweep',
      async () => {
        const s = cache.status()
        if (s.dirty === 0 || s.oldestDirtyMs < every) {
          attempt = 0
          return { dirty: s.dirty, recomputed: 0, failed: 0 }
        }
        const r = await cache.flush()
        attempt = r.failed.length > 0 ? attempt + 1 : 0
        return { dirty: s.dirty, recomputed: r.recomputed, failed: r.failed.length }
      },
      (failed) => (failed || attempt > 0 ? backoffDelay(Math.max(attempt, 1), every, maxBackoffMs) : every),
      every,
    )
  }

  if (precision) {
    const sample = integer(precision.sample ?? 100, 'precision.sample')
    const every = positive(precision.every ?? 600_000, 'precision.every')
    const repair = precision.repair ?? true
    add(
      'precision',
      async () => {
        const r = await cache.validate({ sample, repair, report: true })
        return { checked: r.checked, mismatches: r.mismatches.length, skipped: r.skipped }
      },
      () => every,
      every,
    )
  }

  const stop = async () => {
    if (stopped) return
    stopped = true
    unregister()
    for (const job of jobs.values()) {
      if (job.timer !== undefined) timers.clearTimeout(job.timer)
      job.timer = undefined
      job.status.nextAt = null
    }
    await Promise.allSettled([...jobs.values()].map((j) => j.current))
  }
  const unregister = cache.onClose(stop)

  return {
    run(name) {
      const job = jobs.get(name)
      if (job === undefined) {
        return Promise.reject(
          new ConfigError(`job ${JSON.stringify(name)} was not started (started: ${[...jobs.keys()].join(', ')})`, {
            option: 'job',
          }),
        )
      }
      return runJob(job)
    },
    status() {
      const out: Partial<Record<JobName, JobStatus>> = {}
      for (const [name, job] of jobs) out[name] = { ...job.status }
      return out
    },
    stop,
  }
}
