// The history checker's judgement on synthetic histories (no service): it flags what could not have been read,
// and accepts every value that could have (boundaries included). See test-support/history/README.md.
import { projectStock } from 'stockcast'
import { describe, expect, it } from 'vitest'
import {
  buildTimelines,
  type Commit,
  checkReads,
  commitClock,
  type Read,
  timeline,
} from '../../../test-support/history/check.mjs'
import { type Change, fingerprint, inputsOf, Replay } from '../../../test-support/history/truth.mjs'

const TODAY = '2026-11-27'
/** A distinct, well-formed fingerprint per stock level. */
const fp = (stock: number) => fingerprint(projectStock({ onHand: String(stock) }, { today: TODAY, timeZone: 'UTC' }))
const A = fp(10)
const B = fp(20)
const C = fp(30)
const TORN = fp(25)

// Commit k recorded at k seconds (+ 0), its writer saw COMMIT return 5 ms later.
const commits: Commit[] = [1, 2, 3].map((k) => ({ seq: k, recUs: k * 1_000_000, doneMs: k * 1000 + 5 }))
// P: A, then B after commit 1, C after commit 2, A again after commit 3. Q never changes.
const timelines = new Map([
  ['P', timeline([0, 1, 2, 3], [A, B, C, A])],
  ['Q', timeline([0], [A])],
])
const read = (kind: Read['kind'], fpv: string, start: number, end: number, product = 'P'): Read => ({
  kind,
  proc: 't',
  product,
  fp: fpv,
  start,
  end,
})
const judge = (...reads: Read[]) => checkReads({ commits, timelines, reads, slackMs: 1 })

describe('history checker: commit clock', () => {
  const clock = commitClock(commits, 1)
  it('kmin: commits known done before the read started; kmax: commits that may have happened before it ended', () => {
    expect(clock.bounds(500, 600)).toEqual({ kmin: 0, kmax: 0 })
    // Commit 1 was recorded at 1000 ms and returned at 1005: done for a read starting at 1007.
    expect(clock.bounds(1007, 1010)).toEqual({ kmin: 1, kmax: 1 })
    // Starting at 1005 (commit 1 may have happened at 1005.9): not known done yet.
    expect(clock.bounds(1005, 1010)).toEqual({ kmin: 0, kmax: 1 })
    // A read that ended before 999 ms (+ 1 ms slack) cannot see commit 1 (recorded at 1000 ms); one that ended at
    // 999.x ms can, within the slack.
    expect(clock.bounds(990, 998).kmax).toBe(0)
    expect(clock.bounds(990, 999).kmax).toBe(1)
    // Commit 2 recorded at 2000 ms proves commit 1 done by then, without its writer's time.
    const noDone = commitClock(
      commits.map((c) => ({ recUs: c.recUs })),
      1,
    )
    expect(noDone.bounds(2001, 2002)).toEqual({ kmin: 1, kmax: 2 })
  })

  it('a clock that goes backwards is refused (no judgement on it)', () => {
    expect(() => commitClock([{ recUs: 2000 }, { recUs: 1000 }])).toThrow(/backwards/)
  })
})

describe('history checker: reads', () => {
  it('a value no state ever had (a torn read) is wrong for every kind', () => {
    const v = judge(read('default', TORN, 2500, 2510), read('strong', TORN, 2500, 2510), read('many', TORN, 2500, 2510))
    expect(v.wrong).toMatchObject({ default: 1, strong: 1, many: 1 })
    expect(v.wrongTotal).toBe(3)
    expect(v.wrongExamples[0]).toMatchObject({ product: 'P', why: 'no truth state ever had this value' })
    expect(v.wrongExamples[0]!.closest?.k).toBeDefined()
  })

  it('a value from the future (only a later state had it) is wrong', () => {
    const v = judge(read('default', C, 1500, 1600))
    expect(v.wrong.default).toBe(1)
    expect(v.onlyLater).toBe(1)
  })

  it('an old value is stale for a strong read, and only old for a default read (with its staleness)', () => {
    // B held during [commit 1, commit 2); commit 2 was done by 2005 ms (its writer) and by 3000 ms (commit 3's record).
    const v = judge(read('strong', B, 2500, 2510), read('default', B, 2500, 2510), read('many', B, 2500, 2510))
    expect(v.staleStrong).toBe(1)
    expect(v.wrongTotal).toBe(0)
    expect(v.staleStrongExamples[0]!.why).toMatch(/replaced by commit 2/)
    // 2500 - (2005 + 1): a lower bound of how long the value had been replaced.
    expect(v.staleness).toMatchObject({ reads: 2, p50: 494, max: 494 })
  })

  it('a read overlapping a commit may return the state before or after it', () => {
    // Starts at 1990 (commit 1 done, commit 2 not), ends at 2003 (commit 2 recorded at 2000, maybe done).
    const v = judge(read('strong', B, 1990, 2003), read('strong', C, 1990, 2003), read('default', C, 1990, 2003))
    expect(v.staleStrong).toBe(0)
    expect(v.wrongTotal).toBe(0)
    expect(v.current).toMatchObject({ strong: 2, default: 1 })
  })

  it('a strong read starting in the very millisecond its commit returned may still see the state before it', () => {
    // Commit 2 returned at 2005 ms: a read started at 2005 may have started before the commit.
    const v = judge(read('strong', B, 2005, 2005), read('strong', B, 2006, 2006), read('strong', B, 2007, 2007))
    // 2005 and 2006 are within the 1 ms of rounding and slack; 2007 is not.
    expect(v.staleStrong).toBe(1)
    expect(v.staleStrongExamples[0]!.window).toEqual([2007, 2007])
  })

  it('a value that recurs is current when its latest occurrence is (A before commit 1 and after commit 3)', () => {
    const v = judge(read('strong', A, 3100, 3200), read('default', A, 3100, 3200))
    expect(v.staleStrong).toBe(0)
    expect(v.staleness.max).toBe(0)
  })

  it('a product nothing changed: its one state is always right', () => {
    const v = judge(read('strong', A, 100, 200, 'Q'), read('strong', A, 5000, 5001, 'Q'))
    expect(v.staleStrong + v.wrongTotal).toBe(0)
  })

  it('control reads are judged as strong reads and counted apart', () => {
    const v = judge(read('oracle', B, 1990, 2003), read('oracle', B, 2500, 2510), read('oracle', TORN, 2500, 2510))
    expect(v.oracle).toMatchObject({ checked: 3, accused: 2 })
    expect(v.staleStrong).toBe(0)
    expect(v.wrongTotal).toBe(0)
  })
})

describe('history checker: truth', () => {
  // Images: movements [id, product, qty]; production [id, product, qty, date]; order_lines [id, product, qty, date,
  // batch]; orders [id, batch, status]; picking_items [id, product, qty, date, batch].
  const snapshot = {
    movements: [
      [1, 'P', '10.000'],
      [2, 'Q', '5.000'],
    ],
    production: [[1, 'P', '4.000', '2026-11-29']],
    order_lines: [
      [1, 'P', '3.000', '2026-11-28', null],
      [2, 'P', '100.000', '2026-11-28', 7], // picked: not counted (where picking_batch_id IS NULL)
    ],
    orders: [
      [1, 7, 'OPEN'],
      [2, 8, 'CLOSED'],
    ],
    picking_items: [
      [1, 'P', '2.000', '2026-11-27', 7], // counted: order 7 is OPEN
      [2, 'Q', '1.000', '2026-11-27', 8], // not counted: order 8 is CLOSED
    ],
  }

  it('applies the where and the related status like the schema declares', () => {
    const replay = new Replay(snapshot)
    const status = replay.statusByBatch()
    const rows = (p: string) => ({
      movements: snapshot.movements.filter((r) => r[1] === p),
      production: snapshot.production.filter((r) => r[1] === p),
      order_lines: snapshot.order_lines.filter((r) => r[1] === p),
      picking_items: snapshot.picking_items.filter((r) => r[1] === p),
    })
    expect(inputsOf(rows('P'), status)).toEqual({
      onHand: [{ quantity: '10.000' }],
      supply: [{ date: '2026-11-29', quantity: '4.000' }],
      demand: [
        { date: '2026-11-28', quantity: '3.000' },
        { date: '2026-11-27', quantity: '2.000' },
      ],
    })
    expect(inputsOf(rows('Q'), status).demand).toEqual([])
  })

  it('replays commits into per-product timelines: a status flip, a product code change, a no-op', () => {
    const flip: Change[] = [['orders', [2, 8, 'CLOSED'], [2, 8, 'QUOTED']]]
    const move: Change[] = [['movements', [1, 'P', '10.000'], [1, 'Q', '10.000']]]
    const other: Change[] = [['movements', null, [3, 'R', '1.000']]]
    const { timelines: tl, replay } = buildTimelines({
      snapshot,
      commits: [flip, move, other].map((changes, i) => ({ recUs: (i + 1) * 1000, changes })),
      products: ['P', 'Q'],
      today: TODAY,
      verifyEvery: 1,
    })
    expect(tl.get('P')!.starts).toEqual([0, 2]) // the flip of batch 8 does not touch P
    expect(tl.get('Q')!.starts).toEqual([0, 1, 2]) // Q's picking item counts from commit 1, the movement from 2
    expect(tl.get('R')!.starts).toEqual([0, 3])
    expect(replay.dump().movements.map((r) => r[1])).toEqual(['Q', 'Q', 'R'])
  })

  it('refuses a history whose old image does not match the replayed row (an unsound log)', () => {
    const replay = new Replay(snapshot)
    expect(() => replay.apply([['movements', [1, 'P', '11.000'], [1, 'P', '12.000']]])).toThrow(/history replay/)
    expect(() => replay.apply([['movements', null, [1, 'P', '1.000']]])).toThrow(/inserted twice/)
  })
})
