// MarkTable: every transition of a unit, table-driven. Each row starts from a named state, applies one action and
// states the unit afterwards.
import { describe, expect, it } from 'vitest'
import { type BatchRef, MarkTable } from '../../src/invalidation/marks.js'

type Step =
  | { mark: { version?: number; sources?: string[] | null; bulk?: boolean } }
  | { begin: string } // a batch named so starts (joins and takes the current sequence)
  | { settle: string; stored?: boolean }
  | { leave: string }

interface Row {
  name: string
  steps: Step[]
  expect: {
    dirty: boolean
    present: boolean
    sources?: string[] | null
    version?: number
    unstored?: boolean
    bulk?: boolean
    inBatch?: boolean
    settledAgainstFirstMark?: boolean
  }
}

const rows: Row[] = [
  { name: 'clean: nothing known', steps: [], expect: { dirty: false, present: false } },
  {
    name: 'mark: clean -> dirty with its sources and version',
    steps: [{ mark: { version: 5, sources: ['a'] } }],
    expect: { dirty: true, present: true, sources: ['a'], version: 5 },
  },
  {
    name: 'mark again: sources merge, version is the highest',
    steps: [{ mark: { version: 5, sources: ['a'] } }, { mark: { version: 3, sources: ['b'] } }],
    expect: { dirty: true, present: true, sources: ['a', 'b'], version: 5 },
  },
  {
    name: 'a mark naming everything wins over named sources',
    steps: [{ mark: { sources: ['a'] } }, { mark: { sources: null } }, { mark: { sources: ['b'] } }],
    expect: { dirty: true, present: true, sources: null },
  },
  {
    name: 'settle of a batch that started after the mark: clean and forgotten',
    steps: [{ mark: {} }, { begin: 'b1' }, { settle: 'b1' }, { leave: 'b1' }],
    expect: { dirty: false, present: false, settledAgainstFirstMark: true },
  },
  {
    name: 'slow fill: a batch that started before a mark never clears it',
    steps: [{ mark: {} }, { begin: 'b1' }, { mark: {} }, { settle: 'b1' }, { leave: 'b1' }],
    expect: { dirty: true, present: true, settledAgainstFirstMark: true },
  },
  {
    name: 'in batch: the unit is known while the batch runs, even clean',
    steps: [{ begin: 'b1' }],
    expect: { dirty: false, present: true, inBatch: true },
  },
  {
    name: 'a settle the shared store did not take leaves the unit unstored (not settled)',
    steps: [{ mark: {} }, { begin: 'b1' }, { settle: 'b1', stored: false }, { leave: 'b1' }],
    expect: { dirty: false, present: true, unstored: true, settledAgainstFirstMark: false },
  },
  {
    name: 'a later stored settle clears unstored and forgets the unit',
    steps: [
      { mark: {} },
      { begin: 'b1' },
      { settle: 'b1', stored: false },
      { leave: 'b1' },
      { begin: 'b2' },
      { settle: 'b2', stored: true },
      { leave: 'b2' },
    ],
    expect: { dirty: false, present: false, unstored: false },
  },
  {
    name: 'bulk: a mark inside a bulk block flags the unit until it is settled',
    steps: [{ mark: { bulk: true } }],
    expect: { dirty: true, present: true, bulk: true },
  },
]

describe('MarkTable transitions', () => {
  for (const row of rows) {
    it(row.name, () => {
      const t = new MarkTable()
      const batches = new Map<string, BatchRef>()
      let firstTarget: number | undefined
      let now = 1000
      for (const step of row.steps) {
        if ('mark' in step) {
          const m = step.mark
          t.mark('U', m.version ?? 1, m.sources === undefined ? null : m.sources, now++, m.bulk ?? false)
          firstTarget ??= t.target('U')
        } else if ('begin' in step) {
          const b: BatchRef = { startSeq: Number.POSITIVE_INFINITY }
          t.join('U', b)
          b.startSeq = t.seq
          batches.set(step.begin, b)
        } else if ('settle' in step) t.settle('U', batches.get(step.settle)!, step.stored)
        else t.leave('U', batches.get(step.leave)!)
      }
      const u = t.units.get('U')
      expect(t.isDirty('U')).toBe(row.expect.dirty)
      expect(u !== undefined).toBe(row.expect.present)
      expect(t.dirtyCount).toBe(row.expect.dirty ? 1 : 0)
      if (row.expect.sources !== undefined) {
        expect(u!.sources === null ? null : [...u!.sources].sort()).toEqual(row.expect.sources)
      }
      if (row.expect.version !== undefined) expect(u!.version).toBe(row.expect.version)
      if (row.expect.unstored !== undefined) expect(t.isUnstored('U')).toBe(row.expect.unstored)
      if (row.expect.bulk !== undefined) expect(t.bulkCount()).toBe(row.expect.bulk ? 1 : 0)
      if (row.expect.inBatch !== undefined) expect(t.batchOf('U') !== undefined).toBe(row.expect.inBatch)
      if (row.expect.settledAgainstFirstMark !== undefined) {
        expect(t.isSettled('U', firstTarget!)).toBe(row.expect.settledAgainstFirstMark)
      }
    })
  }

  it('oldestSince is the earliest pending mark; counters count coalesced marks and kept-dirty settles', () => {
    const t = new MarkTable()
    t.mark('A', 1, null, 100, false)
    t.mark('B', 1, null, 50, false)
    t.mark('A', 1, null, 200, false)
    expect(t.oldestSince()).toBe(50)
    expect(t.coalesced).toBe(1)
    const b: BatchRef = { startSeq: t.seq - 1 }
    t.join('A', b)
    expect(t.settle('A', b, undefined)).toBe('kept')
    expect(t.keptDirty).toBe(1)
    expect(t.dirtyUnits().sort()).toEqual(['A', 'B'])
  })
})
