// Types of run.mjs (the orchestrator).
import type { ViolationExample } from './check.mjs'

export interface HistoryOptions {
  db?: 'postgres' | 'mysql'
  /** Seconds of writes. @default 20 */
  seconds?: number
  /** Writer processes. @default 5 */
  writers?: number
  /** Connections (transaction loops) per writer process. @default 2 */
  writerConnections?: number
  /** Cache processes (two listen when there are 3 or more). @default 3 */
  caches?: number
  products?: number
  batches?: number
  seed?: number
  /** The caches' memory.ttl. @default 1500 */
  ttlMs?: number
  /** SIGKILL of a listening cache process, terminated backends. @default true */
  faults?: boolean
  /** Writers alone on tables without the capture (no caches): their errors are the workload's own. */
  baseline?: boolean
  /**
   * Writers lock the order row of every batch whose picking items they touch (or whose status they flip) first.
   * `false` lets a status flip run concurrently with an item joining its batch (README, "the related race"). @default true
   */
  lockBatches?: boolean
  /** Widening of every read window, ms. @default 1 */
  slackMs?: number
  /**
   * The caches share a Redis store, bus and lock (a redis-server of the run's own; L1 without ttl), and the run kills
   * Redis at `redisKillAt` (fraction of the write time) and restarts it `redisDownMs` later. @default false
   */
  redis?: boolean
  redisKillAt?: number
  redisDownMs?: number
  log?: (line: string) => void
}

export interface HistoryResult {
  db: 'postgres' | 'mysql'
  prefix: string
  seed: number
  today: string
  writeMs: number
  restMs: number
  config: Record<string, number | boolean>
  commits: number
  commitsPerSecond: number
  emptyCommits: number
  rollbacks: number
  rollbacksAfterLog: number
  savepointRollbacks: number
  writerErrors: {
    total: number
    byCode: Record<string, number>
    examples: Array<{ code: string; message: string; steps: string[] }>
  }
  deadlock: string | null
  historyProblems: string[]
  reads: Record<'default' | 'strong' | 'many' | 'oracle', number>
  readErrors: Record<string, number>
  wrong: { total: number; default: number; strong: number; many: number; oracle: number; onlyLater: number }
  wrongExamples: ViolationExample[]
  staleStrong: number
  staleStrongExamples: ViolationExample[]
  oracle: { checked: number; accused: number; examples: ViolationExample[] }
  current: Record<'default' | 'strong' | 'many' | 'oracle', number>
  staleness: { reads: number; p50: number | null; p99: number | null; max: number | null }
  atRest: {
    checked: number
    mismatches: number
    byProc: Record<string, number>
    examples: Array<{ where: string; product: string; value: string; truth: string; diff: string; was: string }>
    errors: string[]
  }
  outboxLeft: number
  faults: {
    killed: Array<{ proc: string; atMs: number }>
    replacements: Array<{ proc: string; readyAtMs: number }>
    terminations: Array<{ atMs: number; procs: string[]; n: number }>
    terminated: number
    redis: Array<{ downAtMs: number; upAtMs: number }>
  }
  crashes: Array<{ proc: string; exit: { code: number | null; signal: string | null }; stderr: string[] }>
  listeners: Array<Record<string, unknown>>
  /** Per cache process: `degraded l2`, `recovered bus`, ... counts. */
  tierEvents: Record<string, Record<string, number>>
  /** Cache processes whose bus still reported degraded at rest. */
  busDegradedAtRest: string[]
  violations: number
  summary: string
}

export interface HistoryRun {
  done: Promise<HistoryResult>
  /** Kill every child process and drop the run's tables (idempotent). */
  cleanup(): Promise<void>
}

export function startHistory(options?: HistoryOptions): HistoryRun
export function runHistory(options?: HistoryOptions): Promise<HistoryResult>
export function formatSummary(result: HistoryResult): string
