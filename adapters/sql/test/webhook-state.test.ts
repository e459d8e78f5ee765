import { PGlite } from '@electric-sql/pglite'
import { ConfigError, type DeliveredState, StockcastError } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { fromMysql, fromPGlite, fromPg, type SqlDb } from '../src/index.js'
import { sqlWebhookState } from '../src/webhook-state.js'
import { describeService, mysqlDown, mysqlPool, pgDown, pgPool, uniquePrefix } from './services.js'

interface Harness {
  db: SqlDb
  /** Raw SQL with `?` placeholders. */
  sql(text: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>
  close(): Promise<void>
}

const numbered = (text: string) => {
  let n = 0
  return text.replace(/\?/g, () => `$${++n}`)
}

const DIALECTS: Array<{ name: string; down: string | null; make: () => Promise<Harness> }> = [
  {
    name: 'PostgreSQL',
    down: pgDown,
    make: async () => {
      const pool = pgPool(4)
      return {
        db: fromPg(pool),
        sql: async (text, params) => (await pool.query(numbered(text), params)).rows,
        close: () => pool.end(),
      }
    },
  },
  {
    name: 'PGlite',
    down: null,
    make: async () => {
      const pglite = new PGlite()
      await pglite.waitReady
      return {
        db: fromPGlite(pglite),
        sql: async (text, params) => (await pglite.query<Record<string, unknown>>(numbered(text), params)).rows,
        close: () => pglite.close(),
      }
    },
  },
  {
    name: 'MariaDB',
    down: mysqlDown,
    make: async () => {
      const pool = mysqlPool(4)
      return {
        db: fromMysql(pool),
        sql: async (text, params) => {
          const [rows] = await pool.query(text, params)
          return (Array.isArray(rows) ? rows : []) as Array<Record<string, unknown>>
        },
        close: () => pool.end(),
      }
    },
  },
]

const state = (over: Partial<DeliveredState> = {}): DeliveredState => ({
  out: true,
  critical: true,
  date: '2026-11-24',
  status: 'CRITICAL',
  seq: 2,
  epoch: '5b0f6a3e-1111-4c3b-9a55-000000000001',
  at: 1_790_000_000_000,
  ...over,
})

for (const d of DIALECTS) {
  describeService(d.down, `sqlWebhookState on ${d.name}`, () => {
    let h: Harness
    const tables: string[] = []
    const table = () => {
      const t = uniquePrefix('sc_whs')
      tables.push(t)
      return t
    }
    beforeAll(async () => {
      h = await d.make()
    })
    afterAll(async () => {
      for (const t of tables) await sqlWebhookState(h.db, { table: t }).drop()
      await h.close()
    })

    it('round-trips states by key (locations, non-ASCII and long keys too); missing keys are absent', async () => {
      const s = sqlWebhookState(h.db, { table: table() })
      const keys = ['A', 'A\u001fWH-1', 'Käse-€-😀', 'x'.repeat(5000)]
      const written = new Map(keys.map((k, i) => [k, state({ seq: i, out: i % 2 === 0 })]))
      await s.set(written)
      const got = await s.get([...keys, 'missing', 'a'])
      expect(got).toEqual(written)
      expect(await s.get([])).toEqual(new Map())
    })

    it('upserts per key: a second set replaces the state, one row per key', async () => {
      const t = table()
      const s = sqlWebhookState(h.db, { table: t })
      await s.set(new Map([['A', state()]]))
      await s.set(
        new Map([
          ['A', state({ out: false, critical: false, date: null, status: 'OK', seq: 4 })],
          ['B', state()],
        ]),
      )
      expect((await s.get(['A'])).get('A')).toEqual(
        state({ out: false, critical: false, date: null, status: 'OK', seq: 4 }),
      )
      const [r] = await h.sql(`SELECT COUNT(*) AS n FROM ${s.table}`)
      expect(Number(r!.n)).toBe(2)
    })

    it('writes many keys in one set', async () => {
      const s = sqlWebhookState(h.db, { table: table() })
      const many = new Map(Array.from({ length: 1200 }, (_, i) => [`P${i}`, state({ seq: i })] as const))
      await s.set(many)
      const got = await s.get([...many.keys()])
      expect(got.size).toBe(1200)
      expect(got.get('P1199')!.seq).toBe(1199)
    })

    it('install() is idempotent, also from a second instance; create: false leaves it to install()', async () => {
      const t = table()
      const manual = sqlWebhookState(h.db, { table: t, create: false })
      await expect(manual.get(['A'])).rejects.toBeInstanceOf(StockcastError)
      await manual.install()
      await manual.install()
      await sqlWebhookState(h.db, { table: t }).install()
      await manual.set(new Map([['A', state()]]))
      await sqlWebhookState(h.db, { table: t }).install()
      expect((await manual.get(['A'])).get('A')).toEqual(state())
    })

    it('rejects a bad table name or db with a ConfigError', () => {
      for (const bad of ['x; DROP TABLE y', 'a.b.c', '1abc', '']) {
        expect(() => sqlWebhookState(h.db, { table: bad })).toThrow(ConfigError)
      }
      expect(() => sqlWebhookState({} as SqlDb)).toThrow(ConfigError)
      expect(() => sqlWebhookState(h.db, { create: 'yes' as unknown as boolean })).toThrow(ConfigError)
    })
  })
}
