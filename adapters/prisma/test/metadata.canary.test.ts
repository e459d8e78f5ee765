import { PrismaPg } from '@prisma/adapter-pg'
import { describe, expect, it } from 'vitest'
import {
  type ModelInfo,
  modelsFromDmmf,
  readClientInternals,
  readProvider,
  withExplicitModels,
} from '../src/metadata.js'
import { PrismaClient } from './generated/client/client'
// The classic generator's client: it exports the public Prisma.dmmf.
import jsClient from './generated/js/index.js'

const summary = (models: readonly ModelInfo[]) =>
  Object.fromEntries(
    models
      .map((m) => [
        m.name,
        { table: m.table, columns: Object.fromEntries(m.columns), relations: Object.fromEntries(m.relations) },
      ])
      .sort(([a], [b]) => String(a).localeCompare(String(b))),
  )

const EXPECTED = {
  StockMove: {
    table: 'stock_moves',
    columns: { id: 'id', productCode: 'product_code', quantity: 'quantity', note: 'note' },
    relations: {},
  },
  PickingItem: {
    table: 'picking_items',
    columns: { id: 'id', orderId: 'order_id', productCode: 'product_code', qty: 'qty', shipDate: 'ship_date' },
    relations: { order: 'Order' },
  },
  Order: {
    table: 'orders',
    columns: { id: 'id', code: 'code', status: 'status' },
    relations: { items: 'PickingItem' },
  },
  CcMovement: {
    table: 'cc_movements',
    columns: { id: 'id', sku: 'sku', qty: 'qty', movedOn: 'moved_on' },
    relations: {},
  },
}

// Clients of the prisma-client generator; they never connect (metadata needs no database).
const adapter = () => new PrismaPg({ connectionString: 'postgres://nobody@127.0.0.1:1/none' })
const client = new PrismaClient({ adapter: adapter() })
const readRuntimeDataModel = (c: unknown) => readClientInternals(c).models

describe('model metadata', () => {
  // The canary of the one Prisma internal the model matching reads: the client's runtime data model. If a Prisma
  // upgrade moves it, this test fails here, and users of the prisma-client generator need the `models` option.
  it('the runtime data model is still on the client (prisma-client generator)', () => {
    const models = readRuntimeDataModel(client)
    if (models === undefined) {
      throw new Error(
        'Prisma no longer keeps _runtimeDataModel on the client: update readRuntimeDataModel() in src/metadata.ts ' +
          'for this Prisma version (until then the extension needs the `dmmf` or `models` option)',
      )
    }
    expect(summary(models)).toMatchObject(EXPECTED)
  })

  // The same function reads the client's global omit: without it every write would have to ask for its fields.
  it("the client's global omit option is still on the client", () => {
    const omitting = new PrismaClient({ adapter: adapter(), omit: { stockMove: { productCode: true } } })
    const internals = readClientInternals(omitting.$extends({}))
    if (internals.globalOmit === undefined) {
      throw new Error(
        'Prisma no longer keeps _globalOmit on the client: update readClientInternals() in src/metadata.ts for this ' +
          'Prisma version (until then every write through the extension asks for the fields it needs)',
      )
    }
    expect(internals.globalOmit).toEqual({ stockMove: { productCode: true } })
    expect(readClientInternals(client).globalOmit).toBeNull()
    expect(readClientInternals({})).toEqual({ models: undefined, globalOmit: undefined })
  })

  // The provider decides whether updateMany can run as updateManyAndReturn (and trust a pinned `where`) instead of
  // reading the affected rows first: without it the extension keeps the read (correct, one more query).
  it("the client's database provider is still on the client", () => {
    const provider = readProvider(client)
    if (provider === undefined) {
      throw new Error(
        'Prisma no longer keeps _activeProvider on the client: update readProvider() in src/metadata.ts for this ' +
          'Prisma version (until then updateMany and deleteMany read the affected rows before every write)',
      )
    }
    expect(provider).toBe('postgresql')
    expect(readProvider(client.$extends({}))).toBe('postgresql')
    expect(readProvider(new jsClient.PrismaClient({ adapter: adapter() }))).toBe('postgresql')
    expect(readProvider({})).toBeUndefined()
    expect(readProvider(null)).toBeUndefined()
  })

  it('reads the same mapping from the public Prisma.dmmf (prisma-client-js generator)', () => {
    const fromDmmf = modelsFromDmmf(jsClient.Prisma.dmmf)
    expect(summary(fromDmmf)).toMatchObject(EXPECTED)
    expect(summary(fromDmmf)).toEqual(summary(readRuntimeDataModel(client)!))
  })

  it('an explicit mapping works alone, and overrides the metadata', () => {
    const alone = withExplicitModels([], {
      StockMove: { table: 'inventory.stock_moves', columns: { productCode: 'product_code' } },
    })
    expect(alone).toHaveLength(1)
    expect(alone[0]).toMatchObject({ name: 'StockMove', table: 'stock_moves', dbSchema: 'inventory', complete: false })
    const over = withExplicitModels(readRuntimeDataModel(client)!, { StockMove: { table: 'moves_v2' } })
    const m = over.find((x) => x.name === 'StockMove')!
    expect(m.table).toBe('moves_v2')
    expect(m.columns.get('productCode')).toBe('product_code')
  })
})
