import { ClosedError, type MarkReason, type StockCache } from 'stockcast'
import { SavepointHolds } from './savepoints.js'
import type { SequelizeTransactionLike } from './types.js'

interface Held {
  products: string[]
  reason: MarkReason
}

/**
 * Marks products in step with Sequelize transactions. Outside one: at once. In a transaction: held by the cache
 * until `afterCommit` (never on rollback). In a savepoint (`sequelize.transaction({ transaction: t })`), where
 * Sequelize v6 runs `afterCommit` at the savepoint's own commit: held here, handed to the parent when the savepoint
 * commits, dropped when it rolls back; a savepoint left open is committed with its outermost transaction.
 */
export class TransactionMarks {
  readonly #cache: StockCache
  readonly #holds = new SavepointHolds<Held>((parent, marks) => {
    for (const m of marks) this.mark(parent, m.products, m.reason)
  })

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
    const hold = this.#holds.of(tx)
    if (hold.state === 'open') hold.items.push({ products: [...products], reason })
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
}
