import { afterEach, describe, expect, it } from 'vitest'
import {
  ConfigError,
  createStockCache,
  defineStockSchema,
  InvalidInputError,
  memorySource,
  memoryStore,
  type SourceInputs,
  type SourceReader,
  type StockCache,
  type StoreEntry,
} from '../src/index.js'
import { schema } from './helpers/fixtures.js'

let cache: StockCache | undefined
afterEach(async () => {
  await cache?.close()
  cache = undefined
})

/** A reader that returns exactly the rows given (bad ones included). */
function rowsReader(rows: Partial<SourceInputs>): SourceReader {
  return {
    async read(products) {
      return new Map(products.map((p) => [p, { onHand: [], supply: [], demand: [], ...rows }]))
    },
  }
}

describe('bad input gives the typed error and caches nothing', () => {
  it.each([
    ['empty product', ''],
    ['non-string product', 42],
    ['null product', null],
  ])('get with %s', async (_n, product) => {
    cache = createStockCache({ schema, reader: memorySource(schema).reader })
    await expect(cache.get(product as string)).rejects.toBeInstanceOf(InvalidInputError)
    expect(() => cache!.markDirty([product as string])).toThrow(InvalidInputError)
    await expect(cache.getMany([product as string])).rejects.toBeInstanceOf(InvalidInputError)
    expect(cache.status().dirty).toBe(0)
  })

  it.each([
    ['NaN', Number.NaN],
    ['non-numeric string', 'abc'],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['empty string', ''],
  ])('reader quantity %s', async (_n, quantity) => {
    const store = new Map<string, StoreEntry>()
    cache = createStockCache({
      schema,
      reader: rowsReader({ onHand: [{ quantity: quantity as string, source: 'stock_movements' }] }),
      store: memoryStore({ map: store }),
    })
    const errors: unknown[] = []
    cache.on('error', (e) => errors.push(e.error))
    const err = await cache.get('SKU-9').catch((e) => e)
    expect(err).toBeInstanceOf(InvalidInputError)
    expect(err.code).toBe('E_INVALID_INPUT')
    expect(err.productId).toBe('SKU-9')
    expect(err.message).toContain('SKU-9')
    expect(cache.peek('SKU-9')).toBeUndefined()
    expect(store.size).toBe(0)
    expect(errors.length).toBe(1)
  })

  it('an invalid date from a reader', async () => {
    cache = createStockCache({
      schema,
      reader: rowsReader({ demand: [{ date: '2026-02-30', quantity: '1', source: 'order_lines' }] }),
    })
    await expect(cache.get('X')).rejects.toMatchObject({ code: 'E_INVALID_INPUT', productId: 'X' })
    expect(cache.peek('X')).toBeUndefined()
  })

  it('one bad product does not fail the others of its batch', async () => {
    const reader: SourceReader = {
      async read(products) {
        return new Map(
          products.map((p) => [
            p,
            { onHand: [{ quantity: p === 'BAD' ? 'x' : '1', source: 'stock_movements' }], supply: [], demand: [] },
          ]),
        )
      },
    }
    cache = createStockCache({ schema, reader })
    cache.on('error', () => {})
    const [good, bad] = await Promise.allSettled([cache.get('GOOD'), cache.get('BAD')])
    expect(good.status === 'fulfilled' && good.value.stockToday).toBe(1)
    expect(bad.status).toBe('rejected')
  })

  it.each([
    ['an invalid time zone', { timeZone: 'Mars/Olympus' }, 'timeZone'],
    ['a negative horizon', { horizonDays: -1 }, 'horizonDays'],
    ['a zero horizon', { horizonDays: 0 }, 'horizonDays'],
    ['a fractional debounce', { debounceMs: 1.5 }, 'debounceMs'],
    ['maxWait below debounce', { debounceMs: 500, maxWaitMs: 100 }, 'maxWaitMs'],
    ['a negative memory.max', { memory: { max: -1 } }, 'memory.max'],
    ['a fractional memory.max', { memory: { max: 0.5 } }, 'memory.max'],
    ['an unknown option', { debounce: 5 }, 'debounce'],
    ['a bad safetyStock', { safetyStock: 'lots' }, undefined],
  ])('createStockCache with %s is a ConfigError naming the option', (_n, extra, option) => {
    const err = (() => {
      try {
        createStockCache({ schema, reader: memorySource(schema).reader, ...(extra as object) })
      } catch (e) {
        return e
      }
    })() as ConfigError
    expect(err).toBeInstanceOf(ConfigError)
    expect(err.code).toBe('E_CONFIG')
    if (option) expect(err.option).toBe(option)
  })

  it('unsafe identifiers are rejected at defineStockSchema', () => {
    expect(() =>
      defineStockSchema({ onHand: [{ table: 'stock; DROP TABLE x', product: 'p', quantity: 'q' }] }),
    ).toThrow(ConfigError)
    expect(() => defineStockSchema({ onHand: [{ table: 't', product: 'p"', quantity: 'q' }] })).toThrow(
      /onHand\[0\]\.product/,
    )
    expect(() =>
      defineStockSchema({
        onHand: [{ table: 't', product: 'p', quantity: 'q' }],
        demand: [{ table: 'd', product: 'p', quantity: 'q' }],
      }),
    ).toThrow(/date is required/)
    expect(() => defineStockSchema({ onHand: [{ table: 'a.b.c', product: 'p', quantity: 'q' }] })).toThrow(ConfigError)
    expect(defineStockSchema({ onHand: [{ table: 'inv.moves', product: 'p', quantity: 'q' }] }).tables).toEqual([
      'inv.moves',
    ])
  })

  it('related queries: :params are found outside casts, literals, quoted names and comments', () => {
    const s = defineStockSchema({
      onHand: [{ table: 't', product: 'p', quantity: 'q' }],
      related: [
        {
          table: 'orders',
          products:
            "SELECT sku::text FROM picking WHERE batch = :batch AND ':nope' <> 'x' AND \"a:b\" = :other -- :comment\n AND y = :batch",
        },
      ],
    })
    expect(s.related[0]!.params).toEqual(['batch', 'other'])
  })
})

describe('defineStockSchema: where and related fragments must stand alone (item 10)', () => {
  const base = { table: 'order_lines', product: 'product_code', quantity: 'open_qty', date: 'ship_date' }
  it.each([
    ['1=1) OR (1=1', /closes a parenthesis/],
    ['status = 1 /* open', /unclosed \/\* comment/],
    ["status = 'open", /unclosed string literal/],
    ['(status = 1', /unclosed "\("/],
    ['"status = 1', /unclosed quoted identifier/],
  ])('refuses %j', (where, message) => {
    expect(() => defineStockSchema({ onHand: [], demand: [{ ...base, where }] })).toThrow(message)
    expect(() => defineStockSchema({ onHand: [], demand: [{ ...base, where }] })).toThrow(ConfigError)
  })
  it.each([
    "status IN ('a)', 'b(')",
    "note = 'it''s (fine'",
    'x = 1 -- trailing comment with )',
    '(a = 1) AND /* ( */ b = 2',
    'EXISTS (SELECT 1 FROM orders o WHERE o.id = order_lines.order_id)',
  ])('accepts %j', (where) => {
    expect(() => defineStockSchema({ onHand: [], demand: [{ ...base, where }] })).not.toThrow()
  })
  it('checks related products queries the same way', () => {
    expect(() =>
      defineStockSchema({
        onHand: [],
        related: [{ table: 'orders', products: 'SELECT product_code FROM order_lines WHERE (order_id = :id' }],
      }),
    ).toThrow(/related\[0\]\.products/)
  })
})
