// The dashboard page in headless Chromium over a real cache: PostgreSQL tables, the trigger + outbox capture, the
// SQL reader and store. A write committed with plain SQL must reach the page (the at-risk table and the chart).
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Browser, chromium, type Page } from 'playwright-core'
import { createHttpHandler, createStockCache, defineStockSchema, type StockCache } from 'stockcast'
import { dayFromToday } from 'stockcast/conformance'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { OutboxListener, SqlChangeCapture } from '../src/capture/types.js'
import { sqlChangeCapture, sqlReader, sqlStore } from '../src/index.js'
import { pgTestDb, type TestDb } from './capture-helpers.js'
import { describeService, pgDown, uniquePrefix } from './services.js'

const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOT = join(dirname(fileURLToPath(import.meta.url)), 'artifacts', 'dashboard.png')
// Chromium counts as a service: missing, the test skips visibly, or fails under STOCKCAST_REQUIRE_SERVICES=1.
const down = pgDown ?? (existsSync(CHROMIUM) ? null : `Chromium missing at ${CHROMIUM}`)

describeService(down, 'dashboard page in headless Chromium (PostgreSQL)', () => {
  const prefix = uniquePrefix('scd')
  const movements = `${prefix}_movements`
  const demand = `${prefix}_demand`
  const schema = defineStockSchema({
    onHand: [{ table: movements, product: 'sku', quantity: 'qty', date: 'moved_on' }],
    supply: [],
    demand: [{ table: demand, product: 'sku', quantity: 'qty', date: 'ship' }],
  })
  let t: TestDb
  let capture: SqlChangeCapture
  let cache: StockCache
  let listener: OutboxListener
  let server: http.Server
  let url: string
  let browser: Browser

  beforeAll(async () => {
    t = await pgTestDb(6)
    await t.sql(
      `CREATE TABLE "${movements}" (id serial PRIMARY KEY, sku text, qty numeric(18,3) NOT NULL, moved_on date)`,
    )
    await t.sql(
      `CREATE TABLE "${demand}" (id serial PRIMARY KEY, sku text, qty numeric(18,3) NOT NULL, ship date NOT NULL)`,
    )
    // Twelve products: most fine, PUMP-07 short in 2 days (CRITICAL), VALVE-03 short in 12 days (ATTENTION).
    for (let i = 1; i <= 10; i++) {
      const sku = `SKU-${String(i).padStart(2, '0')}`
      await t.sql(`INSERT INTO "${movements}" (sku, qty) VALUES ($1, $2)`, [sku, 200 + 15 * i])
      for (let d = 1; d < 28; d += 3) {
        await t.sql(`INSERT INTO "${demand}" (sku, qty, ship) VALUES ($1, $2, $3)`, [
          sku,
          3 + ((i * d) % 7),
          dayFromToday(d),
        ])
      }
    }
    await t.sql(`INSERT INTO "${movements}" (sku, qty) VALUES ('PUMP-07', 8), ('VALVE-03', 40)`)
    await t.sql(
      `INSERT INTO "${demand}" (sku, qty, ship) VALUES ('PUMP-07', 12, $1), ('VALVE-03', 25, $2), ('VALVE-03', 30, $3)`,
      [dayFromToday(2), dayFromToday(5), dayFromToday(12)],
    )
    capture = sqlChangeCapture(t.db, schema, { prefix: `${prefix}_cc`, pollMs: 20 })
    await capture.install()
    cache = createStockCache({
      schema,
      reader: sqlReader(t.db, schema),
      store: sqlStore(t.db, { table: `${prefix}_projections` }),
      pendingMarks: capture,
      debounceMs: 5,
    })
    listener = await capture.listen(cache)
    await cache.rebuildAll()
    server = http.createServer(createHttpHandler({ cache }))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ],
    })
  })

  afterAll(async () => {
    await browser?.close()
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
    await listener?.stop()
    await cache?.close()
    await capture?.uninstall()
    await t?.close() // drops the schema and every table in it
  })

  /** The statuses the at-risk table shows, by product. */
  const riskRows = (page: Page) =>
    page.$$eval('#risk-body tr', (rows) =>
      Object.fromEntries(rows.map((r) => [r.getAttribute('data-product'), r.getAttribute('data-status')])),
    )
  /** The closing column of the days table (what the chart plots). */
  const closings = (page: Page) =>
    page.$$eval('#days-body tr', (rows) => rows.map((r) => r.children[6]?.textContent ?? ''))

  it('loads, shows the status and the at-risk products, charts a product, and follows a committed write', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 960 } })
    const problems: string[] = []
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`))
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`)
    })
    await page.goto(`${url}/?every=0.5`)
    expect(await page.title()).toBe('stockcast dashboard')

    // The status figures.
    await page.locator('#l1', { hasText: /%$/ }).waitFor()
    expect(await page.textContent('#dirty')).toMatch(/^\d+ dirty$/)
    expect(await page.textContent('#lag')).toMatch(/^\d+(\.\d)? (ms|s)$/)
    expect(await page.textContent('#health')).toBe('Healthy')

    // The at-risk table: CRITICAL and ATTENTION only.
    await page.waitForSelector('#risk-body tr[data-product="PUMP-07"]')
    expect(await riskRows(page)).toEqual({ 'PUMP-07': 'CRITICAL', 'VALVE-03': 'ATTENTION' })

    // Choose a product that is fine: uPlot draws its days.
    await page.fill('#product', 'SKU-04')
    await page.click('#product-form button[type=submit]')
    await page.waitForSelector('#chart[data-product="SKU-04"] canvas')
    expect(await page.textContent('#product-title')).toBe('SKU-04')
    expect(await page.textContent('#product-status')).toBe('OK')
    expect(await page.$$eval('#chart .u-legend th', (th) => th.map((x) => x.textContent?.trim()))).toEqual(
      expect.arrayContaining(['Closing', 'With pending']),
    )
    const before = await closings(page)
    expect(before).toHaveLength(29)
    const computedAt = await page.getAttribute('#chart', 'data-computed-at')

    // A big order for SKU-04, committed with plain SQL by another connection: the capture marks it, the page
    // lists the product as CRITICAL and the chart's series changes.
    await t.sql(`INSERT INTO "${demand}" (sku, qty, ship) VALUES ('SKU-04', 400, $1)`, [dayFromToday(3)])
    await page.waitForSelector('#risk-body tr[data-product="SKU-04"][data-status="CRITICAL"]', { timeout: 20_000 })
    await page.waitForSelector(`#chart:not([data-computed-at="${computedAt}"])`, { timeout: 20_000 })

    mkdirSync(dirname(SCREENSHOT), { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    const png = readFileSync(SCREENSHOT)
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
    expect(png.length).toBeGreaterThan(20_000)
    expect(problems).toEqual([])
    await page.close()
  })

  it('without uPlot (its file blocked), the page says why and shows the days as a table', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 960 } })
    await page.route('**/assets/uplot.js', (route) => route.abort())
    await page.goto(`${url}/?product=PUMP-07`)
    await page.waitForSelector('#days-body tr')
    expect(await page.textContent('#chart-note')).toMatch(/^No chart: uPlot did not load/)
    expect(await page.getAttribute('#days', 'open')).toBe('') // <details open>
    expect(await page.$$('#chart canvas')).toHaveLength(0)
    expect(await page.$$eval('#days-body tr', (rows) => rows.length)).toBe(29)
    await page.close()
  })
})
