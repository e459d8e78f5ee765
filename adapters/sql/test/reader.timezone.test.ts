import { ConfigError, defineStockSchema } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { sqlReader } from '../src/index.js'
import { READER_DBS, type ReaderDb } from './reader-dbs.js'
import { describeService } from './services.js'

// Regression: a timestamptz (PostgreSQL) or TIMESTAMP (MySQL/MariaDB) date column was cut to a day in the session's
// time zone, not the cache's: an order at 23:30 in America/Sao_Paulo landed on the next day with a pool in UTC (or
// Tokyo). Instants now fall on their day in readOptions.timeZone whatever the session's zone; wall-clock values
// (timestamp without time zone, DATETIME) and dates keep their own date.

const ZONE = 'America/Sao_Paulo'

/** Instants (UTC) and the day each falls on in São Paulo; quantities are powers of two, so sums name the rows. */
const INSTANTS: Array<[utc: string, qty: number, day: string, what: string]> = [
  ['2026-03-02T02:30:00Z', 1, '2026-03-01', '23:30 (-03), 11:30 the next day in Tokyo'],
  ['2026-03-02T03:30:00Z', 2, '2026-03-02', '00:30 (-03)'],
  // DST started 2018-11-04 at 00:00 (clocks to 01:00).
  ['2018-11-04T02:30:00Z', 4, '2018-11-03', '23:30 (-03) before the gap'],
  ['2018-11-04T03:30:00Z', 8, '2018-11-04', '01:30 (-02) after the gap'],
  // DST ended 2019-02-17 at 00:00 (clocks back to 23:00 on the 16th): 23:30 happened twice.
  ['2019-02-17T01:30:00Z', 16, '2019-02-16', 'the first 23:30 (-02)'],
  ['2019-02-17T02:30:00Z', 32, '2019-02-16', 'the second 23:30 (-03)'],
  ['2019-02-17T03:30:00Z', 64, '2019-02-17', '00:30 (-03)'],
]

/** Wall-clock values: their own date, in every zone. */
const WALL: Array<[local: string, qty: number]> = [
  ['2026-03-01 23:30:00', 1],
  ['2026-03-02 00:30:00', 2],
  ['2019-02-16 23:30:00', 4],
  ['2019-02-17 00:30:00', 8],
]

const byDay = (rows: readonly { date?: string | null; quantity: unknown }[]) => {
  const out: Record<string, number> = {}
  for (const r of rows) out[String(r.date)] = (out[String(r.date)] ?? 0) + Number(r.quantity)
  return out
}

const expectedInstantDays = () => {
  const out: Record<string, number> = {}
  for (const [, q, day] of INSTANTS) out[day] = (out[day] ?? 0) + q
  return out
}

for (const c of READER_DBS) {
  describeService(c.down, `sqlReader cuts days in the cache's time zone on ${c.name} (session in Tokyo)`, () => {
    let t: ReaderDb
    let instants: string
    let walls: string
    let dates: string
    let onHand: string

    beforeAll(async () => {
      // The reader's session is in Tokyo (MariaDB: an offset, it may have no time zone tables).
      t = await c.open({ sessionTimeZone: c.kind === 'mysql' ? '+09:00' : 'Asia/Tokyo' })
      instants = t.table('tz_instants')
      walls = t.table('tz_walls')
      dates = t.table('tz_dates')
      onHand = t.table('tz_stock')
      const my = c.kind === 'mysql'
      await t.sql(
        `CREATE TABLE ${t.q(instants)} (sku varchar(10), qty numeric(18,3), at_ ${my ? 'TIMESTAMP NULL' : 'timestamptz'})`,
      )
      await t.sql(
        `CREATE TABLE ${t.q(walls)} (sku varchar(10), qty numeric(18,3), at_ ${my ? 'DATETIME' : 'timestamp'})`,
      )
      await t.sql(`CREATE TABLE ${t.q(dates)} (sku varchar(10), qty numeric(18,3), on_ date)`)
      await t.sql(
        `CREATE TABLE ${t.q(onHand)} (sku varchar(10), qty numeric(18,3), at_ ${my ? 'TIMESTAMP NULL' : 'timestamptz'})`,
      )
      await t.writeTx(async (run) => {
        // Instants written as epoch seconds in a UTC session: what they mean does not depend on any zone.
        if (my) await run("SET time_zone = '+00:00'")
        const instant = (i: number) => (my ? `FROM_UNIXTIME(${t.ph(i)})` : `to_timestamp(${t.ph(i)})`)
        for (const [utc, qty] of INSTANTS) {
          await run(`INSERT INTO ${t.q(instants)} VALUES (${t.ph(1)}, ${t.ph(2)}, ${instant(3)})`, [
            'TZ',
            qty,
            Date.parse(utc) / 1000,
          ])
        }
        await run(`INSERT INTO ${t.q(instants)} VALUES (${t.ph(1)}, ${t.ph(2)}, ${instant(3)})`, [
          'UTC',
          1,
          Date.parse('2026-03-01T20:00:00Z') / 1000,
        ])
        await run(`INSERT INTO ${t.q(onHand)} VALUES (${t.ph(1)}, ${t.ph(2)}, ${instant(3)})`, [
          'TZ',
          5,
          Date.parse('2026-03-02T02:30:00Z') / 1000,
        ])
        for (const [local, qty] of WALL) {
          await run(`INSERT INTO ${t.q(walls)} VALUES (${t.ph(1)}, ${t.ph(2)}, ${t.ph(3)})`, ['TZ', qty, local])
          await run(`INSERT INTO ${t.q(dates)} VALUES (${t.ph(1)}, ${t.ph(2)}, ${t.ph(3)})`, [
            'TZ',
            qty,
            local.slice(0, 10),
          ])
        }
        if (my) await run('SET time_zone = DEFAULT')
      })
    })
    afterAll(async () => {
      await t?.close()
    })

    const schema = () =>
      defineStockSchema({
        onHand: [{ table: onHand, product: 'sku', quantity: 'qty', date: 'at_', id: 'stock' }],
        demand: [
          { table: instants, product: 'sku', quantity: 'qty', date: 'at_', id: 'instants' },
          { table: walls, product: 'sku', quantity: 'qty', date: 'at_', id: 'walls' },
          { table: dates, product: 'sku', quantity: 'qty', date: 'on_', id: 'dates' },
        ],
      })

    it(`instants fall on their day in ${ZONE}: 23:30 and 00:30 around midnight and around DST changes`, async () => {
      const got = (await sqlReader(t.db, schema()).read(['TZ'], { sources: ['instants'], timeZone: ZONE })).get('TZ')!
      expect(byDay(got.demand)).toEqual(expectedInstantDays())
      // One row per day: rows of one day are summed (MariaDB reads instants in quarter-hour buckets).
      expect(got.demand.filter((r) => r.date === '2019-02-16')).toEqual([
        { date: '2019-02-16', quantity: expect.stringMatching(/^48(\.0+)?$/), source: 'instants' },
      ])
    })

    it('a dated on-hand movement falls on its day in the zone too', async () => {
      const got = (await sqlReader(t.db, schema()).read(['TZ'], { sources: ['stock'], timeZone: ZONE })).get('TZ')!
      expect(got.onHand).toEqual([{ date: '2026-03-01', quantity: '5.000', source: 'stock' }])
    })

    it('wall-clock timestamps and dates keep their own date in any zone', async () => {
      const reader = sqlReader(t.db, schema())
      const expected = { '2026-03-01': 1, '2026-03-02': 2, '2019-02-16': 4, '2019-02-17': 8 }
      for (const timeZone of [ZONE, 'Asia/Tokyo', 'UTC']) {
        const got = (await reader.read(['TZ'], { sources: ['walls', 'dates'], timeZone })).get('TZ')!
        expect(byDay(got.demand.filter((r) => r.source === 'walls'))).toEqual(expected)
        expect(byDay(got.demand.filter((r) => r.source === 'dates'))).toEqual(expected)
      }
    })

    it('without a timeZone, instants fall on their UTC day (not the session’s)', async () => {
      const reader = sqlReader(t.db, schema())
      // 2026-03-01T20:00Z is already the 2nd in Tokyo.
      expect(byDay((await reader.read(['UTC'], { sources: ['instants'] })).get('UTC')!.demand)).toEqual({
        '2026-03-01': 1,
      })
      expect(
        byDay((await reader.read(['UTC'], { sources: ['instants'], timeZone: 'Asia/Tokyo' })).get('UTC')!.demand),
      ).toEqual({
        '2026-03-02': 1,
      })
    })

    it('an unknown time zone is a ConfigError', async () => {
      await expect(sqlReader(t.db, schema()).read(['TZ'], { timeZone: 'Mars/Olympus' })).rejects.toBeInstanceOf(
        ConfigError,
      )
    })
  })
}
