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

type Extra = 'l2Hits' | 'l2Misses' | 'l2Errors' | 'lockWaits' | 'freshnessLagMs'
type Local = Omit<MetricsSnapshot, Extra>
type CounterName = { [K in keyof Local]: Local[K] extends number ? K : never }[keyof Local]

/** @internal plain counters (fields, not a Map: they sit on the read path). */
export class Metrics implements Local {
  l1Hits = 0
  l1Misses = 0
  recomputes = 0
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
    const { count: _c, snapshot: _s, ...counters } = this as unknown as Record<string, unknown>
    return { ...(counters as unknown as Local), ...extra }
  }
}
