import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// The `stockcast` binary (dist/cli.js: run `npx tsup` first) with no database: argument errors, config errors, the
// help text, the calculator commands, and the database commands over an in-memory source.

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const CORE = pathToFileURL(fileURLToPath(new URL('../dist/index.js', import.meta.url))).href

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function cli(args: string[], options: { input?: string; env?: Record<string, string>; cwd?: string } = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    input: options.input ?? '',
    cwd: options.cwd,
    env: { ...process.env, STOCKCAST_CONFIG: '', STOCKCAST_DEBUG: '', ...options.env },
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '')

/** One failure line on stderr, with this exit code. */
function expectFailure(r: Run, code: number, message: RegExp): void {
  expect(r.code, r.stderr).toBe(code)
  expect(lines(r.stderr)).toHaveLength(1)
  expect(r.stderr).toMatch(/^stockcast: /)
  expect(r.stderr).toMatch(message)
}

let dir: string
const write = (name: string, text: string): string => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

/**
 * A config over an in-memory source: A (5 on hand), B (2 on hand, 4 to ship on D2). `close()` writes a marker file,
 * so tests see that the CLI called it. `mismatch` leaves A's cached value wrong (a write no capture saw).
 */
const memoryConfig = (marker: string, options: { mismatch?: boolean; asDefault?: boolean } = {}) => `
import { writeFileSync } from 'node:fs'
import { createStockCache, defineStockSchema, memorySource } from ${JSON.stringify(CORE)}
const schema = defineStockSchema({
  onHand: [{ table: 'moves', product: 'sku', quantity: 'qty' }],
  supply: [],
  demand: [{ table: 'orders', product: 'sku', quantity: 'qty', date: 'ship' }],
})
const day = (n) => new Date(Date.now() + n * 86_400_000).toISOString().slice(0, 10)
const db = memorySource(schema)
db.insert('moves', { sku: 'A', qty: '5' })
db.insert('moves', { sku: 'B', qty: '2' })
db.insert('orders', { sku: 'B', qty: '4', ship: day(2) })
const cache = createStockCache({ schema, reader: db.reader, debounceMs: 0 })
db.attach(cache)
${
  options.mismatch
    ? `await cache.get('A')
const row = [...db.rows('moves')].find((r) => r.sku === 'A')
row.qty = '6'`
    : ''
}
const config = { cache, reader: db.reader, close: () => writeFileSync(${JSON.stringify(marker)}, 'closed') }
${options.asDefault ? 'export default async () => config' : 'export const { reader, close } = config\nexport { cache }'}
`

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'stockcast-cli-'))
})
afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('stockcast CLI: help and usage errors (exit 2)', () => {
  it('--help and help print the commands and the exit codes, and claim no adapter commands', () => {
    for (const args of [['--help'], ['help'], ['refresh', '-h']]) {
      const r = cli(args)
      expect(r.code).toBe(0)
      expect(r.stderr).toBe('')
      for (const command of ['project', 'available', 'status', 'rebuild', 'refresh', 'validate', 'watch']) {
        expect(r.stdout).toMatch(new RegExp(`^ {2}${command} `, 'm'))
      }
      for (const command of ['verify-triggers', 'install', 'uninstall']) {
        expect(r.stdout).toMatch(new RegExp(`^ {2}${command} +\\S`, 'm'))
      }
      expect(r.stdout).toMatch(/^ {2}5 {2}unknown product/m)
      expect(r.stdout).toMatch(/^ {2}4 {2}a database/m)
      expect(r.stdout).not.toMatch(/come with the adapter/)
    }
  })

  it('no command, an unknown command, a bad option, a missing or extra argument: exit 2, one line', () => {
    expectFailure(cli([]), 2, /no command given/)
    expectFailure(
      cli(['verify']),
      2,
      /^stockcast: unknown command "verify" \(did you mean verify-triggers\? stockcast --help lists them\)$/m,
    )
    expectFailure(cli(['frobnicate']), 2, /^stockcast: unknown command "frobnicate" \(stockcast --help lists them\)$/m)
    // The config option may come before the command.
    expectFailure(cli(['--config', 'nope.mjs', 'status'], { cwd: dir }), 3, /config module not found/)
    expectFailure(cli(['status', '--bogus']), 2, /^stockcast: status: Unknown option '--bogus' \(/)
    expectFailure(cli(['refresh']), 2, /refresh needs at least one product/)
    expectFailure(cli(['watch', 'A', 'B']), 2, /watch takes one product, got 2/)
    expectFailure(cli(['watch', 'A', '--every', '0']), 2, /--every must be a number > 0, got "0"/)
    expectFailure(cli(['validate', '--sample=ten']), 2, /--sample must be an integer >= 0, got "ten"/)
    expectFailure(cli(['rebuild', 'now']), 2, /rebuild takes no arguments/)
    expectFailure(cli(['project', '--horizon', 'x']), 2, /--horizon must be an integer, got "x"/)
  })
})

describe('stockcast CLI: config errors (exit 3)', () => {
  it('no config given, a path that does not exist, a module that does not load', () => {
    expectFailure(cli(['status']), 3, /no config: pass --config <module> or set STOCKCAST_CONFIG/)
    expectFailure(cli(['status', '--config', 'nope.mjs'], { cwd: dir }), 3, /config module not found: .*nope\.mjs$/m)
    const broken = write('broken.mjs', 'export const cache = {\n')
    expectFailure(cli(['status', '--config', broken]), 3, /config .*broken\.mjs failed to load: /)
    const throws = write('throws.mjs', `throw new Error('no credentials in the env')`)
    expectFailure(cli(['status', '--config', throws]), 3, /failed to load: no credentials in the env$/m)
  })

  it('the wrong shape: the message names what is missing', () => {
    const none = write('none.mjs', 'export const pool = {}')
    expectFailure(cli(['status', '--config', none]), 3, /exports no `cache` \(the StockCache from createStockCache\)/)
    const half = write('half.mjs', 'export const cache = { get() {}, status() {} }')
    expectFailure(
      cli(['status', '--config', half]),
      3,
      /`cache` is not a StockCache: it has no getMany\(\), refresh\(\)/,
    )
    const capture = write(
      'capture.mjs',
      `import { createStockCache, defineStockSchema, memorySource } from ${JSON.stringify(CORE)}
const schema = defineStockSchema({ onHand: [{ table: 'moves', product: 'sku', quantity: 'qty' }], supply: [], demand: [] })
export const cache = createStockCache({ schema, reader: memorySource(schema).reader })
export const capture = { install() {} }`,
    )
    expectFailure(
      cli(['status', '--config', capture]),
      3,
      /`capture` is not a change capture: it has no uninstall\(\), verify\(\)/,
    )
    const fn = write('fn.mjs', 'export default () => ({ cache: 42 })')
    expectFailure(cli(['status', '--config', fn]), 3, /`cache` is not a StockCache/)
  })

  it('verify-triggers, install and uninstall without `capture` in the config: one line, exit 3; close() still runs', () => {
    const marker = join(dir, 'closed-capture')
    const config = write('memory-nocapture.mjs', memoryConfig(marker))
    for (const command of ['verify-triggers', 'install', 'uninstall']) {
      rmSync(marker, { force: true })
      expectFailure(cli([command, '--config', config]), 3, new RegExp(`${command} needs \`capture\` in the config`))
      expect(readFileSync(marker, 'utf8')).toBe('closed')
    }
  })
})

describe('stockcast CLI: database commands over an in-memory source', () => {
  let marker: string
  let config: string
  beforeAll(() => {
    marker = join(dir, 'closed')
    config = write('memory.mjs', memoryConfig(marker))
  })
  const run = (args: string[], env?: Record<string, string>) => {
    rmSync(marker, { force: true })
    const r = cli(args, env === undefined ? {} : { env })
    expect(existsSync(marker), 'the config was closed').toBe(true)
    return r
  }

  it('refresh prints stock today, status and stock-out date; STOCKCAST_CONFIG works as --config', () => {
    const r = run(['refresh', 'A', 'B'], { STOCKCAST_CONFIG: config })
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const [a, b] = lines(r.stdout)
    expect(a).toMatch(/^A {2}stock today 5 {2}status OK {2}7-day min 5 on \d{4}-\d\d-\d\d {2}stock-out none$/)
    expect(b).toMatch(/^B {2}stock today 2 {2}status CRITICAL {2}7-day min -2 on (\d{4}-\d\d-\d\d) {2}stock-out \1$/)
    const json = JSON.parse(run(['refresh', 'B', '--json', '--config', config]).stdout) as Array<{ stockToday: number }>
    expect(json.map((p) => p.stockToday)).toEqual([2])
  })

  it('an unknown product: exit 5, one line, and the config is closed', () => {
    const r = run(['refresh', 'A', 'NOPE', 'NADA', '--config', config])
    expectFailure(r, 5, /^stockcast: unknown products "NOPE", "NADA": the reader does not list them$/m)
    expect(r.stdout).toBe('')
    expectFailure(run(['watch', 'NOPE', '--config', config]), 5, /unknown product "NOPE"/)
  })

  it('status --json and rebuild without a terminal: progress lines on stderr, the summary on stdout', () => {
    const status = JSON.parse(run(['status', '--json', '--config', config]).stdout) as {
      status: { dirty: number; closed: boolean }
      metrics: { l1Hits: number }
      products: number
      capture: null
    }
    expect(status).toMatchObject({ products: 2, capture: null, status: { dirty: 0, closed: false } })
    expect(status.metrics.l1Hits).toBe(0)
    const r = run(['rebuild', '--config', config])
    expect(r.code).toBe(0)
    expect(lines(r.stderr)).toEqual([expect.stringMatching(/^rebuild: 2\/2 products \(100%\), \d+\.\d+ s$/)])
    expect(r.stdout).toMatch(/^rebuilt 2 products \(2 keys\), 0 failed in \d+\.\d+ s: \d+ products\/s\n$/)
  })

  it('validate: exit 0 when the cache agrees, exit 1 with the mismatch printed when it does not', () => {
    const ok = run(['validate', '--config', config])
    expect(ok.code).toBe(0)
    // A fresh process has nothing cached: nothing can be wrong.
    expect(ok.stdout).toBe('checked 0 keys: 0 mismatches (rate 0), 2 uncached, 0 skipped, 0 invalid\n')
    const wrong = write('memory-mismatch.mjs', memoryConfig(marker, { mismatch: true, asDefault: true }))
    const r = run(['validate', '--sample', '5', '--config', wrong])
    expectFailure(r, 1, /^stockcast: validate: 1 mismatches in 1 keys$/m)
    expect(lines(r.stdout)).toEqual([
      'checked 1 keys: 1 mismatches (rate 1), 1 uncached, 0 skipped, 0 invalid',
      '  A: stockToday cached 5, truth 6',
    ])
  })

  it('watch --for prints the projection once when nothing changes, then ends by itself (exit 0)', () => {
    const r = run(['watch', 'B', '--for', '0.3', '--every', '0.1', '--config', config])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = lines(r.stdout)
    expect(out[0]).toMatch(/^\[\d\d:\d\d:\d\d\] B {2}stock today 2 {2}status CRITICAL/)
    expect(out.slice(1).map((l) => l.slice(0, 6))).toEqual(['  D0  ', '  D7  ', '  D14 ', '  D21 ', '  D28 '])
  })

  it('watch stops on SIGINT: the cache and the config are closed, exit 0', async () => {
    rmSync(marker, { force: true })
    const child = spawn(process.execPath, [CLI, 'watch', 'A', '--every', '0.2', '--config', config], {
      env: { ...process.env, STOCKCAST_DEBUG: '' },
    })
    let stdout = ''
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString()
        if (/^ {2}D28 /m.test(stdout)) resolve()
      })
    })
    child.kill('SIGINT')
    expect(await exited).toBe(0)
    expect(stderr).toBe('')
    expect(existsSync(marker), 'the config was closed').toBe(true)
    expect(stdout).toMatch(/^\[\d\d:\d\d:\d\d\] A {2}stock today 5 /)
  })

  it('STOCKCAST_DEBUG=1 adds the stack after the one line', () => {
    const r = run(['refresh', 'NOPE', '--config', config], { STOCKCAST_DEBUG: '1' })
    expect(r.code).toBe(5)
    expect(lines(r.stderr)[0]).toBe('stockcast: unknown product "NOPE": the reader does not list it')
    expect(lines(r.stderr).length).toBeGreaterThan(1)
    expect(r.stderr).toMatch(/\n\s*at /)
  })
})

describe('stockcast CLI: project and available (no database)', () => {
  const inputs = JSON.stringify({
    onHand: '10',
    supply: [{ date: '2026-03-04', quantity: '5' }],
    demand: [{ date: '2026-03-03', quantity: '12' }],
  })

  it('project reads a file or standard input and prints the projection', () => {
    const file = write('inputs.json', inputs)
    const fromFile = cli(['project', file, '--today', '2026-03-01', '--horizon', '7'])
    expect(fromFile.code).toBe(0)
    expect(lines(fromFile.stdout).slice(0, 2)).toEqual([
      'D0 2026-03-01 (UTC)  stock today 10  7-day min -2 on 2026-03-03',
      'status CRITICAL  first stock-out 2026-03-03',
    ])
    const json = cli(['project', '--json', '--today', '2026-03-01', '--horizon', '7'], { input: inputs })
    expect(json.code).toBe(0)
    const p = JSON.parse(json.stdout) as { days: Array<{ closing: number }>; firstStockoutDate: string }
    expect(p.days.map((d) => d.closing)).toEqual([10, 10, -2, 3, 3, 3, 3])
    expect(p.firstStockoutDate).toBe('2026-03-03')
  })

  it('available answers a date; bad input is one line with exit 2', () => {
    const file = write('inputs2.json', inputs)
    const r = cli(['available', '3', file, '--today', '2026-03-01', '--horizon', '7'])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('2026-03-04 (D3)\n')
    expectFailure(cli(['project', '--today', '2026-03-01'], { input: '{ nope' }), 2, /standard input is not valid JSON/)
    expectFailure(cli(['available', '3', file, '--rule', 'maybe']), 2, /--rule must be promise or point, got maybe/)
  })
})
