/**
 * The one state machine of a unit (a product, or a key of the general-purpose cache). Every transition of a unit
 * happens in `#dispatch`; nobody else writes a unit's state.
 *
 * ```
 *                 mark                          mark (coalesces: sources merge, version max, seq moves on)
 *   (clean) ───────────────► DIRTY ◄──────┐
 *      ▲                      │  │        │
 *      │            settle    │  │ settle, a mark newer than the batch's start
 *      │  (no mark newer than │  │ (covered := start: the batch's marks are reflected,
 *      │   the batch's start) │  │  the newer ones still pending)
 *      └──────────────────────┘  └────────┘
 *
 *   join/leave: a batch registers on the unit while it runs (`batch`), whatever the dirty state.
 *   stored:     a settle that the shared store did not take sets `unstored` until a later settle is stored.
 *   bulk:       a mark inside a `disableCacheTemporarily` block flags the unit `bulk` until it is settled.
 *   A unit that is clean, in no batch and stored is forgotten (memory stays bounded).
 * ```
 *
 * The slow-fill rule: a recompute that started before a mark never clears that mark (`settle` compares the
 * unit's newest mark sequence with the batch's start sequence).
 */
export interface Unit {
  /** Unprocessed marks exist. */
  dirty: boolean
  /** Sequence number of the newest mark (engine-wide, increasing). */
  seq: number
  /** Highest version among the pending marks. */
  version: number
  /** Sources the pending marks named; null means all. */
  sources: Set<string> | null
  /** When the unit became dirty (clock ms; 0 while clean). */
  since: number
  /** The newest mark sequence a finished recompute covered while newer marks kept the unit dirty. */
  covered: number
  /** The newest batch recomputing the unit, while it runs. */
  batch: BatchRef | undefined
  /** The newest recompute was not taken by the shared store. */
  unstored: boolean
  /** Marked inside a bulk block and not settled since. */
  bulk: boolean
}

/** A running batch as the mark table sees it: the sequence its reads cover (known once its locks are held). */
export interface BatchRef {
  startSeq: number
  /** What the batch resolves to (reads that need its result join it). */
  promise?: Promise<unknown>
}

export type MarkAction =
  | { type: 'mark'; version: number; sources: readonly string[] | null; now: number; bulk: boolean }
  | { type: 'join'; batch: BatchRef }
  | { type: 'settle'; batch: BatchRef; stored: boolean | undefined }
  | { type: 'leave'; batch: BatchRef }

/** What a settle did to a unit. */
export type SettleOutcome = 'cleaned' | 'kept' | 'clean'

export class MarkTable {
  /** Every unit with a state; the read fast path checks `units.get(u)?.dirty`. */
  readonly units = new Map<string, Unit>()
  #seq = 0
  #dirty = 0
  /** Marks that found their unit dirty already. */
  coalesced = 0
  /** Settles that kept their unit dirty because a mark arrived while the batch read. */
  keptDirty = 0

  /** The newest mark sequence handed out. A batch that starts now covers every mark up to it. */
  get seq(): number {
    return this.#seq
  }

  /** Units with unprocessed marks. */
  get dirtyCount(): number {
    return this.#dirty
  }

  isDirty(unit: string): boolean {
    return this.units.get(unit)?.dirty === true
  }

  /** Mark a unit; true when it was clean. */
  mark(unit: string, version: number, sources: readonly string[] | null, now: number, bulk: boolean): boolean {
    const wasDirty = this.isDirty(unit)
    this.#dispatch(unit, { type: 'mark', version, sources, now, bulk })
    return !wasDirty
  }

  join(unit: string, batch: BatchRef): void {
    this.#dispatch(unit, { type: 'join', batch })
  }

  /** A batch's recompute of the unit succeeded (`stored`: whether a shared store took it; undefined: no shared store). */
  settle(unit: string, batch: BatchRef, stored: boolean | undefined): SettleOutcome {
    const u = this.units.get(unit)
    const before = u?.dirty === true
    this.#dispatch(unit, { type: 'settle', batch, stored })
    if (!before) return 'clean'
    return this.units.get(unit)?.dirty === true ? 'kept' : 'cleaned'
  }

  leave(unit: string, batch: BatchRef): void {
    this.#dispatch(unit, { type: 'leave', batch })
  }

  /** The running batch of a unit, if any. */
  batchOf(unit: string): BatchRef | undefined {
    return this.units.get(unit)?.batch
  }

  /** The target a caller must see covered: the unit's newest mark now (0 when clean). */
  target(unit: string): number {
    const u = this.units.get(unit)
    return u?.dirty === true ? u.seq : 0
  }

  /** Every mark up to `target` is reflected by a finished recompute (and stored, with a shared store). */
  isSettled(unit: string, target: number): boolean {
    const u = this.units.get(unit)
    if (u === undefined) return true
    if (u.unstored) return false
    return !u.dirty || u.covered >= target
  }

  isUnstored(unit: string): boolean {
    return this.units.get(unit)?.unstored === true
  }

  dirtyUnits(): string[] {
    const out: string[] = []
    for (const [k, u] of this.units) if (u.dirty) out.push(k)
    return out
  }

  unstoredUnits(): string[] {
    const out: string[] = []
    for (const [k, u] of this.units) if (u.unstored) out.push(k)
    return out
  }

  /** Units marked inside the bulk block and not settled since. */
  bulkCount(): number {
    let n = 0
    for (const u of this.units.values()) if (u.bulk && u.dirty) n++
    return n
  }

  /** When the oldest pending mark was made (clock ms), or undefined when none. */
  oldestSince(): number | undefined {
    let oldest: number | undefined
    for (const u of this.units.values()) if (u.dirty && (oldest === undefined || u.since < oldest)) oldest = u.since
    return oldest
  }

  clear(): void {
    this.units.clear()
    this.#dirty = 0
  }

  #dispatch(key: string, action: MarkAction): void {
    let u = this.units.get(key)
    switch (action.type) {
      case 'mark': {
        const seq = ++this.#seq
        if (u === undefined) {
          u = cleanUnit()
          this.units.set(key, u)
        }
        if (!u.dirty) {
          u.dirty = true
          this.#dirty++
          u.since = action.now
          u.version = action.version
          u.sources = action.sources === null ? null : new Set(action.sources)
          u.covered = 0
        } else {
          this.coalesced++
          if (action.version > u.version) u.version = action.version
          if (action.sources === null) u.sources = null
          else if (u.sources !== null) for (const s of action.sources) u.sources.add(s)
        }
        u.seq = seq
        if (action.bulk) u.bulk = true
        return
      }
      case 'join': {
        if (u === undefined) {
          u = cleanUnit()
          this.units.set(key, u)
        }
        u.batch = action.batch
        return
      }
      case 'settle': {
        if (u === undefined) return
        if (u.dirty) {
          if (u.seq <= action.batch.startSeq) {
            u.dirty = false
            this.#dirty--
            u.since = 0
            u.sources = null
            u.covered = 0
            u.bulk = false
          } else {
            this.keptDirty++
            if (u.covered < action.batch.startSeq) u.covered = action.batch.startSeq
          }
        }
        if (action.stored !== undefined) u.unstored = !action.stored
        this.#forget(key, u)
        return
      }
      case 'leave': {
        if (u === undefined) return
        if (u.batch === action.batch) u.batch = undefined
        this.#forget(key, u)
        return
      }
    }
  }

  #forget(key: string, u: Unit): void {
    if (!u.dirty && u.batch === undefined && !u.unstored) this.units.delete(key)
  }
}

function cleanUnit(): Unit {
  return {
    dirty: false,
    seq: 0,
    version: 0,
    sources: null,
    since: 0,
    covered: 0,
    batch: undefined,
    unstored: false,
    bulk: false,
  }
}
