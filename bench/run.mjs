// Runs every bench script in sequence, each in its own Node process (a fresh heap and JIT state per script).
// Prints figures and ratios only: timing never fails the run; a script that crashes does.

import { spawnSync } from 'node:child_process'
import { cpus, freemem, platform, release, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { versionOf } from './lib.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const scripts = [
  'l1-get.mjs',
  'calculator.mjs',
  'codec.mjs',
  'coalescing.mjs',
  'rollover.mjs',
  'sql-postgres.mjs',
  'sql-mariadb.mjs',
  'sql-reader.mjs',
  'sql-bulk-settle.mjs',
  'sql-freshness.mjs',
  'sql-load.mjs',
  'store-bytes.mjs',
  'sequelize.mjs',
  'prisma.mjs',
  'redis.mjs',
  'cached.mjs',
]

const cpu = cpus()
console.log('# stockcast bench')
console.log(`date:      ${new Date().toISOString()}`)
console.log(`node:      ${process.version} (${platform()} ${release()}, ${process.arch})`)
console.log(`cpu:       ${cpu[0]?.model ?? 'unknown'} x ${cpu.length}`)
console.log(`memory:    ${(freemem() / 2 ** 30).toFixed(1)} GiB free of ${(totalmem() / 2 ** 30).toFixed(1)} GiB`)
console.log(`stockcast: ${versionOf('stockcast')} (built dist, imported by name)`)

const started = performance.now()
const failed = []
for (const script of scripts) {
  console.log()
  const t0 = performance.now()
  const r = spawnSync(process.execPath, [join(here, script)], { stdio: 'inherit' })
  const s = ((performance.now() - t0) / 1000).toFixed(1)
  if (r.status !== 0) {
    failed.push(script)
    console.log(
      `!! ${script} failed (${r.error?.message ?? (r.signal ? `signal ${r.signal}` : `exit ${r.status}`)}) after ${s} s`,
    )
  } else console.log(`(${script}: ${s} s)`)
}
console.log()
console.log(`total ${((performance.now() - started) / 1000).toFixed(1)} s`)
if (failed.length > 0) {
  console.log(`failed: ${failed.join(', ')}`)
  process.exitCode = 1
}
