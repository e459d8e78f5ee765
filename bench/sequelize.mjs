// @stockcast/sequelize on PostgreSQL: the cost of the model hooks on a write-heavy workload, and of a bulkCreate of
// 100 000 rows inside disableCacheTemporarily. Every figure is a ratio against a baseline measured in the same run
// (the same writes with no stockcast). Needs PostgreSQL (STOCKCAST_PG_URL or postgres://postgres@127.0.0.1:5432/test);
// it works in its own schema `stockcast_bench_sequelize` and drops it after.

import { attachSequelize, fromSequelize, sequelizeReader, sequelizeStore } from '@stockcast/sequelize'
import pg from 'pg'
import { DataTypes, Sequelize } from 'sequelize'
import { createStockCache } from 'stockcast'
import { DDL, schema, seed } from '../examples/sql-demo/schema.mjs'
import { fmtInt, isMain, printTable } from './lib.mjs'

const URL_ = process.env.STOCKCAST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const SCHEMA = 'stockcast_bench_sequelize'
const now = () => performance.now()
const fmt = (ms) => (ms < 1 ? `${(ms * 1000).toFixed(0)} us` : `${ms.toFixed(0)} ms`)
const pct = (r) => `${r >= 1 ? '+' : ''}${((r - 1) * 100).toFixed(1)} %`
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function defineModels(sequelize) {
  const id = { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true }
  const StockMovement = sequelize.define(
    'StockMovement',
    {
      id,
      productCode: { type: DataTypes.TEXT, allowNull: false, field: 'product_code' },
      quantity: { type: DataTypes.DECIMAL(15, 3), allowNull: false },
    },
    { tableName: 'stock_movements', timestamps: false },
  )
  const Order = sequelize.define(
    'Order',
    { id, pickingBatchId: { type: DataTypes.TEXT, field: 'picking_batch_id' }, status: DataTypes.TEXT },
    { tableName: 'orders', timestamps: false },
  )
  const OrderLine = sequelize.define(
    'OrderLine',
    {
      id,
      orderId: { type: DataTypes.BIGINT, field: 'order_id' },
      productCode: { type: DataTypes.TEXT, allowNull: false, field: 'product_code' },
      openQty: { type: DataTypes.DECIMAL(15, 3), allowNull: false, field: 'open_qty' },
      shipDate: { type: DataTypes.DATEONLY, allowNull: false, field: 'ship_date' },
      pickingBatchId: { type: DataTypes.TEXT, field: 'picking_batch_id' },
    },
    { tableName: 'order_lines', timestamps: false },
  )
  return { StockMovement, Order, OrderLine }
}

/**
 * The write-heavy workload: `workers` concurrent loops, `ops` operations in all, a mix of what an ERP backend does:
 * 40 % movement inserts, 25 % orders (an order + 3 lines in a transaction), 15 % line updates through an instance,
 * 15 % Model.update by id (a bulk update), 5 % Model.destroy by id.
 */
async function workload(m, sequelize, { ops, workers, products, lineIds, seed: s }) {
  let a = s >>> 0
  const rnd = (n) => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n)
  }
  const sku = () => `SKU-${String(1 + rnd(products)).padStart(5, '0')}`
  const day = () => new Date(Date.now() + rnd(20) * 86_400_000).toISOString().slice(0, 10)
  let next = 0
  const one = async () => {
    const k = rnd(100)
    if (k < 40) await m.StockMovement.create({ productCode: sku(), quantity: rnd(50) - 20 })
    else if (k < 65) {
      await sequelize.transaction(async (transaction) => {
        const o = await m.Order.create({ status: 'OPEN' }, { transaction })
        await m.OrderLine.bulkCreate(
          [0, 1, 2].map(() => ({ orderId: o.id, productCode: sku(), openQty: 1 + rnd(9), shipDate: day() })),
          { transaction },
        )
      })
    } else if (k < 80) {
      const line = await m.OrderLine.findByPk(lineIds[rnd(lineIds.length)])
      if (line) await line.update({ openQty: 1 + rnd(9) })
    } else if (k < 95)
      await m.OrderLine.update({ openQty: 1 + rnd(9) }, { where: { id: lineIds[rnd(lineIds.length)] } })
    else await m.StockMovement.destroy({ where: { id: 1 + rnd(products) } })
  }
  const t0 = now()
  const c0 = process.cpuUsage()
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next++ < ops) await one()
    }),
  )
  const used = process.cpuUsage(c0)
  workload.cpuPerOp = (used.user + used.system) / ops
  return (ops / (now() - t0)) * 1000
}

export async function main({
  products = 2000,
  ops = 2000,
  workers = 8,
  rounds = 7,
  singleOps = 200,
  singleRounds = 5,
  bulk = 100_000,
} = {}) {
  console.log('## sequelize: @stockcast/sequelize model hooks on PostgreSQL')
  const admin = new pg.Client({ connectionString: URL_ })
  await admin.connect()
  const version = (await admin.query('SHOW server_version')).rows[0].server_version
  await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
  await admin.query(`CREATE SCHEMA ${SCHEMA}`)
  // One Sequelize instance per configuration, each attached (or not) once, as an app does at startup: attaching and
  // detaching around every round would measure V8 re-optimizing the patched methods, not the hooks.
  const connect = () =>
    new Sequelize(URL_, {
      logging: false,
      pool: { max: workers + 2 },
      dialectOptions: { options: `-c search_path=${SCHEMA}` },
    })
  const sequelize = connect()
  const heldDb = connect()
  const liveDb = connect()
  console.log(`PostgreSQL ${version}, Sequelize ${Sequelize.version ?? '6'}, ${products} products, ${workers} workers`)
  try {
    for (const s of DDL.split(';').filter((x) => x.trim())) await sequelize.query(s)
    await seed(fromSequelize(sequelize), products)
    await sequelize.query('ANALYZE')
    const m = defineModels(sequelize)
    const mHeld = defineModels(heldDb)
    const mLive = defineModels(liveDb)
    const lineIds = (await m.OrderLine.findAll({ attributes: ['id'], raw: true, limit: 5000 })).map((r) => r.id)
    const store = sequelizeStore(sequelize, { table: 'stockcast_projections' })
    await store.install()

    // 1. Each write on its own, one at a time: the hooks' cost per operation (best of alternating rounds: the minimum
    //    is the least disturbed by other load on the machine).
    const memory = { max: 20_000, ttl: 600_000 }
    const held = createStockCache({
      schema,
      reader: sequelizeReader(heldDb, schema),
      store: sequelizeStore(heldDb, { table: 'stockcast_projections' }),
      memory,
      debounceMs: 600_000,
      maxWaitMs: 600_000,
    })
    const live = createStockCache({
      schema,
      reader: sequelizeReader(liveDb, schema),
      store: sequelizeStore(liveDb, { table: 'stockcast_projections' }),
      memory,
    })
    attachSequelize(heldDb, held, schema, { warnRawWrites: false })
    attachSequelize(liveDb, live, schema, { warnRawWrites: false })
    const sku = (i) => `SKU-${String(1 + ((i * 7919) % products)).padStart(5, '0')}`
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10)
    let victims = []
    const single = [
      ['StockMovement.create', (_, mm, i) => mm.StockMovement.create({ productCode: sku(i), quantity: 1 })],
      [
        'create in a transaction',
        (db, mm, i) =>
          db.transaction((transaction) =>
            mm.StockMovement.create({ productCode: sku(i), quantity: 1 }, { transaction }),
          ),
      ],
      [
        'order + 3 lines in a transaction (bulkCreate)',
        (db, mm, i) =>
          db.transaction(async (transaction) => {
            const o = await mm.Order.create({ status: 'OPEN' }, { transaction })
            await mm.OrderLine.bulkCreate(
              [0, 1, 2].map((k) => ({ orderId: o.id, productCode: sku(i + k), openQty: 2, shipDate: tomorrow })),
              { transaction },
            )
          }),
      ],
      [
        'findByPk + instance.update',
        async (_, mm, i) => {
          const line = await mm.OrderLine.findByPk(lineIds[i % lineIds.length])
          await line.update({ openQty: 1 + (i % 7) })
        },
      ],
      [
        'Model.update by id (PostgreSQL: RETURNING)',
        (_, mm, i) => mm.OrderLine.update({ openQty: 1 + (i % 7) }, { where: { id: lineIds[i % lineIds.length] } }),
      ],
      [
        'Model.destroy by id (PostgreSQL: RETURNING)',
        (_, mm, i) => mm.StockMovement.destroy({ where: { id: victims[i] } }),
      ],
    ]
    console.log(
      `\n### one write at a time: ${single.length} operations, ${singleOps} each, best of ${singleRounds} alternating rounds`,
    )
    const perOp = []
    for (const [name, fn] of single) {
      const best = { off: Infinity, on: Infinity }
      const cpu = { off: Infinity, on: Infinity }
      for (let r = 0; r < singleRounds; r++) {
        for (const mode of r % 2 === 0 ? ['off', 'on'] : ['on', 'off']) {
          if (name.startsWith('Model.destroy')) {
            const made = await m.StockMovement.bulkCreate(
              Array.from({ length: singleOps }, (_, i) => ({ productCode: sku(i), quantity: 1 })),
            )
            victims = made.map((x) => x.id)
          }
          const [db, mm] = mode === 'on' ? [heldDb, mHeld] : [sequelize, m]
          const t0 = now()
          const c0 = process.cpuUsage()
          for (let i = 0; i < singleOps; i++) await fn(db, mm, i)
          best[mode] = Math.min(best[mode], ((now() - t0) / singleOps) * 1000)
          const used = process.cpuUsage(c0)
          cpu[mode] = Math.min(cpu[mode], (used.user + used.system) / singleOps)
        }
      }
      perOp.push([
        name,
        `${best.off.toFixed(0)} us`,
        `${best.on.toFixed(0)} us`,
        pct(best.on / best.off),
        `${cpu.off.toFixed(0)} / ${cpu.on.toFixed(0)} us`,
      ])
    }
    await held.flush()
    printTable(['operation', 'no stockcast', 'hooks attached', 'overhead', 'client CPU per op (off / on)'], perOp)

    // 2. The write-heavy workload without stockcast, with the hooks marking a cache that recomputes only after the
    //    round (the hooks' own cost), and with the hooks and a live cache recomputing as marks come (default debounce).
    console.log(
      `\n### write-heavy mix, ${workers} concurrent workers: ${ops} operations per round, ${rounds} rounds each, interleaved`,
    )
    const configs = [
      { name: 'off', cache: undefined, db: sequelize, m },
      { name: 'held', cache: held, db: heldDb, m: mHeld },
      { name: 'live', cache: live, db: liveDb, m: mLive },
    ]
    const runs = { off: [], held: [], live: [] }
    const cpus = { off: [], held: [], live: [] }
    const options = { ops, workers, products, lineIds }
    // Warm-up of each configuration (JIT, pools); the caches then start in step with the tables.
    for (const c of configs) await workload(c.m, c.db, { ...options, ops: Math.floor(ops / 4), seed: 99 })
    let marks = 0
    let recomputes = 0
    let checked = 0
    let mismatches = 0
    for (let r = 0; r < rounds; r++) {
      // Rotate the order so a drift in the database (table growth, autovacuum) spreads over all three.
      for (let i = 0; i < configs.length; i++) {
        const c = configs[(i + r) % configs.length]
        if (c.cache === undefined) {
          runs.off.push(await workload(m, sequelize, { ...options, seed: r + 1 }))
          cpus.off.push(workload.cpuPerOp)
          continue
        }
        await c.cache.rebuildAll() // in step with the tables again (the other rounds wrote without marking it)
        const m0 = c.cache.metrics()
        runs[c.name].push(await workload(c.m, c.db, { ...options, seed: r + 1 }))
        cpus[c.name].push(workload.cpuPerOp)
        await c.cache.flush()
        if (c.name === 'live') {
          const m1 = c.cache.metrics()
          marks += m1.marks - m0.marks
          recomputes += m1.keysComputed - m0.keysComputed
          const report = await c.cache.validate({ sample: 300 })
          checked += report.checked
          mismatches += report.mismatches.length
        }
      }
    }
    const off = median(runs.off)
    // Per round, each configuration against the no-stockcast run of the same round (same table sizes, same load on
    // the machine at about the same time): the median of these paired ratios is steadier than a ratio of medians.
    const paired = (name) => median(runs[name].map((x, r) => x / runs.off[r]))
    const cpuOf = (name) => `${median(cpus[name]).toFixed(0)} us`
    const row = (label, name, target) => {
      const ratio = paired(name)
      return [label, fmtInt(median(runs[name])), `${ratio.toFixed(2)}x`, pct(1 / ratio), cpuOf(name), target]
    }
    printTable(
      ['configuration', 'ops/s (median)', 'paired ratio (median)', 'overhead', 'client CPU / op', 'target'],
      [
        ['Sequelize, no stockcast', fmtInt(off), '1.00x', '', cpuOf('off'), ''],
        row('attachSequelize, marks only (recompute after the round)', 'held', '<= +10 %'),
        row('attachSequelize + live cache recomputing meanwhile', 'live', ''),
      ],
    )
    console.log(
      `rounds (ops/s): none ${runs.off.map(fmtInt).join(', ')}; marks only ${runs.held.map(fmtInt).join(', ')}; ` +
        `live ${runs.live.map(fmtInt).join(', ')}`,
    )
    console.log(`live cache: ${fmtInt(marks)} product marks, ${fmtInt(recomputes)} projections recomputed`)
    console.log(`validate right after each live round (300 sampled): ${checked} checked, ${mismatches} mismatches`)
    await live.close()
    await held.close()

    // 3. bulkCreate of 100 000 movements: no stockcast, vs hooks + disableCacheTemporarily (recompute included).
    console.log(`\n### bulkCreate of ${fmtInt(bulk)} movements (one call)`)
    const rows = Array.from({ length: bulk }, (_, i) => ({
      productCode: `SKU-${String(1 + ((i * 7919) % products)).padStart(5, '0')}`,
      quantity: 1,
    }))
    const bulkRuns = { off: [], on: [], hook: [] }
    const bulkCache = createStockCache({
      schema,
      reader: sequelizeReader(sequelize, schema),
      store,
      memory: { max: 20_000, ttl: 600_000 },
    })
    await bulkCache.rebuildAll()
    let hookStart = 0
    sequelize.addHook('afterBulkCreate', 'bench-before', () => {
      hookStart = now()
    })
    for (let r = 0; r < 2; r++) {
      let t0 = now()
      await m.StockMovement.bulkCreate(rows)
      bulkRuns.off.push(now() - t0)
      const detach = attachSequelize(sequelize, bulkCache, schema, { warnRawWrites: false })
      sequelize.addHook('afterBulkCreate', 'bench-after', () => {
        bulkRuns.hook.push(now() - hookStart)
      })
      t0 = now()
      await bulkCache.disableCacheTemporarily(() => m.StockMovement.bulkCreate(rows))
      bulkRuns.on.push(now() - t0)
      sequelize.removeHook('afterBulkCreate', 'bench-after')
      detach()
    }
    const bOff = Math.min(...bulkRuns.off)
    const bOn = Math.min(...bulkRuns.on)
    printTable(
      ['import', 'time (best of 2)', 'ratio vs no stockcast', 'target'],
      [
        ['bulkCreate, no stockcast', fmt(bOff), '1.00x', ''],
        [
          'bulkCreate + hooks inside disableCacheTemporarily, recompute of the touched products included',
          fmt(bOn),
          `${(bOn / bOff).toFixed(2)}x`,
          '',
        ],
        [
          "  of which the adapter's afterBulkCreate hook (one pass, distinct products)",
          fmt(Math.min(...bulkRuns.hook)),
          '',
          '',
        ],
      ],
    )
    const v = await bulkCache.validate({ sample: 300 })
    console.log(`validate after the imports (300 sampled): ${v.checked} checked, ${v.mismatches.length} mismatches`)
    await bulkCache.close()
  } finally {
    await heldDb.close()
    await liveDb.close()
    await sequelize.close()
    await admin.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`).catch(() => {})
    await admin.end()
  }
}

if (isMain(import.meta.url)) {
  main().catch((e) => {
    console.error(e)
    process.exitCode = 1
  })
}
