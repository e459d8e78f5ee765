import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { edgeProjections } from 'stockcast/conformance'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { fromMysql, fromPg, type SqlDb, sqlStore } from '../src/index.js'
import { describeService, MYSQL_URL, mysqlDown, mysqlPool, PG_URL, pgDown, pgPool, uniquePrefix } from './services.js'

// Regression: several processes running sqlStore.install() at once failed on PostgreSQL with 42710 (the table's
// row type "already exists": CREATE TABLE IF NOT EXISTS is not safe against a concurrent create). install() now
// takes turns on a lock named after the table (PostgreSQL advisory lock, MySQL GET_LOCK), which also covers the
// migration of a table of the first layout.

const FIXTURE = fileURLToPath(new URL('./fixtures/install-store.mjs', import.meta.url))
const BUILT = fileURLToPath(new URL('../dist/index.js', import.meta.url))
const PROCESSES = 12
/** Rounds (a table each), started every SPACING_MS by all processes at once: the race is narrow, so run it often. */
const ROUNDS = 30
const SPACING_MS = 250

/** Start PROCESSES installers over `tables`, round by round; resolves to each one's exit code and output. */
function installers(dialect: 'postgres' | 'mysql', url: string, tables: readonly string[]) {
  const startAt = Date.now() + 2500
  return Promise.all(
    Array.from(
      { length: PROCESSES },
      (_, i) =>
        new Promise<{ code: number | null; out: string }>((resolve) => {
          const child = spawn(
            process.execPath,
            [FIXTURE, dialect, url, String(startAt), String(SPACING_MS), String(i), ...tables],
            { stdio: ['ignore', 'pipe', 'pipe'] },
          )
          let out = ''
          child.stdout.on('data', (b) => {
            out += b
          })
          child.stderr.on('data', (b) => {
            out += b
          })
          child.on('close', (code) => resolve({ code, out: out.trim() }))
        }),
    ),
  )
}

const cases: Array<{
  name: string
  dialect: 'postgres' | 'mysql'
  down: string | null
  url: string
  open: () => { db: SqlDb; end: () => Promise<void> }
  oldLayout: (t: string) => string
  /** The second layout (before the summary columns) and how to put a JSON value in it. */
  secondLayout: (t: string) => string
  insertSecond: (t: string) => string
  q: (t: string) => string
}> = [
  {
    name: 'PostgreSQL',
    dialect: 'postgres',
    down: pgDown,
    url: PG_URL,
    open: () => {
      const pool = pgPool(2)
      return { db: fromPg(pool), end: () => pool.end() }
    },
    oldLayout: (t) =>
      `CREATE TABLE ${t} (key text PRIMARY KEY, value json NOT NULL, version bigint NOT NULL, computed_at bigint NOT NULL)`,
    secondLayout: (t) =>
      `CREATE TABLE ${t} (key_hash bytea PRIMARY KEY, key bytea NOT NULL, value json NOT NULL, version bigint NOT NULL, computed_at bigint NOT NULL)`,
    insertSecond: (t) =>
      `INSERT INTO ${t} VALUES (sha256(convert_to($1, 'UTF8')), convert_to($1, 'UTF8'), $2::json, $3, $4)`,
    q: (t) =>
      t
        .split('.')
        .map((x) => `"${x}"`)
        .join('.'),
  },
  {
    name: 'MariaDB',
    dialect: 'mysql',
    down: mysqlDown,
    url: MYSQL_URL,
    open: () => {
      const pool = mysqlPool(2)
      return { db: fromMysql(pool), end: () => pool.end() }
    },
    oldLayout: (t) =>
      `CREATE TABLE ${t} (\`key\` VARBINARY(3072) NOT NULL PRIMARY KEY, \`value\` LONGTEXT NOT NULL, \`version\` BIGINT NOT NULL, \`computed_at\` BIGINT NOT NULL)`,
    secondLayout: (t) =>
      `CREATE TABLE ${t} (\`key_hash\` BINARY(32) NOT NULL PRIMARY KEY, \`key\` LONGBLOB NOT NULL, \`value\` LONGTEXT CHARACTER SET utf8mb4 NOT NULL, \`version\` BIGINT NOT NULL, \`computed_at\` BIGINT NOT NULL)`,
    insertSecond: (t) => `INSERT INTO ${t} VALUES (UNHEX(SHA2(?, 256)), ?, ?, ?, ?)`,
    q: (t) => `\`${t}\``,
  },
]

for (const c of cases) {
  describeService(c.down, `sqlStore.install() from ${PROCESSES} processes at once on ${c.name}`, () => {
    let conn: { db: SqlDb; end: () => Promise<void> }
    const cleanup: string[] = []
    beforeAll(() => {
      conn = c.open()
    })
    afterAll(async () => {
      for (const sql of cleanup) await conn.db.execute(sql).catch(() => {})
      await conn.end()
    })

    it(`every process installs and writes; each table is created once (a fresh schema per round, ${ROUNDS} rounds)`, async () => {
      expect(existsSync(BUILT)).toBe(true) // the processes run the built adapter: npm run build first
      const tables: string[] = []
      for (let round = 0; round < ROUNDS; round++) {
        if (c.dialect === 'postgres') {
          const schema = uniquePrefix('sc_inst').toLowerCase()
          await conn.db.execute(`CREATE SCHEMA "${schema}"`)
          cleanup.push(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
          tables.push(`${schema}.projections`)
        } else {
          const table = uniquePrefix('sc_inst')
          cleanup.push(`DROP TABLE IF EXISTS \`${table}\``)
          tables.push(table)
        }
      }
      const results = await installers(c.dialect, c.url, tables)
      const failures = results.flatMap((r) => r.out.split('\n').filter((line) => !line.startsWith('ok ')))
      expect(failures).toEqual([])
      expect(results.map((r) => r.code)).toEqual(results.map(() => 0))
      for (const table of tables) {
        const rows = await conn.db.query(`SELECT version FROM ${c.q(table)}`)
        expect(rows).toHaveLength(PROCESSES)
        const store = sqlStore(conn.db, { table, prefix: '', create: false })
        expect((await store.getMany(['p0:K', `p${PROCESSES - 1}:K`])).size).toBe(2)
      }
    })

    it('processes meeting a table of the first layout migrate it once, entries kept', async () => {
      const table = uniquePrefix('sc_inst_old').toLowerCase()
      cleanup.push(`DROP TABLE IF EXISTS ${c.q(table)}`)
      await conn.db.execute(c.oldLayout(c.q(table)))
      const value = JSON.stringify({ key: 'OLD', version: 7 })
      await conn.db.execute(
        `INSERT INTO ${c.q(table)} VALUES (${c.dialect === 'postgres' ? '$1, $2, $3, $4' : '?, ?, ?, ?'})`,
        ['p0:OLD', value, 7, 7],
      )
      const results = await installers(c.dialect, c.url, [table])
      expect(results.filter((r) => r.code !== 0)).toEqual([])
      const got = await sqlStore(conn.db, { table, prefix: 'p0:', create: false }).getMany(['OLD', 'K'])
      expect(got.get('OLD')!.version).toBe(7)
      expect(got.get('K')!.version).toBe(1)
    })

    it('processes meeting a table of the second layout (JSON, no summary columns) migrate it once, entries kept and summarised', async () => {
      const table = uniquePrefix('sc_inst_v2').toLowerCase()
      cleanup.push(`DROP TABLE IF EXISTS ${c.q(table)}`)
      await conn.db.execute(c.secondLayout(c.q(table)))
      const values = edgeProjections()
      for (const v of values) {
        const key = `p0:${v.key}`
        await conn.db.execute(
          c.insertSecond(c.q(table)),
          c.dialect === 'postgres'
            ? [key, JSON.stringify(v), v.version, v.computedAt]
            : [key, key, JSON.stringify(v), v.version, v.computedAt],
        )
      }
      const results = await installers(c.dialect, c.url, [table])
      expect(results.filter((r) => r.code !== 0)).toEqual([])
      const store = sqlStore(conn.db, { table, prefix: 'p0:', create: false })
      const got = await store.getMany([...values.map((v) => v.key), 'K'])
      for (const v of values) expect(got.get(v.key)?.value, v.key).toEqual(v)
      expect(got.get('K')!.version).toBe(1)
      // The old rows are summarised from their JSON: the at-risk listing sees them.
      const rows = await conn.db.query<{ status: unknown; st: unknown; loc: unknown; n: unknown }>(
        c.dialect === 'postgres'
          ? `SELECT status, stock_today::text AS st, convert_from(location, 'UTF8') AS loc FROM ${c.q(table)} WHERE status IS NOT NULL ORDER BY key`
          : `SELECT \`status\` AS status, CAST(\`stock_today\` AS CHAR) AS st, CAST(\`location\` AS CHAR) AS loc FROM ${c.q(table)} WHERE \`status\` IS NOT NULL ORDER BY \`key\``,
      )
      const sorted = [...values].sort((a, b) => (a.key < b.key ? -1 : 1))
      expect(rows.map((r) => [r.status, Number(r.st), r.loc ?? null])).toEqual(
        sorted.map((v) => [v.status, v.stockToday, v.location]),
      )
      // A second install changes nothing.
      await store.install()
      expect((await store.getMany(values.map((v) => v.key))).size).toBe(values.length)
    })
  })
}
