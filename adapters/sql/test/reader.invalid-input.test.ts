import { defineStockSchema, InvalidInputError, type StockSchema } from 'stockcast'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type SqlDb, sqlReader } from '../src/index.js'
import { READER_DBS, type ReaderDb } from './reader-dbs.js'
import { describeService } from './services.js'

// Regressions.
// Ids a product column cannot hold: with an integer column, read(['01']) matched product 1 and dropped its rows (the
// cache then kept zeros under '01'), and 'abc' failed the whole PostgreSQL statement (every product of the batch
// unreadable). Such ids are now an InvalidInputError before any data is read, listing every one in `products`.
// Dates out of range: a day in year 12345 (PostgreSQL takes it) went to the calculator; it is now an
// InvalidInputError naming the table, the column and the product, after reading, the other products unaffected.

/** A connection that records the statements it runs. */
const recording = (db: SqlDb, log: string[]): SqlDb => ({
  ...db,
  query(sql, params) {
    log.push(sql)
    return db.query(sql, params)
  },
})
const dataQueries = (log: readonly string[]) => log.filter((s) => s.includes('sc_qty'))

const rejection = async (p: Promise<unknown>): Promise<InvalidInputError> => {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  )
  expect(e).toBeInstanceOf(InvalidInputError)
  return e as InvalidInputError
}

for (const c of READER_DBS) {
  describeService(c.down, `sqlReader rejects what the columns cannot hold on ${c.name}`, () => {
    let t: ReaderDb
    const tables: Record<string, string> = {}
    const my = c.kind === 'mysql'

    beforeAll(async () => {
      t = await c.open()
      for (const n of ['ints', 'bigs', 'unsigned', 'decimals', 'uuids', 'chars', 'texts', 'dated', 'stamped']) {
        tables[n] = t.table(`inv_${n}`)
      }
      const q = (n: string) => t.q(tables[n]!)
      const qty = 'numeric(18,3)'
      await t.sql(`CREATE TABLE ${q('ints')} (pid ${my ? 'INT' : 'integer'}, qty ${qty})`)
      await t.sql(`CREATE TABLE ${q('bigs')} (pid bigint, qty ${qty})`)
      if (my) await t.sql(`CREATE TABLE ${q('unsigned')} (pid INT UNSIGNED, qty ${qty})`)
      await t.sql(`CREATE TABLE ${q('decimals')} (pid ${my ? 'DECIMAL(10,2)' : 'numeric(10,2)'}, qty ${qty})`)
      await t.sql(`CREATE TABLE ${q('uuids')} (pid uuid, qty ${qty})`)
      await t.sql(`CREATE TABLE ${q('chars')} (pid char(4), qty ${qty})`)
      await t.sql(`CREATE TABLE ${q('texts')} (pid ${my ? 'VARCHAR(40)' : 'text'}, qty ${qty})`)
      await t.sql(`CREATE TABLE ${q('dated')} (pid varchar(20), qty ${qty}, due date)`)
      await t.sql(`CREATE TABLE ${q('stamped')} (pid varchar(20), qty ${qty}, at_ ${my ? 'DATETIME' : 'timestamptz'})`)
      const ins = (n: string, rows: unknown[][]) =>
        t.sql(
          `INSERT INTO ${q(n)} VALUES ${rows
            .map((r, i) => `(${r.map((_, j) => t.ph(i * r.length + j + 1)).join(', ')})`)
            .join(', ')}`,
          rows.flat(),
        )
      await ins('ints', [
        [1, '1'],
        [42, '2'],
      ])
      await ins('bigs', [['9223372036854775807', '3']])
      if (my) await ins('unsigned', [[4294967295, '4']])
      await ins('decimals', [['1.50', '5']])
      await ins('uuids', [['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '6']])
      await ins('chars', [['ab', '7']])
      await ins('texts', [
        ['01', '8'],
        [' 1', '9'],
      ])
      await ins('dated', [
        ['OK', '1', '2026-03-02'],
        ['OK2', '2', '2026-03-03'],
      ])
      await ins('stamped', [['OK', '1', '2026-03-02 10:00:00']])
    })
    afterAll(async () => {
      await t?.close()
    })

    const one = (n: string, extra: Partial<{ id: string }> = {}): StockSchema =>
      defineStockSchema({ onHand: [{ table: tables[n]!, product: 'pid', quantity: 'qty', id: extra.id ?? n }] })

    it('an integer column: ids not in canonical decimal form, or out of range, before any data is read', async () => {
      const log: string[] = []
      const reader = sqlReader(recording(t.db, log), one('ints'))
      const bad = ['01', ' 1', '1 ', '+1', '1.0', '-0', 'abc', '', '2147483648', '1e3']
      const e = await rejection(reader.read(['1', ...bad, '42']))
      expect(e.products).toEqual(bad)
      expect(e.productId).toBe('01')
      expect(e.source).toBe('ints')
      expect(e.message).toContain(`${tables.ints}.pid`)
      expect(e.message).toMatch(/canonical decimal form of an integer in \[-2147483648, 2147483647\]/)
      expect(dataQueries(log)).toEqual([])
      // The good ids alone read as before.
      const got = await reader.read(['1', '42', '-2147483648'])
      expect(got.get('1')!.onHand).toEqual([{ quantity: '1.000', source: 'ints' }])
      expect(got.get('42')!.onHand).toEqual([{ quantity: '2.000', source: 'ints' }])
      expect(got.has('-2147483648')).toBe(false)
    })

    it('a bigint column takes the whole 64-bit range, and no more', async () => {
      const reader = sqlReader(t.db, one('bigs'))
      expect((await reader.read(['9223372036854775807'])).get('9223372036854775807')!.onHand).toEqual([
        { quantity: '3.000', source: 'bigs' },
      ])
      const e = await rejection(reader.read(['9223372036854775808', '-9223372036854775809']))
      expect(e.products).toEqual(['9223372036854775808', '-9223372036854775809'])
    })

    it.runIf(my)('an unsigned column takes no negative id', async () => {
      const reader = sqlReader(t.db, one('unsigned'))
      expect((await reader.read(['4294967295'])).get('4294967295')!.onHand).toHaveLength(1)
      expect((await rejection(reader.read(['-1', '4294967296']))).products).toEqual(['-1', '4294967296'])
    })

    it('a decimal column: exactly its scale, within its precision', async () => {
      const reader = sqlReader(t.db, one('decimals'))
      expect((await reader.read(['1.50'])).get('1.50')!.onHand).toEqual([{ quantity: '5.000', source: 'decimals' }])
      const e = await rejection(reader.read(['1.5', '1.500', '01.50', '-0.00', '123456789.00', 'x']))
      expect(e.products).toEqual(['1.5', '1.500', '01.50', '-0.00', '123456789.00', 'x'])
      expect(e.message).toMatch(/exactly 2 decimals and at most 8 integer digits/)
    })

    it('a uuid column: the lower-case hyphenated form only', async () => {
      const reader = sqlReader(t.db, one('uuids'))
      const id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'
      expect((await reader.read([id])).get(id)!.onHand).toEqual([{ quantity: '6.000', source: 'uuids' }])
      const bad = [id.toUpperCase(), id.replaceAll('-', ''), `{${id}}`, 'abc']
      expect((await rejection(reader.read(bad))).products).toEqual(bad)
    })

    it('a char(n) column: at most n characters, no trailing space (padding)', async () => {
      const reader = sqlReader(t.db, one('chars'))
      expect((await reader.read(['ab'])).get('ab')!.onHand).toEqual([{ quantity: '7.000', source: 'chars' }])
      const e = await rejection(reader.read(['ab ', 'abcde']))
      expect(e.products).toEqual(['ab ', 'abcde'])
      expect(e.message).toMatch(/at most 4 characters, no trailing space/)
    })

    it('a text column takes any id', async () => {
      const reader = sqlReader(t.db, one('texts'))
      const got = await reader.read(['01', ' 1', '1', 'abc', 'x'.repeat(40)])
      expect(got.get('01')!.onHand).toEqual([{ quantity: '8.000', source: 'texts' }])
      expect(got.get(' 1')!.onHand).toEqual([{ quantity: '9.000', source: 'texts' }])
      expect(got.has('1')).toBe(false)
    })

    it.runIf(!my)('PostgreSQL text takes no U+0000 (the whole statement used to fail)', async () => {
      const e = await rejection(sqlReader(t.db, one('texts')).read(['01', 'a\u0000b']))
      expect(e.products).toEqual(['a\u0000b'])
    })

    it('an id one source cannot hold is read from the sources that can', async () => {
      const mixed = defineStockSchema({
        onHand: [
          { table: tables.ints!, product: 'pid', quantity: 'qty', id: 'ints' },
          { table: tables.texts!, product: 'pid', quantity: 'qty', id: 'texts' },
        ],
      })
      const log: string[] = []
      const got = await sqlReader(recording(t.db, log), mixed).read(['01', '1'])
      expect(got.get('01')!.onHand).toEqual([{ quantity: '8.000', source: 'texts' }])
      expect(got.get('1')!.onHand).toEqual([{ quantity: '1.000', source: 'ints' }])
      // Even reading only the integer source, '01' is a valid product (it has no rows there).
      expect((await sqlReader(t.db, mixed).read(['01'], { sources: ['ints'] })).has('01')).toBe(false)
      expect(dataQueries(log)).toHaveLength(1)
    })

    const outOfRange = my
      ? // MariaDB keeps no year past 9999, but takes zero dates and zero months outside strict modes' checks.
        [
          ['FAR', '0000-00-00', '0000-00-00'],
          ['ZERO', '2026-00-10', '2026-00-10'],
        ]
      : [
          ['FAR', '12345-01-01', '12345-01-01'],
          ['BC', '0044-03-15 BC', '0044-03-15 BC'],
          ['INF', 'infinity', 'infinity'],
        ]

    it('a date out of range is an InvalidInputError naming table, column and product; other products read', async () => {
      const dated = defineStockSchema({
        onHand: [{ table: tables.texts!, product: 'pid', quantity: 'qty', id: 'stock' }],
        demand: [{ table: tables.dated!, product: 'pid', quantity: 'qty', date: 'due', id: 'due' }],
      })
      for (const [p, value] of outOfRange) {
        await t.sql(`INSERT INTO ${t.q(tables.dated!)} VALUES (${t.ph(1)}, ${t.ph(2)}, ${t.ph(3)})`, [p, '9', value])
      }
      const reader = sqlReader(t.db, dated)
      const e = await rejection(reader.read(['OK', ...outOfRange.map(([p]) => p!), 'OK2']))
      expect(e.products).toEqual(outOfRange.map(([p]) => p))
      expect(e.productId).toBe('FAR')
      expect(e.source).toBe('due')
      expect(e.message).toContain(`${tables.dated}.due`)
      for (const [p, , shown] of outOfRange) expect(e.message).toContain(`product "${p}": ${shown}`)
      const got = await reader.read(['OK', 'OK2'])
      expect(got.get('OK')!.demand).toEqual([{ date: '2026-03-02', quantity: '1.000', source: 'due' }])
      expect(got.get('OK2')!.demand).toEqual([{ date: '2026-03-03', quantity: '2.000', source: 'due' }])
    })

    it.runIf(!my)('a timestamptz in year 12345 is reported the same way', async () => {
      await t.sql(`INSERT INTO ${t.q(tables.stamped!)} VALUES ('FAR', 1, '12345-06-01 10:00:00+00')`)
      const s = defineStockSchema({
        onHand: [{ table: tables.texts!, product: 'pid', quantity: 'qty', id: 'stock' }],
        supply: [{ table: tables.stamped!, product: 'pid', quantity: 'qty', date: 'at_', id: 'stamped' }],
      })
      const reader = sqlReader(t.db, s)
      const e = await rejection(reader.read(['OK', 'FAR'], { timeZone: 'America/Sao_Paulo' }))
      expect(e.products).toEqual(['FAR'])
      expect(e.source).toBe('stamped')
      expect(e.message).toContain(`${tables.stamped}.at_`)
      expect((await reader.read(['OK'])).get('OK')!.supply).toEqual([
        { date: '2026-03-02', quantity: '1.000', source: 'stamped' },
      ])
    })
  })
}
