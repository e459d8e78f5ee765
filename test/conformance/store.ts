import { afterEach, describe, expect, it } from 'vitest'
import { PROBE_KEY } from '../../src/cache/store-facade.js'
import { projectStock, type StockProjection, type Store, type StoreEntry } from '../../src/index.js'

export interface StoreConformanceOptions {
  /** Suite title. @default 'Store conformance' */
  name?: string
  /** The factory honours `{ prefix }` and `clear()` removes only keys under its own prefix. @default true */
  prefixIsolation?: boolean
  /** Two stores from the factory (same prefix) see each other's writes (SQL, Redis). @default false */
  shared?: boolean
}

export type MakeStore = (options: { prefix: string }) => Store | Promise<Store>

const plusDays = (d: string, n: number) => {
  const t = new Date(`${d}T00:00:00Z`)
  t.setUTCDate(t.getUTCDate() + n)
  return t.toISOString().slice(0, 10)
}

/**
 * Projections as the calculator makes them, at their edges: negative stock, 15 significant digits, a pending series,
 * overdue rows, flows after the horizon, a location, scales 0 and 9. A store must give each back equal.
 */
export function edgeProjections(): StockProjection[] {
  const today = '2026-11-27'
  const make = (
    key: string,
    scale: number,
    inputs: Parameters<typeof projectStock>[0],
    extra: Partial<Parameters<typeof projectStock>[1]> = {},
  ): StockProjection => {
    const [product, location] = key.split('\u001f')
    return {
      ...projectStock(inputs, { today, scale, timeZone: 'America/Sao_Paulo', ...extra }),
      key,
      product: product!,
      location: location ?? null,
      version: 1_795_000_000_000_000 + scale,
      computedAt: 1_795_000_000_000 + scale,
      stale: false,
    }
  }
  return [
    make('EDGE-neg', 3, {
      onHand: [{ quantity: '-123456789012.345' }, { date: plusDays(today, 3), quantity: '0.001' }],
      supply: [
        { date: plusDays(today, -4), quantity: '99999999999.999' },
        { date: plusDays(today, 2), quantity: '5', pending: true },
        { date: plusDays(today, 40), quantity: '7.5' },
      ],
      demand: [
        { date: plusDays(today, -1), quantity: '0.003' },
        { date: plusDays(today, 1), quantity: '-2.5' },
        { date: plusDays(today, 35), quantity: '1', pending: true },
      ],
    }),
    make('EDGE-loc\u001fWH 1', 0, { onHand: '12', demand: [{ date: plusDays(today, 5), quantity: '20' }] }),
    make(
      'EDGE-fine',
      9,
      { onHand: '0.000000001', supply: [{ date: plusDays(today, 1), quantity: '123456.123456789', pending: true }] },
      { horizonDays: 60, safetyStock: '-0.5' },
    ),
    make('EDGE-empty', 3, { onHand: '0' }, { horizonDays: 1 }),
  ]
}

/** A projection-shaped value with every kind of field a store must round-trip. */
export function sampleProjection(key: string, version: number, closing = 10): StockProjection {
  const days = Array.from({ length: 29 }, (_, i) => ({
    date: `2026-12-${String((i % 28) + 1).padStart(2, '0')}`,
    opening: closing,
    movements: 0,
    supply: 0.125,
    demand: 1.5,
    closing: closing - i,
    closingWithPending: closing - i - 0.001,
  }))
  return {
    key,
    product: key.split('\u001f')[0]!,
    location: key.includes('\u001f') ? key.split('\u001f')[1]! : null,
    version,
    computedAt: 1_790_000_000_000 + version,
    stale: false,
    today: '2026-12-01',
    timeZone: 'America/Sao_Paulo',
    horizonDays: 29,
    scale: 3,
    stockToday: closing,
    supplyToday: 0.125,
    demandToday: 1.5,
    overdueSupply: 0,
    overdueDemand: -0,
    days,
    minClosing7d: closing - 7,
    minClosing7dDate: '2026-12-08',
    firstStockoutDate: null,
    daysOfCover: null,
    status: 'OK',
    safetyStock: 0,
    stockoutThreshold: 0,
    later: [{ date: '2027-02-01', net: -3.5, netWithPending: -4 }],
  }
}

function entry(key: string, version: number, closing = 10): StoreEntry {
  const value = sampleProjection(key, version, closing)
  return { value, version, computedAt: value.computedAt }
}

/**
 * The contract every L2 store keeps. Call it from the store's own test file, then add the store's own cases.
 *
 * @example
 * ```ts
 * runStoreConformance(({ prefix }) => redisStore(redis, { prefix }), { shared: true })
 * ```
 */
export function runStoreConformance(makeStore: MakeStore, options: StoreConformanceOptions = {}): void {
  const prefixIsolation = options.prefixIsolation ?? true
  describe(options.name ?? 'Store conformance', () => {
    const opened: Store[] = []
    let n = 0
    const make = async (prefix = `sc-conf-${process.pid}-${Date.now()}-${n++}:`) => {
      const s = await makeStore({ prefix })
      opened.push(s)
      return s
    }
    afterEach(async () => {
      for (const s of opened.splice(0)) {
        await s.clear().catch(() => {})
        await s.close().catch(() => {})
      }
    })

    it('answers missing keys with an empty map', async () => {
      const s = await make()
      const got = await s.getMany(['nope', 'nada'])
      expect(got.size).toBe(0)
      expect((await s.getMany([])).size).toBe(0)
    })

    it("answers the cache's recovery probe (a key no product has) without an error", async () => {
      // A store that cannot read this key keeps the cache's L2 degraded for good after its first failure.
      const s = await make()
      expect((await s.getMany([PROBE_KEY])).size).toBe(0)
    })

    it('round-trips entries exactly (numbers, nulls, negative zero as 0, nested arrays)', async () => {
      const s = await make()
      const a = entry('SKU-1', 3)
      const b = entry('SKU-2\u001fWH-1', 4, -2.5)
      await s.setMany([
        ['SKU-1', a],
        ['SKU-2\u001fWH-1', b],
      ])
      const got = await s.getMany(['SKU-1', 'SKU-2\u001fWH-1', 'SKU-3'])
      expect([...got.keys()].sort()).toEqual(['SKU-1', 'SKU-2\u001fWH-1'])
      expect(got.get('SKU-1')!.version).toBe(3)
      expect(got.get('SKU-1')!.computedAt).toBe(a.computedAt)
      expect(JSON.parse(JSON.stringify(got.get('SKU-1')!.value))).toEqual(JSON.parse(JSON.stringify(a.value)))
      expect(got.get('SKU-2\u001fWH-1')!.value.days[5]!.closing).toBe(-7.5)
      expect(got.get('SKU-2\u001fWH-1')!.value.location).toBe('WH-1')
      expect(got.get('SKU-2\u001fWH-1')!.value.firstStockoutDate).toBeNull()
    })

    it('round-trips projections as the calculator makes them, exactly (negatives, 15 digits, pending, overdue, locations)', async () => {
      const s = await make()
      const values = edgeProjections()
      await s.setMany(values.map((v) => [v.key, { value: v, version: v.version, computedAt: v.computedAt }] as const))
      const got = await s.getMany(values.map((v) => v.key))
      for (const v of values) {
        const e = got.get(v.key)
        expect(e?.version, v.key).toBe(v.version)
        expect(e?.value, v.key).toEqual(v)
        expect(JSON.stringify(e?.value), v.key).toBe(JSON.stringify(v))
      }
    })

    it('never replaces an entry with a higher version', async () => {
      const s = await make()
      await s.setMany([['K', entry('K', 10, 100)]])
      await s.setMany([['K', entry('K', 9, 1)]])
      expect((await s.getMany(['K'])).get('K')!.version).toBe(10)
      expect((await s.getMany(['K'])).get('K')!.value.stockToday).toBe(100)
      await s.setMany([['K', entry('K', 10, 50)]])
      expect((await s.getMany(['K'])).get('K')!.value.stockToday).toBe(50)
      await s.setMany([['K', entry('K', 11, 7)]])
      expect((await s.getMany(['K'])).get('K')!.version).toBe(11)
      expect((await s.getMany(['K'])).get('K')!.value.stockToday).toBe(7)
    })

    it('when setMany names the keys it wrote, they are exactly those not kept back by a higher version', async () => {
      const s = await make()
      const first = await s.setMany([
        ['W1', entry('W1', 10, 1)],
        ['W2', entry('W2', 10, 2)],
      ])
      // Naming them is optional (nothing returned: the cache reads every key back).
      if (first === undefined) return
      expect([...first].sort()).toEqual(['W1', 'W2'])
      const second = await s.setMany([
        ['W1', entry('W1', 9, 3)], // kept back: 10 is higher
        ['W2', entry('W2', 10, 4)], // the same version: written
        ['W3', entry('W3', 1, 5)], // new
      ])
      expect(second).toBeInstanceOf(Set)
      expect([...second!].sort()).toEqual(['W2', 'W3'])
      const got = await s.getMany(['W1', 'W2', 'W3'])
      expect(got.get('W1')!.value.stockToday).toBe(1)
      expect(got.get('W2')!.value.stockToday).toBe(4)
    })

    it('keeps the highest version when writes race', async () => {
      const s = await make()
      const versions = Array.from({ length: 20 }, (_, i) => i + 1).sort(() => Math.random() - 0.5)
      await Promise.all(versions.map((v) => s.setMany([['RACE', entry('RACE', v, v)]])))
      const got = (await s.getMany(['RACE'])).get('RACE')!
      expect(got.version).toBe(20)
      expect(got.value.stockToday).toBe(20)
    })

    it('applies a batch with mixed outcomes per key', async () => {
      const s = await make()
      await s.setMany([['A', entry('A', 5)]])
      await s.setMany([
        ['A', entry('A', 4, 1)],
        ['B', entry('B', 1, 2)],
      ])
      const got = await s.getMany(['A', 'B'])
      expect(got.get('A')!.version).toBe(5)
      expect(got.get('B')!.value.stockToday).toBe(2)
    })

    it('deletes only the keys given', async () => {
      const s = await make()
      await s.setMany([
        ['A', entry('A', 1)],
        ['B', entry('B', 1)],
        ['C', entry('C', 1)],
      ])
      await s.deleteMany(['A', 'C', 'missing'])
      expect([...(await s.getMany(['A', 'B', 'C'])).keys()]).toEqual(['B'])
      await s.deleteMany([])
      expect((await s.getMany(['B'])).size).toBe(1)
    })

    it('handles 1 000 keys in one call', async () => {
      const s = await make()
      const keys = Array.from({ length: 1000 }, (_, i) => `BULK-${i}`)
      await s.setMany(keys.map((k, i) => [k, entry(k, i + 1)] as const))
      const got = await s.getMany(keys)
      expect(got.size).toBe(1000)
      expect(got.get('BULK-999')!.version).toBe(1000)
    })

    it('accepts keys with quotes, unicode and separators', async () => {
      const s = await make()
      const keys = ["it's", 'açúcar-\u00e9', 'a:b:c', 'x\u001fy z', '%_*?']
      await s.setMany(keys.map((k) => [k, entry(k, 1)] as const))
      const got = await s.getMany(keys)
      expect([...got.keys()].sort()).toEqual([...keys].sort())
    })

    it('round-trips a 10 kB key; the rest of its batch lands, and versions still hold', async () => {
      // Longer than any index entry of a SQL table (PostgreSQL btree rows stop at about 2.7 kB).
      const s = await make()
      // Pseudo-random characters: a repeated one would compress below any limit.
      let seed = 42
      const noise = (n: number, alphabet: string) =>
        Array.from({ length: n }, () => {
          seed = (seed * 1103515245 + 12345) % 2 ** 31
          return alphabet[seed % alphabet.length]
        }).join('')
      const long = `LONG-${noise(10_000, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789')}`
      const wide = `WIDE-${noise(5_000, '\u00e9\u00e8\u00ea\u00eb\u00e0\u00e2\u00e7\u00f4\u00fb\u00ee')}` // 10 kB of UTF-8
      await s.setMany([
        [long, entry(long, 2, 20)],
        ['SHORT', entry('SHORT', 1, 1)],
        [wide, entry(wide, 3, 30)],
      ])
      const got = await s.getMany([long, 'SHORT', wide, `${long}y`, long.slice(0, -1)])
      expect([...got.keys()].sort()).toEqual([long, 'SHORT', wide].sort())
      expect(got.get(long)!.value.stockToday).toBe(20)
      expect(got.get(long)!.value.key).toBe(long)
      expect(got.get(wide)!.value.stockToday).toBe(30)
      await s.setMany([[long, entry(long, 1, 10)]])
      expect((await s.getMany([long])).get(long)!.version).toBe(2)
      await s.setMany([[long, entry(long, 4, 40)]])
      expect((await s.getMany([long])).get(long)!.value.stockToday).toBe(40)
      await s.deleteMany([long])
      expect([...(await s.getMany([long, 'SHORT', wide])).keys()].sort()).toEqual(['SHORT', wide].sort())
    })

    it('keeps keys with control characters, emoji, escapes and look-alikes apart', async () => {
      const s = await make()
      const keys = [
        'nul\u0000inside',
        'nul\u0000',
        'line\nbreak\ttab\r',
        'back\\slash\\',
        'quote"\'`',
        'emoji-\u{1F4E6}-\u{1F600}',
        'rtl-\u05D0\u05D1\u200F',
        'zwj-\u200D-bom-\uFEFF',
        'caf\u00e9', // precomposed
        'cafe\u0301', // e + combining accent: the same text to a reader, another key
        '%_!*?[]',
        'prefix',
        'prefix-longer',
        ' ',
      ]
      await s.setMany(keys.map((k, i) => [k, entry(k, i + 1, i)] as const))
      const got = await s.getMany([...keys, 'nul', 'cafe', 'CAF\u00c9'])
      expect([...got.keys()].sort()).toEqual([...keys].sort())
      keys.forEach((k, i) => {
        expect(got.get(k)!.value.stockToday).toBe(i)
        expect(got.get(k)!.value.key).toBe(k)
      })
      await s.deleteMany(['nul\u0000', 'caf\u00e9', 'prefix'])
      const left = await s.getMany(keys)
      expect(left.size).toBe(keys.length - 3)
      expect(left.has('nul\u0000inside')).toBe(true)
      expect(left.has('cafe\u0301')).toBe(true)
      expect(left.has('prefix-longer')).toBe(true)
    })

    it('reads a batch of ASCII-only keys with control characters, quotes, braces and NULL apart', async () => {
      // Every key ASCII: a store may send such a batch in a cheaper form (as text) than one with any other key.
      const s = await make()
      const keys = [
        'NULL',
        'null',
        '"quoted"',
        "it's",
        'a,b',
        '{x}',
        'back\\slash',
        'ctl\u0001\u007f',
        'x\u001fy z',
        ' lead',
        '',
      ]
      const stored = keys.filter((k) => k !== '')
      await s.setMany(stored.map((k, i) => [k, entry(k, i + 1, i)] as const))
      const got = await s.getMany([...keys, 'NUL', 'Null'])
      expect([...got.keys()].sort()).toEqual([...stored].sort())
      stored.forEach((k, i) => {
        expect(got.get(k)!.value.stockToday).toBe(i)
        expect(got.get(k)!.value.key).toBe(k)
      })
    })

    it('clear() empties the store', async () => {
      const s = await make()
      await s.setMany([['A', entry('A', 1)]])
      await s.clear()
      expect((await s.getMany(['A'])).size).toBe(0)
    })

    if (prefixIsolation) {
      it('reads and clears only keys under its own prefix', async () => {
        const one = await make(`iso-a-${process.pid}-${Date.now()}:`)
        const two = await make(`iso-b-${process.pid}-${Date.now()}:`)
        await one.setMany([['SAME', entry('SAME', 1, 1)]])
        await two.setMany([['SAME', entry('SAME', 1, 2)]])
        expect((await one.getMany(['SAME'])).get('SAME')!.value.stockToday).toBe(1)
        expect((await two.getMany(['SAME'])).get('SAME')!.value.stockToday).toBe(2)
        await one.clear()
        expect((await one.getMany(['SAME'])).size).toBe(0)
        expect((await two.getMany(['SAME'])).size).toBe(1)
      })
    }

    if (options.shared) {
      it('two instances with one prefix share entries', async () => {
        const prefix = `shared-${process.pid}-${Date.now()}:`
        const one = await make(prefix)
        const two = await make(prefix)
        await one.setMany([['S', entry('S', 2, 9)]])
        expect((await two.getMany(['S'])).get('S')!.value.stockToday).toBe(9)
        await two.setMany([['S', entry('S', 1, 1)]])
        expect((await one.getMany(['S'])).get('S')!.version).toBe(2)
      })
    }
  })
}
