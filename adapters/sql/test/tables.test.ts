// sqlTableChanges (issue 14, table dependencies): `cached(fn, { tables })` entries invalidated after commit by any
// writer's plain SQL, through statement triggers (PostgreSQL, PGlite) or row triggers (MariaDB), on real databases.
import { type Cache, createCache } from 'stockcast'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { nextMs, until } from '../../../test-support/wait.js'
import { type SqlTableChanges, sqlTableChanges, type TableChangesListener } from '../src/index.js'
import { capturePrefix, DIALECTS, type DialectDb } from './capture-dialects.js'
import { describeService } from './services.js'

for (const D of DIALECTS) {
  describeService(D.down, `sqlTableChanges on ${D.name}`, () => {
    let d: DialectDb
    let prefix: string
    let changes: SqlTableChanges
    const caches: Cache[] = []
    const listeners: TableChangesListener[] = []

    /** Our objects in the catalog: triggers, functions (PostgreSQL) and the changes table. */
    const objects = async () => {
      if (d.kind === 'mysql') {
        const [t] = await d.sql(
          "SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE CONCAT(?, '%')",
          [`${prefix}_tc_`],
        )
        const [x] = await d.sql(
          'SELECT COUNT(*) AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?',
          [`${prefix}_table_changes`],
        )
        return { triggers: Number(t!.n), functions: 0, table: Number(x!.n) }
      }
      const [r] = await d.sql(
        `SELECT (SELECT count(*)::int FROM pg_trigger WHERE tgname = ?) AS triggers,
                (SELECT count(*)::int FROM pg_proc WHERE proname = ?) AS functions,
                (SELECT count(*)::int FROM pg_class WHERE relname = ? AND relnamespace = current_schema()::regnamespace) AS tbl`,
        [`${prefix}_table_changes`, `${prefix}_table_changes_fn`, `${prefix}_table_changes`],
      )
      return { triggers: Number(r!.triggers), functions: Number(r!.functions), table: Number(r!.tbl) }
    }

    beforeAll(async () => {
      d = await D.make()
      prefix = capturePrefix()
      for (const t of ['tc_orders', 'tc_payments', 'tc_other']) {
        await d.sql(`CREATE TABLE ${t} (id INT PRIMARY KEY, amount INT NOT NULL)`)
      }
      changes = sqlTableChanges(d.db, { tables: ['tc_orders', 'tc_payments'], prefix })
    }, 60_000)
    afterEach(async () => {
      for (const l of listeners.splice(0)) await l.stop()
      for (const c of caches.splice(0)) await c.close()
    })
    afterAll(async () => {
      if (d === undefined) return
      await changes?.uninstall()
      for (const t of ['tc_orders', 'tc_payments', 'tc_other']) await d.sql(`DROP TABLE IF EXISTS ${t}`)
      await d.close()
    })

    it('a raw SQL write committed elsewhere invalidates after commit; a rollback invalidates nothing; other tables untouched', async () => {
      await changes.install()
      const a = createCache({ name: 'a' })
      const b = createCache({ name: 'b' })
      caches.push(a, b)
      const listener = await changes.listen([a, b])
      listeners.push(listener)
      // listen() invalidated every watched table: values computed in that millisecond are not cached.
      await nextMs()
      let n = 0
      let m = 0
      let k = 0
      const sum = async () => {
        const [r] = await d.sql('SELECT COALESCE(SUM(amount), 0) AS s FROM tc_orders')
        return Number(r!.s)
      }
      const total = a.cached(
        async () => {
          n++
          return sum()
        },
        { key: 'total', tables: ['tc_orders'], ttl: 600_000 },
      )
      const totalB = b.cached(
        async () => {
          k++
          return sum()
        },
        { key: 'total', tables: ['tc_orders'], ttl: 600_000 },
      )
      const pay = a.cached(async () => ++m, { key: 'pay', tables: ['tc_payments'], ttl: 600_000 })
      expect(await total()).toBe(0)
      expect(await totalB()).toBe(0)
      expect(await pay()).toBe(1)
      expect(await total()).toBe(0)
      expect(n).toBe(1)

      // INSERT, UPDATE, DELETE by another connection (a PGlite has one session: its own).
      await d.sql('INSERT INTO tc_orders (id, amount) VALUES (1, 10), (2, 5)')
      await until(async () => (await total()) === 15, 10_000, 'the insert to invalidate total')
      await until(async () => (await totalB()) === 15, 10_000, 'the insert to invalidate the second cache')
      expect(k).toBeGreaterThanOrEqual(2)
      await d.sql('UPDATE tc_orders SET amount = 20 WHERE id = 1')
      await until(async () => (await total()) === 25, 10_000, 'the update to invalidate total')
      await d.sql('DELETE FROM tc_orders WHERE id = 2')
      await until(async () => (await total()) === 20, 10_000, 'the delete to invalidate total')
      // The payments entry was never touched by writes to orders.
      expect(await pay()).toBe(1)

      // Cached again (outside the invalidation's millisecond): a read no longer calls the function.
      await nextMs()
      await total()
      const before = n
      expect(await total()).toBe(20)
      expect(n).toBe(before)

      // A rolled-back write: its change row rolls back with it.
      await expect(
        d.db.transaction(async (tx) => {
          await tx.execute('INSERT INTO tc_orders (id, amount) VALUES (3, 7)')
          await tx.execute('UPDATE tc_orders SET amount = 99 WHERE id = 1')
          throw new Error('roll back')
        }),
      ).rejects.toThrow('roll back')
      // A later, unrelated commit: once it is processed the listener has certainly looked past the rollback.
      await d.sql('INSERT INTO tc_payments (id, amount) VALUES (1, 1)')
      await until(async () => (await pay()) === 2, 10_000, 'the payments write to invalidate pay')
      expect(await total()).toBe(20)
      expect(n).toBe(before)
      const st = listener.status()
      expect(st.running).toBe(true)
      expect(st.gaps).toBe(0)
      expect(st.processed).toBeGreaterThan(0)
    }, 60_000)

    // PGlite is one session: no concurrent transactions.
    it.skipIf(D.name === 'PGlite')(
      'a write committed after a later one (a lower change id committed last) is not skipped',
      async () => {
        await changes.install()
        const a = createCache({ name: 'a' })
        caches.push(a)
        listeners.push(await changes.listen(a))
        await nextMs()
        let m = 0
        const count = a.cached(
          async () => {
            const [r] = await d.sql('SELECT COUNT(*) AS c FROM tc_orders WHERE id >= 100')
            return Number(r!.c)
          },
          { key: 'count', tables: ['tc_orders'], ttl: 600_000 },
        )
        const pay = a.cached(async () => ++m, { key: 'pay2', tables: ['tc_payments'], ttl: 600_000 })
        expect(await count()).toBe(0)
        expect(await pay()).toBe(1)
        let release: () => void = () => {}
        const gate = new Promise<void>((r) => (release = r))
        let written: () => void = () => {}
        const wrote = new Promise<void>((r) => (written = r))
        // The first writer takes its change id, then waits; the second takes a higher one and commits first.
        const slow = d.db.transaction(async (tx) => {
          await tx.execute('INSERT INTO tc_orders (id, amount) VALUES (100, 1)')
          written()
          await gate
        })
        await wrote
        await d.sql('INSERT INTO tc_payments (id, amount) VALUES (100, 1)')
        await until(async () => (await pay()) === 2, 10_000, 'the later write to be processed')
        expect(await count()).toBe(0)
        release()
        await slow
        await until(
          async () => (await count()) === 1,
          10_000,
          'the earlier change id, committed last, to invalidate count',
        )
      },
      60_000,
    )

    it('install is idempotent; verify reports a dropped trigger; uninstall removes everything it created', async () => {
      await changes.install()
      await changes.install()
      expect(await changes.verify()).toMatchObject({ ok: true, missing: [], extra: [], outdated: [] })
      const perTable = d.kind === 'mysql' ? 3 : 1
      expect(await objects()).toEqual({ triggers: 2 * perTable, functions: d.kind === 'mysql' ? 0 : 1, table: 1 })

      if (d.kind === 'mysql') await d.sql(`DROP TRIGGER \`${prefix}_tc_tc_orders_del\``)
      else await d.sql(`DROP TRIGGER "${prefix}_table_changes" ON tc_orders`)
      const report = await changes.verify()
      expect(report.ok).toBe(false)
      expect(report.missing.join(' ')).toContain('tc_orders')
      await changes.install()
      expect((await changes.verify()).ok).toBe(true)

      // A table no longer watched: its trigger is an extra, removed by install().
      const fewer = sqlTableChanges(d.db, { tables: ['tc_orders'], prefix })
      const extra = await fewer.verify()
      expect(extra.ok).toBe(false)
      expect(extra.extra.join(' ')).toContain('tc_payments')

      await changes.uninstall()
      expect(await objects()).toEqual({ triggers: 0, functions: 0, table: 0 })
      const gone = await changes.verify()
      expect(gone.ok).toBe(false)
      expect(gone.missing.length).toBeGreaterThan(0)
      // A write to a table no longer watched still works (no dangling trigger).
      await d.sql('INSERT INTO tc_other (id, amount) VALUES (1, 1)')
      await d.sql('INSERT INTO tc_orders (id, amount) VALUES (10, 1)')
      await expect(changes.listen(createCache({ name: 'c' }))).rejects.toThrow(/install/)
    }, 60_000)
  })
}
