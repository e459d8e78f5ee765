import { InvalidInputError } from '../errors.js'

/** A mark waiting in a transaction. */
export interface HeldMark {
  products: readonly string[]
  sources: readonly string[] | null
  version: number
}

/** Something that runs callbacks after its commit (Sequelize transactions, or our own scopes). */
export interface AfterCommitTransaction {
  afterCommit(callback: () => void): void
}

/**
 * A transaction scope: marks made with `{ tx: scope }` are held; `commit()` makes them pending, `rollback()` drops
 * them. `savepoint()` opens a nested scope whose commit hands its marks to the parent.
 *
 * @example
 * ```ts
 * const tx = cache.transaction()
 * cache.markDirty(['SKU-1'], { tx })
 * await db.commit(); tx.commit()        // or tx.rollback() when the database rolled back
 * ```
 */
export class TransactionScope implements AfterCommitTransaction {
  readonly #parent: TransactionScope | undefined
  readonly #apply: (marks: HeldMark[]) => void
  #marks: HeldMark[] = []
  #callbacks: Array<() => void> = []
  #state: 'open' | 'committed' | 'rolledBack' = 'open'

  /** @internal */
  constructor(apply: (marks: HeldMark[]) => void, parent?: TransactionScope) {
    this.#apply = apply
    this.#parent = parent
  }

  get state(): 'open' | 'committed' | 'rolledBack' {
    return this.#state
  }

  /** Marks held so far. */
  get size(): number {
    return this.#marks.length
  }

  /** @internal */
  hold(mark: HeldMark): void {
    this.#assertOpen('mark')
    this.#marks.push(mark)
  }

  /** Run `callback` after the outermost scope commits; never when any enclosing scope rolls back. */
  afterCommit(callback: () => void): void {
    this.#assertOpen('register afterCommit on')
    this.#callbacks.push(callback)
  }

  /** A nested scope (savepoint): its commit hands marks to this scope, its rollback drops only its own. */
  savepoint(): TransactionScope {
    this.#assertOpen('open a savepoint in')
    return new TransactionScope(this.#apply, this)
  }

  /** Make the held marks pending (or hand them to the parent scope). */
  commit(): void {
    this.#assertOpen('commit')
    this.#state = 'committed'
    const marks = this.#marks
    const callbacks = this.#callbacks
    this.#marks = []
    this.#callbacks = []
    if (this.#parent !== undefined) {
      for (const m of marks) this.#parent.hold(m)
      for (const c of callbacks) this.#parent.afterCommit(c)
      return
    }
    if (marks.length > 0) this.#apply(marks)
    for (const c of callbacks) c()
  }

  /** Drop the held marks. */
  rollback(): void {
    this.#assertOpen('roll back')
    this.#state = 'rolledBack'
    this.#marks = []
    this.#callbacks = []
  }

  #assertOpen(what: string): void {
    if (this.#state !== 'open') {
      throw new InvalidInputError(
        `cannot ${what} a transaction scope that is already ${this.#state === 'committed' ? 'committed' : 'rolled back'}`,
      )
    }
  }
}
