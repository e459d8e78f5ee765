// @stockcast/prisma: write throughput through the extended client against the plain Prisma client, same database,
// same run. Target: the extension costs at most 10 % (ratio >= 0.90) on writes that need no extra read.
// PostgreSQL (STOCKCAST_PG_URL or postgres://postgres@127.0.0.1:5432/test) in a schema of its own, dropped after;
// embedded PGlite when PostgreSQL is unreachable. Figures are printed, never asserted.

import { PrismaPg } from '@prisma/adapter-pg'
import { stockcastExtension } from '@stockcast/prisma'
import { fromPg, sqlReader } from '@stockcast/sql'
import pg from 'pg'
import { createStockCache } from 'stockcast'
import { DDL, loadPrismaClient, schema } from '../examples/prisma-bulk-import/db.mjs'
import { fmtInt, isMain, printTable } from './lib.mjs'

const URL_ = process.env.STOCKCAST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCHEMA = 'stockcast_bench_prisma'
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function openPostgres(PrismaClient) {
  const admin = new pg.Client({ connectionString: URL_ })
  await admin.connect()
  const version = (await admin.query('SHOW server_version')).rows[0].server_version
  await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  await admin.query(`CREATE SCHEMA ${SCHEMA}`)
  await admin.end()
  const pool = new pg.Pool({ connectionString: URL_, max: 8, options: `-c search_path=${SCHEMA}` })
  await pool.query(DDL)
  return {
    label: `PostgreSQL ${version}`,
    prisma: new PrismaClient({ adapter: new PrismaPg(pool, { schema: SCHEMA }) }),
    sqlDb: fromPg(pool),
    async close(prisma) {
      await prisma.$disconnect()
      await pool.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
      await pool.end()
    },
  }
}

async function openPGlite(PrismaClient) {
  const { PGlite } = await import('@electric-sql/pglite')
  const { PrismaPGlite } = await import('pglite-prisma-adapter')
  const { prismaSqlDb } = await import('@stockcast/prisma')
  const pglite = new PGlite()
  await pglite.exec(DDL)
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(pglite) })
  return {
    label: 'PGlite (PostgreSQL unreachable)',
    prisma,
    sqlDb: prismaSqlDb(prisma),
    async close(p) {
      await p.$disconnect()
      await pglite.close()
    },
  }
}

export async function main({ rounds = 9, products = 1000, warmup = 60 } = {}) {
  console.log('## prisma: @stockcast/prisma write throughput, extended client vs plain client')
  const { PrismaClient } = await loadPrismaClient()
  let db
  try {
    db = await openPostgres(PrismaClient)
  } catch {
    db = await openPGlite(PrismaClient)
  }
  const plain = db.prisma
  // (a) marks held: the pure cost of the extension on the write path (no recompute runs during the measure).
  const held = createStockCache({
    schema,
    reader: sqlReader(db.sqlDb, schema),
    debounceMs: 3_600_000,
    maxWaitMs: 3_600_000,
  })
  // (b) a default cache: recomputes run in the background, on the same database.
  const live = createStockCache({ schema, reader: sqlReader(db.sqlDb, schema) })
  const clients = {
    plain,
    // The floor: what any `$allOperations` query extension costs in Prisma itself, with nothing in it.
    'empty extension': plain.$extends({ query: { $allOperations: ({ args, query }) => query(args) } }),
    'extended, marks held': plain.$extends(stockcastExtension({ cache: held, schema })),
    'extended, default cache': plain.$extends(stockcastExtension({ cache: live, schema })),
  }
  console.log(`${db.label}; ${products} products; ${rounds} interleaved rounds per workload, median ops/s`)
  try {
    const seed = Array.from({ length: products }, (_, i) => ({ productCode: `B${i}`, quantity: '100.000' }))
    await plain.stockMovement.createMany({ data: seed })
    const ids = (await plain.stockMovement.findMany({ select: { id: true }, orderBy: { id: 'asc' } })).map((r) => r.id)
    // Rows for the deleteMany workload to delete, one per call: its warm-up and every round, for every client.
    const DELETE_OPS = 200
    const doomed = Array.from({ length: (warmup + rounds * DELETE_OPS) * 4 }, (_, i) => ({
      productCode: `B${i % products}`,
      quantity: '1.000',
      reference: 'doomed',
    }))
    for (let i = 0; i < doomed.length; i += 1000)
      await plain.stockMovement.createMany({ data: doomed.slice(i, i + 1000) })
    const toDelete = (
      await plain.stockMovement.findMany({
        where: { reference: 'doomed' },
        select: { id: true },
        orderBy: { id: 'asc' },
      })
    ).map((r) => r.id)
    let k = 0
    const product = () => `B${k++ % products}`
    const workloads = [
      {
        name: 'create (1 row)',
        ops: 300,
        run: (c) => c.stockMovement.create({ data: { productCode: product(), quantity: '1.000' } }),
      },
      {
        name: 'createMany (100 rows, per row)',
        ops: 30,
        perOp: 100,
        run: (c) =>
          c.stockMovement.createMany({
            data: Array.from({ length: 100 }, () => ({ productCode: product(), quantity: '1.000' })),
          }),
      },
      {
        name: 'update by id (quantity)',
        ops: 300,
        run: (c) => c.stockMovement.update({ where: { id: ids[k++ % ids.length] }, data: { quantity: '2.000' } }),
      },
      {
        name: 'interactive transaction (3 creates)',
        ops: 80,
        run: (c) =>
          c.$transaction(async (tx) => {
            for (let i = 0; i < 3; i++)
              await tx.stockMovement.create({ data: { productCode: product(), quantity: '1.000' } })
          }),
      },
      {
        name: 'updateMany by product (where pins the product: no read)',
        ops: 200,
        run: (c) => c.stockMovement.updateMany({ where: { productCode: product() }, data: { reference: 'x' } }),
      },
      {
        name: 'updateMany by id list (updateManyAndReturn, no read)',
        ops: 200,
        run: (c) => {
          const at = k++ % (ids.length - 2)
          return c.stockMovement.updateMany({ where: { id: { in: ids.slice(at, at + 3) } }, data: { reference: 'y' } })
        },
      },
      {
        name: 'deleteMany by id (+1 read: affected products)',
        ops: DELETE_OPS,
        run: (c) => {
          const id = toDelete.pop()
          // An undefined id would be no filter at all: every row deleted.
          if (id === undefined) throw new Error('bench: no row left for deleteMany')
          return c.stockMovement.deleteMany({ where: { id } })
        },
      },
    ]
    const rows = []
    for (const w of workloads) {
      const rates = Object.fromEntries(Object.keys(clients).map((name) => [name, []]))
      const cpu = Object.fromEntries(Object.keys(clients).map((name) => [name, []]))
      // Warm-up: the JIT settles on both paths before anything is measured (the first workload pays the most).
      for (const c of Object.values(clients)) for (let i = 0; i < warmup; i++) await w.run(c)
      for (let r = 0; r < rounds; r++) {
        // Rotate the order each round so no client always runs first.
        const names = Object.keys(clients)
        for (let j = 0; j < names.length; j++) {
          const name = names[(j + r) % names.length]
          const t0 = performance.now()
          const c0 = process.cpuUsage()
          for (let i = 0; i < w.ops; i++) await w.run(clients[name])
          const used = process.cpuUsage(c0)
          rates[name].push((w.ops * (w.perOp ?? 1) * 1000) / (performance.now() - t0))
          cpu[name].push((used.user + used.system) / w.ops)
          // The default cache recomputes in the background: let it finish before the next client is measured.
          if (name === 'extended, default cache') await live.flush()
        }
      }
      const base = median(rates.plain)
      // Each round against the plain client's run of the same round (same load on the machine at about the same
      // time): the median of the paired ratios is steadier than a ratio of medians.
      const paired = (name) => median(rates[name].map((x, r) => x / rates.plain[r]))
      const ratioHeld = paired('extended, marks held')
      const ratioLive = paired('extended, default cache')
      rows.push([
        w.name,
        `${paired('empty extension').toFixed(2)}x`,
        fmtInt(base),
        fmtInt(median(rates['extended, marks held'])),
        `${ratioHeld.toFixed(2)}x`,
        w.name.includes('+1 read') ? 'n/a' : ratioHeld >= 0.9 ? 'PASS' : 'BELOW',
        `${fmtInt(median(cpu.plain))} / ${fmtInt(median(cpu['extended, marks held']))}`,
        `${ratioLive.toFixed(2)}x`,
      ])
    }
    printTable(
      [
        'workload',
        'empty extension',
        'plain ops/s',
        'extended ops/s',
        'paired ratio',
        '>= 0.90',
        'client CPU us/call',
        'default cache',
      ],
      rows,
    )
    console.log(
      "empty extension: a query extension with nothing in it, against the plain client (Prisma's own cost of any " +
        '$allOperations extension). extended: marks wait (debounce 1 h), so the figure is the extension alone. client CPU: this process, plain / ' +
        'extended (steadier than ops/s on a busy machine). default cache: the ratio when the cache recomputes the ' +
        'marked products in the background on the same database. updateMany runs without a read (its where pins the ' +
        'product, or as one updateManyAndReturn); deleteMany not pinned by product reads the affected products ' +
        'before it deletes (Prisma has no deleteManyAndReturn): one more query, by design.',
    )

    // The floor of the updateManyAndReturn path: Prisma's own cost of returning the rows, no extension involved.
    const byIds = () => {
      const at = k++ % (ids.length - 2)
      return { id: { in: ids.slice(at, at + 3) } }
    }
    const plainWays = {
      updateMany: () => plain.stockMovement.updateMany({ where: byIds(), data: { reference: 'z' } }),
      updateManyAndReturn: () =>
        plain.stockMovement.updateManyAndReturn({
          where: byIds(),
          data: { reference: 'z' },
          select: { productCode: true },
        }),
    }
    const ways = { updateMany: [], updateManyAndReturn: [] }
    for (const fn of Object.values(plainWays)) for (let i = 0; i < warmup; i++) await fn()
    for (let r = 0; r < rounds; r++) {
      for (const name of r % 2 === 0 ? Object.keys(ways) : Object.keys(ways).reverse()) {
        const t0 = performance.now()
        for (let i = 0; i < 200; i++) await plainWays[name]()
        ways[name].push((200 * 1000) / (performance.now() - t0))
      }
    }
    const floor = median(ways.updateManyAndReturn.map((x, r) => x / ways.updateMany[r]))
    console.log(
      `plain client, 3 rows by id: updateManyAndReturn ${fmtInt(median(ways.updateManyAndReturn))} ops/s vs ` +
        `updateMany ${fmtInt(median(ways.updateMany))} ops/s: ${floor.toFixed(2)}x (Prisma's own cost of RETURNING, ` +
        'the floor of the extension on an updateMany whose where does not pin the product)',
    )
  } finally {
    await held.close()
    await live.close()
    await db.close(plain)
  }
}

if (isMain(import.meta.url)) await main()
