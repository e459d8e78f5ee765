// The history checker's judgement: given the commit history (sequence order = commit order, a recorded time per
// commit that lies before it, and when known the time its writer saw COMMIT return), each product's truth after
// every commit, and the reads the cache processes made (value fingerprint, start and end), say which reads could
// not have been right. Pure: no database, no processes (history.checker.test.ts runs it on synthetic histories).
//
// Times: `recUs` are microseconds since the epoch (database clock), `doneMs`, `start`, `end` milliseconds (Date.now()
// in the writer and cache processes; one machine, one clock). State k is the truth after commit k (state 0: the
// snapshot before any commit); it held from commit k until commit k+1. Commit k happened after recUs[k] and before
// both recUs[k+1] (the next transaction took the global lock only once commit k was done) and doneMs[k] + 1.
import { describeFingerprint, diffFingerprints, parseFingerprint, Replay } from './truth.mjs'

/** Largest index i in [0, n) with pred(i) true, for a predicate that is true then false; -1 when none. */
function lastTrue(n, pred) {
  let lo = 0
  let hi = n - 1
  let found = -1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (pred(mid)) {
      found = mid
      lo = mid + 1
    } else hi = mid - 1
  }
  return found
}

/**
 * The window arithmetic over a commit list (`commits[i]` is commit k = i + 1, in sequence order).
 * `bounds(start, end)` gives `kmin`, the last state certainly reached before the read started (its commit is known to
 * be done by then), and `kmax`, the last state whose commit could have happened before the read ended.
 * `slackMs` widens both ends (never narrower than the recorded times allow: soundness first).
 */
export function commitClock(commits, slackMs = 1) {
  const n = commits.length
  const rec = commits.map((c) => c.recUs)
  for (let i = 1; i < n; i++) {
    if (rec[i] < rec[i - 1]) {
      throw new Error(
        `history: recorded times go backwards at seq ${commits[i].seq} (${rec[i]} < ${rec[i - 1]}): the clock stepped`,
      )
    }
  }
  // Commits whose writer saw COMMIT return, by that time, with the running maximum of k.
  const done = []
  commits.forEach((c, i) => {
    if (c.doneMs !== undefined && c.doneMs !== null) done.push([c.doneMs, i + 1])
  })
  done.sort((a, b) => a[0] - b[0])
  const doneMax = []
  let m = 0
  for (const [, k] of done) {
    m = Math.max(m, k)
    doneMax.push(m)
  }
  return {
    n,
    bounds(start, end) {
      const endUs = (end + 1 + slackMs) * 1000
      const kmax = lastTrue(n, (i) => rec[i] < endUs) + 1
      // rec of commit j <= start: commit j-1 was done before the read started.
      const startUs = (start - slackMs) * 1000
      const j = lastTrue(n, (i) => rec[i] <= startUs) + 1
      let kmin = Math.max(0, j - 1)
      const d = lastTrue(done.length, (i) => done[i][0] + 1 <= start - slackMs)
      if (d >= 0) kmin = Math.max(kmin, doneMax[d])
      return { kmin: Math.min(kmin, kmax), kmax }
    },
    /** The latest time (ms) commit k can have happened; Infinity when unknown. */
    latestCommitMs(k) {
      let t = Number.POSITIVE_INFINITY
      if (k < n) t = rec[k] / 1000 // recUs of commit k + 1
      const c = commits[k - 1]
      if (c?.doneMs !== undefined && c.doneMs !== null) t = Math.min(t, c.doneMs + 1)
      return t
    },
    /** The earliest time (ms) commit k can have happened. */
    earliestCommitMs(k) {
      return k === 0 ? Number.NEGATIVE_INFINITY : rec[k - 1] / 1000
    },
  }
}

/** A product's truth over time: `starts[i]` is the first state of value `fps[i]` (starts[0] = 0). */
export function timeline(starts, fps) {
  const occ = new Map()
  fps.forEach((fp, i) => {
    let list = occ.get(fp)
    if (list === undefined) {
      list = []
      occ.set(fp, list)
    }
    list.push(i)
  })
  return { starts, fps, occ }
}

/**
 * Replay the history and record each product's truth after every commit. `commits[i].changes` are the row changes
 * of commit i + 1. Every `verifyEvery` commits, the incremental truth of every product is checked against a full
 * scan of the replayed tables.
 */
export function buildTimelines({ snapshot, commits, products, today, verifyEvery = 500 }) {
  const replay = new Replay(snapshot)
  const all = new Set(products)
  for (const p of replay.byProduct.keys()) all.add(p)
  const status0 = replay.statusByBatch()
  const lines = new Map()
  for (const p of all) lines.set(p, { starts: [0], fps: [replay.fingerprintOf(p, today, status0)] })
  const verify = (k) => {
    const status = replay.statusByBatch()
    for (const [p, l] of lines) {
      const full = replay.fingerprintOf(p, today, status, true)
      if (full !== l.fps[l.fps.length - 1]) {
        throw new Error(`history replay: product ${p} after commit ${k}: incremental truth differs from a full scan`)
      }
    }
  }
  commits.forEach((c, i) => {
    const k = i + 1
    const affected = replay.apply(c.changes)
    if (affected.size > 0) {
      const status = replay.statusByBatch()
      for (const p of affected) {
        let l = lines.get(p)
        if (l === undefined) {
          // A product never seen before: it had no rows, so its truth was the empty projection.
          l = { starts: [0], fps: [replay.fingerprintOf(`\u0000none`, today, status)] }
          lines.set(p, l)
        }
        const fp = replay.fingerprintOf(p, today, status)
        if (fp !== l.fps[l.fps.length - 1]) {
          l.starts.push(k)
          l.fps.push(fp)
        }
      }
    }
    if (verifyEvery > 0 && k % verifyEvery === 0) verify(k)
  })
  verify(commits.length)
  const timelines = new Map()
  for (const [p, l] of lines) timelines.set(p, timeline(l.starts, l.fps))
  return { timelines, replay }
}

const percentile = (sorted, q) =>
  sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1) + 0.5))]

/**
 * Judge every read.
 *
 * - wrong (any kind): the value equals no truth state at or before the read's end (a torn, half-applied or merged
 *   value; or one that matches only later states, which no read can see).
 * - stale strong read: a strong read whose value, not wrong, equals no state k with kmin <= k <= kmax.
 * - staleness of default reads (`default` and `many`): 0 when the value's state overlaps [kmin, kmax], else the read's
 *   start minus the latest time the commit that ended that state can have happened (a lower bound).
 *
 * - control reads (`oracle`) are judged as strong reads and counted apart: any accusation is the checker's fault.
 *
 * `reads`: `{ kind: 'default' | 'strong' | 'many' | 'oracle', proc, product, fp, start, end }`.
 */
export function checkReads({ commits, timelines, reads, slackMs = 1, t0 = 0, maxExamples = 5 }) {
  const clock = commitClock(commits, slackMs)
  const kinds = ['default', 'strong', 'many', 'oracle']
  const checked = Object.fromEntries(kinds.map((k) => [k, 0]))
  const wrong = Object.fromEntries(kinds.map((k) => [k, 0]))
  const current = Object.fromEntries(kinds.map((k) => [k, 0]))
  let staleStrong = 0
  let oracleStale = 0
  const oracleExamples = []
  let onlyLater = 0
  let unknownProduct = 0
  const staleness = []
  const wrongExamples = []
  const staleStrongExamples = []

  const near = (tl, kmin, kmax, fp) => {
    // The states the read could have seen if it were a strong read (at most 3), with what differs.
    const out = []
    const first = lastTrue(tl.starts.length, (i) => tl.starts[i] <= kmin)
    for (let i = Math.max(0, first); i < tl.starts.length && tl.starts[i] <= kmax && out.length < 3; i++) {
      out.push({
        k: tl.starts[i],
        until: i + 1 < tl.starts.length ? tl.starts[i + 1] - 1 : null,
        at: Math.round(clock.earliestCommitMs(tl.starts[i]) - t0),
        value: describeFingerprint(tl.fps[i]),
        diff: diffFingerprints(fp, tl.fps[i]),
      })
    }
    return out
  }
  const closest = (tl, kmax, fp) => {
    // The state (at or before kmax) that differs from the read in the fewest closing days.
    const a = parseFingerprint(fp)
    let best = null
    for (let i = 0; i < tl.starts.length && tl.starts[i] <= kmax; i++) {
      const b = parseFingerprint(tl.fps[i])
      let d = a.stockToday === b.stockToday ? 0 : 1
      for (let j = 0; j < a.closing.length; j++) if (a.closing[j] !== b.closing[j]) d++
      if (best === null || d <= best.d) best = { d, i }
    }
    if (best === null) return null
    return {
      k: tl.starts[best.i],
      value: describeFingerprint(tl.fps[best.i]),
      diff: diffFingerprints(fp, tl.fps[best.i]),
    }
  }
  const example = (r, kmin, kmax, tl, extra) => ({
    kind: r.kind,
    proc: r.proc,
    product: r.product,
    window: [r.start - t0, r.end - t0],
    kmin,
    kmax,
    value: describeFingerprint(r.fp),
    fp: r.fp,
    allowed: near(tl, kmin, kmax, r.fp),
    ...extra,
  })

  for (const r of reads) {
    const tl = timelines.get(r.product)
    if (tl === undefined) {
      unknownProduct++
      continue
    }
    checked[r.kind]++
    const { kmin, kmax } = clock.bounds(r.start, r.end)
    const occ = tl.occ.get(r.fp)
    // The latest occurrence of this value that began at or before kmax.
    const at = occ === undefined ? -1 : lastTrue(occ.length, (i) => tl.starts[occ[i]] <= kmax)
    if (at < 0) {
      wrong[r.kind]++
      if (occ !== undefined && r.kind !== 'oracle') onlyLater++
      const list = r.kind === 'oracle' ? oracleExamples : wrongExamples
      if (list.length < maxExamples) {
        list.push(
          example(r, kmin, kmax, tl, {
            why: occ === undefined ? 'no truth state ever had this value' : 'only a later state had this value',
            closest: closest(tl, kmax, r.fp),
          }),
        )
      }
      continue
    }
    const idx = occ[at]
    const endK = idx + 1 < tl.starts.length ? tl.starts[idx + 1] - 1 : Number.POSITIVE_INFINITY
    const isCurrent = endK >= kmin
    if (isCurrent) current[r.kind]++
    if (r.kind === 'strong' || r.kind === 'oracle') {
      if (!isCurrent) {
        if (r.kind === 'strong') staleStrong++
        else oracleStale++
        const list = r.kind === 'oracle' ? oracleExamples : staleStrongExamples
        if (list.length < maxExamples) {
          list.push(
            example(r, kmin, kmax, tl, {
              why: `its value is state ${tl.starts[idx]}..${endK}, replaced by commit ${endK + 1} (done by ${Math.round(clock.latestCommitMs(endK + 1) - t0)} ms)`,
            }),
          )
        }
      }
      continue
    }
    if (isCurrent) staleness.push(0)
    else {
      const t = clock.latestCommitMs(endK + 1)
      if (Number.isFinite(t)) staleness.push(Math.max(0, Math.floor(r.start - t)))
    }
  }
  staleness.sort((a, b) => a - b)
  return {
    commits: commits.length,
    checked,
    wrong,
    current,
    wrongTotal: wrong.default + wrong.strong + wrong.many,
    onlyLater,
    staleStrong,
    unknownProduct,
    staleness: {
      reads: staleness.length,
      p50: percentile(staleness, 0.5),
      p99: percentile(staleness, 0.99),
      max: staleness.length === 0 ? null : staleness[staleness.length - 1],
    },
    wrongExamples,
    staleStrongExamples,
    /** Control reads (one snapshot, the checker's own aggregation) that the checker accused: a checker fault. */
    oracle: { checked: checked.oracle, accused: wrong.oracle + oracleStale, examples: oracleExamples },
  }
}
