import { PrismaPg } from '@prisma/adapter-pg'
import { ConfigError, createStockCache, defineStockSchema, memorySource } from 'stockcast'
import { describe, expect, it } from 'vitest'
import { stockcastExtension } from '../src/index.js'
import { PrismaClient } from './generated/client/client'
import { erpSchema } from './helpers/db.js'

// Options are checked when the extension is created, the model mapping when it is applied ($extends). No database:
// the client never connects.

const client = () =>
  new PrismaClient({ adapter: new PrismaPg({ connectionString: 'postgres://nobody@127.0.0.1:1/none' }) })
const cacheFor = (schema = erpSchema) => createStockCache({ schema, reader: memorySource(schema).reader })

describe('stockcastExtension options', () => {
  it('rejects a missing cache or schema, a bad dialect or onError', () => {
    const cache = cacheFor()
    expect(() => stockcastExtension(undefined as never)).toThrow(ConfigError)
    expect(() => stockcastExtension({ cache: {} as never, schema: erpSchema })).toThrow(/cache must be a stock cache/)
    expect(() => stockcastExtension({ cache, schema: {} as never })).toThrow(/defineStockSchema/)
    expect(() => stockcastExtension({ cache, schema: erpSchema, dialect: 'oracle' as never })).toThrow(/dialect/)
    expect(() => stockcastExtension({ cache, schema: erpSchema, onError: 1 as never })).toThrow(/onError/)
  })

  it('names the model and its fields when a schema column has no field', () => {
    const schema = defineStockSchema({ onHand: [{ table: 'stock_moves', product: 'sku', quantity: 'quantity' }] })
    expect(() => client().$extends(stockcastExtension({ cache: cacheFor(schema), schema }))).toThrow(
      /names column "sku", but model StockMove \(table stock_moves\) has no field mapped to it \(fields: id, productCode @map\("product_code"\)/,
    )
  })

  it('warns once when no model maps to a schema table', async () => {
    const schema = defineStockSchema({
      onHand: [{ table: 'stock_moves', product: 'product_code', quantity: 'quantity' }],
      supply: [{ table: 'mrp_orders', product: 'product_code', quantity: 'qty', date: 'due' }],
    })
    const warnings: Error[] = []
    const onWarning = (w: Error) => warnings.push(w)
    process.on('warning', onWarning)
    try {
      client().$extends(stockcastExtension({ cache: cacheFor(schema), schema }))
      await new Promise((r) => setImmediate(r))
    } finally {
      process.off('warning', onWarning)
    }
    expect(warnings.map((w) => [(w as { code?: string }).code, w.message])).toEqual([
      ['STOCKCAST_PRISMA_UNMAPPED_TABLE', expect.stringContaining('no Prisma model maps to mrp_orders')],
    ])
  })

  it('asks for dmmf or models when the client carries no metadata', () => {
    const notAClient = { $extends: (fn: unknown) => fn, $transaction: async () => {}, $queryRaw: async () => [] }
    expect(() =>
      (stockcastExtension({ cache: cacheFor(), schema: erpSchema }) as (c: unknown) => unknown)(notAClient),
    ).toThrow(/Pass `dmmf: Prisma.dmmf`/)
  })

  it('keeps the client types (the extension adds none)', () => {
    const prisma = client().$extends(stockcastExtension({ cache: cacheFor(), schema: erpSchema }))
    // Compile-time checks, never run: an `any` client would make the @ts-expect-error lines unused (a tsc error).
    const typed = async () => {
      const m: { id: number } = await prisma.stockMove.create({
        data: { productCode: 'A', quantity: 1 },
        select: { id: true },
      })
      // @ts-expect-error: not a field of StockMove
      await prisma.stockMove.create({ data: { productCode: 'A', quantity: 1, nope: 1 } })
      await prisma.$transaction(async (tx) => {
        // @ts-expect-error: not a field of StockMove
        await tx.stockMove.update({ where: { id: m.id }, data: { nope: 2 } })
      })
      const [n]: [number] = await prisma.$transaction([prisma.stockMove.count()])
      return n
    }
    expect(typeof typed).toBe('function')
  })
})
