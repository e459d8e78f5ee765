import { ClosedError, type MarkReason, type StockCache } from 'stockcast'
import type { SequelizeTransactionLike } from './types.js'

interface Held {
  products: string[]
  reason: MarkReason
}

/** The marks of one savepoint: held until it commits (then handed to its parent) or dropped when it rolls back. */
interface SavepointHold {
  state: 'open' | 'released' | 'rolledBack'
  marks: Held[]
}

/**
 * Marks products in step with Sequelize transactions. Outside one: at once. In a transaction: held by the cache
 * until `afterCommit` (never on rollback). In a savepoint (`sequelize.transaction({ transaction: t })`), where
 * Sequelize v6 runs `afterCommit` at the savepoint's own commit: held here, handed to the parent when the savepoint
 * commits, dropped when it rolls back; a savepoint left open is committed with its outermost transaction.
 */
export class TransactionMarks {
  readonly #cache: StockCache
  readonly #holds = new WeakMap<SequelizeTransactionLike, SavepointHold>()

  constructor(cache: StockCache) {
    this.#cache = cache
  }

  mark(tx: SequelizeTransactionLike | null | undefined, products: readonly string[], reason: MarkReason): void {
    if (products.length === 0) return
    if (tx === null || tx === undefined) {
      this.#apply(products, reason, undefined)
      return
    }
    const parent = tx.parent
    if (parent === null || parent === undefined) {
      // A committed transaction runs no more afterCommit callbacks (a write in one of its own callbacks).
      this.#apply(products, reason, tx.finished === 'commit' ? undefined : tx)
      return
    }
    const hold = this.#holdOf(tx)
    if (hold.state === 'open') hold.marks.push({ products: [...products], reason })
    else if (hold.state === 'released') this.mark(parent, products, reason)
    // rolled back: the writes are gone, so are their marks
  }

  #apply(products: readonly string[], reason: MarkReason, tx: SequelizeTransactionLike | undefined): void {
    try {
      this.#cache.markDirty(products, tx === undefined ? { reason } : { tx, reason })
    } catch (e) {
      // A closed cache takes no marks: the app is shutting down, its writes went through.
      if (!(e instanceof ClosedError)) throw e
    }
  }

  #holdOf(sp: SequelizeTransactionLike): SavepointHold {
    const known = this.#holds.get(sp)
    if (known !== undefined) return known
    const hold: SavepointHold = { state: sp.finished === 'commit' ? 'released' : 'open', marks: [] }
    this.#holds.set(sp, hold)
    if (hold.state === 'released') return hold
    const release = () => {
      if (hold.state !== 'open') return
      hold.state = 'released'
      const marks = hold.marks
      hold.marks = []
      for (const m of marks) this.mark(sp.parent, m.products, m.reason)
    }
    sp.afterCommit(release)
    let root = sp
    while (root.parent !== null && root.parent !== undefined) root = root.parent
    // A savepoint its code never committed nor rolled back is part of the outermost commit.
    if (root.finished !== 'commit') root.afterCommit(release)
    // Sequelize has no afterRollback: the savepoint's own rollback method tells us.
    const original = sp.rollback
    const rollback = function (this: SequelizeTransactionLike, ...args: unknown[]) {
      if (hold.state === 'open') {
        if (nameIsShared(root, sp)) {
          // Sequelize v6 gives a savepoint nested in a first savepoint that one's name: `ROLLBACK TO SAVEPOINT`
          // then undoes only back to the newest of the two, and some of these writes stay. Keep the marks (an
          // extra recompute is harmless; a lost mark is not).
          release()
        } else {
          hold.state = 'rolledBack'
          hold.marks = []
        }
      }
      return (original as (...a: unknown[]) => Promise<unknown>).apply(this, args)
    }
    Object.defineProperty(sp, 'rollback', { value: rollback, configurable: true, writable: true })
    return hold
  }
}

/** True when another savepoint of the same outermost transaction has `sp`'s name. */
function nameIsShared(root: SequelizeTransactionLike, sp: SequelizeTransactionLike): boolean {
  if (sp.name === undefined) return true
  const stack = [...(root.savepoints ?? [])]
  while (stack.length > 0) {
    const s = stack.pop()!
    if (s !== sp && s.name === sp.name) return true
    stack.push(...(s.savepoints ?? []))
  }
  return false
}
