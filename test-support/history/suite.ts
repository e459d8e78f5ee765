// The in-suite history check (adapters/sql/test/history.postgres.test.ts and history.mysql.test.ts): a short run of
// the multi-process checker (README.md here), with the floors that make it meaningful always asserted and the
// violation assertions on when `enforce` (the test files: unless STOCKCAST_HISTORY_ENFORCE=0).
import { afterAll, expect, it } from 'vitest'
import { describeService } from '../services.js'
import { type HistoryResult, type HistoryRun, startHistory } from './run.mjs'

const WRITE_SECONDS = 16
const BASELINE_SECONDS = 4

/**
 * `enforce`: assert the violations (wrong values, stale strong reads, mismatches at rest, writer errors, dead
 * processes, outbox rows left) are 0. The floors that make a run meaningful are asserted either way.
 */
export function historySuite(
  db: 'postgres' | 'mysql',
  down: string | null,
  name: string,
  { enforce }: { enforce: boolean },
): void {
  describeService(down, `history checker: writer and cache processes, faults, every read judged (${name})`, () => {
    const runs: HistoryRun[] = []
    afterAll(async () => {
      for (const r of runs) await r.cleanup()
    }, 30_000)
    const run = async (options: Parameters<typeof startHistory>[0]): Promise<HistoryResult> => {
      const r = startHistory({ db, ...options })
      runs.push(r)
      try {
        return await r.done
      } finally {
        await r.cleanup()
      }
    }

    it(`baseline: the writers alone (no capture) get no error in ${BASELINE_SECONDS} s: any writer error later is the capture's`, async () => {
      const r = await run({ seconds: BASELINE_SECONDS, writers: 4, baseline: true })
      console.info(`[history baseline ${name}] ${r.summary.split('\n').slice(1, 3).join(' | ')}`)
      expect(r.historyProblems).toEqual([])
      expect(r.commits).toBeGreaterThan(30)
      expect(r.writerErrors).toMatchObject({ total: 0 })
    }, 20_000)

    it(`${WRITE_SECONDS} s of random transactions: no wrong value, no stale strong read, nothing wrong at rest, no writer error`, async () => {
      const r = await run({ seconds: WRITE_SECONDS, writers: 4, caches: 3 })
      console.info(`[history ${name}]\n${r.summary}`)
      // The run is sound and meaningful (always asserted).
      expect(r.historyProblems, 'the history replays to the database').toEqual([])
      expect(r.oracle.accused, 'control reads accused: the checker itself is wrong').toBe(0)
      expect(r.oracle.checked).toBeGreaterThan(50)
      expect(r.commits).toBeGreaterThan(60)
      expect(r.rollbacks).toBeGreaterThan(5)
      expect(r.reads.default).toBeGreaterThan(300)
      expect(r.reads.strong).toBeGreaterThan(100)
      expect(r.reads.many).toBeGreaterThan(300)
      expect(r.faults.killed).toHaveLength(1)
      expect(r.faults.replacements).toHaveLength(1)
      expect(r.faults.terminations).toHaveLength(2)
      expect(r.faults.terminations.every((t) => t.n > 0)).toBe(true)
      expect(r.atRest.checked).toBeGreaterThan(0)
      if (!enforce) return
      expect.soft(r.wrong.total, 'wrong values').toBe(0)
      expect.soft(r.staleStrong, 'stale strong reads').toBe(0)
      expect.soft(r.atRest.mismatches, 'mismatches at rest').toBe(0)
      expect.soft(r.writerErrors.byCode, 'writer errors').toEqual({})
      expect.soft(r.crashes, 'cache or writer processes that died').toEqual([])
      expect.soft(r.outboxLeft, 'outbox rows left at rest').toBe(0)
      // 16 s of writes, then the at-rest phase, within 90 s. (Drains of 11-25 s seen in some runs were rows another
      // listener held after its value lost a race with another instance's store write: that delay doubled per race,
      // 12.8 s and 25.6 s after 6 and 7 races. It is a fixed retryMs now; capture.unstored.test.ts.)
    }, 90_000)
  })
}
