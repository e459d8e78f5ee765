import { createHash } from 'node:crypto'
import { mysqlTriggersNamed } from '../mysql-triggers.js'
import { quoteIdent, splitQualified } from '../quote.js'
import type { SqlDb } from '../types.js'
import type { ScanResult, TableChangesVerifyReport, TablesDialect } from './types.js'

/** The version of the objects `install()` creates (in each trigger's body, compared by `verify()`). */
export const MYSQL_TABLES_VERSION = 1

const MAX_NAME = 64
const q = (name: string): string => quoteIdent('mysql', name)
const lit = (s: string): string => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`

const EVENTS = [
  { suffix: 'ins', event: 'INSERT' },
  { suffix: 'upd', event: 'UPDATE' },
  { suffix: 'del', event: 'DELETE' },
] as const

function fit(name: string, suffix: string): string {
  if (name.length + suffix.length <= MAX_NAME) return name + suffix
  const hash = createHash('sha1').update(name).digest('hex').slice(0, 8)
  return `${name.slice(0, MAX_NAME - suffix.length - 9)}_${hash}${suffix}`
}

/**
 * MySQL/MariaDB: no statement triggers, so three row triggers (AFTER INSERT/UPDATE/DELETE) per table, each inserting
 * one change row per changed row. TRUNCATE fires no trigger there (nor do foreign-key cascades): not seen.
 */
export function mysqlTables(db: SqlDb, prefix: string, tables: readonly string[]): TablesDialect {
  const changesBase = `${prefix}_table_changes`
  let database: string | undefined
  const dbName = async (): Promise<string> => {
    if (database !== undefined) return database
    const [r] = await db.query<{ d: string | null }>('SELECT DATABASE() AS d')
    if (r?.d == null) throw new Error('sqlTableChanges: the connection has no current database')
    database = String(r.d)
    return database
  }
  const changes = async () => `${q(await dbName())}.${q(changesBase)}`
  const where = async (table: string): Promise<[schema: string, table: string]> => {
    const [s, t] = splitQualified(table)
    return [s ?? (await dbName()), t]
  }
  const triggerName = (table: string, suffix: string) => fit(`${prefix}_tc_${table.replace('.', '__')}`, `_${suffix}`)
  const statement = async (table: string) =>
    `INSERT INTO ${await changes()} (tbl) VALUES (${lit(splitQualified(table)[1])}) /* stockcast table changes v${MYSQL_TABLES_VERSION} */`

  /** Triggers named with our prefix whose body writes our changes table. */
  const ourTriggers = async () => {
    const mark = q(changesBase)
    return (await mysqlTriggersNamed(db, `${prefix}_tc_`)).filter((r) => r.statement.includes(mark))
  }

  const inspect = async () => {
    const missing: string[] = []
    const outdated: string[] = []
    const extra: string[] = []
    const present: string[] = []
    for (const t of tables) {
      const [s, n] = await where(t)
      const rows = await db.query<{ ty: string }>(
        'SELECT TABLE_TYPE AS ty FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
        [s, n],
      )
      if (rows[0] === undefined) missing.push(`table ${t} (watched)`)
      else if (!/BASE TABLE/i.test(String(rows[0].ty))) outdated.push(`${t} is not a table (${rows[0].ty})`)
      else present.push(t)
    }
    const [d, n] = [await dbName(), changesBase]
    const ex = await db.query(
      'SELECT 1 AS x FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
      [d, n],
    )
    if (ex.length === 0) missing.push(`table ${await changes()}`)
    const triggers = await ourTriggers()
    const expected = new Set<string>()
    for (const t of present) {
      const [s, bare] = await where(t)
      const body = await statement(t)
      for (const e of EVENTS) {
        const name = triggerName(t, e.suffix)
        expected.add(`${s}.${name}`)
        const label = `trigger ${name} on ${t}`
        const found = triggers.find((x) => x.schema === s && x.name === name)
        if (found === undefined) missing.push(label)
        else if (
          found.table !== bare ||
          found.event !== e.event ||
          found.timing !== 'AFTER' ||
          found.statement.trim() !== body
        ) {
          outdated.push(`${label}: definition differs`)
        }
      }
    }
    const extraTriggers = triggers.filter((x) => !expected.has(`${x.schema}.${x.name}`))
    for (const x of extraTriggers) extra.push(`trigger ${x.name} on ${x.schema}.${x.table}`)
    const report: TableChangesVerifyReport = {
      ok: missing.length === 0 && outdated.length === 0 && extra.length === 0,
      expectedVersion: MYSQL_TABLES_VERSION,
      missing,
      extra,
      outdated,
    }
    return { report, present, extraTriggers }
  }

  /** One session holding a named lock: two installers take turns (MySQL DDL commits on its own). */
  const locked = (fn: (s: SqlDb) => Promise<void>) =>
    db.session(async (s) => {
      const name = fit(`${prefix}_tables_install`, '')
      const [row] = await s.query<{ ok: unknown }>('SELECT GET_LOCK(?, 60) AS ok', [name])
      if (Number(row?.ok) !== 1) throw new Error(`sqlTableChanges: could not take the lock ${name} within 60 s`)
      try {
        await fn(s)
      } finally {
        await s.query('SELECT RELEASE_LOCK(?) AS released', [name]).catch(() => {})
      }
    })

  return {
    channel: null,

    async install() {
      const first = await inspect()
      const absent = first.report.missing.filter((m) => m.endsWith('(watched)'))
      if (absent.length > 0) throw new Error(`sqlTableChanges.install: ${absent.join(', ')} does not exist`)
      if (first.report.ok) return
      await locked(async (s) => {
        await s.execute(
          `CREATE TABLE IF NOT EXISTS ${await changes()} (
             id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
             tbl VARCHAR(64) NOT NULL,
             at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
             INDEX (at)
           ) ENGINE=InnoDB`,
        )
        const { present, extraTriggers } = await inspect()
        for (const x of extraTriggers) await s.execute(`DROP TRIGGER IF EXISTS ${q(x.schema)}.${q(x.name)}`)
        for (const t of present) {
          const [sch] = await where(t)
          const body = await statement(t)
          for (const e of EVENTS) {
            const name = triggerName(t, e.suffix)
            // Drop and create: a window of a few ms without the trigger on this table (MySQL has no CREATE OR
            // REPLACE TRIGGER before 8.0.?; MariaDB has it, MySQL does not).
            await s.execute(`DROP TRIGGER IF EXISTS ${q(sch)}.${q(name)}`)
            await s.execute(`CREATE TRIGGER ${q(sch)}.${q(name)} AFTER ${e.event} ON ${q(t)} FOR EACH ROW ${body}`)
          }
        }
      })
    },

    async uninstall() {
      await locked(async (s) => {
        for (const x of await ourTriggers()) await s.execute(`DROP TRIGGER IF EXISTS ${q(x.schema)}.${q(x.name)}`)
        await s.execute(`DROP TABLE IF EXISTS ${await changes()}`)
      })
    },

    async verify() {
      return (await inspect()).report
    },

    async exists() {
      const rows = await db.query(
        'SELECT 1 AS x FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?',
        [await dbName(), changesBase],
      )
      return rows.length > 0
    },

    async scan(after, holes, limit): Promise<ScanResult> {
      const table = await changes()
      const read = async (s: SqlDb): Promise<ScanResult> => {
        const inList = holes.length === 0 ? '' : ` OR id IN (${holes.map(() => '?').join(', ')})`
        const rows = await s.query<{ id: unknown; tbl: string }>(
          `SELECT id, tbl FROM ${table} WHERE id > ?${inList} ORDER BY id LIMIT ?`,
          [after, ...holes, limit],
        )
        const [range] = await s.query<{ low: unknown; high: unknown }>(
          `SELECT MIN(id) AS low, MAX(id) AS high FROM ${table}`,
        )
        return {
          rows: rows.map((r) => ({ id: Number(r.id), tbl: String(r.tbl) })),
          low: range?.low == null ? null : Number(range.low),
          high: range?.high == null ? null : Number(range.high),
        }
      }
      // One consistent snapshot for the rows and the id range.
      return db.snapshot === undefined ? read(db) : db.snapshot(read)
    },

    async baseline() {
      const table = await changes()
      const read = async (s: SqlDb) => {
        const [range] = await s.query<{ high: unknown }>(`SELECT MAX(id) AS high FROM ${table}`)
        const gaps = await s.query<{ a: unknown; b: unknown }>(
          `SELECT g.id + 1 AS a, g.next - 1 AS b
             FROM (SELECT id, LEAD(id) OVER (ORDER BY id) AS next FROM ${table}) AS g WHERE g.next > g.id + 1 ORDER BY g.id`,
        )
        return {
          high: range?.high == null ? null : Number(range.high),
          gaps: gaps.map((r) => [Number(r.a), Number(r.b)] as [number, number]),
        }
      }
      return db.snapshot === undefined ? read(db) : db.snapshot(read)
    },

    async prune(retainMs) {
      const table = await changes()
      const [r] = await db.query<{ upto: unknown }>(
        `SELECT MAX(id) AS upto FROM ${table} WHERE at < TIMESTAMPADD(MICROSECOND, ?, NOW(3))`,
        [-Math.round(retainMs * 1000)],
      )
      if (r?.upto == null) return 0
      return db.execute(`DELETE FROM ${table} WHERE id <= ?`, [r.upto])
    },
  }
}
