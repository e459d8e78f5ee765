import type { SqlDb, SqlDialect } from '@stockcast/sql'
import { ConfigError } from 'stockcast'
import type { PrismaRawClientLike } from './types.js'

export interface PrismaSqlDbOptions {
  /** The SQL family of the client's provider: `$1` placeholders for `postgres`, `?` for `mysql`. @default 'postgres' */
  dialect?: SqlDialect
  /**
   * Options of the interactive transactions `transaction()` and `session()` open (`$transaction(fn, options)`).
   * @default Prisma's defaults (maxWait 2 s, timeout 5 s)
   */
  transactionOptions?: { maxWait?: number; timeout?: number }
}

/** Prisma's raw results as the SQL adapter expects them: exact decimals and 64-bit integers as strings. */
function plain(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (value !== null && typeof value === 'object' && !(value instanceof Date) && !Array.isArray(value)) {
    const ctor = (value as { constructor?: { isDecimal?: (v: unknown) => boolean } }).constructor
    if (typeof ctor?.isDecimal === 'function' && ctor.isDecimal(value))
      return (value as { toFixed(): string }).toFixed()
  }
  return value
}

function rowsOf(result: unknown): Record<string, unknown>[] {
  if (!Array.isArray(result)) return []
  for (const row of result) {
    if (row === null || typeof row !== 'object') continue
    const r = row as Record<string, unknown>
    for (const k of Object.keys(r)) r[k] = plain(r[k])
  }
  return result as Record<string, unknown>[]
}

function onClient(
  client: PrismaRawClientLike,
  dialect: SqlDialect,
  open: <T>(fn: (tx: SqlDb) => Promise<T>) => Promise<T>,
): SqlDb {
  const db: SqlDb = {
    dialect,
    driver: 'prisma',
    async query(sql, params = []) {
      return rowsOf(await client.$queryRawUnsafe(sql, ...params)) as never
    },
    async execute(sql, params = []) {
      return Number(await client.$executeRawUnsafe(sql, ...params))
    },
    transaction: open,
    session: open,
  }
  return db
}

/** Inside an interactive transaction: a nested transaction is a savepoint on the same connection. */
function inTransaction(tx: PrismaRawClientLike, dialect: SqlDialect): SqlDb {
  const db: SqlDb = onClient(tx, dialect, async (fn) => {
    const name = `sc_sp_${Math.random().toString(36).slice(2, 10)}`
    await tx.$executeRawUnsafe(`SAVEPOINT ${name}`)
    try {
      const out = await fn(db)
      await tx.$executeRawUnsafe(`RELEASE SAVEPOINT ${name}`)
      return out
    } catch (e) {
      await tx.$executeRawUnsafe(`ROLLBACK TO SAVEPOINT ${name}`)
      throw e
    }
  })
  return db
}

/**
 * A Prisma client as an `SqlDb`, so `sqlReader` and `sqlStore` of `@stockcast/sql` run through the connections
 * Prisma already has: `$queryRawUnsafe`/`$executeRawUnsafe` with bound parameters, `$transaction` for
 * `transaction()` and `session()` (Prisma has no other way to keep one connection). Pass the client *before*
 * `$extends(stockcastExtension(...))`: the reads need none of the extension's work. No `listen()`: Prisma has no
 * LISTEN; use `fromPg(pool)` with the pool you gave `@prisma/adapter-pg` for the SQL adapter's change capture.
 *
 * @example
 * ```ts
 * const db = prismaSqlDb(prisma, { dialect: 'postgres' })
 * const cache = createStockCache({ schema, reader: sqlReader(db, schema), store: sqlStore(db) })
 * ```
 */
export function prismaSqlDb(
  prisma: PrismaRawClientLike | (() => PrismaRawClientLike),
  options: PrismaSqlDbOptions = {},
): SqlDb {
  const dialect = options.dialect ?? 'postgres'
  if (dialect !== 'postgres' && dialect !== 'mysql') {
    throw new ConfigError(`prismaSqlDb: dialect must be 'postgres' or 'mysql', got ${JSON.stringify(dialect)}`, {
      option: 'dialect',
    })
  }
  let resolved: PrismaRawClientLike | undefined
  const get = (): PrismaRawClientLike => {
    if (resolved !== undefined) return resolved
    const c = typeof prisma === 'function' ? prisma() : prisma
    if (c === null || typeof c !== 'object' || typeof c.$queryRawUnsafe !== 'function') {
      throw new ConfigError('prismaSqlDb: expected a Prisma client (with $queryRawUnsafe and $executeRawUnsafe)', {
        option: 'prisma',
      })
    }
    resolved = c
    return c
  }
  if (typeof prisma !== 'function') get()
  const txOptions = options.transactionOptions
  const open = <T>(fn: (tx: SqlDb) => Promise<T>): Promise<T> => {
    const client = get()
    if (typeof client.$transaction !== 'function') {
      throw new ConfigError('prismaSqlDb: this client has no $transaction (an interactive transaction client?)', {
        option: 'prisma',
      })
    }
    return (client.$transaction as (f: (tx: PrismaRawClientLike) => Promise<T>, o?: unknown) => Promise<T>)(
      (tx) => fn(inTransaction(tx, dialect)),
      txOptions,
    )
  }
  const lazy: PrismaRawClientLike = {
    $queryRawUnsafe: (sql, ...values) => get().$queryRawUnsafe(sql, ...values),
    $executeRawUnsafe: (sql, ...values) => get().$executeRawUnsafe(sql, ...values),
  }
  return onClient(lazy, dialect, open)
}
