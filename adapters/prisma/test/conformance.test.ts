import type { StockSchema } from 'stockcast'
import { type CaptureWriter, type ChangeCaptureHarness, runChangeCaptureConformance } from 'stockcast/conformance'
import { afterAll, beforeAll } from 'vitest'
import { DATABASES, day, stack, type TestDb } from './helpers/db.js'
import { describeService } from './services.js'

type Client = ReturnType<typeof stack>['prisma']
type Tx = Parameters<Parameters<Client['$transaction']>[0]>[0]

// The suite names tables and columns; the Prisma models name them their own way (moved_on is movedOn).
const MODELS = { cc_movements: 'ccMovement', cc_supply: 'ccSupply', cc_demand: 'ccDemand' } as const
const FIELDS: Record<string, string> = { moved_on: 'movedOn' }

/** A suite row as Prisma data: fields by their Prisma names, dates as Date. */
function dataOf(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [column, value] of Object.entries(row)) {
    out[FIELDS[column] ?? column] = typeof value === 'string' && /^\d{4}-\d\d-\d\d$/.test(value) ? day(value) : value
  }
  return out
}

/** The suite's writer, through a (transaction) client of the extended Prisma client. */
function writer(client: Client | Tx): CaptureWriter {
  const model = (table: string) => {
    const name = MODELS[table as keyof typeof MODELS]
    if (name === undefined) throw new Error(`no model for ${table}`)
    // The three models have the same shape; one delegate type serves them all.
    return (client as unknown as Record<string, Client['ccMovement']>)[name]!
  }
  return {
    async insert(table, row) {
      return (await model(table).create({ data: dataOf(row) as never, select: { id: true } })).id
    },
    async update(table, id, patch) {
      await model(table).update({ where: { id }, data: dataOf(patch) })
    },
    async delete(table, id) {
      await model(table).delete({ where: { id } })
    },
  }
}

for (const database of DATABASES) {
  describeService(database.down, database.name, () => {
    let db: TestDb
    beforeAll(async () => {
      db = await database.open()
    })
    afterAll(async () => {
      await db?.close()
    })
    for (const via of ['prisma', 'driver'] as const) {
      runChangeCaptureConformance(
        async (schema: StockSchema): Promise<ChangeCaptureHarness> => {
          // The suite's product ids repeat between its two runs on this database: each harness starts empty.
          await db.sql('TRUNCATE cc_movements, cc_supply, cc_demand')
          const { cache, prisma } = stack(db, schema, { via, withStore: true })
          return {
            cache,
            ...writer(prisma),
            async transaction(fn) {
              await prisma.$transaction(async (tx) => fn(writer(tx)))
            },
            settle: async () => {},
            close: () => cache.close(),
          }
        },
        {
          name: `ChangeCapture conformance (writes through the extended client; reader and store over ${via === 'prisma' ? 'prismaSqlDb' : 'the driver'})`,
        },
      )
    }
  })
}
