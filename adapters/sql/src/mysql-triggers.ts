import type { SqlDb } from './types.js'

/** A trigger as MySQL/MariaDB's information_schema describes it. */
export interface MysqlTrigger {
  schema: string
  name: string
  table: string
  event: string
  timing: string
  statement: string
}

/** Every trigger whose name starts with `namePrefix` (taken literally), in any schema the connection can see. */
export async function mysqlTriggersNamed(db: SqlDb, namePrefix: string): Promise<MysqlTrigger[]> {
  const rows = await db.query<{ s: string; n: string; t: string; e: string; tm: string; st: string }>(
    `SELECT TRIGGER_SCHEMA AS s, TRIGGER_NAME AS n, EVENT_OBJECT_TABLE AS t, EVENT_MANIPULATION AS e,
            ACTION_TIMING AS tm, ACTION_STATEMENT AS st
       FROM information_schema.TRIGGERS WHERE TRIGGER_NAME LIKE ? ESCAPE '!'`,
    [`${namePrefix.replace(/[!%_]/g, '!$&')}%`],
  )
  return rows.map((r) => ({
    schema: String(r.s),
    name: String(r.n),
    table: String(r.t),
    event: String(r.e),
    timing: String(r.tm),
    statement: String(r.st),
  }))
}
