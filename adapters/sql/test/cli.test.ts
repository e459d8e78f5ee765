import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createCcTables, pgTestDb, sleep, type TestDb, until } from './capture-helpers.js'
import { describeService, PG_URL, pgDown, uniquePrefix } from './services.js'

// The `stockcast` binary (the core's dist/cli.js, rebuilt by `npx tsup` at the root) run as a user runs it, against
// PostgreSQL, with a config module that builds the cache and the change capture from the built packages.

const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url))
// Config modules import `stockcast` and `@stockcast/sql` by name: they resolve from inside the repository, not from
// the system's temp dir, so the modules are written here (a git-ignored folder).
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url))
const tmuxDown = spawnSync('tmux', ['-V']).status === 0 ? null : 'tmux is not installed'

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Run the binary; `onStdout` sees the output as it arrives (watch). */
function runCli(args: string[], onStdout?: (text: string) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, STOCKCAST_DEBUG: '' } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
      onStdout?.(stdout)
    })
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** The lines of a stream's text (no trailing empty one). */
const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '')

interface ConfigParams {
  url: string
  schemaName: string
  capturePrefix: string
  /** Each reader call waits this long first (a slow-ish source, so a progress bar has time to draw). */
  readDelayMs?: number
  batchSize?: number
}

/** A config module as a user writes one: pool, reader, store, capture, cache, close. */
function configSource(o: ConfigParams): string {
  return `import pg from 'pg'
import { fromPg, sqlChangeCapture, sqlReader, sqlStore } from '@stockcast/sql'
import { createStockCache, defineStockSchema } from 'stockcast'

const schema = defineStockSchema({
  onHand: [{ table: 'cc_movements', product: 'sku', quantity: 'qty', date: 'moved_on' }],
  supply: [{ table: 'cc_supply', product: 'sku', quantity: 'qty', date: 'due' }],
  demand: [{ table: 'cc_demand', product: 'sku', quantity: 'qty', date: 'ship' }],
})
const pool = new pg.Pool({
  connectionString: ${JSON.stringify(o.url)},
  max: 4,
  options: ${JSON.stringify(`-c search_path=${o.schemaName}`)},
})
const db = fromPg(pool)
const sql = sqlReader(db, schema)
const delay = ${o.readDelayMs ?? 0}
export const reader =
  delay === 0
    ? sql
    : {
        read: async (products, options) => {
          await new Promise((r) => setTimeout(r, delay))
          return sql.read(products, options)
        },
        products: () => sql.products(),
      }
export const capture = sqlChangeCapture(db, schema, { prefix: ${JSON.stringify(o.capturePrefix)}, scanMs: 200 })
export const cache = createStockCache({
  schema,
  reader,
  store: sqlStore(db, { table: 'cli_projections' }),
  // One instance with a shared store and no bus: its L1 entries expire (else stockcast warns that they may lag).
  memory: { ttl: 60_000 },
  debounceMs: 0,
  batchSize: ${o.batchSize ?? 500},
})
export const close = () => pool.end()
`
}

describeService(pgDown, 'the stockcast CLI against PostgreSQL', () => {
  let t: TestDb
  let dir: string
  let config: string
  const capturePrefix = uniquePrefix('sccli').replace(/^sccli_\d+_/, 'sccli')
  const writeConfig = (name: string, params: Partial<ConfigParams> = {}) => {
    const path = join(dir, name)
    writeFileSync(path, configSource({ url: PG_URL, schemaName: t.schemaName, capturePrefix, ...params }))
    return path
  }
  /** The database's own answer, for comparing with what the CLI prints. */
  const truth = async (text: string, params: unknown[] = []) => (await t.sql(text, params))[0]!

  beforeAll(async () => {
    t = await pgTestDb(4)
    await createCcTables(t)
    // P-1: 12.5 on hand, nothing planned. P-2: 5 on hand, 8 to ship in 3 days: out of stock that day.
    await t.sql(`INSERT INTO cc_movements (sku, qty) VALUES ('P-1', 10), ('P-1', 2.5), ('P-2', 5)`)
    await t.sql(`INSERT INTO cc_demand (sku, qty, ship) VALUES ('P-2', 8, (now() AT TIME ZONE 'UTC')::date + 3)`)
    dir = join(ARTIFACTS, t.schemaName)
    mkdirSync(dir, { recursive: true })
    config = writeConfig('config.mjs')
  })

  afterAll(async () => {
    await runCli(['uninstall', '--config', config]).catch(() => undefined)
    await t?.close() // drops the schema: source tables, outbox, store table
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it('an unknown command: exit 2, one line', async () => {
    const r = await runCli(['verify', '--config', config])
    expect(r.code).toBe(2)
    expect(lines(r.stderr)).toEqual([
      'stockcast: unknown command "verify" (did you mean verify-triggers? stockcast --help lists them)',
    ])
    expect(r.stdout).toBe('')
  })

  it('a config path that does not exist: exit 3, one line naming it', async () => {
    const r = await runCli(['status', '--config', join(dir, 'missing.mjs')])
    expect(r.code).toBe(3)
    expect(lines(r.stderr)).toEqual([`stockcast: config module not found: ${join(dir, 'missing.mjs')}`])
  })

  it('install, then verify-triggers: ok (exit 0); a dropped trigger is named (exit 1); install repairs it', async () => {
    const installed = await runCli(['install', '--config', config])
    expect(installed.stderr).toBe('')
    expect(installed.code).toBe(0)
    expect(installed.stdout).toContain('change capture: ok')

    const ok = await runCli(['verify-triggers', '--config', config])
    expect(ok.code).toBe(0)
    expect(lines(ok.stdout)[0]).toMatch(/^change capture: ok \(installed version \d+, expected \d+\)$/)

    const [trigger] = await t.sql(
      `SELECT t.tgname AS name, c.relname AS tbl FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = $1 AND NOT t.tgisinternal AND c.relname = 'cc_demand' ORDER BY t.tgname LIMIT 1`,
      [t.schemaName],
    )
    expect(trigger).toBeDefined()
    await t.sql(`DROP TRIGGER "${String(trigger!.name)}" ON cc_demand`)
    const broken = await runCli(['verify-triggers', '--config', config])
    expect(broken.code).toBe(1)
    expect(broken.stdout).toContain('change capture: NOT ok')
    expect(broken.stdout).toMatch(new RegExp(`missing +.*${String(trigger!.name)}`))
    expect(lines(broken.stderr)).toHaveLength(1)
    expect(broken.stderr).toMatch(new RegExp(`^stockcast: change capture not ok: missing .*${String(trigger!.name)}`))

    expect((await runCli(['install', '--config', config])).code).toBe(0)
    expect((await runCli(['verify-triggers', '--config', config])).code).toBe(0)
  })

  it('status: readable lines with the product count and the capture check; --json parses', async () => {
    const r = await runCli(['status', '--config', config])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^products +2$/m)
    expect(r.stdout).toMatch(/^capture +ok/m)
    expect(r.stdout).toMatch(/^metrics +l1Hits 0, /m)
    const json = await runCli(['status', '--json', '--config', config])
    expect(json.code).toBe(0)
    const parsed = JSON.parse(json.stdout) as {
      status: { closed: boolean }
      products: number
      capture: { ok: boolean }
    }
    expect(parsed).toMatchObject({ products: 2, capture: { ok: true }, status: { closed: false } })
  })

  it('rebuild: plain progress lines on a pipe, then the summary line', async () => {
    const r = await runCli(['rebuild', '--config', config])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^rebuilt 2 products \(2 keys\), 0 failed in \d+\.\d+ s: \d+ products\/s\n$/)
    expect(lines(r.stderr).at(-1)).toMatch(/^rebuild: 2\/2 products \(100%\)/)
    const quiet = await runCli(['rebuild', '--no-progress', '--config', config])
    expect(quiet.code).toBe(0)
    expect(quiet.stderr).toBe('')
  })

  it('refresh: stock today, status and stock-out date as the database has them', async () => {
    const r = await runCli(['refresh', 'P-1', 'P-2', '--config', config])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const p1 = await truth(`SELECT sum(qty)::float8 AS stock FROM cc_movements WHERE sku = 'P-1'`)
    const p2 = await truth(
      `SELECT (SELECT sum(qty) FROM cc_movements WHERE sku = 'P-2')::float8 AS stock, ship::text AS out
       FROM cc_demand WHERE sku = 'P-2'`,
    )
    const [l1, l2] = lines(r.stdout)
    expect(l1).toMatch(new RegExp(`^P-1  stock today ${p1.stock}  status OK  .*  stock-out none$`))
    expect(l2).toMatch(new RegExp(`^P-2  stock today ${p2.stock}  status CRITICAL  .*  stock-out ${p2.out}$`))
  })

  it('refresh of a product the reader does not list: exit 5, one line, nothing on stdout', async () => {
    const r = await runCli(['refresh', 'P-1', 'NO-SUCH', '--config', config])
    expect(r.code).toBe(5)
    expect(lines(r.stderr)).toEqual(['stockcast: unknown product "NO-SUCH": the reader does not list it'])
    expect(r.stdout).toBe('')
  })

  it('validate --sample: the stored values match a fresh computation (exit 0)', async () => {
    const r = await runCli(['validate', '--sample', '10', '--config', config])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    // The values the earlier rebuild stored (L2) are compared: 2 keys checked, none wrong.
    expect(lines(r.stdout)).toEqual(['checked 2 keys: 0 mismatches (rate 0), 0 uncached, 0 skipped, 0 invalid'])
  })

  it('watch --for 3: a change committed by plain SQL while it runs shows in a new table', async () => {
    let inserted = false
    const insert = async () => {
      inserted = true
      await t.sql(`INSERT INTO cc_movements (sku, qty) VALUES ('P-1', 7)`)
    }
    let pending: Promise<void> | undefined
    const r = await runCli(['watch', 'P-1', '--for', '3', '--every', '1', '--config', config], (text) => {
      // The first table is out: the watch listens now.
      if (!inserted && /^ {2}D21 /m.test(text)) pending = insert()
    })
    await pending
    expect(inserted).toBe(true)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const heads = lines(r.stdout).filter((l) => l.startsWith('['))
    expect(heads).toHaveLength(2)
    expect(heads[0]).toMatch(/^\[\d\d:\d\d:\d\d\] P-1 {2}stock today 12\.5 {2}status OK/)
    expect(heads[1]).toMatch(/^\[\d\d:\d\d:\d\d\] P-1 {2}stock today 19\.5 {2}status OK/)
    // Each table: D0, D7, D14, D21, D28 rows with the day's closing stock.
    const rows = lines(r.stdout).filter((l) => l.startsWith('  D'))
    expect(rows).toHaveLength(10)
    expect(rows[0]).toMatch(/^ {2}D0 +\d\d-\d\d +12\.5 /)
    expect(rows[5]).toMatch(/^ {2}D0 +\d\d-\d\d +19\.5 /)
  })

  it('a config whose database is unreachable: exit 4, one line', async () => {
    const down = writeConfig('down.mjs', { url: 'postgres://postgres@127.0.0.1:1/test' })
    for (const command of ['status', 'rebuild', 'refresh']) {
      const r = await runCli(command === 'refresh' ? [command, 'P-1', '--config', down] : [command, '--config', down])
      expect(r.code, `${command}: ${r.stderr}`).toBe(4)
      expect(lines(r.stderr), command).toHaveLength(1)
      expect(r.stderr).toMatch(/^stockcast: .*ECONNREFUSED|^stockcast: .*connect/)
    }
  })

  it('uninstall: exit 0, after which verify-triggers reports the capture not installed (exit 1)', async () => {
    const r = await runCli(['uninstall', '--config', config])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const v = await runCli(['verify-triggers', '--config', config])
    expect(v.code).toBe(1)
    expect(lines(v.stderr)).toEqual(['stockcast: change capture not installed (run stockcast install)'])
  })
})

/** The tmux session's screen, or '' while the server starts. */
const capturePane = (socket: string, session: string): string =>
  spawnSync('tmux', ['-u', '-L', socket, 'capture-pane', '-p', '-t', session], { encoding: 'utf8' }).stdout ?? ''

describeService(pgDown ?? tmuxDown, 'the stockcast CLI in a terminal (tmux)', () => {
  let t: TestDb
  let dir: string
  const socket = uniquePrefix('stockcast-cli')

  beforeAll(async () => {
    t = await pgTestDb(4)
    await createCcTables(t)
    await t.sql(`INSERT INTO cc_movements (sku, qty) SELECT 'BULK-' || g, g FROM generate_series(1, 3000) g`)
    dir = join(ARTIFACTS, `${t.schemaName}_tty`)
    mkdirSync(dir, { recursive: true })
  })

  afterAll(async () => {
    spawnSync('tmux', ['-L', socket, 'kill-server'])
    await t?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it('rebuild draws a cli-progress bar on the terminal, then prints the summary', async () => {
    const config = join(dir, 'config.mjs')
    writeFileSync(
      config,
      configSource({
        url: PG_URL,
        schemaName: t.schemaName,
        capturePrefix: 'unused',
        readDelayMs: 20,
        batchSize: 100,
      }),
    )
    const session = 'rebuild'
    const command = `'${process.execPath}' '${CLI}' rebuild --config '${config}'; echo "EXIT=$?"; sleep 120`
    const started = spawnSync(
      'tmux',
      ['-u', '-L', socket, 'new-session', '-d', '-s', session, '-x', '120', '-y', '20', command],
      { env: { ...process.env, LANG: 'C.UTF-8', STOCKCAST_DEBUG: '' }, encoding: 'utf8' },
    )
    expect(started.status, started.stderr).toBe(0)
    let screen = ''
    await until(
      () => {
        screen = capturePane(socket, session)
        return /EXIT=\d+/.test(screen)
      },
      60_000,
      'the rebuild in tmux to end',
    )
    await sleep(50)
    screen = capturePane(socket, session)
    expect(screen).toContain('EXIT=0')
    // The bar: shades_classic's full and empty blocks, at 100% of the 3000 products.
    expect(screen).toMatch(/rebuild \[█{10,}\] 100% \| 3000\/3000 products/)
    expect(screen).toMatch(/^rebuilt 3000 products \(3000 keys\), 0 failed in \d+\.\d+ s: \d+ products\/s$/m)
  })
})
