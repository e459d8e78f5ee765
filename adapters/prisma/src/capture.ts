import { AsyncLocalStorage } from 'node:async_hooks'
import { InvalidInputError, SourceUnavailableError, type StockCache, StockcastError } from 'stockcast'
import type { GlobalOmit } from './metadata.js'
import { pinnedProducts } from './pinned.js'
import type { ModelPlan, Plans, RelatedPlan } from './plan.js'
import { type Placement, prismaTransactionOf, type Transactions, type TxContext } from './transactions.js'

type Obj = Record<string, unknown>
type Query = (args: unknown) => Promise<unknown>

/** The write operations of a Prisma model delegate; everything else passes through untouched. */
export const WRITE_OPERATIONS: ReadonlySet<string> = new Set([
  'create',
  'createMany',
  'createManyAndReturn',
  'update',
  'updateMany',
  'updateManyAndReturn',
  'upsert',
  'delete',
  'deleteMany',
])

/** What a write must read back: a model's needed fields and, through relations, those of nested rows. */
interface NeedNode {
  readonly plan: ModelPlan
  readonly fields: readonly string[]
  readonly children: Map<string, NeedNode>
}

/** The keys the extension added to a result (deleted before the caller sees it), per level. */
interface Strip {
  readonly keys: string[]
  readonly children: Map<string, Strip>
}

const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v)
const listOf = (v: unknown): unknown[] => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v])
const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** A product id as the cache keys it (the reader reads `product::text`), or null for no product. */
function productOf(v: unknown): string | null {
  if (v === null || v === undefined) return null
  return typeof v === 'string' ? v : String(v)
}

const UNKNOWN = Symbol('unknown')

/** The value a write's data gives a scalar field: the value, `undefined` when untouched, UNKNOWN when computed. */
function literalOf(data: Obj, field: string): unknown {
  const v = data[field]
  if (v === undefined) return undefined
  if (isObj(v) && !(v instanceof Date)) {
    if ('set' in v && Object.keys(v).length === 1) return v.set
    // Prisma.skip, Decimal and the like are objects too; increment/decrement compute the value.
    if (v.constructor !== Object) return v
    return UNKNOWN
  }
  return v
}

/** Products by reason table, plus the `related` queries still to run. */
class Marks {
  readonly products = new Map<string, Set<string>>()

  add(table: string, product: string | null): void {
    if (product === null) return
    let set = this.products.get(table)
    if (set === undefined) {
      set = new Set()
      this.products.set(table, set)
    }
    set.add(product)
  }

  get size(): number {
    let n = 0
    for (const s of this.products.values()) n += s.size
    return n
  }
}

interface RelatedCall {
  readonly related: RelatedPlan
  readonly values: unknown[]
}

export interface CaptureDeps {
  readonly plans: Plans
  /** The client before this extension: reads outside any transaction (they skip the extension's hooks). */
  readonly base: Obj
  readonly cache: Pick<StockCache, 'markDirty'>
  readonly transactions: Transactions
  readonly report: (error: unknown) => void
  /** The client's global `omit` (null: none; undefined: unknown, so every write asks for the fields it needs). */
  readonly globalOmit: GlobalOmit | null | undefined
  /** The client's database provider (`readProvider`); undefined when unknown. */
  readonly provider: string | undefined
}

/** The keys of an `updateMany` call the `updateManyAndReturn` that replaces it can take over unchanged. */
const UPDATE_MANY_KEYS: ReadonlySet<string> = new Set(['where', 'data', 'limit'])

/** The `$allOperations` hook: runs the write and marks the products it touched. */
export function createCapture(deps: CaptureDeps) {
  const { plans, base, cache, transactions, report, globalOmit, provider } = deps
  // PostgreSQL and CockroachDB: `updateManyAndReturn` exists, and a product filter `= v` matches rows whose product
  // is exactly v (MySQL's default collations match other spellings: a pinned `where` proves nothing there).
  const postgresFamily = provider === 'postgresql' || provider === 'cockroachdb'
  /**
   * The `updateManyAndReturn` this hook runs through an interactive transaction client re-enters this hook: it is
   * told here to pass through (the `updateMany` that ran it marks its rows). Should the context not reach it, it
   * marks the same rows in the same transaction again: a double mark, never a missed one.
   */
  const issuing = new AsyncLocalStorage<{ readonly model: string; entered: boolean }>()
  const planOf = (model: string) => plans.byModel.get(model)
  /** Fields of a model the client leaves out of results by default, among those the extension needs. */
  const omittedByDefault = new Map<string, readonly string[] | 'unknown'>()
  for (const plan of plans.byModel.values()) {
    const omitted =
      globalOmit === undefined ? 'unknown' : plan.need.filter((f) => globalOmit?.[plan.delegate]?.[f] === true)
    omittedByDefault.set(plan.info.name, omitted)
  }
  const ensureFor = (args: Obj, node: NeedNode) =>
    ensure(args, node, (model) => omittedByDefault.get(model) ?? 'unknown')

  /** Products and related calls of one row (and of its nested rows, through `node.children`). */
  const collect = (node: NeedNode, row: unknown, marks: Marks, calls: RelatedCall[]): void => {
    for (const r of listOf(row)) {
      if (!isObj(r)) continue
      const plan = node.plan
      for (const table of plan.sourceTables) for (const f of plan.productFields) marks.add(table, productOf(r[f]))
      for (const related of plan.related) calls.push({ related, values: related.fields.map((f) => r[f]) })
      for (const [rel, child] of node.children) collect(child, r[rel], marks, calls)
    }
  }

  /** Products of a data object itself (createMany), without reading anything. */
  const collectData = (plan: ModelPlan, data: Obj, marks: Marks, calls: RelatedCall[]): void => {
    for (const table of plan.sourceTables) for (const f of plan.productFields) marks.add(table, productOf(data[f]))
    for (const related of plan.related) {
      const values = related.fields.map((f) => data[f])
      // A parameter the data leaves to a default (an autoincrement id) matches no row that could exist yet.
      if (values.every((v) => v !== undefined)) calls.push({ related, values })
    }
  }

  /** The node of a write's data: needed fields plus every relation the data writes through (nested writes). */
  const nodeOf = (plan: ModelPlan, datas: readonly unknown[], fields: readonly string[] = plan.need): NeedNode => {
    const node: NeedNode = { plan, fields, children: new Map() }
    for (const d of datas) {
      if (!isObj(d)) continue
      for (const [rel, target] of plan.paths) {
        const payload = d[rel]
        if (payload === undefined) continue
        const tplan = planOf(target)
        if (tplan === undefined) continue
        const child = nodeOf(tplan, nestedDatas(payload))
        // A model on the way to a tracked one, with nothing written further down: nothing to learn there.
        if (child.fields.length === 0 && child.children.size === 0) continue
        const prev = node.children.get(rel)
        node.children.set(rel, prev === undefined ? child : merge(prev, child))
      }
    }
    return node
  }

  /** The node of a delete: needed fields plus the rows of source models a database cascade may delete. */
  const cascadeNodeOf = (plan: ModelPlan): NeedNode => {
    const node: NeedNode = { plan, fields: plan.need, children: new Map() }
    for (const [rel, target] of plan.cascades) {
      const tplan = planOf(target)
      if (tplan !== undefined) node.children.set(rel, { plan: tplan, fields: tplan.need, children: new Map() })
    }
    return node
  }

  const runRelated = async (calls: readonly RelatedCall[], reader: Obj, marks: Marks): Promise<void> => {
    const done = new Set<string>()
    for (const { related, values } of calls) {
      const key = `${related.table}\u0000${related.parts.join('?')}\u0000${values.map((v) => `${typeof v}:${String(v)}`).join('\u0000')}`
      if (done.has(key)) continue
      done.add(key)
      let rows: unknown
      try {
        rows = await (reader.$queryRaw as (q: TemplateStringsArray, ...v: unknown[]) => Promise<unknown>)(
          related.parts,
          ...values,
        )
      } catch (cause) {
        throw new SourceUnavailableError(
          `@stockcast/prisma: the related products query on ${related.table} failed: ${messageOf(cause)}`,
          { cause, source: related.table },
        )
      }
      for (const r of listOf(rows)) if (isObj(r)) marks.add(related.table, productOf(Object.values(r)[0]))
    }
  }

  const apply = (marks: Marks, place: Placement): void => {
    for (const [table, set] of marks.products) {
      if (set.size === 0) continue
      const products = [...set]
      const reason = { tables: [table] }
      const ctx = place.ctx
      if (ctx !== undefined) {
        // An operation that finished after its transaction (not awaited inside it): the transaction is over.
        if (ctx.scope.state === 'open') cache.markDirty(products, { tx: ctx.scope, reason })
        else cache.markDirty(products, { reason })
      }
      if (place.now) cache.markDirty(products, { reason })
    }
  }

  /** The `related` queries to run once the write is done, in the right place for its transaction. */
  const afterWrite = async (calls: RelatedCall[], place: Placement, reader: Obj, marks: Marks): Promise<void> => {
    if (calls.length === 0) return
    const ctx = place.ctx
    if (ctx?.kind === 'batch' && ctx.scope.state === 'open') {
      // A batch is one statement list: nothing can run inside it. The rows are committed when the batch resolves.
      ctx.afterCommit.push(async () => {
        const late = new Marks()
        await runRelated(calls, base, late)
        apply(late, { ctx: undefined, now: true })
      })
      return
    }
    if (ctx?.kind === 'itx' && ctx.scope.state === 'open') {
      // Inside an interactive transaction a failure here fails the transaction: nothing is committed unmarked.
      await runRelated(calls, reader, marks)
      return
    }
    try {
      await runRelated(calls, reader, marks)
    } catch (error) {
      report(error)
    }
  }

  return async function capture(params: {
    model?: string
    operation: string
    args: unknown
    query: Query
  }): Promise<unknown> {
    const { model, operation, query } = params
    if (model === undefined || !WRITE_OPERATIONS.has(operation)) return query(params.args)
    const issued = issuing.getStore()
    if (issued !== undefined && !issued.entered && issued.model === model && operation === 'updateManyAndReturn') {
      issued.entered = true
      return query(params.args)
    }
    const plan = planOf(model)
    if (plan === undefined) return query(params.args)
    const args: Obj = isObj(params.args) ? params.args : {}
    if (!plan.tracked && !(operation === 'create' || operation === 'update' || operation === 'upsert')) {
      if (!((operation === 'delete' || operation === 'deleteMany') && plan.cascades.size > 0)) return query(args)
    }
    const place = transactions.place(params)
    const ctx: TxContext | undefined = place.ctx
    // Reads for this write: inside an interactive transaction through its client (same transaction), else the base.
    const reader = (ctx?.kind === 'itx' && ctx.scope.state === 'open' && isObj(ctx.client) ? ctx.client : base) as Obj
    const delegate = () => reader[plan.delegate] as Record<string, (a: unknown) => Promise<unknown>>
    const marks = new Marks()
    const before: RelatedCall[] = []
    const after: RelatedCall[] = []
    let result: unknown

    switch (operation) {
      case 'create':
      case 'createManyAndReturn': {
        const node = operation === 'create' ? nodeOf(plan, listOf(args.data)) : nodeOf(plan, [])
        if (!plan.tracked && node.children.size === 0) return query(args)
        const e = ensureFor(args, node)
        result = await query(e.args)
        collect(node, result, marks, after)
        if (e.filtered.length > 0) unseen(model, operation, e.filtered)
        strip(result, e.strip)
        break
      }
      case 'createMany': {
        for (const d of listOf(args.data)) if (isObj(d)) collectData(plan, d, marks, after)
        result = await query(args)
        break
      }
      case 'update':
      case 'upsert': {
        const datas = operation === 'update' ? [args.data] : [args.create, args.update]
        const node = nodeOf(plan, datas)
        if (!plan.tracked && node.children.size === 0) return query(args)
        const changed = operation === 'update' ? args.data : args.update
        if (node.children.size > 0 || touches(plan, changed)) {
          const old = await delegate().findUnique!({ where: args.where, select: selectOf(node) })
          collect(node, old, marks, before)
        }
        await runBefore(before, reader, marks)
        const e = ensureFor(args, node)
        result = await query(e.args)
        collect(node, result, marks, after)
        if (e.filtered.length > 0) {
          // The caller reads those relations through a filter: read the rows again, whole.
          const again = await delegate().findUnique!({ where: args.where, select: selectOf(node) }).catch(() => null)
          if (again === null) unseen(model, operation, e.filtered)
          else collect(node, again, marks, after)
        }
        strip(result, e.strip)
        break
      }
      case 'updateManyAndReturn': {
        const node = nodeOf(plan, [])
        if (touches(plan, args.data)) {
          const old = await delegate().findMany!({ where: args.where, select: selectOf(node) })
          collect(node, old, marks, before)
        }
        await runBefore(before, reader, marks)
        const e = ensureFor(args, node)
        result = await query(e.args)
        collect(node, result, marks, after)
        strip(result, e.strip)
        break
      }
      case 'updateMany': {
        const data = isObj(args.data) ? args.data : {}
        const news = plan.need.map((f) => [f, literalOf(data, f)] as const)
        const computed = news.filter(([, v]) => v === UNKNOWN).map(([f]) => f)
        if (computed.length > 0) {
          throw new InvalidInputError(
            `@stockcast/prisma: ${model}.updateMany computes ${computed.join(', ')} (increment, multiply...): the ` +
              'products it moves rows to cannot be known. Use updateManyAndReturn, or update the rows one by one.',
            { option: computed[0]! },
          )
        }
        const node = nodeOf(plan, [])
        const pinned = noReadPins(plan, args.where)
        if (pinned !== null) {
          // The rows' old products are among the pinned values (the data's new ones are marked below): no read.
          for (const v of pinned) for (const table of plan.sourceTables) marks.add(table, productOf(v))
          result = await query(args)
        } else {
          const written = await updateReturning(plan, args, params, place, reader, node)
          if (written !== null) {
            // No row changes a field a mark depends on: the rows written are the rows to mark, before and after.
            collect(node, written, marks, after)
            result = { count: written.length }
          } else {
            const old = (await delegate().findMany!({ where: args.where, select: selectOf(node) })) as unknown[]
            collect(node, old, marks, before)
            await runBefore(before, reader, marks)
            result = await query(args)
            // The rows after the write: the old values with the data's literal values over them.
            const set = news.filter(([, v]) => v !== undefined)
            if (set.length > 0) {
              const rows = old.filter(isObj).map((r) => ({ ...r, ...Object.fromEntries(set) }))
              collect(node, rows, marks, after)
            }
          }
        }
        // The products the data moves rows to, whichever rows match when the write runs: in a batch transaction
        // the read above runs before the batch, so rows an earlier statement of the same batch creates are not in
        // `old` (their old products are marked by that statement; their new ones only here).
        for (const f of plan.productFields) {
          const v = literalOf(data, f)
          if (v !== undefined && v !== UNKNOWN) for (const table of plan.sourceTables) marks.add(table, productOf(v))
        }
        break
      }
      case 'delete': {
        const node = cascadeNodeOf(plan)
        if (node.children.size > 0 || plan.related.length > 0) {
          // Rows a cascade deletes, and the related queries, are only visible before the delete.
          const old = await delegate().findUnique!({ where: args.where, select: selectOf(node) })
          collect(node, old, marks, before)
          await runBefore(before, reader, marks)
        }
        const own: NeedNode = { plan, fields: plan.need, children: new Map() }
        const e = ensureFor(args, own)
        result = await query(e.args)
        collect(own, result, marks, [])
        strip(result, e.strip)
        break
      }
      case 'deleteMany': {
        const pinned = plan.cascades.size === 0 ? noReadPins(plan, args.where) : null
        if (pinned !== null) {
          // The deleted rows' products are among the pinned values, and no cascade deletes other rows: no read.
          for (const v of pinned) for (const table of plan.sourceTables) marks.add(table, productOf(v))
          result = await query(args)
          break
        }
        // Prisma has no deleteManyAndReturn: the rows are read before they go.
        const node = cascadeNodeOf(plan)
        const old = await delegate().findMany!({ where: args.where, select: selectOf(node) })
        collect(node, old, marks, before)
        await runBefore(before, reader, marks)
        result = await query(args)
        break
      }
      default:
        return query(args)
    }
    await afterWrite(after, place, reader, marks)
    apply(marks, place)
    return result
  }

  /**
   * The products a write's `where` pins (`pinnedProducts`), when they are exactly the rows' old products: only on
   * PostgreSQL, and only for a model whose marks come from its product fields alone (no `related` query).
   */
  function noReadPins(plan: ModelPlan, where: unknown): ReadonlyArray<string | number | bigint> | null {
    if (!postgresFamily || plan.related.length > 0) return null
    return pinnedProducts(where, plan.productFields)
  }

  /**
   * An `updateMany` run as `updateManyAndReturn` selecting the needed fields: the written rows without a read before
   * the write. Null when that cannot replace it: another provider, a batch transaction (its statement list cannot
   * take another operation), a transaction Prisma does not report, or a call with keys it does not know.
   */
  async function updateReturning(
    plan: ModelPlan,
    args: Obj,
    params: unknown,
    place: Placement,
    reader: Obj,
    node: NeedNode,
  ): Promise<unknown[] | null> {
    if (!postgresFamily || node.fields.length === 0 || !isObj(args.data) || touches(plan, args.data)) return null
    if (Object.keys(args).some((k) => !UPDATE_MANY_KEYS.has(k))) return null
    const ref = prismaTransactionOf(params)
    const ctx = place.ctx
    // Outside any transaction: the base client (no extension to re-enter). Inside an interactive one: its client.
    const outside = ref === null
    const inItx =
      ref?.kind === 'itx' && ctx?.kind === 'itx' && !place.now && ctx.scope.state === 'open' && ctx.client === reader
    if (!outside && !inItx) return null
    const delegate = reader[plan.delegate] as Record<string, unknown> | undefined
    const run = delegate?.updateManyAndReturn
    if (typeof run !== 'function') return null
    const q: Obj = { where: args.where, data: args.data, select: selectOf(node) }
    if (args.limit !== undefined) q.limit = args.limit
    const rows = outside
      ? await run.call(delegate, q)
      : await issuing.run({ model: plan.info.name, entered: false }, async () => await run.call(delegate, q))
    return listOf(rows)
  }

  /** Related queries on the rows as they were: before the write, where this write's transaction sees them. */
  async function runBefore(calls: RelatedCall[], reader: Obj, marks: Marks): Promise<void> {
    if (calls.length > 0) await runRelated(calls, reader, marks)
  }

  function unseen(model: string, operation: string, relations: readonly string[]): void {
    report(
      new StockcastError(
        `@stockcast/prisma: ${model}.${operation} writes through ${relations.join(', ')}, which the call also reads ` +
          'with a filter (where/take/skip/cursor/distinct): the nested rows it wrote could not all be read back, so ' +
          'some products may not be marked. Read those relations without a filter, or in a separate query.',
      ),
    )
  }
}

/** Does the write's data change a field a mark depends on (product, related parameter, or a relation = a key)? */
function touches(plan: ModelPlan, data: unknown): boolean {
  if (!isObj(data)) return false
  for (const f of plan.need) if (data[f] !== undefined) return true
  for (const rel of plan.info.relations.keys()) if (data[rel] !== undefined) return true
  return false
}

/** The data objects inside a nested write payload (`{ create, createMany, update, upsert, ... }`). */
function nestedDatas(payload: unknown): unknown[] {
  const out: unknown[] = []
  if (!isObj(payload)) return out
  for (const [op, value] of Object.entries(payload)) {
    switch (op) {
      case 'create':
        out.push(...listOf(value))
        break
      case 'createMany':
        if (isObj(value)) out.push(...listOf(value.data))
        break
      case 'connectOrCreate':
        for (const v of listOf(value)) if (isObj(v)) out.push(v.create)
        break
      case 'update':
      case 'updateMany':
        // to-many: { where, data } (or a list of them); to-one: the data itself, or { where?, data }
        for (const v of listOf(value)) {
          if (isObj(v) && 'data' in v && Object.keys(v).every((k) => k === 'data' || k === 'where')) out.push(v.data)
          else out.push(v)
        }
        break
      case 'upsert':
        for (const v of listOf(value)) if (isObj(v)) out.push(v.create, v.update)
        break
      default:
        // connect, disconnect, set, delete, deleteMany: no data; the rows are read before and after the write.
        break
    }
  }
  return out
}

function merge(a: NeedNode, b: NeedNode): NeedNode {
  const children = new Map(a.children)
  for (const [rel, child] of b.children) {
    const prev = children.get(rel)
    children.set(rel, prev === undefined ? child : merge(prev, child))
  }
  return { plan: a.plan, fields: [...new Set([...a.fields, ...b.fields])], children }
}

/** A `select` reading a node's fields and nested rows. */
function selectOf(node: NeedNode): Obj {
  const select: Obj = {}
  for (const f of node.fields) select[f] = true
  for (const [rel, child] of node.children) select[rel] = { select: selectOf(child) }
  if (Object.keys(select).length === 0) {
    // Nothing needed from the row itself (a `related` query without parameters needs only to know rows matched),
    // but Prisma rejects an empty select: read one scalar field.
    const first = node.plan.info.columns.keys().next()
    if (first.done !== true) select[first.value] = true
  }
  return select
}

const FILTERS = ['where', 'take', 'skip', 'cursor', 'distinct'] as const

/**
 * Make a write's result include what the node needs, changing the caller's `select`/`include`/`omit` as little as
 * possible; `strip` lists what to delete from the result afterwards. A result has every scalar field unless the call
 * selects or omits some, or the client omits them globally (`omitted(model)`, 'unknown' when that cannot be read):
 * only then is `omit: { field: false }` added. Relations the caller reads through a filter cannot be widened: they
 * are returned in `filtered`.
 */
function ensure(
  args: Obj,
  node: NeedNode,
  omitted: (model: string) => readonly string[] | 'unknown',
): { args: Obj; strip: Strip; filtered: string[] } {
  const strip: Strip = { keys: [], children: new Map() }
  const filtered: string[] = []
  let out: Obj | undefined
  const copy = (): Obj => {
    out ??= { ...args }
    return out
  }
  const widen = (container: Obj, rel: string, child: NeedNode): void => {
    const current = container[rel]
    if (current === undefined || current === false) {
      container[rel] = { select: selectOf(child) }
      strip.keys.push(rel)
      return
    }
    const spec: Obj = current === true ? {} : isObj(current) ? current : {}
    if (FILTERS.some((k) => spec[k] !== undefined)) {
      filtered.push(rel)
      return
    }
    const inner = ensure(spec, child, omitted)
    container[rel] = inner.args
    if (inner.strip.keys.length > 0 || inner.strip.children.size > 0) strip.children.set(rel, inner.strip)
    filtered.push(...inner.filtered.map((f) => `${rel}.${f}`))
  }
  if (isObj(args.select)) {
    const select: Obj = { ...args.select }
    for (const f of node.fields) {
      if (select[f] !== true) {
        select[f] = true
        strip.keys.push(f)
      }
    }
    for (const [rel, child] of node.children) widen(select, rel, child)
    copy().select = select
    return { args: out ?? args, strip, filtered }
  }
  if (node.fields.length > 0) {
    const byDefault = omitted(node.plan.info.name)
    const userOmit = isObj(args.omit) ? args.omit : undefined
    const hidden = node.fields.filter((f) => userOmit?.[f] === true || byDefault === 'unknown' || byDefault.includes(f))
    if (hidden.length > 0) {
      // `omit: { f: false }` wins over the client's global omit too; what the caller would not have seen is stripped.
      const omit: Obj = { ...userOmit }
      for (const f of hidden) {
        const wasHidden = userOmit?.[f] === true || (byDefault !== 'unknown' && byDefault.includes(f))
        if (wasHidden && userOmit?.[f] !== false) strip.keys.push(f)
        omit[f] = false
      }
      copy().omit = omit
    }
  }
  if (node.children.size > 0) {
    const include: Obj = isObj(args.include) ? { ...args.include } : {}
    for (const [rel, child] of node.children) widen(include, rel, child)
    copy().include = include
  }
  return { args: out ?? args, strip, filtered }
}

function strip(result: unknown, s: Strip): void {
  if (s.keys.length === 0 && s.children.size === 0) return
  for (const r of listOf(result)) {
    if (!isObj(r)) continue
    for (const [rel, child] of s.children) strip(r[rel], child)
    for (const k of s.keys) delete r[k]
  }
}
