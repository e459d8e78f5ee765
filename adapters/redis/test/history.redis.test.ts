// The multi-process history checker (test-support/history/README.md) with the caches on a Redis store, bus and lock:
// 4 raw-SQL writer processes on PostgreSQL, 3 cache processes (2 consuming the outbox) with L1 kept fresh by the bus
// alone (no ttl), a listening process SIGKILLed and replaced, backends terminated, and Redis itself killed and
// restarted mid-run. Every read is judged against the truth replayed from the commit history.
import { afterAll, expect, it } from 'vitest'
import { type HistoryRun, startHistory } from '../../../test-support/history/run.mjs'
import { pgDown } from '../../../test-support/services.js'
import { describeService, redisServerMissing } from './services.js'

const ENFORCE = process.env.STOCKCAST_HISTORY_ENFORCE !== '0'

describeService(
  pgDown ?? redisServerMissing,
  'history checker on a Redis store and bus, Redis killed mid-run (PostgreSQL)',
  () => {
    const runs: HistoryRun[] = []
    afterAll(async () => {
      for (const r of runs) await r.cleanup()
    }, 30_000)

    it('12 s of random transactions: no wrong value, no stale strong read, nothing wrong at rest, every instance recovers', async () => {
      const run = startHistory({ db: 'postgres', seconds: 12, writers: 4, caches: 3, redis: true })
      runs.push(run)
      const r = await run.done.finally(() => run.cleanup())
      console.info(`[history PostgreSQL + Redis]\n${r.summary}`)
      expect(r.historyProblems, 'the history replays to the database').toEqual([])
      expect(r.oracle.accused, 'control reads accused: the checker itself is wrong').toBe(0)
      expect(r.commits).toBeGreaterThan(60)
      expect(r.reads.default).toBeGreaterThan(200)
      expect(r.reads.strong).toBeGreaterThan(50)
      expect(r.faults.redis).toHaveLength(1)
      expect(r.faults.killed).toHaveLength(1)
      // The processes that ran throughout saw the bus go down and come back (the replacement of the killed one may
      // have started while Redis was down: its first subscription then simply came late).
      for (const proc of ['c2', 'c3']) {
        expect(r.tierEvents[proc]?.['degraded bus'], `${proc} degraded bus`).toBeGreaterThanOrEqual(1)
        expect(r.tierEvents[proc]?.['recovered bus'], `${proc} recovered bus`).toBeGreaterThanOrEqual(1)
      }
      expect(r.busDegradedAtRest).toEqual([])
      if (!ENFORCE) return
      expect.soft(r.wrong.total, 'wrong values').toBe(0)
      expect.soft(r.staleStrong, 'stale strong reads').toBe(0)
      expect.soft(r.atRest.mismatches, 'mismatches at rest').toBe(0)
      expect.soft(r.writerErrors.byCode, 'writer errors').toEqual({})
      expect.soft(r.crashes, 'cache or writer processes that died').toEqual([])
      expect.soft(r.outboxLeft, 'outbox rows left at rest').toBe(0)
    }, 90_000)
  },
)
