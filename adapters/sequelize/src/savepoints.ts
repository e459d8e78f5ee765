import type { SequelizeTransactionLike } from './types.js'

/** What one savepoint holds: kept until it commits (then handed to its parent), dropped when it rolls back. */
export interface SavepointHold<T> {
  state: 'open' | 'released' | 'rolledBack'
  items: T[]
}

/**
 * Items (the stock cache's marks, the tables of `attachSequelizeTables`) written inside Sequelize savepoints
 * (`sequelize.transaction({ transaction: t })`), where Sequelize v6 runs `afterCommit` at the savepoint's own commit:
 * held per savepoint, handed to the parent with `toParent` when the savepoint commits, dropped when it rolls back; a
 * savepoint left open is committed with its outermost transaction.
 */
export class SavepointHolds<T> {
  readonly #holds = new WeakMap<SequelizeTransactionLike, SavepointHold<T>>()
  readonly #toParent: (parent: SequelizeTransactionLike, items: T[]) => unknown

  constructor(toParent: (parent: SequelizeTransactionLike, items: T[]) => unknown) {
    this.#toParent = toParent
  }

  /** The hold of savepoint `sp` (a transaction with a parent), set up on first use. */
  of(sp: SequelizeTransactionLike): SavepointHold<T> {
    const known = this.#holds.get(sp)
    if (known !== undefined) return known
    const hold: SavepointHold<T> = { state: sp.finished === 'commit' ? 'released' : 'open', items: [] }
    this.#holds.set(sp, hold)
    if (hold.state === 'released') return hold
    const release = () => {
      if (hold.state !== 'open') return undefined
      hold.state = 'released'
      const items = hold.items
      hold.items = []
      return this.#toParent(sp.parent!, items)
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
          // then undoes only back to the newest of the two, and some of these writes stay. Keep what is held (an
          // extra invalidation is harmless; a lost one is not).
          void release()
        } else {
          hold.state = 'rolledBack'
          hold.items = []
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
