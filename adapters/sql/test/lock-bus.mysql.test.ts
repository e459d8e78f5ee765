import { createHash } from 'node:crypto'
import type mysql from 'mysql2/promise'
import mysqlLib from 'mysql2/promise'
import { ConfigError, LockTimeoutError } from 'stockcast'
import { runLockConformance } from 'stockcast/conformance'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fromMysql, type SqlDb, sqlBus, sqlLock } from '../src/index.js'
import { partitionScenario } from './lock-partition.js'
import { describeService, MYSQL_URL, mysqlDown, mysqlPool, uniquePrefix } from './services.js'

/** The connection holding the lock of `namespace + key` (the name sqlLock gives it), if any. */
async function holderId(pool: mysql.Pool, namespace: string, key: string): Promise<number | null> {
  const name = `stockcast_lock:${createHash('sha1')
    .update(namespace + key, 'utf8')
    .digest('hex')}`
  const [rows] = await pool.query('SELECT IS_USED_LOCK(?) AS id', [name])
  const id = (rows as Array<{ id: unknown }>)[0]?.id
  return id === null || id === undefined ? null : Number(id)
}

describeService(mysqlDown, 'sqlLock on MariaDB/MySQL', () => {
  let pool: mysql.Pool
  let db: SqlDb
  beforeAll(() => {
    // The conformance suite keeps its locks (one session each) open until its end.
    pool = mysqlPool(20)
    db = fromMysql(pool)
  })
  afterAll(async () => {
    await pool.end()
  })

  runLockConformance(({ namespace }) => sqlLock(db, { namespace }), { expires: false })

  describe('sqlLock', () => {
    it('lock names are a fixed prefix and a SHA-1: any key fits in 64 characters', async () => {
      const namespace = `${uniquePrefix('lk')}:`
      const a = sqlLock(db, { namespace })
      const b = sqlLock(db, { namespace })
      try {
        const long = 'P'.repeat(10_000)
        const release = await a.acquire(long, 1000)
        expect(await holderId(pool, namespace, long)).not.toBeNull()
        const err = await b.acquire(long, 100).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(LockTimeoutError)
        // b's last try may still be on its way (its acquire gave up at the deadline, not at the answer): b's session
        // runs one query at a time, so one more lock of b settles it first. Otherwise it could take the key right
        // after a's release and hold it until it gives it back (what CI saw once: the holder was b's connection).
        await (await b.acquire('after the deadline', 1000))()
        await release()
        expect(await holderId(pool, namespace, long)).toBeNull()
        // U+0000 is an ordinary character here.
        await (await b.acquire('A\u0000B', 1000))()
      } finally {
        await a.close()
        await b.close()
      }
    })

    it('a lock whose connection is killed: its keys are free at once, and it goes on with a new session', async () => {
      const namespace = `${uniquePrefix('lk')}:`
      const lost: Error[] = []
      const a = sqlLock(db, { namespace, onSessionLost: (e) => lost.push(e) })
      const b = sqlLock(db, { namespace })
      try {
        const releaseA = await a.acquire('K', 1000)
        const first = await holderId(pool, namespace, 'K')
        expect(first).not.toBeNull()
        await pool.query(`KILL ${first}`)
        const t0 = Date.now()
        const releaseB = await b.acquire('K', 3000)
        expect(Date.now() - t0).toBeLessThan(2000)
        const bId = await holderId(pool, namespace, 'K')
        expect(bId).not.toBe(first)

        const releaseA2 = await a.acquire('K2', 2000)
        expect(lost).toHaveLength(1)
        const second = await holderId(pool, namespace, 'K2')
        expect(second).not.toBeNull()
        expect(second).not.toBe(first)

        await releaseA() // taken on the killed session: a no-op
        expect(await holderId(pool, namespace, 'K')).toBe(bId)
        expect(await a.acquire('K', 150).catch((e: unknown) => e)).toBeInstanceOf(LockTimeoutError)
        await releaseB()
        await (await a.acquire('K', 1000))()
        await releaseA2()
        expect(await holderId(pool, namespace, 'K2')).toBeNull()
        // The killed connection is not handed out again.
        for (let i = 0; i < 25; i++) {
          const [rows] = await pool.query('SELECT 1 AS one')
          expect((rows as Array<{ one: number }>)[0]!.one).toBe(1)
        }
      } finally {
        await a.close()
        await b.close()
      }
    })

    it('a lock session that stops answering (a partition) is dropped after queryTimeoutMs: nothing hangs', async () => {
      await partitionScenario({
        url: MYSQL_URL,
        defaultPort: 3306,
        open: (url) => {
          const p = mysqlLib.createPool({ uri: url, connectionLimit: 10, connectTimeout: 3000 })
          return { db: fromMysql(p), end: () => p.end() }
        },
        direct: db,
        held: async (namespace, key) => (await holderId(pool, namespace, key)) !== null,
        namespace: `${uniquePrefix('lk')}:`,
      })
    })

    it('close() gives back every lock it holds', async () => {
      const namespace = `${uniquePrefix('lk')}:`
      const a = sqlLock(db, { namespace })
      await a.acquire('C1', 1000)
      await a.acquire('C2', 1000)
      expect(await holderId(pool, namespace, 'C1')).not.toBeNull()
      await a.close()
      expect(await holderId(pool, namespace, 'C1')).toBeNull()
      expect(await holderId(pool, namespace, 'C2')).toBeNull()
    })

    it('sqlBus is a ConfigError: MySQL/MariaDB have no LISTEN', () => {
      const err = (() => {
        try {
          sqlBus(db)
        } catch (e) {
          return e
        }
      })()
      expect(err).toBeInstanceOf(ConfigError)
      expect((err as ConfigError).option).toBe('db')
      expect((err as Error).message).toMatch(/PostgreSQL only/)
    })
  })
})
