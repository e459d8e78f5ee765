// Types of check.mjs (the judgement of reads against the commit history).
import type { Change, Replay, Snapshot } from './truth.mjs'

export interface Commit {
  seq?: number
  /** Recorded before the commit, under the global history lock: microseconds since the epoch. */
  recUs: number
  /** Date.now() after the writer saw COMMIT return, when known. */
  doneMs?: number | undefined
  changes?: Change[]
}

export interface Timeline {
  /** The first state (commit index, 0 = before any commit) of each value. */
  starts: number[]
  fps: string[]
  occ: Map<string, number[]>
}

export type ReadKind = 'default' | 'strong' | 'many' | 'oracle'

export interface Read {
  kind: ReadKind
  proc: string
  product: string
  fp: string
  start: number
  end: number
}

export interface ViolationExample {
  kind: ReadKind
  proc: string
  product: string
  window: [number, number]
  kmin: number
  kmax: number
  value: string
  fp: string
  why: string
  allowed: Array<{ k: number; until: number | null; at: number; value: string; diff: string }>
  closest?: { k: number; value: string; diff: string } | null
}

export interface Verdict {
  commits: number
  checked: Record<ReadKind, number>
  wrong: Record<ReadKind, number>
  current: Record<ReadKind, number>
  wrongTotal: number
  onlyLater: number
  staleStrong: number
  unknownProduct: number
  staleness: { reads: number; p50: number | null; p99: number | null; max: number | null }
  wrongExamples: ViolationExample[]
  staleStrongExamples: ViolationExample[]
  oracle: { checked: number; accused: number; examples: ViolationExample[] }
}

export function commitClock(
  commits: Commit[],
  slackMs?: number,
): {
  n: number
  bounds(start: number, end: number): { kmin: number; kmax: number }
  latestCommitMs(k: number): number
  earliestCommitMs(k: number): number
}
export function timeline(starts: number[], fps: string[]): Timeline
export function buildTimelines(args: {
  snapshot: Snapshot
  commits: Array<Commit & { changes: Change[] }>
  products: string[]
  today: string
  verifyEvery?: number
}): { timelines: Map<string, Timeline>; replay: Replay }
export function checkReads(args: {
  commits: Commit[]
  timelines: Map<string, Timeline>
  reads: Read[]
  slackMs?: number
  t0?: number
  maxExamples?: number
}): Verdict
