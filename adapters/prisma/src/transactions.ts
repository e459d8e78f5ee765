import { AsyncLocalStorage } from 'node:async_hooks'
import type { StockCache, TransactionScope } from 'stockcast'

/** One Prisma transaction the extension saw start: its cache scope and what runs once Prisma has committed. */
export interface TxContext {
  readonly scope: TransactionScope
  readonly kind: 'itx' | 'batch'
  /** The interactive transaction's client: reads made for a write run in the same transaction through it. */
  client: unknown
  /** Prisma's id of the transaction, learned from its first operation (see `prismaTransactionOf`). */
  prismaId: string | number | undefined
  readonly parent: TxContext | undefined
  /** Work after Prisma committed and before the scope commits (batch transactions: the `related` queries). */
  readonly afterCommit: Array<() => Promise<void>>
}

/** What an operation belongs to: `ctx` holds its marks until commit; `now` marks at once as well. */
export interface Placement {
  readonly ctx: TxContext | undefined
  readonly now: boolean
}

/** The transaction an operation runs in, as Prisma's internals report it. */
export interface PrismaTransactionRef {
  kind: 'itx' | 'batch'
  id: string | number
}

/**
 * @internal The one place that reads a Prisma internal about transactions: `__internalParams.transaction` of a query
 * extension call (Prisma 7.10: `{ kind: 'itx' | 'batch', id }`, absent outside a transaction). Returns null outside
 * a transaction and undefined when Prisma no longer passes the field: the extension then holds marks for commit
 * *and* marks at once (over-marking, never under-marking). `test/transactions.canary.test.ts` fails when it moves.
 */
export function prismaTransactionOf(params: unknown): PrismaTransactionRef | null | undefined {
  const internal = (params as { __internalParams?: unknown } | null)?.__internalParams
  if (internal === null || typeof internal !== 'object') return undefined
  const tx = (internal as { transaction?: unknown }).transaction
  if (tx === undefined || tx === null) return null
  const { kind, id } = tx as { kind?: unknown; id?: unknown }
  if ((kind !== 'itx' && kind !== 'batch') || (typeof id !== 'string' && typeof id !== 'number')) return undefined
  return { kind, id }
}

/** Transaction tracking for one extended client: `$transaction` runs in a context the operations find again. */
export class Transactions {
  readonly #als = new AsyncLocalStorage<TxContext>()
  readonly #cache: Pick<StockCache, 'transaction'>
  readonly #report: (error: unknown) => void
  /** Operations inside a Prisma transaction that no `$transaction` of ours started. */
  unknownTransactions = 0

  constructor(cache: Pick<StockCache, 'transaction'>, report: (error: unknown) => void) {
    this.#cache = cache
    this.#report = report
  }

  /**
   * Where an operation's marks go. Inside a `$transaction` callback an operation may still run outside the
   * transaction (the base client used by mistake): Prisma's own transaction reference tells them apart.
   */
  place(params: unknown): Placement {
    const ctx = this.#als.getStore()
    const ref = prismaTransactionOf(params)
    if (ref === null) return NOW
    if (ref === undefined) return ctx === undefined ? NOW : { ctx, now: true }
    // The innermost context already bound to this transaction (a savepoint shares its parent's id), else the
    // innermost one of the same kind not bound yet: this is its first operation.
    for (let c = ctx; c !== undefined; c = c.parent) if (c.prismaId === ref.id) return { ctx: c, now: false }
    for (let c = ctx; c !== undefined; c = c.parent) {
      if (c.prismaId === undefined && c.kind === ref.kind) {
        c.prismaId = ref.id
        return { ctx: c, now: false }
      }
    }
    // A transaction we did not see start (its context was lost): mark now, the best left to do.
    this.unknownTransactions++
    return NOW
  }

  /**
   * `$transaction` of the extended client: Prisma's own, run in a context with a cache scope that commits after
   * Prisma committed and rolls back when Prisma threw. A `$transaction` on an interactive transaction client
   * (a nested transaction, a savepoint) gets a savepoint of the enclosing scope.
   */
  wrap(original: (...args: unknown[]) => Promise<unknown>, fallbackThis: unknown) {
    const als = this.#als
    const cache = this.#cache
    const report = this.#report
    return function $transaction(this: unknown, arg: unknown, options?: unknown): Promise<unknown> {
      const self = this ?? fallbackThis
      const outer = als.getStore()
      // Interactive transaction clients have no $extends (Prisma's ITXClientDenyList).
      const onTxClient = typeof (self as { $extends?: unknown } | null)?.$extends !== 'function'
      const savepoint = outer !== undefined && onTxClient && outer.scope.state === 'open'
      const scope = savepoint ? outer.scope.savepoint() : cache.transaction()
      const ctx: TxContext = {
        scope,
        kind: typeof arg === 'function' ? 'itx' : 'batch',
        client: undefined,
        prismaId: savepoint ? outer.prismaId : undefined,
        parent: outer,
        afterCommit: [],
      }
      const run =
        typeof arg === 'function'
          ? () =>
              original.call(
                self,
                (tx: unknown) => {
                  ctx.client = tx
                  // Prisma may start the callback from another async context (its connection pool resolves it):
                  // enter ours again, so every operation of the callback finds this transaction's context.
                  return als.run(ctx, () => (arg as (tx: unknown) => unknown)(tx))
                },
                options,
              )
          : () => original.call(self, arg, options)
      return als.run(ctx, run).then(
        async (value) => {
          for (const fn of ctx.afterCommit) {
            try {
              await fn()
            } catch (error) {
              report(error)
            }
          }
          if (scope.state === 'open') scope.commit()
          return value
        },
        (error: unknown) => {
          if (scope.state === 'open') scope.rollback()
          throw error
        },
      )
    }
  }
}

const NOW: Placement = Object.freeze({ ctx: undefined, now: true })
