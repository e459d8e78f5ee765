#!/usr/bin/env node
// The long run of the history checker (test-support/history/README.md): writer and cache processes against a real
// PostgreSQL or MariaDB, faults injected, every read judged against the replayed commit history.
//
//   node scripts/history-check.mjs --db postgres|mysql --seconds 60 --writers 5 --caches 3 [--products 40]
//     [--batches 12] [--seed N] [--no-faults] [--baseline] [--unlocked-batches] [--redis] [--json]
//
// --redis: the caches share a Redis store, bus and lock (@stockcast/redis, a redis-server the run starts on a free
// port and kills and restarts mid-run), L1 without a ttl.
//
// --baseline: the writers alone on tables without the capture (no triggers, no caches): their errors, if any, are
// the workload's own, not the capture's. --unlocked-batches: picking items change without locking their batch's
// order row (a status flip may then run concurrently: the related race, see the README).
//
// Runs against the built packages (npm run build first). Exit code 1 when it found a violation, 2 on a failed run.
import { parseArgs } from 'node:util'
import { startHistory } from '../test-support/history/run.mjs'

const USAGE = `usage: node scripts/history-check.mjs --db postgres|mysql [--seconds 60] [--writers 5] [--caches 3]
  [--products 40] [--batches 12] [--seed N] [--no-faults] [--baseline] [--unlocked-batches] [--redis] [--json]
Runs against the built packages (npm run build first); see test-support/history/README.md.
Exit code 0: no violation; 1: a violation; 2: a failed run or bad arguments.`

let parsed
try {
  parsed = parseArgs({
    options: {
      db: { type: 'string', default: 'postgres' },
      seconds: { type: 'string', default: '60' },
      writers: { type: 'string', default: '5' },
      caches: { type: 'string', default: '3' },
      products: { type: 'string', default: '40' },
      batches: { type: 'string', default: '12' },
      seed: { type: 'string' },
      'no-faults': { type: 'boolean', default: false },
      baseline: { type: 'boolean', default: false },
      'unlocked-batches': { type: 'boolean', default: false },
      redis: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
} catch (e) {
  console.error(`${e.message}\n${USAGE}`)
  process.exit(2)
}
const { values } = parsed
if (values.help) {
  console.log(USAGE)
  process.exit(0)
}
for (const name of ['seconds', 'writers', 'caches', 'products', 'batches', 'seed']) {
  const v = values[name]
  if (v !== undefined && !(Number.isInteger(Number(v)) && Number(v) >= 0)) {
    console.error(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}\n${USAGE}`)
    process.exit(2)
  }
}
if (values.db !== 'postgres' && values.db !== 'mysql') {
  console.error(`--db must be postgres or mysql\n${USAGE}`)
  process.exit(2)
}
const run = startHistory({
  db: values.db,
  seconds: Number(values.seconds),
  writers: Number(values.writers),
  caches: Number(values.caches),
  products: Number(values.products),
  batches: Number(values.batches),
  ...(values.seed === undefined ? {} : { seed: Number(values.seed) }),
  faults: !values['no-faults'],
  baseline: values.baseline,
  lockBatches: !values['unlocked-batches'],
  redis: values.redis,
  log: (line) => console.error(`[history] ${line}`),
})
// Interrupted: the child processes and the run's tables go too.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    console.error(`[history] ${signal}: cleaning up`)
    run.cleanup().finally(() => process.exit(130))
  })
}
let code = 2
try {
  const result = await run.done
  console.log(values.json ? JSON.stringify(result, null, 2) : result.summary)
  code = result.violations === 0 ? 0 : 1
} catch (e) {
  console.error(e)
} finally {
  await run.cleanup()
}
process.exit(code)
