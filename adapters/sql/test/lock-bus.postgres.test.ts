import pg from 'pg'
import { ClosedError, ConfigError, type InvalidationMessage, InvalidInputError, LockTimeoutError } from 'stockcast'
import { runBusConformance, runLockConformance } from 'stockcast/conformance'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { notifyPayloads } from '../src/bus.js'
import { fromMysql, fromPGlite, fromPg, type SqlDb, sqlBus, sqlLock } from '../src/index.js'
import { partitionScenario } from './lock-partition.js'
import { describeService, PG_URL, pgDown, pgPool, uniquePrefix } from './services.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(10)
  }
}

/** The backend holding the advisory lock of `text` (namespace + key) in this database, if any. */
async function holderPid(pool: pg.Pool, text: string): Promise<number | undefined> {
  const { rows } = await pool.query(
    `SELECT l.pid FROM pg_locks l, (SELECT hashtextextended($1, 0) AS h) k
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid::bigint = ((k.h >> 32) & 4294967295) AND l.objid::bigint = (k.h & 4294967295)`,
    [text],
  )
  return rows[0]?.pid
}

describeService(pgDown, 'sqlLock and sqlBus on PostgreSQL', () => {
  let pool: pg.Pool
  let db: SqlDb
  beforeAll(() => {
    // The conformance suites keep their locks (one session each) open until their end.
    pool = pgPool(20)
    pool.on('error', () => {})
    db = fromPg(pool)
  })
  afterAll(async () => {
    await pool.end()
  })

  runLockConformance(({ namespace }) => sqlLock(db, { namespace }), { expires: false })
  runBusConformance(({ channel }) => sqlBus(db, { channel }))

  describe('sqlLock', () => {
    it('a lock whose session is terminated: its keys are free at once, and it goes on with a new session', async () => {
      const namespace = `${uniquePrefix('lk')}:`
      const lost: Error[] = []
      const a = sqlLock(db, { namespace, onSessionLost: (e) => lost.push(e) })
      const b = sqlLock(db, { namespace })
      try {
        const releaseA = await a.acquire('K', 1000)
        const first = await holderPid(pool, `${namespace}K`)
        expect(first).toBeDefined()
        await pool.query('SELECT pg_terminate_backend($1)', [first])
        // The lock ended with its session: another instance takes the key without waiting.
        const t0 = Date.now()
        const releaseB = await b.acquire('K', 2000)
        expect(Date.now() - t0).toBeLessThan(1000)
        const bPid = await holderPid(pool, `${namespace}K`)
        expect(bPid).toBeDefined()
        expect(bPid).not.toBe(first)

        // A's next acquire finds its session gone, says so, and takes the key on a new one.
        const releaseA2 = await a.acquire('K2', 2000)
        expect(lost).toHaveLength(1)
        expect(lost[0]!.message).toMatch(/lock session's connection was lost/)
        const second = await holderPid(pool, `${namespace}K2`)
        expect(second).toBeDefined()
        expect(second).not.toBe(first)

        // The release of the lock taken on the lost session does nothing in the database: B still holds K.
        await releaseA()
        expect(await holderPid(pool, `${namespace}K`)).toBe(bPid)
        expect(await a.acquire('K', 150).catch((e: unknown) => e)).toBeInstanceOf(LockTimeoutError)
        await releaseB()
        await (await a.acquire('K', 1000))()
        await releaseA2()
        expect(await holderPid(pool, `${namespace}K2`)).toBeUndefined()
        // The terminated connection did not go back into the pool.
        for (let i = 0; i < 5; i++) expect((await pool.query('SELECT 1 AS one')).rows[0].one).toBe(1)
      } finally {
        await a.close()
        await b.close()
      }
    })

    it('a lock session that stops answering (a partition) is dropped after queryTimeoutMs: nothing hangs', async () => {
      await partitionScenario({
        url: PG_URL,
        defaultPort: 5432,
        open: (url) => {
          const p = new pg.Pool({ connectionString: url, max: 10 })
          p.on('error', () => {})
          return { db: fromPg(p), end: () => p.end(), connections: () => p.totalCount }
        },
        direct: db,
        held: async (namespace, key) => (await holderPid(pool, namespace + key)) !== undefined,
        namespace: `${uniquePrefix('lk')}:`,
      })
    })

    it('close() gives back every lock it holds and its connection; later acquires are a ClosedError', async () => {
      const namespace = `${uniquePrefix('lk')}:`
      const a = sqlLock(db, { namespace })
      const b = sqlLock(db, { namespace })
      try {
        const r1 = await a.acquire('C1', 1000)
        await a.acquire('C2', 1000)
        const pid = await holderPid(pool, `${namespace}C1`)
        expect(pid).toBeDefined()
        await a.close()
        expect(await holderPid(pool, `${namespace}C1`)).toBeUndefined()
        expect(await holderPid(pool, `${namespace}C2`)).toBeUndefined()
        // The connection went back to the pool with no lock and no open session state.
        const { rows } = await pool.query(
          `SELECT state, pid = pg_backend_pid() AS me FROM pg_stat_activity WHERE pid = $1`,
          [pid],
        )
        expect(rows[0]?.me === true || rows[0]?.state === 'idle').toBe(true)
        await (await b.acquire('C1', 200))()
        await (await b.acquire('C2', 200))()
        await expect(a.acquire('C3', 100)).rejects.toBeInstanceOf(ClosedError)
        await r1() // a no-op after close
        await a.close() // twice is fine
      } finally {
        await a.close()
        await b.close()
      }
    })

    it('callers of one key on one object take turns in order; one that times out leaves the queue', async () => {
      const a = sqlLock(db, { namespace: `${uniquePrefix('lk')}:` })
      try {
        const order: number[] = []
        const r0 = await a.acquire('Q', 1000)
        const late = a.acquire('Q', 100).catch((e: unknown) => e)
        const waiters = [1, 2, 3].map((i) =>
          a.acquire('Q', 5000).then(async (release) => {
            order.push(i)
            await sleep(5)
            await release()
          }),
        )
        const err = await late
        expect(err).toBeInstanceOf(LockTimeoutError)
        expect((err as LockTimeoutError).message).toMatch(/another caller of this lock object holds it/)
        expect((err as LockTimeoutError).productId).toBe('Q')
        await r0()
        await Promise.all(waiters)
        expect(order).toEqual([1, 2, 3])
      } finally {
        await a.close()
      }
    })

    it('names the key in LockTimeoutError; a key PostgreSQL text cannot hold is an InvalidInputError', async () => {
      const namespace = `${uniquePrefix('lk')}:`
      const a = sqlLock(db, { namespace })
      const b = sqlLock(db, { namespace })
      try {
        const release = await a.acquire('ação "q"', 1000)
        const err = await b.acquire('ação "q"', 100).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(LockTimeoutError)
        expect((err as Error).message).toContain('"ação \\"q\\""')
        expect((err as Error).message).toMatch(/another instance holds it/)
        await release()
        await expect(a.acquire('A\u0000B', 100)).rejects.toBeInstanceOf(InvalidInputError)
        await expect(a.acquire('\ud800', 100)).rejects.toBeInstanceOf(InvalidInputError)
        await expect(a.acquire(42 as never, 100)).rejects.toBeInstanceOf(InvalidInputError)
      } finally {
        await a.close()
        await b.close()
      }
    })

    it('bad options and unsuitable connections are a ConfigError', () => {
      const bad = (fn: () => unknown, option: string) => {
        const err = (() => {
          try {
            fn()
          } catch (e) {
            return e
          }
        })()
        expect(err).toBeInstanceOf(ConfigError)
        expect((err as ConfigError).option).toBe(option)
      }
      bad(() => sqlLock(null as never), 'db')
      bad(() => sqlLock(db, { pollMs: 0 }), 'pollMs')
      bad(() => sqlLock(db, { queryTimeoutMs: 0 }), 'queryTimeoutMs')
      bad(() => sqlLock(db, { queryTimeoutMs: Number.NaN }), 'queryTimeoutMs')
      bad(() => sqlLock(db, { pollMs: Number.NaN }), 'pollMs')
      bad(() => sqlLock(db, { namespace: 1 as never }), 'namespace')
      bad(() => sqlLock(db, { namespace: 'a\u0000' }), 'namespace')
      bad(() => sqlLock(db, { timers: {} as never }), 'timers')
      bad(() => sqlLock(db, { onSessionLost: 'x' as never }), 'onSessionLost')
      // One embedded session: nothing to exclude, and its locks would not exclude each other.
      bad(() => sqlLock(fromPGlite(() => ({}) as never)), 'db')
      bad(() => sqlLock({ ...db, driver: 'prisma' }), 'db')
    })
  })

  describe('sqlBus', () => {
    it('a terminated LISTEN backend: degraded at once, recovered once it listens again, and delivers again', async () => {
      const channel = uniquePrefix('bus').toLowerCase()
      const a = sqlBus(db, { channel })
      const b = sqlBus(db, { channel })
      const got: InvalidationMessage[] = []
      const states: Array<{ state: string; cause?: Error }> = []
      const stop = await b.subscribe(
        (m) => got.push(m),
        (state, cause) => states.push(cause === undefined ? { state } : { state, cause }),
      )
      try {
        await a.publish({ products: ['B1'], version: 1, origin: 'a' })
        await until(() => got.length === 1, 5000, 'the first message')
        const { rows } = await pool.query(
          `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1`,
          [`LISTEN ${channel}`],
        )
        expect(rows).toHaveLength(1)
        await pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid])
        await until(() => states.length >= 1, 5000, 'degraded')
        expect(states[0]!.state).toBe('degraded')
        expect(states[0]!.cause?.message).toMatch(/LISTEN connection was lost/)
        await until(() => states.length >= 2, 10_000, 'recovered')
        expect(states.map((s) => s.state)).toEqual(['degraded', 'recovered'])
        await a.publish({ products: ['B2'], version: 2, origin: 'a' })
        await until(() => got.length === 2, 5000, 'a message after the reconnect')
        expect(got[1]).toEqual({ products: ['B2'], version: 2, origin: 'a' })
      } finally {
        await stop()
      }
      // Stopped: nothing more is reported or delivered.
      await a.publish({ products: ['B3'], version: 3, origin: 'a' })
      await sleep(100)
      expect(got).toHaveLength(2)
      expect(states).toHaveLength(2)
    })

    it('publishing 5 000 products: several notifications under 8000 bytes, each a valid message; arrives whole', async () => {
      const channel = uniquePrefix('bus').toLowerCase()
      const a = sqlBus(db, { channel })
      const raw: string[] = []
      const stopRaw = await db.listen!(channel, (p) => raw.push(p))
      const got: InvalidationMessage[] = []
      const stop = await sqlBus(db, { channel }).subscribe((m) => got.push(m))
      try {
        // Multi-byte ids: the limit is in bytes.
        const products = Array.from({ length: 5000 }, (_, i) => `PRODUTO-ação-${i}`)
        const message = { products, version: 1_795_000_000_000_123, origin: 'a' }
        await a.publish(message)
        await until(() => got.length === 1, 5000, 'the whole message')
        expect(got[0]).toEqual(message)
        await until(() => raw.length > 5, 5000, 'the parts')
        await sleep(50)
        const parts = raw.map((p) => JSON.parse(p))
        for (const p of raw) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(7900)
        for (const p of parts) {
          expect(p).toMatchObject({ version: message.version, origin: 'a' })
          expect(p.products.every((x: unknown) => typeof x === 'string')).toBe(true)
        }
        expect(parts.flatMap((p) => p.products)).toEqual(products)
        expect(parts.map((p) => p.part[1])).toEqual(parts.map((_, i) => i))
        await sleep(50)
        expect(got).toHaveLength(1)
      } finally {
        await stop()
        await stopRaw()
      }
    })

    it('the parts of a message that never complete are handed on after the wait (on the injected timers)', async () => {
      const channel = uniquePrefix('bus').toLowerCase()
      const scheduled: Array<{ fn: () => void; ms: number }> = []
      const timers = {
        setTimeout(fn: () => void, ms: number) {
          const h = { fn, ms }
          scheduled.push(h)
          return h
        },
        clearTimeout(h: unknown) {
          const i = scheduled.indexOf(h as (typeof scheduled)[number])
          if (i >= 0) scheduled.splice(i, 1)
        },
      }
      const got: InvalidationMessage[] = []
      const stop = await sqlBus(db, { channel, timers }).subscribe((m) => got.push(m))
      try {
        const part = (products: string[], index: number) =>
          JSON.stringify({ products, version: 9, origin: 'x', part: ['abc', index, 3] })
        await pool.query('SELECT pg_notify($1, $2)', [channel, part(['P2'], 2)])
        await pool.query('SELECT pg_notify($1, $2)', [channel, part(['P0'], 0)])
        await until(() => scheduled.length === 1, 5000, 'the wait for the missing part')
        await sleep(50)
        expect(got).toEqual([])
        expect(scheduled[0]!.ms).toBe(2000)
        scheduled.shift()!.fn()
        expect(got).toEqual([{ products: ['P0', 'P2'], version: 9, origin: 'x' }])
      } finally {
        await stop()
      }
    })

    it('drops a notification that is not a message of its own and tells onInvalid', async () => {
      const channel = uniquePrefix('bus').toLowerCase()
      const invalid: string[] = []
      const bus = sqlBus(db, { channel, onInvalid: (t) => invalid.push(t) })
      const got: InvalidationMessage[] = []
      const stop = await bus.subscribe((m) => got.push(m))
      try {
        await pool.query('SELECT pg_notify($1, $2)', [channel, 'not json'])
        await pool.query('SELECT pg_notify($1, $2)', [
          channel,
          JSON.stringify({ products: [1], version: 1, origin: 'x' }),
        ])
        await pool.query('SELECT pg_notify($1, $2)', [channel, JSON.stringify({ products: ['P'], origin: 'x' })])
        await bus.publish({ products: ['OK'], version: 1, origin: 'x' })
        await until(() => got.length === 1, 5000, 'the valid message')
        await sleep(50)
        expect(got).toEqual([{ products: ['OK'], version: 1, origin: 'x' }])
        expect(invalid).toHaveLength(3)
      } finally {
        await stop()
      }
    })

    it('a product id too long for any notification: the rest is sent, then an InvalidInputError names it', async () => {
      const channel = uniquePrefix('bus').toLowerCase()
      const bus = sqlBus(db, { channel })
      const got: InvalidationMessage[] = []
      const stop = await bus.subscribe((m) => got.push(m))
      try {
        const long = 'L'.repeat(8000)
        const err = await bus.publish({ products: ['S1', long, 'S2'], version: 5, origin: 'a' }).catch((e) => e)
        expect(err).toBeInstanceOf(InvalidInputError)
        expect((err as InvalidInputError).products).toEqual([long])
        await until(() => got.length === 1, 5000, 'the rest')
        expect(got[0]).toEqual({ products: ['S1', 'S2'], version: 5, origin: 'a' })
      } finally {
        await stop()
      }
    })

    it('bad options and MySQL are a ConfigError', () => {
      const bad = (fn: () => unknown, option: string) => {
        const err = (() => {
          try {
            fn()
          } catch (e) {
            return e
          }
        })()
        expect(err).toBeInstanceOf(ConfigError)
        expect((err as ConfigError).option).toBe(option)
      }
      // fromMysql is lazy: its pool is never created here.
      bad(() => sqlBus(fromMysql(() => ({}) as never)), 'db')
      bad(() => sqlBus({ ...db, listen: undefined }), 'db')
      bad(() => sqlBus(null as never), 'db')
      bad(() => sqlBus(db, { channel: '' }), 'channel')
      bad(() => sqlBus(db, { channel: 'Upper' }), 'channel')
      bad(() => sqlBus(db, { channel: 'a-b' }), 'channel')
      bad(() => sqlBus(db, { channel: 'x'.repeat(64) }), 'channel')
      bad(() => sqlBus(db, { onInvalid: 1 as never }), 'onInvalid')
      bad(() => sqlBus(db, { timers: {} as never }), 'timers')
    })
  })
})

describe('notifyPayloads', () => {
  it('one payload when it fits; else parts packed greedily under the byte limit, each a whole message', () => {
    const small = { products: ['aa', 'bb'], version: 3, origin: 'o' }
    expect(notifyPayloads(small)).toEqual({ payloads: [JSON.stringify(small)], tooLong: [] })
    const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map((x) => x.repeat(30))
    const message = { products: [a!, b!, c!, d!, e!], version: 3, origin: 'o' }
    const base = Buffer.byteLength(
      JSON.stringify({ products: [], version: 3, origin: 'o', part: ['xxxxxxxx', 100_000, 100_000] }),
    )
    const limit = base + 2 * 32 + 1 // room for two products
    const { payloads, tooLong } = notifyPayloads(message, limit)
    expect(tooLong).toEqual([])
    const parts = payloads.map((p) => JSON.parse(p))
    const id = parts[0].part[0]
    expect(parts).toEqual([
      { products: [a, b], version: 3, origin: 'o', part: [id, 0, 3] },
      { products: [c, d], version: 3, origin: 'o', part: [id, 1, 3] },
      { products: [e], version: 3, origin: 'o', part: [id, 2, 3] },
    ])
    for (const p of payloads) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(limit)
    expect(notifyPayloads({ products: [], version: 1, origin: 'o' }).payloads).toEqual([
      JSON.stringify({ products: [], version: 1, origin: 'o' }),
    ])
    expect(notifyPayloads({ products: ['é'.repeat(5000)], version: 1, origin: 'o' })).toEqual({
      payloads: [],
      tooLong: ['é'.repeat(5000)],
    })
  })
})

describe('sqlBus over a listen() that does not report the loss (no onLost)', () => {
  it('reports degraded then recovered when the connection was replaced', async () => {
    let reconnect: (() => void) | undefined
    const db = {
      dialect: 'postgres',
      driver: 'custom',
      query: async () => [],
      listen: async (_channel: string, _onNotify: (p: string) => void, onReconnect?: () => void) => {
        reconnect = onReconnect
        return async () => {}
      },
    } as unknown as SqlDb
    const states: string[] = []
    const stop = await sqlBus(db).subscribe(
      () => {},
      (state) => states.push(state),
    )
    reconnect!()
    expect(states).toEqual(['degraded', 'recovered'])
    await stop()
    reconnect!()
    expect(states).toEqual(['degraded', 'recovered'])
  })
})
