import { afterAll, beforeAll, expect, it } from 'vitest'
import { fromSequelize } from '../src/index.js'
import { sleep, type TestDb, testDb } from './helpers.js'
import { describeService, pgDown, uniqueName } from './services.js'

/** Wait until `check` holds (polling), or fail with what was awaited. */
async function until(check: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

// fromSequelize(sequelize).listen holds one connection of Sequelize's pool for LISTEN; a backend that goes away is
// destroyed and replaced, and notifications flow again after onReconnect.
describeService(pgDown, 'fromSequelize().listen on PostgreSQL', () => {
  let t: TestDb
  beforeAll(async () => {
    t = await testDb('postgres', { pool: { max: 3 } })
  })
  afterAll(async () => {
    await t?.close()
  })

  it('receives notifications, survives a terminated backend, and gives its connection back on stop', async () => {
    const channel = uniqueName('sq_chan')
    const got: string[] = []
    let reconnects = 0
    const stop = await fromSequelize(t.sequelize).listen!(
      channel,
      (payload) => got.push(payload),
      () => reconnects++,
    )
    const listeners = () =>
      t.sql('SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query = $1', [`LISTEN ${channel}`])
    try {
      await t.sql(`SELECT pg_notify($1, 'one')`, [channel])
      await until(() => got.includes('one'), 'the first notification')

      const [first] = await listeners()
      expect(first).toBeDefined()
      await t.sql('SELECT pg_terminate_backend($1)', [first!.pid])
      await until(() => reconnects === 1, 'the reconnect')
      const [second] = await listeners()
      expect(second).toBeDefined()
      expect(second!.pid).not.toBe(first!.pid)
      await t.sql(`SELECT pg_notify($1, 'two')`, [channel])
      await until(() => got.includes('two'), 'a notification after the reconnect')
    } finally {
      await stop()
    }
    // UNLISTEN ran on the connection before it went back: it no longer listens, and the pool still works.
    await t.sql(`SELECT pg_notify($1, 'three')`, [channel])
    await sleep(200)
    expect(got).toEqual(['one', 'two'])
    expect((await t.sequelize.query('SELECT 1 AS one', { plain: true })) as unknown).toEqual({ one: 1 })
  })
})
