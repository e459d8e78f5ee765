import { ConfigError } from 'stockcast'
import { modelTable } from './binding.js'
import { replaceMethod } from './replace.js'
import { SavepointHolds } from './savepoints.js'
import type { SequelizeLike, SequelizeModelLike, SequelizeTransactionLike } from './types.js'

/** What `attachSequelizeTables` calls: `createCache(...)` fits (typed structurally, no import of the cache). */
export interface TablesCache {
  invalidate(target: { tables: string[] }): Promise<void>
}

export interface AttachSequelizeTablesOptions {
  /** Only the models of these tables (name, or `schema.name`). @default every model */
  tables?: readonly string[]
  /**
   * An invalidation failed after its write went through (the write is never failed for it). A closed cache is not
   * an error: it is skipped. @default a process warning with code `STOCKCAST_SEQUELIZE_TABLES_FAILED`
   */
  onError?: (error: Error) => void
}

/** Removes the hooks and wrappers `attachSequelizeTables` installed. Idempotent. */
export type DetachSequelizeTables = () => void

/** The warning code of an invalidation that failed (when no `onError` is given). */
export const TABLES_FAILED_WARNING = 'STOCKCAST_SEQUELIZE_TABLES_FAILED'

type HookOptions = Record<string | symbol, any>

let attachments = 0

/**
 * Table dependencies for `cached(fn, { tables })`: every write a Sequelize model makes calls
 * `invalidate({ tables: [its table] })` on each cache, after commit when it runs in a transaction (explicit or CLS;
 * a savepoint's writes wait for the outermost commit and vanish with its rollback), at once otherwise; never for a
 * transaction that rolls back. Covers `create`, `save`/`update`, `destroy`, `restore`, `upsert`, `bulkCreate`,
 * `Model.update`/`Model.destroy`/`Model.restore`/`truncate` (without forcing `individualHooks`) and
 * `increment`/`decrement`. The table is the model's table name, without its schema.
 *
 * Not seen: raw `sequelize.query` writes (and `queryInterface`), calls with `hooks: false`, database cascades and
 * other services: `sqlTableChanges` of @stockcast/sql (triggers and outbox) sees every writer.
 *
 * @example
 * ```ts
 * const cache = createCache({ name: 'reports' })
 * const detach = attachSequelizeTables(sequelize, cache)
 * const report = cache.cached(loadReport, { key: 'report', tables: ['orders', 'payments'] })
 * ```
 */
export function attachSequelizeTables(
  sequelize: SequelizeLike,
  caches: TablesCache | readonly TablesCache[],
  options: AttachSequelizeTablesOptions = {},
): DetachSequelizeTables {
  if (
    sequelize === null ||
    typeof sequelize !== 'object' ||
    typeof sequelize.addHook !== 'function' ||
    typeof sequelize.removeHook !== 'function'
  ) {
    throw new ConfigError('attachSequelizeTables: sequelize must be a Sequelize v6 instance', { option: 'sequelize' })
  }
  const list: readonly TablesCache[] = Array.isArray(caches) ? caches : [caches as TablesCache]
  if (
    list.length === 0 ||
    list.some((c) => c === null || typeof c !== 'object' || typeof c.invalidate !== 'function')
  ) {
    throw new ConfigError('attachSequelizeTables: caches must be a cache (createCache) or a non-empty array of them', {
      option: 'caches',
    })
  }
  if (options === null || typeof options !== 'object') {
    throw new ConfigError('attachSequelizeTables: options must be an object', { option: 'options' })
  }
  const only = options.tables
  if (only !== undefined && (!Array.isArray(only) || only.some((t) => typeof t !== 'string' || t === ''))) {
    throw new ConfigError('attachSequelizeTables: tables must be an array of table names', { option: 'tables' })
  }
  if (options.onError !== undefined && typeof options.onError !== 'function') {
    throw new ConfigError('attachSequelizeTables: onError must be a function', { option: 'onError' })
  }
  const wanted = only === undefined ? undefined : new Set(only)

  const report = (error: unknown, tables: readonly string[]): void => {
    if ((error as { code?: unknown } | null)?.code === 'E_CLOSED') return // the app is shutting down
    const e = error instanceof Error ? error : new Error(String(error))
    if (options.onError !== undefined) options.onError(e)
    else {
      process.emitWarning(
        `stockcast: invalidating tables ${tables.join(', ')} after a Sequelize write failed: ${e.message}`,
        { code: TABLES_FAILED_WARNING },
      )
    }
  }
  const send = (tables: string[]): Promise<void> =>
    Promise.all(
      list.map(async (cache) => {
        try {
          await cache.invalidate({ tables })
        } catch (e) {
          report(e, tables)
        }
      }),
    ).then(() => undefined)
  const holds = new TableHolds(send)

  const names = new WeakMap<object, string | null>()
  /** The table a model writes to (null: not one of `options.tables`). */
  const tableOf = (model: unknown): string | null => {
    if (typeof model !== 'function') return null
    let name = names.get(model)
    if (name === undefined) {
      const t = modelTable(model as unknown as SequelizeModelLike)
      name =
        wanted === undefined || wanted.has(t.name) || (t.schema !== null && wanted.has(`${t.schema}.${t.name}`))
          ? t.name
          : null
      names.set(model, name)
    }
    return name
  }

  const Sequelize = (sequelize as { constructor?: unknown }).constructor as {
    _cls?: { get(key: string): unknown }
  }
  /** The transaction a write runs in: the one passed (null: none), else the CLS one. */
  const txOf = (o: HookOptions | undefined): SequelizeTransactionLike | null => {
    const t = o?.transaction
    if (t !== undefined) return t ?? null
    return (Sequelize?._cls?.get('transaction') as SequelizeTransactionLike | undefined) ?? null
  }
  const record = (model: unknown, o: HookOptions | undefined): Promise<void> | undefined => {
    const table = tableOf(model)
    return table === null ? undefined : holds.add(txOf(o), [table])
  }

  const tag = `stockcast-tables-${++attachments}`
  const undo: Array<() => void> = []
  const hook = (type: string, fn: (this: unknown, ...args: any[]) => unknown) => {
    sequelize.addHook(type, tag, fn)
    undo.push(() => sequelize.removeHook(type, tag))
  }

  // One instance. `afterSave` is left out: it follows `afterCreate`/`afterUpdate` of the same save. Under
  // `individualHooks` the bulk hook below speaks for the whole statement (one invalidation, not one per row).
  for (const t of ['Create', 'Update', 'Destroy', 'Restore']) {
    hook(`after${t}`, function (this: unknown, _instance: unknown, o: HookOptions) {
      if (o?.individualHooks === true) return
      return record(this, o)
    })
  }
  hook('afterUpsert', function (this: unknown, _result: unknown, o: HookOptions) {
    return record(this, o)
  })
  hook('afterBulkCreate', function (this: unknown, _instances: unknown, o: HookOptions) {
    return record(this, o)
  })
  for (const t of ['Update', 'Destroy', 'Restore']) {
    hook(`afterBulk${t}`, function (this: unknown, o: HookOptions) {
      return record(this, o)
    })
  }

  // increment/decrement (instance and static) run no hooks in Sequelize v6: wrap the static method of each model.
  const patched = new WeakSet<object>()
  const patchIncrement = (model: unknown): void => {
    if (typeof model !== 'function' || patched.has(model)) return
    const m = model as unknown as SequelizeModelLike & { increment: (...args: any[]) => Promise<unknown> }
    if (typeof m.increment !== 'function') return
    patched.add(model)
    const original = m.increment
    const increment = async function (this: unknown, fields: unknown, o?: HookOptions) {
      const result = await original.call(this, fields, o)
      await record(this, o)
      return result
    }
    undo.push(replaceMethod(m, 'increment', increment))
  }
  for (const model of sequelize.modelManager?.models ?? []) patchIncrement(model)
  hook('afterDefine', (model: unknown) => patchIncrement(model))

  let detached = false
  return () => {
    if (detached) return
    detached = true
    for (const u of undo.reverse()) u()
  }
}

/**
 * Tables in step with Sequelize transactions (the table counterpart of `TransactionMarks`). Outside one: at once.
 * In a transaction: collected, and sent by one `afterCommit` callback (Sequelize awaits it: `commit()` resolves once
 * the caches are told). In a savepoint, where Sequelize v6 runs `afterCommit` at the savepoint's own commit: held
 * here, handed to the parent when it commits, dropped when it rolls back; one left open goes with the outermost
 * commit.
 */
class TableHolds {
  readonly #send: (tables: string[]) => Promise<void>
  readonly #pending = new WeakMap<SequelizeTransactionLike, Set<string>>()
  readonly #holds = new SavepointHolds<string>((parent, tables) => this.add(parent, [...new Set(tables)]))

  constructor(send: (tables: string[]) => Promise<void>) {
    this.#send = send
  }

  add(tx: SequelizeTransactionLike | null | undefined, tables: readonly string[]): Promise<void> | undefined {
    if (tables.length === 0) return undefined
    if (tx === null || tx === undefined) return this.#send([...tables])
    const parent = tx.parent
    if (parent === null || parent === undefined) {
      // A committed transaction runs no more afterCommit callbacks (a write in one of its own callbacks).
      if (tx.finished === 'commit') return this.#send([...tables])
      let pending = this.#pending.get(tx)
      if (pending === undefined) {
        const set = new Set<string>()
        pending = set
        this.#pending.set(tx, set)
        tx.afterCommit(() => {
          this.#pending.delete(tx)
          return set.size === 0 ? undefined : this.#send([...set])
        })
      }
      for (const t of tables) pending.add(t)
      return undefined
    }
    const hold = this.#holds.of(tx)
    if (hold.state === 'open') hold.items.push(...tables)
    else if (hold.state === 'released') return this.add(parent, tables)
    // rolled back: the writes are gone
    return undefined
  }
}
