import {
  ConfigError,
  createStockCache,
  defineStockSchema,
  memorySource,
  type StoreEntry,
  StoreUnavailableError,
} from 'stockcast'
import { edgeProjections, sampleProjection } from 'stockcast/conformance'
import { expect, it } from 'vitest'
import { type SqlDb, sqlStore } from '../src/index.js'

const listSchema = defineStockSchema({
  onHand: [{ table: 'moves', product: 'sku', quantity: 'qty' }],
  supply: [],
  demand: [{ table: 'orders', product: 'sku', quantity: 'qty', date: 'due' }],
})

/** A day `n` days from today (UTC; the cache's zone). */
const plusDays = (n: number) => new Date(Date.now() + n * 86_400_000).toISOString().slice(0, 10)

export function entry(key: string, version: number, closing = 10): StoreEntry {
  const value = sampleProjection(key, version, closing)
  return { value, version, computedAt: value.computedAt }
}

const shuffle = <T>(list: T[]): T[] => {
  const a = [...list]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a
}

/**
 * The SQL store's own cases, the same on every dialect. `db()` is the connection, `table` a table name the file owns
 * (created lazily by the stores, dropped by the file).
 */
export function runSqlStoreCases(db: () => SqlDb, table: () => string): void {
  it('list(): a cache with L1 off lists from the columns, in order, page by page, as fresh as getMany', async () => {
    const src = memorySource(listSchema)
    const products = Array.from({ length: 40 }, (_, i) => `L${String(i).padStart(2, '0')}${i % 9 === 0 ? '€𝄞' : ''}`)
    for (const [i, p] of products.entries()) {
      src.insert('moves', { sku: p, qty: String((i * 7) % 23) })
      src.insert('orders', { sku: p, qty: String((i * 5) % 17), due: plusDays((i * 3) % 9) })
    }
    const store = sqlStore(db(), { table: table(), prefix: `list${Math.floor(Math.random() * 1e6)}:` })
    const cache = createStockCache({
      schema: listSchema,
      reader: src.reader,
      store,
      memory: { max: 0 },
      debounceMs: 60_000,
    })
    src.attach(cache)
    try {
      const all = [...(await cache.getMany(products)).values()]
      const byRisk = all
        .filter((p) => p.status !== 'OK')
        .sort((a, b) => (a.minClosing7d !== b.minClosing7d ? a.minClosing7d - b.minClosing7d : a.key < b.key ? -1 : 1))
        .map((p) => p.product)
      expect(byRisk.length).toBeGreaterThan(3)
      const got: string[] = []
      let cursor: string | undefined
      for (;;) {
        const page = await cache.list({ status: ['CRITICAL', 'ATTENTION'], limit: 3, ...(cursor ? { cursor } : {}) })
        expect(page.source).toBe('store')
        got.push(...page.items.map((p) => p.product))
        if (page.cursor === null) break
        cursor = page.cursor
      }
      expect(got).toEqual(byRisk)
      // Other filters and orders, against the same values filtered in JavaScript.
      const day = plusDays(3)
      expect((await cache.list({ stockoutBefore: day, limit: 1000 })).items.map((p) => p.product).sort()).toEqual(
        all
          .filter((p) => p.firstStockoutDate !== null && p.firstStockoutDate < day)
          .map((p) => p.product)
          .sort(),
      )
      expect((await cache.list({ minClosingBelow: -2.5, limit: 1000 })).items.map((p) => p.product).sort()).toEqual(
        all
          .filter((p) => p.minClosing7d < -2.5)
          .map((p) => p.product)
          .sort(),
      )
      const dated = (await cache.list({ orderBy: 'firstStockoutDate', limit: 1000 })).items
      expect(dated.map((p) => p.firstStockoutDate)).toEqual(
        all
          .map((p) => p.firstStockoutDate)
          .filter((d) => d !== null)
          .sort(),
      )
      // A committed, marked change is listed at once (the debounce would wait a minute).
      const ok = all.find((p) => p.status === 'OK')!
      src.insert('orders', { sku: ok.product, qty: '100000', due: plusDays(0) })
      expect((await cache.list({ status: 'CRITICAL', limit: 1000 })).items.map((p) => p.product)).toContain(ok.product)
    } finally {
      await cache.close()
    }
  })

  it('keeps a projection compact, with its summary columns readable by plain SQL', async () => {
    const d = db()
    const pg = d.dialect === 'postgres'
    const s = sqlStore(d, { table: table(), prefix: 'cols:' })
    const values = edgeProjections()
    await s.setMany(
      values.map((v, i) => [v.key, { value: v, version: v.version, computedAt: v.computedAt, durationMs: 10 + i }]),
    )
    const t = pg ? `"${table()}"` : `\`${table()}\``
    const rows = await d.query<Record<string, unknown>>(
      pg
        ? `SELECT convert_from(key, 'UTF8') AS k, left(value, 2) AS tag, status, stock_today::text AS st, min_closing_7d::text AS mc,
             first_stockout_date::text AS fs, days_of_cover AS dc, convert_from(location, 'UTF8') AS loc, duration_ms AS d
           FROM ${t} WHERE substring(key from 1 for 5) = convert_to('cols:', 'UTF8')`
        : `SELECT CAST(\`key\` AS CHAR) AS k, LEFT(\`value\`, 2) AS tag, \`status\`, CAST(\`stock_today\` AS CHAR) AS st,
             CAST(\`min_closing_7d\` AS CHAR) AS mc, CAST(\`first_stockout_date\` AS CHAR) AS fs, \`days_of_cover\` AS dc,
             CAST(\`location\` AS CHAR) AS loc, \`duration_ms\` AS d FROM ${t} WHERE LEFT(\`key\`, 5) = 'cols:'`,
    )
    expect(rows).toHaveLength(values.length)
    for (const [i, v] of values.entries()) {
      const r = rows.find((x) => x.k === `cols:${v.key}`)!
      expect(r, v.key).toBeDefined()
      expect(r.tag).toBe('p1')
      expect(r.status).toBe(v.status)
      // Exact decimals: the same number as the projection's.
      expect(Number(r.st)).toBe(v.stockToday)
      expect(Number(r.mc)).toBe(v.minClosing7d)
      expect(r.fs ?? null).toBe(v.firstStockoutDate)
      expect(r.dc === null ? null : Number(r.dc)).toBe(v.daysOfCover)
      expect(r.loc ?? null).toBe(v.location)
      expect(Number(r.d)).toBe(10 + i)
    }
    // A value that is not a projection: JSON text, no summary.
    await s.setMany([['plain', { value: { hello: 'world' } as never, version: 1, computedAt: 1 }]])
    const [plain] = await d.query<Record<string, unknown>>(
      pg
        ? `SELECT value, status FROM ${t} WHERE key = convert_to('cols:plain', 'UTF8')`
        : `SELECT \`value\`, \`status\` FROM ${t} WHERE \`key\` = 'cols:plain'`,
    )
    expect(plain).toEqual({ value: '{"hello":"world"}', status: null })
    expect((await s.getMany(['plain'])).get('plain')!.value).toEqual({ hello: 'world' })
    await s.clear()
  })

  it('keeps the highest version of a key given twice in one batch', async () => {
    const s = sqlStore(db(), { table: table(), prefix: 'dup:' })
    await s.setMany([
      ['K', entry('K', 3, 3)],
      ['K', entry('K', 7, 7)],
      ['K', entry('K', 5, 5)],
    ])
    const got = (await s.getMany(['K'])).get('K')!
    expect(got.version).toBe(7)
    expect(got.value.stockToday).toBe(7)
    await s.clear()
  })

  it('concurrent overlapping batches end at the highest version of every key, without deadlock', async () => {
    const s = sqlStore(db(), { table: table(), prefix: 'overlap:' })
    const keys = Array.from({ length: 150 }, (_, i) => `K${i}`)
    const writers = Array.from({ length: 6 }, (_, w) =>
      s.setMany(shuffle(keys).map((k, i) => [k, entry(k, w * 1000 + i + 1, w)] as const)),
    )
    await Promise.all(writers)
    const got = await s.getMany(keys)
    expect(got.size).toBe(keys.length)
    for (const [, e] of got) {
      expect(e.version).toBeGreaterThan(5000)
      expect(e.value.stockToday).toBe(5)
      expect(e.value.version).toBe(e.version)
    }
    await s.clear()
  })

  it('clear() escapes LIKE wildcards in its prefix', async () => {
    const wild = sqlStore(db(), { table: table(), prefix: 'w_%!:' })
    const other = sqlStore(db(), { table: table(), prefix: 'wX%!:' })
    const other2 = sqlStore(db(), { table: table(), prefix: 'w_abc!:' })
    await wild.setMany([['A', entry('A', 1)]])
    await other.setMany([['A', entry('A', 1)]])
    await other2.setMany([['A', entry('A', 1)]])
    await wild.clear()
    expect((await wild.getMany(['A'])).size).toBe(0)
    expect((await other.getMany(['A'])).size).toBe(1)
    expect((await other2.getMany(['A'])).size).toBe(1)
    await other.clear()
    await other2.clear()
  })

  it('keeps keys byte-exact: case and trailing spaces make different keys', async () => {
    const s = sqlStore(db(), { table: table(), prefix: 'case:' })
    await s.setMany([
      ['abc', entry('abc', 1, 1)],
      ['ABC', entry('ABC', 1, 2)],
      ['abc ', entry('abc ', 1, 3)],
    ])
    const got = await s.getMany(['abc', 'ABC', 'abc ', 'Abc'])
    expect([...got.keys()].sort()).toEqual(['ABC', 'abc', 'abc '])
    expect(got.get('abc')!.value.stockToday).toBe(1)
    expect(got.get('ABC')!.value.stockToday).toBe(2)
    expect(got.get('abc ')!.value.stockToday).toBe(3)
    await s.clear()
  })

  it('round-trips awkward numbers exactly', async () => {
    const s = sqlStore(db(), { table: table(), prefix: 'num:' })
    const e = entry('N', 1)
    const value = {
      ...e.value,
      stockToday: 0.1 + 0.2,
      supplyToday: 1e-7,
      demandToday: 123456789012.345,
      overdueSupply: -0,
      overdueDemand: 2 ** 53 - 1,
    }
    await s.setMany([['N', { ...e, value }]])
    const got = (await s.getMany(['N'])).get('N')!.value
    expect(got.stockToday).toBe(0.1 + 0.2)
    expect(got.supplyToday).toBe(1e-7)
    expect(got.demandToday).toBe(123456789012.345)
    expect(Object.is(got.overdueSupply, 0)).toBe(true)
    expect(got.overdueDemand).toBe(2 ** 53 - 1)
    await s.clear()
  })

  it('stores computedAt and large versions as integers', async () => {
    const s = sqlStore(db(), { table: table(), prefix: 'big:' })
    const v = 2 ** 40 + 3
    await s.setMany([['B', { ...entry('B', 1), version: v, computedAt: 1_790_000_000_123 }]])
    const got = (await s.getMany(['B'])).get('B')!
    expect(got.version).toBe(v)
    expect(got.computedAt).toBe(1_790_000_000_123)
    await s.clear()
  })

  it('rejects a bad table name or option before any SQL', () => {
    expect(() => sqlStore(db(), { table: 'x; DROP TABLE y' })).toThrow(ConfigError)
    expect(() => sqlStore(db(), { table: 'a.b.c' })).toThrow(/sqlStore: table/)
    expect(() => sqlStore(db(), { prefix: 5 as never })).toThrow(ConfigError)
  })

  it('with create: false, a missing table is a StoreUnavailableError until install()', async () => {
    const name = `${table()}_manual`
    const s = sqlStore(db(), { table: name, create: false, prefix: 'm:' })
    const err = await s.getMany(['A']).catch((e) => e)
    expect(err).toBeInstanceOf(StoreUnavailableError)
    expect(err.message).toContain(name)
    expect(err.cause).toBeDefined()
    await s.install()
    await s.install() // idempotent
    await s.setMany([['A', entry('A', 1)]])
    expect((await s.getMany(['A'])).size).toBe(1)
    await s.drop()
    await s.drop() // idempotent
    expect(await s.getMany(['A']).catch((e) => e)).toBeInstanceOf(StoreUnavailableError)
  })

  it('a product with a 10 kB id leaves the cache’s L2 healthy (the table used to refuse the key and the whole batch)', async () => {
    const schema = defineStockSchema({
      onHand: [{ table: 'moves', product: 'sku', quantity: 'qty' }],
    })
    const source = memorySource(schema)
    let seed = 7
    const long = Array.from({ length: 10_000 }, () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'[seed % 36]
    }).join('')
    source.insert('moves', { sku: long, qty: '3' })
    source.insert('moves', { sku: 'A', qty: '1' })
    const store = sqlStore(db(), { table: table(), prefix: 'long-id:' })
    const cache = createStockCache({ schema, reader: source.reader, store })
    const degraded: unknown[] = []
    cache.on('degraded', (e) => degraded.push(e))
    try {
      const got = await cache.getMany([long, 'A'])
      expect(got.get(long)!.stockToday).toBe(3)
      expect(degraded).toEqual([])
      expect(cache.status().degraded).toBe(false)
      const stored = await store.getMany([long, 'A'])
      expect(stored.get(long)!.value.stockToday).toBe(3)
      expect(stored.get('A')!.value.stockToday).toBe(1)
    } finally {
      await cache.close()
      await sqlStore(db(), { table: table(), prefix: 'long-id:' }).clear()
    }
  })

  it('never stores a key with an unpaired surrogate (its UTF-8 form would be another key, with U+FFFD)', async () => {
    const s = sqlStore(db(), { table: table(), prefix: 'lone:' })
    await s.setMany([
      ['a\uFFFD', entry('a\uFFFD', 5, 5)],
      ['a\uD800', entry('a\uD800', 9, 9)],
      ['b', entry('b', 1, 1)],
    ])
    const got = await s.getMany(['a\uFFFD', 'a\uD800', 'b'])
    expect([...got.keys()].sort()).toEqual(['a\uFFFD', 'b'])
    expect(got.get('a\uFFFD')!.value.stockToday).toBe(5)
    await s.deleteMany(['a\uD800'])
    expect((await s.getMany(['a\uFFFD'])).size).toBe(1)
    expect(() => sqlStore(db(), { table: table(), prefix: '\uDC00' })).toThrow(ConfigError)
    await s.clear()
  })

  it('install() migrates a table of the first layout (key as primary key) in place, entries kept', async () => {
    const d = db()
    const pg = d.dialect === 'postgres'
    const q = (x: string) => (pg ? `"${x}"` : `\`${x}\``)
    const old = `${table()}_v1`
    const auto = `${table()}_v1auto`
    for (const t of [old, auto]) {
      await d.execute(`DROP TABLE IF EXISTS ${q(t)}`)
      await d.execute(
        pg
          ? `CREATE TABLE ${q(t)} (key text PRIMARY KEY, value json NOT NULL, version bigint NOT NULL, computed_at bigint NOT NULL)`
          : `CREATE TABLE ${q(t)} (\`key\` VARBINARY(3072) NOT NULL PRIMARY KEY, \`value\` LONGTEXT CHARACTER SET utf8mb4 NOT NULL, \`version\` BIGINT NOT NULL, \`computed_at\` BIGINT NOT NULL)`,
      )
      const rows = [
        ['m:A', entry('A', 3, 30)],
        ['m:caf\u00e9', entry('caf\u00e9', 4, 40)],
        ['other:A', entry('A', 5, 50)],
      ] as const
      for (const [k, e] of rows) {
        await d.execute(`INSERT INTO ${q(t)} VALUES (${pg ? '$1, $2, $3, $4' : '?, ?, ?, ?'})`, [
          k,
          JSON.stringify(e.value),
          e.version,
          e.computedAt,
        ])
      }
    }
    try {
      const s = sqlStore(d, { table: old, prefix: 'm:', create: false })
      await s.install()
      await s.install() // idempotent on the new layout
      const got = await s.getMany(['A', 'caf\u00e9', 'B'])
      expect([...got.keys()].sort()).toEqual(['A', 'caf\u00e9'])
      expect(got.get('A')!.version).toBe(3)
      expect(got.get('caf\u00e9')!.value.stockToday).toBe(40)
      // Versions still rule, and the table now holds any key.
      await s.setMany([['A', entry('A', 2, 20)]])
      expect((await s.getMany(['A'])).get('A')!.value.stockToday).toBe(30)
      const long = `L${'0123456789abcdef'.repeat(700)}\u0000`
      await s.setMany([[long, entry(long, 1, 1)]])
      expect((await s.getMany([long])).size).toBe(1)
      await s.clear()
      const other = sqlStore(d, { table: old, prefix: 'other:' })
      expect((await other.getMany(['A'])).get('A')!.value.stockToday).toBe(50)
      // With create (the default), the first call migrates.
      const first = sqlStore(d, { table: auto, prefix: 'm:' })
      expect((await first.getMany(['A'])).get('A')!.version).toBe(3)
    } finally {
      await d.execute(`DROP TABLE IF EXISTS ${q(old)}`)
      await d.execute(`DROP TABLE IF EXISTS ${q(auto)}`)
    }
  })

  it('fails after close() without touching the caller’s connection', async () => {
    const s = sqlStore(db(), { table: table(), prefix: 'closed:' })
    await s.setMany([['A', entry('A', 1)]])
    await s.clear()
    await s.close()
    await expect(s.getMany(['A'])).rejects.toBeInstanceOf(StoreUnavailableError)
    // The connection still works for everyone else.
    const again = sqlStore(db(), { table: table(), prefix: 'closed:' })
    expect((await again.getMany(['A'])).size).toBe(0)
  })
}
