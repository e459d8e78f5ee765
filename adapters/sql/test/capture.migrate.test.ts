import mysql from 'mysql2/promise'
import { ConfigError, createStockCache } from 'stockcast'
import { changeCaptureSchema } from 'stockcast/conformance'
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from 'vitest'
import { MYSQL_CAPTURE_VERSION } from '../src/capture/mysql.js'
import { POSTGRES_CAPTURE_VERSION } from '../src/capture/postgres.js'
import { fromMysql, type SqlDb, sqlChangeCapture, sqlReader } from '../src/index.js'
import { capturePrefix } from './capture-dialects.js'
import { createCcTables, outboxCount, pgTestDb, sleep, type TestDb } from './capture-helpers.js'
import { describeService, MYSQL_URL, mysqlDown, mysqlPool, pgDown, uniquePrefix } from './services.js'

// An outbox of version 1 (no lease columns; a product index that refuses long products) is reported outdated by
// verify(), and install() migrates it keeping its rows, also while a listener of version 1 holds its claim open.

const schema = changeCaptureSchema

describeService(pgDown, 'capture version 1 -> 2 on PostgreSQL', () => {
  let t: TestDb
  beforeEach(async () => {
    t = await pgTestDb(10)
    await createCcTables(t)
  })
  afterEach(async () => {
    await t.close()
  })

  /** The outbox and meta table as version 1 left them (its triggers write the same rows). */
  async function downgrade(prefix: string): Promise<void> {
    const outbox = `"${prefix}_outbox"`
    await t.sql(`ALTER TABLE ${outbox} DROP COLUMN lease_owner, DROP COLUMN lease_until`)
    await t.sql(`DROP INDEX "${prefix}_outbox_product_hidx"`)
    await t.sql(`CREATE INDEX "${prefix}_outbox_product_idx" ON ${outbox} (product, id)`)
    await t.sql(`UPDATE "${prefix}_meta" SET value = '1' WHERE key = 'version'`)
  }

  it('verify() reports the old layout; install() migrates it while a version 1 listener holds a claim and reads the source tables', async () => {
    const prefix = capturePrefix()
    const capture = sqlChangeCapture(t.db, schema, { prefix })
    await capture.install()
    await downgrade(prefix)
    for (let i = 0; i < 6; i++) await t.sql('INSERT INTO cc_movements (sku, qty) VALUES ($1, 1)', [`V${i % 3}`])
    const report = await capture.verify()
    expect(report.ok).toBe(false)
    expect(report.outdated).toContain(`version 1 installed, ${POSTGRES_CAPTURE_VERSION} expected`)
    expect(report.outdated).toContainEqual(
      expect.stringMatching(/_outbox": the layout of version 1 \(no lease columns/),
    )
    const cache = createStockCache({ schema, reader: sqlReader(t.db, schema) })
    await expect(capture.listen(cache)).rejects.toThrow(ConfigError)

    // A listener of version 1: its claim transaction locks rows; its recompute then reads the source tables on
    // another connection, and only after that does it delete and commit.
    const claim = await t.pool!.connect()
    const reader = await t.pool!.connect()
    try {
      await claim.query('BEGIN')
      const claimed = (
        await claim.query(`SELECT id FROM "${prefix}_outbox" ORDER BY id LIMIT 2 FOR UPDATE SKIP LOCKED`)
      ).rows.map((r) => Number(r.id))
      expect(claimed).toHaveLength(2)
      const t0 = Date.now()
      const installing = capture.install()
      await sleep(300)
      // If install() held the source tables while it waited for the outbox, this read would wait for install(),
      // which would wait for this claim: neither would ever finish.
      await reader.query(`SET statement_timeout = '20s'`)
      await reader.query('SELECT count(*) FROM cc_movements')
      await claim.query(`DELETE FROM "${prefix}_outbox" WHERE id = ANY($1::bigint[])`, [claimed])
      await claim.query('COMMIT')
      await installing
      expect(Date.now() - t0).toBeLessThan(15_000)
    } finally {
      claim.release()
      reader.release()
    }
    expect(await capture.verify()).toMatchObject({ ok: true, outdated: [] })
    // The rows written under version 1 are still there (minus the two the old listener processed) and get processed.
    expect(await outboxCount(t, prefix)).toBe(4)
    const listener = await capture.listen(cache)
    await listener.drain()
    expect((await cache.get('V0')).stockToday).toBe(2)
    expect(await outboxCount(t, prefix)).toBe(0)
    await listener.stop()
    await cache.close()
  })
})

describeService(mysqlDown, 'capture version 1 -> 2 on MariaDB/MySQL', () => {
  const database = uniquePrefix('sc_mig')
  let admin: mysql.Pool
  let pool: mysql.Pool
  let db: SqlDb
  beforeAll(async () => {
    admin = mysqlPool(2)
    await admin.query(`CREATE DATABASE \`${database}\``)
    const url = new URL(MYSQL_URL)
    url.pathname = `/${database}`
    pool = mysql.createPool({ uri: url.toString(), connectionLimit: 8, decimalNumbers: false, dateStrings: true })
    db = fromMysql(pool)
    for (const [table, date] of [
      ['cc_movements', 'moved_on DATE NULL'],
      ['cc_supply', 'due DATE NOT NULL'],
      ['cc_demand', 'ship DATE NOT NULL'],
    ]) {
      await pool.query(
        `CREATE TABLE ${table} (id INT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(64), qty DECIMAL(18,3) NOT NULL, ${date}) ENGINE=InnoDB`,
      )
    }
  })
  afterAll(async () => {
    await pool?.end()
    await admin?.query(`DROP DATABASE IF EXISTS \`${database}\``)
    await admin?.end()
  })

  it('verify() reports the old layout of the outbox and the bulk table; install() migrates both, keeping their rows', async () => {
    const prefix = capturePrefix()
    const capture = sqlChangeCapture(db, schema, { prefix, pollMs: 20 })
    await capture.install()
    // The tables as version 1 created them.
    await pool.query(
      `ALTER TABLE \`${prefix}_outbox\` DROP INDEX \`${prefix}_product_hash_idx\`, DROP COLUMN product_hash,
         DROP COLUMN lease_owner, DROP COLUMN lease_until,
         MODIFY product VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
         ADD INDEX \`${prefix}_product_idx\` (product, id)`,
    )
    await pool.query(
      `ALTER TABLE \`${prefix}_bulk\` DROP INDEX \`${prefix}_bulk_key\`, DROP INDEX \`${prefix}_bulk_hash_idx\`,
         DROP COLUMN product_hash, MODIFY product VARBINARY(1020) NOT NULL,
         ADD PRIMARY KEY (bulk_id, product, source_table), ADD INDEX \`${prefix}_bulk_product_idx\` (product)`,
    )
    await pool.query(`UPDATE \`${prefix}_meta\` SET value = '1' WHERE \`key\` = 'version'`)
    for (let i = 0; i < 6; i++) await pool.query('INSERT INTO cc_movements (sku, qty) VALUES (?, 1)', [`W${i % 3}`])
    await pool.query(
      `INSERT INTO \`${prefix}_bulk\` (bulk_id, product, source_table) VALUES ('dead', 'W9', 'cc_movements')`,
    )
    const report = await capture.verify()
    expect(report.ok).toBe(false)
    expect(report.outdated).toContain(`version 1 installed, ${MYSQL_CAPTURE_VERSION} expected`)
    expect(report.outdated).toContainEqual(expect.stringMatching(/_outbox`: the layout of version 1/))
    expect(report.outdated).toContainEqual(expect.stringMatching(/_bulk`: the layout of version 1/))

    await capture.install()
    expect(await capture.verify()).toMatchObject({ ok: true, outdated: [], missing: [] })
    const [[rows]] = (await pool.query(`SELECT COUNT(*) AS n FROM \`${prefix}_outbox\``)) as unknown as [
      [{ n: number }],
    ]
    expect(Number(rows.n)).toBe(6)
    const [[bulk]] = (await pool.query(
      `SELECT COUNT(*) AS n FROM \`${prefix}_bulk\` WHERE product_hash = UNHEX(SHA2('W9', 256))`,
    )) as unknown as [[{ n: number }]]
    expect(Number(bulk.n)).toBe(1)
    await pool.query(`DELETE FROM \`${prefix}_bulk\``)

    const cache = createStockCache({ schema, reader: sqlReader(db, schema), pendingMarks: capture })
    expect((await capture.pending(['W0', 'W1', 'nope'])).size).toBe(2)
    const listener = await capture.listen(cache)
    await listener.drain()
    expect((await cache.get('W0')).stockToday).toBe(2)
    await listener.stop()
    await cache.close()
    await capture.uninstall()
  })
})
