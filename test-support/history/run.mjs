// The history checker's orchestrator: sets up a run's tables on PostgreSQL or MariaDB, installs the change capture,
// forks cache processes and writer processes, injects faults (SIGKILL of a listening cache process, terminated
// backends), stops, checks at rest, then judges every read against the truth replayed from the history table
// (check.mjs). Used by adapters/sql/test/history.*.test.ts and scripts/history-check.mjs. See README.md.
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { fromMysql, fromPg, sqlChangeCapture, sqlStore } from '@stockcast/sql'
import mysql from 'mysql2/promise'
import pg from 'pg'
import { defineStockSchema } from 'stockcast'
import { buildTimelines, checkReads } from './check.mjs'
import { connect, marks } from './db.mjs'
import { describeFingerprint, diffFingerprints, fingerprint } from './truth.mjs'
import {
  batchList,
  ddl,
  imageOf,
  productList,
  schemaSpec,
  seedRows,
  selectList,
  TABLE_KEYS,
  TABLES,
  tableNames,
  utcToday,
} from './workload.mjs'

const PG_URL = process.env.STOCKCAST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const MYSQL_URL = process.env.STOCKCAST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test'
const here = (f) => fileURLToPath(new URL(f, import.meta.url))
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

const DEFAULTS = {
  db: 'postgres',
  seconds: 20,
  writers: 5,
  writerConnections: 2,
  caches: 3,
  products: 40,
  batches: 12,
  ttlMs: 1500,
  poolSize: 6,
  faults: true,
  killAt: 0.3,
  terminateAt: [0.5, 0.75],
  slackMs: 1,
  oracleLoops: 2,
  verifyEvery: 1,
  loops: { default: 2, strong: 2, many: 1 },
  maxExamples: 4,
  // With redis: true the caches share a Redis store, bus and lock (a redis-server of the run's own, no L1 ttl: the
  // bus alone keeps peers fresh), and the run kills Redis at redisKillAt and restarts it redisDownMs later.
  redis: false,
  redisKillAt: 0.6,
  redisDownMs: 1500,
}

/** A forked child with request/reply over IPC, its stderr tail, and how it ended. */
function child(name, file, cfg, onMessage) {
  const proc = fork(here(file), [JSON.stringify(cfg)], { execArgv: [], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  const c = { name, proc, stderr: [], exited: null, expectedExit: false, pending: new Map(), nextId: 1 }
  const keep = (chunk) => {
    for (const line of String(chunk).split('\n')) if (line.trim() !== '') c.stderr.push(line)
    if (c.stderr.length > 40) c.stderr.splice(0, c.stderr.length - 40)
  }
  proc.stderr.on('data', keep)
  proc.stdout.on('data', keep)
  c.ready = new Promise((resolve, reject) => {
    c.readyResolve = resolve
    c.readyReject = reject
  })
  c.ready.catch(() => {})
  c.done = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      c.exited = { code, signal }
      c.readyReject(
        new Error(`${name} exited (${code ?? signal}) before it was ready: ${c.stderr.slice(-5).join(' | ')}`),
      )
      for (const { reject } of c.pending.values()) reject(new Error(`${name} exited (${code ?? signal})`))
      c.pending.clear()
      resolve()
    })
  })
  proc.on('error', () => {})
  proc.on('message', (msg) => {
    if (msg?.t === 'ready') c.readyResolve()
    else if (msg?.t === 'reply') {
      const p = c.pending.get(msg.id)
      c.pending.delete(msg.id)
      if (p === undefined) return
      if (msg.error !== undefined) p.reject(new Error(`${name}: ${msg.error}`))
      else p.resolve(msg.result)
    } else onMessage(msg)
  })
  c.request = (t, timeoutMs = 30_000) =>
    new Promise((resolve, reject) => {
      if (c.exited !== null || !proc.connected) {
        reject(new Error(`${name} is not running`))
        return
      }
      const id = c.nextId++
      const timer = setTimeout(() => {
        c.pending.delete(id)
        reject(new Error(`${name}: no reply to ${t} in ${timeoutMs} ms`))
      }, timeoutMs)
      c.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      proc.send({ t, id })
    })
  return c
}

const within = (promise, ms, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms).unref?.()),
  ])

/**
 * Start a run. Resolves `done` with the result (see run.d.mts); `cleanup()` kills every child and drops the run's
 * tables (idempotent; call it in afterAll / finally even when `done` rejected).
 */
export function startHistory(options = {}) {
  const o = { ...DEFAULTS, ...options, loops: { ...DEFAULTS.loops, ...options.loops } }
  const log = o.log ?? (() => {})
  const prefix = `h_${process.pid}_${Math.floor(Math.random() * 1e6)}`
  const t = tableNames(prefix)
  const children = new Set()
  let cleaned
  let admin // the orchestrator's own connection (setup, faults, teardown)
  let pool // the orchestrator's SqlDb pool (capture install, store reads)
  let redisServer // o.redis: the run's own redis-server
  let redisClient // o.redis: the orchestrator's client (store reads at rest)

  const cleanup = () => {
    cleaned ??= (async () => {
      for (const c of children) {
        if (c.exited === null) c.proc.kill('SIGKILL')
      }
      await Promise.all([...children].map((c) => within(c.done, 5000, `${c.name} to exit`).catch(() => {})))
      try {
        admin ??= await connect(
          o.db === 'postgres' ? { dialect: 'postgres', url: PG_URL } : { dialect: 'mysql', url: MYSQL_URL },
        )
        if (o.db === 'postgres') await admin.q(`DROP SCHEMA IF EXISTS "${prefix}" CASCADE`)
        else {
          const triggers = await admin.q(
            'SELECT TRIGGER_NAME AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND LEFT(TRIGGER_NAME, ?) = ?',
            [prefix.length, prefix],
          )
          for (const r of triggers) await admin.q(`DROP TRIGGER IF EXISTS \`${r.n}\``)
          const tables = await admin.q(
            'SELECT TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND LEFT(TABLE_NAME, ?) = ?',
            [prefix.length, prefix],
          )
          for (const r of tables) await admin.q(`DROP TABLE IF EXISTS \`${r.n}\``)
        }
      } finally {
        await pool?.end().catch(() => {})
        await admin?.close()
        redisClient?.disconnect()
        await redisServer?.close()
      }
    })()
    return cleaned
  }

  const done = (async () => {
    // A run must not cross midnight (UTC): the truth's D0 would move under it.
    let today = utcToday()
    const left = Date.parse(`${today}T00:00:00Z`) + 86_400_000 - Date.now()
    if (left < o.seconds * 1000 + 60_000) {
      log(`waiting ${Math.ceil(left / 1000)} s for midnight UTC (a run must not cross it)`)
      await sleep(left + 1000)
      today = utcToday()
    }
    const products = productList(o.products)
    const batches = batchList(o.batches)
    const seed = o.seed ?? Math.floor(Math.random() * 1e9)
    const pgDb = o.db === 'postgres'
    const url = pgDb ? PG_URL : MYSQL_URL
    const conn = { dialect: o.db, url, ...(pgDb ? { schema: prefix } : {}) }

    // ------------------------------------------------------------ tables, seed, capture, store
    admin = await connect({ dialect: o.db, url, appName: `${prefix}_admin` })
    if (pgDb) {
      await admin.q(`CREATE SCHEMA "${prefix}"`)
      await admin.q(`SET search_path = "${prefix}"`)
    }
    for (const stmt of ddl(o.db, prefix)) await admin.q(stmt)
    await admin.q(`INSERT INTO ${t.products} (code) VALUES ${products.map(() => '(?)').join(', ')}`, products)
    const seedData = seedRows(products, batches, today, seed)
    for (const table of TABLE_KEYS) {
      const cols = TABLES[table].map(([c]) => c)
      const rows = seedData[table]
      await admin.q(
        `INSERT INTO ${t[table]} (${cols.join(', ')}) VALUES ${rows.map(() => `(${marks(cols.length)})`).join(', ')}`,
        rows.flat(),
      )
    }
    const spec = schemaSpec(prefix)
    const schema = defineStockSchema(spec)
    let db
    if (pgDb) {
      pool = new pg.Pool({
        connectionString: url,
        max: 3,
        options: `-c search_path=${prefix}`,
        application_name: `${prefix}_orch`,
      })
      pool.on('error', () => {})
      db = fromPg(pool)
    } else {
      pool = mysql.createPool({ uri: url, connectionLimit: 3, decimalNumbers: false, dateStrings: true })
      db = fromMysql(pool)
    }
    // A baseline run installs no capture: the same writers on bare tables (their own errors, if any, are the workload's).
    if (!o.baseline) await sqlChangeCapture(db, schema, { prefix }).install()
    let store = sqlStore(db, { table: t.store })
    if (!o.baseline) await store.install()
    if (o.redis && !o.baseline) {
      const { ownRedis } = await import('../redis-server.mjs')
      const { default: Redis } = await import('ioredis')
      const { redisStore } = await import('@stockcast/redis')
      redisServer = await ownRedis()
      redisClient = new Redis(redisServer.url, { maxRetriesPerRequest: 1 })
      redisClient.on('error', () => {})
      store = redisStore(redisClient, { prefix: `${prefix}:` })
    }
    // With a bus (Redis), L1 has no ttl: only the bus keeps peers fresh.
    const ttlMs = o.redis ? 0 : o.ttlMs
    // The snapshot the history replays from: nothing writes before the writers start.
    const snapshot = {}
    for (const table of TABLE_KEYS) {
      snapshot[table] = (await admin.q(`SELECT ${selectList(o.db, table)} FROM ${t[table]} ORDER BY id`)).map((r) =>
        imageOf(table, r),
      )
    }

    // ------------------------------------------------------------ cache processes
    const fpsOf = new Map() // proc -> id -> fp
    const rawReads = [] // [proc, kindCode, product, fpId, start, end]
    const threads = new Map() // proc -> Set(thread id), MariaDB
    const caches = []
    const startCache = (name, listen) => {
      const cfg = {
        id: name,
        dialect: o.db,
        conn,
        prefix,
        appName: `${prefix}_${name}`,
        listen,
        ttlMs,
        redisUrl: redisServer?.url,
        poolSize: o.poolSize,
        productList: products,
        seed: seed + name.charCodeAt(1) * 7919 + name.length,
        loops: o.loops,
      }
      fpsOf.set(name, new Map())
      threads.set(name, new Set())
      const c = child(name, 'cache-process.mjs', cfg, (msg) => {
        if (msg.t === 'reads') {
          const m = fpsOf.get(name)
          for (const [id, fp] of msg.fps) m.set(id, fp)
          for (const r of msg.list) rawReads.push([name, ...r])
        } else if (msg.t === 'conn') threads.get(name).add(msg.id)
      })
      c.listen = listen
      children.add(c)
      caches.push(c)
      return c
    }
    const nCaches = o.baseline ? 0 : o.caches
    // Two listeners on one outbox (one when there are fewer than 3 processes); the others only read.
    const listening = nCaches >= 3 ? 2 : Math.min(1, nCaches)
    for (let i = 0; i < nCaches; i++) startCache(`c${i + 1}`, i < listening)
    // The control reader: one-snapshot reads through the checker's own aggregation (never accused by a sound checker).
    fpsOf.set('o1', new Map())
    const oracle = o.baseline
      ? null
      : child(
          'o1',
          'oracle-process.mjs',
          {
            dialect: o.db,
            conn,
            prefix,
            appName: `${prefix}_o1`,
            productList: products,
            seed: seed + 77,
            loops: o.oracleLoops,
          },
          (msg) => {
            if (msg.t === 'reads') {
              const m = fpsOf.get('o1')
              for (const [id, fp] of msg.fps) m.set(id, fp)
              for (const r of msg.list) rawReads.push(['o1', ...r])
            }
          },
        )
    const readers = oracle === null ? caches : [...caches, oracle]
    for (const c of readers) children.add(c)
    await within(Promise.all(readers.map((c) => c.ready)), 60_000, 'cache processes ready')
    log(`${caches.length} cache processes ready (${listening} listening)`)

    // ------------------------------------------------------------ writers
    const doneAt = new Map() // seq -> ms
    const writerStats = []
    const writers = []
    for (let i = 0; i < o.writers; i++) {
      const name = `w${i + 1}`
      const cfg = {
        id: name,
        dialect: o.db,
        conn,
        prefix,
        appName: `${prefix}_${name}`,
        connections: o.writerConnections,
        productList: products,
        batchList: batches,
        batches: batches.length,
        lockBatches: o.lockBatches !== false,
        seed: seed + 1000 * (i + 1),
      }
      const c = child(name, 'writer.mjs', cfg, (msg) => {
        if (msg.t === 'done') for (const [seq, ms] of msg.list) doneAt.set(seq, ms)
        else if (msg.t === 'finished') writerStats.push(msg.stats)
      })
      children.add(c)
      writers.push(c)
    }
    await within(Promise.all(writers.map((c) => c.ready)), 60_000, 'writer processes ready')

    // ------------------------------------------------------------ the run, with faults
    const t0 = Date.now()
    const at = (ms) => sleep(Math.max(0, t0 + ms - Date.now()))
    const W = o.seconds * 1000
    log(`writing for ${o.seconds} s: ${o.writers} writers x ${o.writerConnections} connections, seed ${seed}`)
    for (const c of readers) c.proc.send({ t: 'read', id: 0 })
    for (const w of writers) w.proc.send({ t: 'go' })
    const faults = { killed: [], replacements: [], terminations: [], terminated: 0, redis: [] }
    // Redis killed and restarted while everything runs (alongside the other faults).
    const redisFault =
      o.faults && redisServer !== undefined
        ? (async () => {
            await at(o.redisKillAt * W)
            await redisServer.stop()
            const downAt = Date.now() - t0
            log(`redis-server killed at ${(downAt / 1000).toFixed(1)} s`)
            await sleep(o.redisDownMs)
            await redisServer.start()
            faults.redis.push({ downAtMs: downAt, upAtMs: Date.now() - t0 })
            log(`redis-server restarted at ${((Date.now() - t0) / 1000).toFixed(1)} s`)
          })()
        : undefined
    const terminate = async (targets, when) => {
      let n = 0
      if (pgDb) {
        const rows = await admin.q(
          'SELECT pid, pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = ANY(?::text[]) AND pid <> pg_backend_pid()',
          [targets.map((c) => `${prefix}_${c.name}`)],
        )
        n = rows.filter((r) => r.ok).length
      } else {
        const ids = targets.flatMap((c) => [...threads.get(c.name)])
        if (ids.length > 0) {
          const alive = await admin.q(
            `SELECT ID AS id FROM information_schema.PROCESSLIST WHERE ID IN (${marks(ids.length)})`,
            ids,
          )
          for (const r of alive) {
            try {
              await admin.q(`KILL CONNECTION ${Number(r.id)}`)
              n++
            } catch {
              // gone meanwhile
            }
          }
        }
      }
      faults.terminations.push({ atMs: when, procs: targets.map((c) => c.name), n })
      faults.terminated += n
      log(`terminated ${n} backends of ${targets.map((c) => c.name).join(', ')} at ${(when / 1000).toFixed(1)} s`)
    }
    if (o.faults && !o.baseline) {
      await at(o.killAt * W)
      const victim = caches.find((c) => c.listen && c.exited === null)
      victim.expectedExit = true
      victim.proc.kill('SIGKILL')
      faults.killed.push({ proc: victim.name, atMs: Date.now() - t0 })
      log(`SIGKILL ${victim.name} at ${((Date.now() - t0) / 1000).toFixed(1)} s`)
      const replacement = startCache(`${victim.name}b`, true)
      await within(replacement.ready, 30_000, 'the replacement cache process ready')
      replacement.proc.send({ t: 'read', id: 0 })
      faults.replacements.push({ proc: replacement.name, readyAtMs: Date.now() - t0 })
      for (const [i, frac] of o.terminateAt.entries()) {
        await at(frac * W)
        const alive = caches.filter((c) => c.exited === null)
        await terminate(i === 0 ? alive : alive.filter((c) => c.listen), Date.now() - t0)
      }
    }
    await redisFault
    await at(W)
    for (const w of writers) w.proc.send({ t: 'stop' })
    await within(Promise.all(writers.map((w) => w.done)), 60_000, 'writers to finish')
    const writeMs = Date.now() - t0
    // MariaDB: what the last deadlock was (the writers' own statements, or the capture's).
    let deadlock = null
    if (!pgDb) {
      const [st] = await admin.q('SHOW ENGINE INNODB STATUS')
      const text = String(st?.Status ?? '')
      const from = text.indexOf('LATEST DETECTED DEADLOCK')
      if (from >= 0) deadlock = text.slice(from, text.indexOf('\nTRANSACTIONS\n', from)).trim()
    }
    const live = caches.filter((c) => c.exited === null)
    const stopped = await Promise.all(
      [...live, ...(oracle === null ? [] : [oracle])].map((c) => c.request('stopReads')),
    )
    await oracle?.request('exit', 10_000).catch(() => {})
    log(`writes stopped after ${(writeMs / 1000).toFixed(1)} s; ${rawReads.length} reads recorded`)

    // ------------------------------------------------------------ at rest
    const restStart = Date.now()
    for (const c of live) {
      const t0 = Date.now()
      if (process.env.STOCKCAST_HISTORY_DEBUG && !o.baseline) {
        // Who holds outbox rows, and until when (a held row is a failed or unstored product's retry delay).
        const leases = await admin.q(
          pgDb
            ? `SELECT lease_owner AS owner, count(*) AS n, max(EXTRACT(EPOCH FROM lease_until - clock_timestamp()) * 1000)::int AS ms FROM ${prefix}_outbox GROUP BY lease_owner`
            : `SELECT lease_owner AS owner, count(*) AS n, max(TIMESTAMPDIFF(MICROSECOND, NOW(6), lease_until) DIV 1000) AS ms FROM ${prefix}_outbox GROUP BY lease_owner`,
        )
        log(`before drain ${c.name}: ${JSON.stringify(leases)}; ${JSON.stringify(await c.request('status'))}`)
      }
      await c.request('drain', 60_000)
      if (process.env.STOCKCAST_HISTORY_DEBUG) log(`drain ${c.name}: ${Date.now() - t0} ms`)
    }
    // Past the L1 ttl: a cache that did not consume a change may answer from its L1 only that long.
    await sleep(ttlMs + 300)
    const rest = new Map()
    for (const c of live) {
      const t0 = Date.now()
      rest.set(c.name, await c.request('atRest', 60_000))
      if (process.env.STOCKCAST_HISTORY_DEBUG) log(`atRest ${c.name}: ${Date.now() - t0} ms`)
    }
    const storeEntries = o.baseline ? new Map() : await store.getMany(products)
    const statuses = new Map()
    for (const c of live) statuses.set(c.name, await c.request('status'))
    const [outboxRow] = o.baseline ? [{ n: 0 }] : await admin.q(`SELECT count(*) AS n FROM ${prefix}_outbox`)
    const restMs = Date.now() - restStart

    // ------------------------------------------------------------ the history and the truth
    const history = await admin.q(`SELECT seq, rec_us, changes FROM ${t.history} ORDER BY seq`)
    const commits = history.map((h) => ({
      seq: Number(h.seq),
      recUs: Number(h.rec_us),
      doneMs: doneAt.get(Number(h.seq)),
      changes: JSON.parse(h.changes),
    }))
    if (utcToday() !== today) throw new Error('the run crossed midnight UTC: its truth is not comparable')
    // Every commit's incremental truth is checked against a full scan of the replayed tables (soundness first).
    const replayStart = Date.now()
    const { timelines, replay } = buildTimelines({ snapshot, commits, products, today, verifyEvery: o.verifyEvery })
    log(`truth: ${commits.length} commits replayed (verified every ${o.verifyEvery}) in ${Date.now() - replayStart} ms`)
    // The replayed tables must be the database's: else the history missed a change and proves nothing.
    const finalDb = {}
    for (const table of TABLE_KEYS) {
      finalDb[table] = (await admin.q(`SELECT ${selectList(o.db, table)} FROM ${t[table]} ORDER BY id`)).map((r) =>
        imageOf(table, r),
      )
    }
    const replayed = replay.dump()
    const historyProblems = []
    for (const table of TABLE_KEYS) {
      if (JSON.stringify(replayed[table]) !== JSON.stringify(finalDb[table])) {
        historyProblems.push(`${table}: the replayed rows differ from the database's (the history is incomplete)`)
      }
    }

    // ------------------------------------------------------------ judge
    const KIND = { d: 'default', s: 'strong', m: 'many', o: 'oracle' }
    const reads = rawReads.map(([proc, k, product, id, start, end]) => ({
      kind: KIND[k],
      proc,
      product,
      fp: fpsOf.get(proc).get(id),
      start,
      end,
    }))
    const verdict = checkReads({ commits, timelines, reads, slackMs: o.slackMs, t0, maxExamples: o.maxExamples })
    const finalFp = new Map(products.map((p) => [p, timelines.get(p).fps.at(-1)]))
    const atRest = { checked: 0, mismatches: 0, byProc: {}, examples: [], errors: [] }
    const mismatch = (where, p, fp) => {
      atRest.checked++
      if (fp === finalFp.get(p)) return
      atRest.mismatches++
      atRest.byProc[where] = (atRest.byProc[where] ?? 0) + 1
      if (atRest.examples.length < o.maxExamples) {
        // Was it ever the truth? An old state left behind (a lost change) or a value that never existed.
        const tl = timelines.get(p)
        const occ = fp === undefined ? undefined : tl.occ.get(fp)
        const last = occ?.at(-1)
        atRest.examples.push({
          where,
          product: p,
          value: fp === undefined ? 'missing' : describeFingerprint(fp),
          truth: describeFingerprint(finalFp.get(p)),
          diff: fp === undefined ? 'missing' : diffFingerprints(fp, finalFp.get(p)),
          was:
            last === undefined
              ? 'never a truth state'
              : `truth state ${tl.starts[last]}..${tl.starts[last + 1] - 1}, replaced by commit ${tl.starts[last + 1]} of ${commits.length} at ~${Math.round(commits[tl.starts[last + 1] - 1].recUs / 1000 - t0)} ms`,
        })
      }
    }
    for (const [name, r] of rest) {
      for (const kind of ['default', 'strong', 'many'])
        for (const p of products) mismatch(`${name}.${kind}`, p, r[kind][p])
      atRest.errors.push(...r.errors.map((e) => `${name}: ${e}`))
    }
    for (const p of o.baseline ? [] : products) {
      const e = storeEntries.get(p)
      mismatch('store', p, e === undefined ? undefined : fingerprint(e.value))
    }

    const writerErrors = { total: 0, byCode: {}, examples: [] }
    const sum = (k) => writerStats.reduce((s, w) => s + w[k], 0)
    for (const w of writerStats) {
      for (const [code, n] of Object.entries(w.errors)) {
        writerErrors.byCode[code] = (writerErrors.byCode[code] ?? 0) + n
        writerErrors.total += n
      }
      writerErrors.examples.push(...w.errorExamples)
    }
    // One example of each code first, then more.
    const firsts = new Map()
    for (const e of writerErrors.examples) if (!firsts.has(e.code)) firsts.set(e.code, e)
    writerErrors.examples = [
      ...firsts.values(),
      ...writerErrors.examples.filter((e) => firsts.get(e.code) !== e),
    ].slice(0, Math.max(o.maxExamples, firsts.size))
    const readErrors = {}
    for (const s of stopped) for (const [k, n] of Object.entries(s.readErrors)) readErrors[k] = (readErrors[k] ?? 0) + n
    const crashes = [...children]
      .filter((c) => c.exited !== null && !c.expectedExit && (c.exited.code !== 0 || c.exited.signal !== null))
      .map((c) => ({ proc: c.name, exit: c.exited, stderr: c.stderr.slice(-8) }))

    const result = {
      db: o.db,
      prefix,
      seed,
      today,
      seconds: o.seconds,
      writeMs,
      restMs,
      config: {
        writers: o.writers,
        writerConnections: o.writerConnections,
        caches: nCaches,
        listening,
        baseline: o.baseline === true,
        products: o.products,
        batches: o.batches,
        ttlMs,
        redis: o.redis === true,
      },
      commits: commits.length,
      commitsPerSecond: Math.round((commits.length * 1000) / writeMs),
      emptyCommits: sum('emptyCommits'),
      rollbacks: sum('rollbacks'),
      rollbacksAfterLog: sum('rollbacksAfterLog'),
      savepointRollbacks: sum('savepointRollbacks'),
      writerErrors,
      deadlock,
      historyProblems,
      reads: verdict.checked,
      readErrors,
      wrong: { total: verdict.wrongTotal, ...verdict.wrong, onlyLater: verdict.onlyLater },
      wrongExamples: verdict.wrongExamples,
      staleStrong: verdict.staleStrong,
      staleStrongExamples: verdict.staleStrongExamples,
      oracle: verdict.oracle,
      current: verdict.current,
      staleness: verdict.staleness,
      atRest,
      outboxLeft: Number(outboxRow.n),
      faults,
      crashes,
      listeners: [...statuses].map(([proc, s]) => ({ proc, ...s.listener, cacheErrors: s.cacheErrors })),
      tierEvents: Object.fromEntries([...statuses].map(([proc, s]) => [proc, s.tierEvents])),
      busDegradedAtRest: [...statuses].filter(([, s]) => s.busDegraded).map(([proc]) => proc),
    }
    result.violations =
      result.wrong.total +
      result.staleStrong +
      result.atRest.mismatches +
      result.writerErrors.total +
      result.historyProblems.length +
      result.crashes.length +
      result.oracle.accused
    result.summary = formatSummary(result)

    for (const c of children) c.expectedExit = true
    await Promise.all(live.map((c) => c.request('exit', 10_000).catch(() => {})))
    return result
  })()
  return { done, cleanup }
}

/** Run to the end and clean up (the command line's entry). */
export async function runHistory(options = {}) {
  const run = startHistory(options)
  try {
    return await run.done
  } finally {
    await run.cleanup()
  }
}

const pct = (n, d) => (d === 0 ? '-' : `${((100 * n) / d).toFixed(1)}%`)
const kv = (o) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ') || 'none'

/** The printed summary. */
export function formatSummary(r) {
  const L = []
  const c = r.config
  L.push(
    `stockcast history check on ${r.db}: ${(r.writeMs / 1000).toFixed(1)} s of writes, ${c.writers} writer processes x ${c.writerConnections} connections, ` +
      `${c.caches} cache processes (${c.listening} listening), ${c.products} products, ${c.batches} batches, seed ${r.seed}`,
  )
  L.push(
    `commits ${r.commits} (${r.commitsPerSecond}/s; ${r.emptyCommits} empty not logged), intended rollbacks ${r.rollbacks} ` +
      `(${r.rollbacksAfterLog} after the history row), savepoints rolled back ${r.savepointRollbacks}`,
  )
  L.push(`writer errors ${r.writerErrors.total}${r.writerErrors.total ? ` (${kv(r.writerErrors.byCode)})` : ''}`)
  const f = r.faults
  L.push(
    `faults: SIGKILL ${f.killed.map((k) => `${k.proc} at ${(k.atMs / 1000).toFixed(1)} s`).join(', ') || 'none'}` +
      `${f.replacements.map((k) => `, replacement ${k.proc} reading at ${(k.readyAtMs / 1000).toFixed(1)} s`).join('')}; ` +
      `backends terminated ${f.terminated} (${f.terminations.map((x) => `${x.n} of ${x.procs.join('+')} at ${(x.atMs / 1000).toFixed(1)} s`).join(', ') || 'none'})`,
  )
  if (c.redis) {
    L.push(
      `redis (store, bus, lock; L1 without ttl): killed ${f.redis.map((x) => `at ${(x.downAtMs / 1000).toFixed(1)} s, back at ${(x.upAtMs / 1000).toFixed(1)} s`).join(', ') || 'never'}; ` +
        `tier events ${Object.entries(r.tierEvents)
          .map(([p, e]) => `${p}: ${kv(e ?? {})}`)
          .join('; ')}; bus degraded at rest: ${r.busDegradedAtRest.join(', ') || 'none'}`,
    )
  }
  const n = r.reads
  L.push(
    `reads checked: default ${n.default}, strong ${n.strong}, getMany values ${n.many}; read errors: ${kv(r.readErrors)}`,
  )
  L.push(
    `wrong values ${r.wrong.total} (default ${r.wrong.default}, strong ${r.wrong.strong}, getMany ${r.wrong.many}; ${r.wrong.onlyLater} matching only a later state)`,
  )
  L.push(`stale strong reads ${r.staleStrong} (of ${n.strong}; ${pct(r.current.strong, n.strong)} current)`)
  const s = r.staleness
  L.push(
    `default staleness (default + getMany): p50 ${s.p50} ms, p99 ${s.p99} ms, max ${s.max} ms; current ${pct(r.current.default + r.current.many, n.default + n.many)}`,
  )
  L.push(
    `at rest: ${r.atRest.checked} values (each process's default, strong, getMany + the store) after ${(r.restMs / 1000).toFixed(1)} s, ` +
      `mismatches ${r.atRest.mismatches}${r.atRest.mismatches ? ` (${kv(r.atRest.byProc)})` : ''}; outbox rows left ${r.outboxLeft}`,
  )
  if (r.atRest.errors.length > 0) L.push(`at-rest read errors: ${r.atRest.errors.slice(0, 3).join('; ')}`)
  L.push(
    `listeners: ${r.listeners
      .filter((l) => l.running !== undefined)
      .map(
        (l) =>
          `${l.proc} processed ${l.processed} in ${l.batches} batches, ${l.reconnects} reconnects, last error ${l.lastError ?? 'none'}`,
      )
      .join('; ')}`,
  )
  L.push(
    `control reads (one snapshot, the checker's own aggregation): ${r.oracle.checked} checked, ${r.oracle.accused} accused${r.oracle.accused ? ' (CHECKER FAULT)' : ''}`,
  )
  if (r.historyProblems.length > 0) L.push(`HISTORY UNSOUND: ${r.historyProblems.join('; ')}`)
  for (const x of r.crashes) L.push(`crash: ${x.proc} exited ${x.exit.code ?? x.exit.signal}: ${x.stderr.join(' | ')}`)
  const show = (title, list, extra) => {
    if (list.length === 0) return
    L.push(`${title}:`)
    for (const e of list) {
      L.push(
        `  ${e.proc} ${e.kind} ${e.product} read [${e.window[0]}, ${e.window[1]}] ms, states ${e.kmin}..${e.kmax}: ${e.value}${extra(e)}`,
      )
      for (const a of e.allowed)
        L.push(
          `    truth state ${a.k}${a.until === null ? '..' : `..${a.until}`} (from ~${a.at} ms): ${a.value}; read vs it: ${a.diff}`,
        )
    }
  }
  show('wrong values, e.g.', r.wrongExamples, (e) =>
    e.closest
      ? `\n    ${e.why}; closest state ${e.closest.k}: ${e.closest.value}; read vs it: ${e.closest.diff}`
      : `\n    ${e.why}`,
  )
  show('stale strong reads, e.g.', r.staleStrongExamples, (e) => `\n    ${e.why}`)
  show('control reads accused (checker fault), e.g.', r.oracle.examples, (e) => `\n    ${e.why}`)
  if (r.atRest.examples.length > 0) {
    L.push('mismatches at rest, e.g.:')
    for (const e of r.atRest.examples) {
      L.push(`  ${e.where} ${e.product}: ${e.value} (${e.was}); truth ${e.truth}; ${e.diff}`)
    }
  }
  if (r.writerErrors.examples.length > 0) {
    L.push('writer errors, e.g.:')
    for (const e of r.writerErrors.examples) L.push(`  ${e.code} in [${e.steps.join(', ')}]: ${e.message}`)
  }
  if (r.deadlock !== null && r.writerErrors.total > 0) {
    // The statements of InnoDB's latest deadlock (the run's table prefix dropped).
    const lines = r.deadlock
      .split('\n')
      .filter((l) => /^(\*\*\* \(\d\)|INSERT|UPDATE|DELETE|SELECT|\*\*\* WE ROLL BACK)/.test(l))
      .map((l) => `  ${l.replaceAll(`${r.prefix}_`, '').slice(0, 160)}`)
    L.push('latest InnoDB deadlock:', ...lines.slice(0, 8))
  }
  L.push(`violations ${r.violations}`)
  return L.join('\n')
}
