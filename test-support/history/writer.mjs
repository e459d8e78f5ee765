// A writer process of the history checker: random raw-SQL transactions on the run's tables, each recording what it
// changed (row images) in the history table in the same transaction, under a global lock taken last, so that the
// history's sequence order is the commit order (see README.md). Started by run.mjs with fork(); config in argv[2].
import { connect, marks } from './db.mjs'
import { imageOf, planTransaction, prng, randomDate, randomQty, selectList, tableNames } from './workload.mjs'

const cfg = JSON.parse(process.argv[2])
const t = tableNames(cfg.prefix)
const pgDialect = cfg.dialect === 'postgres'

const stats = {
  commits: 0,
  emptyCommits: 0,
  rollbacks: 0,
  rollbacksAfterLog: 0,
  savepointRollbacks: 0,
  steps: {},
  errors: {},
  errorExamples: [],
}
/** [seq, ms after COMMIT returned] of commits not yet sent. */
let done = []
let stopping = false

const send = (msg) => {
  if (process.connected) process.send(msg)
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
// The parent is gone: stop at once (no orphan writer keeps writing).
process.on('disconnect', () => process.exit(3))

/** Milli-units of a decimal string ('12.345' -> 12345). */
const milli = (s) => Math.round(Number(s) * 1000)
const fromMilli = (m) => (m / 1000).toFixed(3)

class Intended extends Error {}

/** Per-step helpers over one connection; every change is pushed to `changes` as [table, old image, new image]. */
function stepper(conn, changes) {
  const q = conn.q
  // MariaDB: statements by id go through the primary key, never a scan. Under REPEATABLE READ a scan locks every row
  // it reads, rows of products this transaction did not lock first included (a deadlock the capture-free baseline
  // showed, with a many-row update whose IN list the optimizer turned into a full scan).
  const byPk = pgDialect ? '' : ' FORCE INDEX (PRIMARY)'
  const list = (table) => selectList(cfg.dialect, table)
  const ids = async (table, where, params) =>
    (await q(`SELECT id FROM ${t[table]} WHERE ${where} ORDER BY id`, params)).map((r) => Number(r.id))
  const lock = async (table, idList) =>
    (
      await q(
        `SELECT ${list(table)} FROM ${t[table]}${byPk} WHERE id IN (${marks(idList.length)}) ORDER BY id FOR UPDATE`,
        idList,
      )
    ).map((r) => imageOf(table, r))
  const insert = async (table, cols, values) => {
    let img
    if (pgDialect) {
      const [r] = await q(
        `INSERT INTO ${t[table]} (${cols.join(', ')}) VALUES (${marks(values.length)}) RETURNING ${list(table)}`,
        values,
      )
      img = imageOf(table, r)
    } else {
      const res = await q(`INSERT INTO ${t[table]} (${cols.join(', ')}) VALUES (${marks(values.length)})`, values)
      const [r] = await q(`SELECT ${list(table)} FROM ${t[table]} WHERE id = ? FOR UPDATE`, [res.insertId])
      img = imageOf(table, r)
    }
    changes.push([table, null, img])
    return img
  }
  /** UPDATE by ids (locked first): old and new images logged. */
  const update = async (table, idList, set, params) => {
    if (idList.length === 0) return []
    const before = await lock(table, idList)
    let after
    const sql = `UPDATE ${t[table]}${byPk} SET ${set} WHERE id IN (${marks(idList.length)})`
    if (pgDialect)
      after = (await q(`${sql} RETURNING ${list(table)}`, [...params, ...idList])).map((r) => imageOf(table, r))
    else {
      await q(sql, [...params, ...idList])
      after = await lock(table, idList)
    }
    const byId = new Map(after.map((img) => [img[0], img]))
    for (const old of before) changes.push([table, old, byId.get(old[0]) ?? null])
    return after
  }
  const remove = async (table, idList) => {
    if (idList.length === 0) return
    const before = await lock(table, idList)
    await q(`DELETE FROM ${t[table]} WHERE id IN (${marks(idList.length)})`, idList)
    for (const old of before) changes.push([table, old, null])
  }
  return { q, ids, lock, insert, update, remove }
}

/** Run one step of a plan. Rows are chosen after the transaction locked their products and batches. */
async function runStep(s, step, today) {
  const rng = prng(step.seed)
  const one = async (table, where, params) => {
    const found = await s.ids(table, where, params)
    return found.length === 0 ? [] : [rng.pick(found)]
  }
  const date = () => randomDate(rng, today)
  switch (step.kind) {
    case 'mv_ins':
      return s.insert('movements', ['product_code', 'quantity'], [step.a, randomQty(rng, -5, 20)])
    case 'mv_upd':
      return s.update('movements', await one('movements', 'product_code = ?', [step.a]), 'quantity = ?', [
        randomQty(rng, -5, 40),
      ])
    case 'mv_move':
      return s.update('movements', await one('movements', 'product_code = ?', [step.a]), 'product_code = ?', [step.b])
    case 'mv_del':
      return s.remove('movements', await one('movements', 'product_code = ?', [step.a]))
    case 'pr_ins':
      return s.insert(
        'production',
        ['product_code', 'planned_qty', 'scheduled_for'],
        [step.a, randomQty(rng, 1, 30), date()],
      )
    case 'pr_upd':
      return s.update(
        'production',
        await one('production', 'product_code = ?', [step.a]),
        'planned_qty = ?, scheduled_for = ?',
        [randomQty(rng, 1, 30), date()],
      )
    case 'pr_move':
      return s.update('production', await one('production', 'product_code = ?', [step.a]), 'product_code = ?', [step.b])
    case 'pr_del':
      return s.remove('production', await one('production', 'product_code = ?', [step.a]))
    case 'ol_ins':
      return s.insert(
        'order_lines',
        ['product_code', 'open_qty', 'ship_date', 'picking_batch_id'],
        [step.a, randomQty(rng, 1, 25), date(), rng.chance(0.25) ? 1 + rng.int(cfg.batches) : null],
      )
    case 'ol_upd':
      return s.update(
        'order_lines',
        await one('order_lines', 'product_code = ?', [step.a]),
        'open_qty = ?, ship_date = ?',
        [randomQty(rng, 1, 25), date()],
      )
    case 'ol_toggle': {
      // The source's where depends on this column: a line leaves or joins the demand.
      const id = await one('order_lines', 'product_code = ?', [step.a])
      if (id.length === 0) return
      const [old] = await s.lock('order_lines', id)
      return s.update('order_lines', id, 'picking_batch_id = ?', [old[4] === null ? 1 + rng.int(cfg.batches) : null])
    }
    case 'ol_move':
      return s.update('order_lines', await one('order_lines', 'product_code = ?', [step.a]), 'product_code = ?', [
        step.b,
      ])
    case 'ol_del':
      return s.remove('order_lines', await one('order_lines', 'product_code = ?', [step.a]))
    case 'pi_ins':
      return s.insert(
        'picking_items',
        ['product_code', 'qty', 'ship_date', 'picking_batch_id'],
        [step.a, randomQty(rng, 1, 15), date(), step.x],
      )
    case 'pi_upd':
      return s.update(
        'picking_items',
        await one('picking_items', 'product_code = ? AND picking_batch_id = ?', [step.a, step.x]),
        'qty = ?, ship_date = ?',
        [randomQty(rng, 1, 15), date()],
      )
    case 'pi_move':
      return s.update(
        'picking_items',
        await one('picking_items', 'product_code = ? AND picking_batch_id = ?', [step.a, step.x]),
        'product_code = ?',
        [step.b],
      )
    case 'pi_batch':
      return s.update(
        'picking_items',
        await one('picking_items', 'product_code = ? AND picking_batch_id = ?', [step.a, step.x]),
        'picking_batch_id = ?',
        [step.y],
      )
    case 'pi_del':
      return s.remove(
        'picking_items',
        await one('picking_items', 'product_code = ? AND picking_batch_id = ?', [step.a, step.x]),
      )
    case 'flip': {
      const id = await s.ids('orders', 'picking_batch_id = ?', [step.x])
      if (id.length === 0) return
      const [old] = await s.lock('orders', id)
      const next = ['OPEN', 'QUOTED', 'CLOSED', 'SHIPPED'].filter((x) => x !== old[2])
      return s.update('orders', id, 'status = ?', [rng.pick(next)])
    }
    case 'ship': {
      // Two tables in one transaction: the line's open quantity goes down (or the line goes), the stock goes out.
      const id = await one('order_lines', 'product_code = ?', [step.a])
      if (id.length === 0) return
      const [old] = await s.lock('order_lines', id)
      const open = milli(old[2])
      const q = Math.max(1, Math.min(open, 1 + rng.int(Math.max(1, open))))
      if (q >= open) await s.remove('order_lines', id)
      else await s.update('order_lines', id, 'open_qty = ?', [fromMilli(open - q)])
      return s.insert('movements', ['product_code', 'quantity'], [step.a, fromMilli(-q)])
    }
    case 'produce': {
      const id = await one('production', 'product_code = ?', [step.a])
      if (id.length === 0) return
      const [old] = await s.lock('production', id)
      await s.remove('production', id)
      return s.insert('movements', ['product_code', 'quantity'], [step.a, old[2]])
    }
    case 'bulk': {
      const found = await s.ids('movements', `product_code IN (${marks(step.products.length)})`, step.products)
      return s.update('movements', found, 'quantity = quantity + 1', [])
    }
    default:
      throw new Error(`unknown step ${step.kind}`)
  }
}

function classify(e) {
  const code = e?.code ?? e?.errno ?? 'unknown'
  return String(code)
}

function recordError(e, steps) {
  const code = classify(e)
  stats.errors[code] = (stats.errors[code] ?? 0) + 1
  // The first two of each code.
  if (stats.errorExamples.filter((x) => x.code === code).length < 2) {
    stats.errorExamples.push({ code, message: String(e?.message ?? e).slice(0, 300), steps: steps.map((s) => s.kind) })
  }
}

async function transaction(conn, rng, loopId) {
  const steps = planTransaction(rng, cfg.productList, cfg.batchList)
  const products = [...new Set(steps.flatMap((s) => s.products))].sort()
  const batches = [...new Set(steps.flatMap((s) => s.batches))].sort((a, b) => a - b)
  const changes = []
  const s = stepper(conn, changes)
  const today = new Date().toISOString().slice(0, 10)
  let lockHeld = false
  const lockName = `${cfg.prefix}_hist`
  try {
    await conn.q(pgDialect ? 'BEGIN' : 'START TRANSACTION')
    // Everything this transaction may touch is locked first, in one global order (products, then batches): the
    // writers cannot deadlock one another, and MariaDB's read view (taken at the first plain read, after these
    // locking reads) sees every earlier change of these rows.
    if (products.length > 0)
      await conn.q(
        `SELECT code FROM ${t.products} WHERE code IN (${marks(products.length)}) ORDER BY code FOR UPDATE`,
        products,
      )
    // (`lockBatches: false`: picking items join and leave batches without locking the batch's order row, so a status
    // flip can run concurrently with them: see README, "the related race".)
    if (batches.length > 0 && cfg.lockBatches)
      await conn.q(
        `SELECT picking_batch_id FROM ${t.orders} WHERE picking_batch_id IN (${marks(batches.length)}) ORDER BY picking_batch_id FOR UPDATE`,
        batches,
      )
    for (const step of steps) {
      stats.steps[step.kind] = (stats.steps[step.kind] ?? 0) + 1
      if (rng.chance(0.05)) {
        // A savepoint rolled back: its changes (and its outbox rows) vanish; the transaction goes on.
        const mark = changes.length
        await conn.q('SAVEPOINT h_sp')
        await runStep(s, step, today)
        await conn.q('ROLLBACK TO SAVEPOINT h_sp')
        changes.length = mark
        stats.savepointRollbacks++
      } else await runStep(s, step, today)
    }
    const r = rng.next()
    if (r < 0.08) throw new Intended('rollback')
    if (changes.length === 0) {
      await conn.q('COMMIT')
      stats.emptyCommits++
      return
    }
    // The history row: under a global lock held until the commit, so seq order = commit order and its recorded
    // time lies between the previous commit and this one.
    if (pgDialect) await conn.q('SELECT pg_advisory_xact_lock(hashtext(?))', [lockName])
    else {
      const [g] = await conn.q('SELECT GET_LOCK(?, 30) AS ok', [lockName])
      if (Number(g?.ok) !== 1)
        throw Object.assign(new Error('history lock not granted in 30 s'), { code: 'HISTORY_LOCK' })
      lockHeld = true
    }
    let seq
    const payload = JSON.stringify(changes)
    if (pgDialect) {
      const [row] = await conn.q(
        `INSERT INTO ${t.history} (writer, rec_us, changes) VALUES (?, (extract(epoch from clock_timestamp()) * 1000000)::bigint, ?) RETURNING seq`,
        [`${cfg.id}.${loopId}`, payload],
      )
      seq = Number(row.seq)
    } else {
      const res = await conn.q(
        `INSERT INTO ${t.history} (writer, rec_us, changes) VALUES (?, CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED), ?)`,
        [`${cfg.id}.${loopId}`, payload],
      )
      seq = Number(res.insertId)
    }
    if (r < 0.12) throw new Intended('rollback after the history row')
    await conn.q('COMMIT')
    done.push([seq, Date.now()])
    stats.commits++
  } catch (e) {
    await conn.q('ROLLBACK').catch(() => {})
    if (e instanceof Intended) {
      stats.rollbacks++
      if (e.message !== 'rollback') stats.rollbacksAfterLog++
    } else recordError(e, steps)
  } finally {
    if (lockHeld) await conn.q('SELECT RELEASE_LOCK(?) AS released', [lockName]).catch(() => {})
  }
}

async function open(loopId) {
  const conn = await connect({ ...cfg.conn, appName: `${cfg.appName}_${loopId}` })
  // synchronous_commit off: the global history lock is held through COMMIT, so commits are serial; without it each
  // waits for its own WAL flush. Visibility and lock order are the same (only durability differs).
  if (pgDialect) {
    await conn.q("SET lock_timeout = '10s'")
    await conn.q('SET synchronous_commit = off')
  } else await conn.q('SET SESSION innodb_lock_wait_timeout = 10')
  return conn
}

async function loop(loopId, first) {
  const rng = prng(cfg.seed * 31 + loopId)
  let conn = first
  await go
  while (!stopping) {
    if (conn.broken) {
      await conn.close()
      conn = await open(loopId)
    }
    await transaction(conn, rng, loopId)
    const pause = rng.int(4)
    if (pause > 0) await sleep(pause)
  }
  await conn.close()
}

let start
const go = new Promise((r) => {
  start = r
})
process.on('message', (msg) => {
  if (msg?.t === 'go') start()
  else if (msg?.t === 'stop') stopping = true
})
const flusher = setInterval(() => {
  if (done.length === 0) return
  send({ t: 'done', list: done })
  done = []
}, 250)

const conns = await Promise.all(Array.from({ length: cfg.connections }, (_, i) => open(i)))
send({ t: 'ready' })
try {
  await Promise.all(conns.map((c, i) => loop(i, c)))
} catch (e) {
  recordError(e, [])
}
clearInterval(flusher)
send({ t: 'done', list: done })
// The last message is on its way before the process ends.
await new Promise((r) => (process.connected ? process.send({ t: 'finished', stats }, () => r()) : r()))
process.exit(0)
