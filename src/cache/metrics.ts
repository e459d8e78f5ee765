/** Counters since the cache was created. */
export interface MetricsSnapshot {
  /** Reads answered from L1. */
  l1Hits: number
  /** Reads that missed L1 (absent, expired or out of date). */
  l1Misses: number
  l2Hits: number
  l2Misses: number
  /** L2 calls that failed. */
  l2Errors: number
  /** Products recomputed from the sources (each counts once per batch). */
  recomputes: number
  /** Recompute batches that loaded from the sources (one loader call each). */
  batches: number
  /** How long the batches' loads took (reader and calculator), in seconds: a cumulative histogram. */
  batchSeconds: HistogramSnapshot
  /** Keys (products, locations, roll-ups) computed. */
  keysComputed: number
  /** Reader calls. */
  reads: number
  /** Reader calls that read only the changed sources. */
  selectiveReads: number
  /** Reads of touched products inside disableCacheTemporarily (straight from the sources, not cached). */
  directReads: number
  /** Products marked (after commit). */
  marks: number
  /** Marks held in transaction scopes. */
  marksHeld: number
  /** Marks that found their product already dirty (coalesced into one recompute). */
  marksCoalesced: number
  /** Products that went from clean to dirty. */
  dirtyAdded: number
  /** Background flushes. */
  flushes: number
  /** Reads that waited for a recompute already running. */
  joinedRecomputes: number
  /** Recomputes that finished but left the product dirty because a mark arrived while they read. */
  racesKeptDirty: number
  /** Lock acquisitions that had to wait. */
  lockWaits: number
  lockTimeouts: number
  /** Reader failures. */
  sourceErrors: number
  /** Products whose source rows were invalid. */
  invalidInputs: number
  /** Strong reads that asked the mark source. */
  strongChecks: number
  /** Products a strong read found with unprocessed marks (and recomputed first). */
  strongMarks: number
  /**
   * Strong reads whose L1 entry differed from the shared store's (another instance had recomputed the product):
   * recomputed from the sources.
   */
  strongStoreMismatches: number
  /** Values served flagged stale under allowStale. */
  staleServed: number
  /** Values served flagged stale because the sources failed (stale-if-error). */
  staleIfError: number
  degraded: number
  recovered: number
  /** Invalidation messages received from peers over the bus (own messages excluded). */
  busReceived: number
  /** Invalidation messages this instance published. */
  busPublished: number
  /** Publishes that failed. */
  busPublishErrors: number
  /** Errors reported through the 'error' event. */
  errors: number
  bulkBlocks: number
  bulkRebuilds: number
  rebuilds: number
  validations: number
  mismatches: number
  /** Reader calls that did not answer within `readTimeoutMs`. */
  readTimeouts: number
  /**
   * Marked units whose value a shared store did not end up holding (another instance's write won): reported
   * `unstored`, so a change capture keeps their marks and retries.
   */
  storeOverwritten: number
  /** Recomputes whose value equalled the one held before (no `updated` event). */
  unchanged: number
  /** `transition` events emitted (into or out of stock-out, into or out of CRITICAL). */
  transitions: number
  /**
   * Age in ms of the oldest committed change not yet reflected, now: pending marks and the attached mark sources'
   * backlogs (the SQL outbox). The freshness lag a default read may have.
   */
  freshnessLagMs: number
}

/** A cumulative histogram (Prometheus style): `counts[i]` observations were <= `le[i]`; `count` is every one. */
export interface HistogramSnapshot {
  /** Upper bounds, ascending (the implicit last bucket is +Inf, whose count is `count`). */
  le: readonly number[]
  counts: number[]
  sum: number
  count: number
}

/** The bounds of `batchSeconds`: 1 ms to 10 s. */
export const BATCH_SECONDS_BUCKETS: readonly number[] = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
]

/** @internal a histogram's running counts (per bucket, not cumulative until `snapshot`). */
export class Histogram {
  readonly le: readonly number[]
  readonly #counts: number[]
  sum = 0
  count = 0

  constructor(le: readonly number[]) {
    this.le = le
    this.#counts = le.map(() => 0)
  }

  observe(value: number): void {
    this.sum += value
    this.count++
    const le = this.le
    for (let i = 0; i < le.length; i++) {
      if (value <= le[i]!) {
        this.#counts[i]!++
        return
      }
    }
  }

  snapshot(): HistogramSnapshot {
    let run = 0
    return { le: this.le, counts: this.#counts.map((c) => (run += c)), sum: this.sum, count: this.count }
  }
}

type Extra = 'l2Hits' | 'l2Misses' | 'l2Errors' | 'lockWaits' | 'freshnessLagMs'
type Local = Omit<MetricsSnapshot, Extra | 'batchSeconds'>
type CounterName = { [K in keyof Local]: Local[K] extends number ? K : never }[keyof Local]

/** @internal plain counters (fields, not a Map: they sit on the read path). */
export class Metrics implements Local {
  l1Hits = 0
  l1Misses = 0
  recomputes = 0
  batches = 0
  readonly batchSeconds = new Histogram(BATCH_SECONDS_BUCKETS)
  keysComputed = 0
  reads = 0
  selectiveReads = 0
  directReads = 0
  marks = 0
  marksHeld = 0
  marksCoalesced = 0
  dirtyAdded = 0
  flushes = 0
  joinedRecomputes = 0
  racesKeptDirty = 0
  lockTimeouts = 0
  sourceErrors = 0
  invalidInputs = 0
  strongChecks = 0
  strongMarks = 0
  strongStoreMismatches = 0
  staleServed = 0
  staleIfError = 0
  degraded = 0
  recovered = 0
  busReceived = 0
  busPublished = 0
  busPublishErrors = 0
  errors = 0
  bulkBlocks = 0
  bulkRebuilds = 0
  rebuilds = 0
  validations = 0
  mismatches = 0
  readTimeouts = 0
  storeOverwritten = 0
  unchanged = 0
  transitions = 0

  count(name: CounterName, n = 1): void {
    this[name] += n
  }

  snapshot(extra: Pick<MetricsSnapshot, Extra>): MetricsSnapshot {
    const { count: _c, snapshot: _s, batchSeconds, ...counters } = this as unknown as Record<string, unknown>
    return { ...(counters as unknown as Local), batchSeconds: (batchSeconds as Histogram).snapshot(), ...extra }
  }
}
