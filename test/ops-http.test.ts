import { readFileSync } from 'node:fs'
import http, { type RequestListener } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import express from 'express'
import Fastify from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { ConfigError, createStockCache, type MemorySource, memorySource, type StockCache } from '../src/index.js'
import { createHttpHandler, type HttpHandlerOptions } from '../src/ops/http.js'
import { PROMETHEUS_CONTENT_TYPE } from '../src/ops/prometheus.js'
import { addDays, ControlledReader, FakeClock, schema } from './helpers/fixtures.js'

const TODAY = '2026-11-22'
const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

/** A: plenty (OK); B: runs out on D2 (CRITICAL); C: runs out on D15 (ATTENTION). */
function seeded(): { db: MemorySource; cache: StockCache; reader: ControlledReader } {
  const db = memorySource(schema)
  db.insert('stock_movements', { product_code: 'A', quantity: '100' })
  db.insert('order_lines', { product_code: 'A', open_qty: '4', ship_date: addDays(TODAY, 3) })
  db.insert('stock_movements', { product_code: 'B', quantity: '5' })
  db.insert('order_lines', { product_code: 'B', open_qty: '10', ship_date: addDays(TODAY, 2) })
  db.insert('stock_movements', { product_code: 'C', quantity: '20' })
  db.insert('order_lines', { product_code: 'C', open_qty: '30', ship_date: addDays(TODAY, 15) })
  const reader = new ControlledReader(db.reader)
  const cache = createStockCache({ schema, reader, clock: new FakeClock(), debounceMs: 0 })
  cleanups.push(() => cache.close())
  return { db, cache, reader }
}

async function listen(listener: RequestListener): Promise<string> {
  const server = http.createServer(listener)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** A node:http server over the handler; the cache is rebuilt so `list()` answers from L1. */
async function serve(options: Partial<HttpHandlerOptions> = {}) {
  const s = seeded()
  await s.cache.rebuildAll()
  const url = await listen(createHttpHandler({ cache: s.cache, metrics: () => 'm 1\n', ...options }))
  return { ...s, url }
}

async function body(res: Response): Promise<Record<string, unknown>> {
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8')
  expect(res.headers.get('cache-control')).toBe('no-store')
  return (await res.json()) as Record<string, unknown>
}

async function errorOf(res: Response, status: number): Promise<{ code: string; message: string }> {
  expect(res.status).toBe(status)
  const b = await body(res)
  expect(Object.keys(b)).toEqual(['error'])
  return b.error as { code: string; message: string }
}

describe('createHttpHandler: options', () => {
  it('throws ConfigError for a missing or partial cache and bad options', () => {
    const { cache } = seeded()
    expect(() => createHttpHandler(undefined as unknown as HttpHandlerOptions)).toThrow(ConfigError)
    expect(() => createHttpHandler({} as HttpHandlerOptions)).toThrow(ConfigError)
    const partial = { get: cache.get, list: cache.list, status: cache.status } as unknown as StockCache
    expect(() => createHttpHandler({ cache: partial })).toThrow(/metrics/)
    expect(() => createHttpHandler({ cache, basePath: 'api' })).toThrow(ConfigError)
    expect(() => createHttpHandler({ cache, listLimit: 0 })).toThrow(ConfigError)
    expect(() => createHttpHandler({ cache, listLimit: 1.5 })).toThrow(ConfigError)
    expect(() => createHttpHandler({ cache, dashboard: 'yes' as unknown as boolean })).toThrow(ConfigError)
    expect(() => createHttpHandler({ cache, authorize: true as unknown as () => boolean })).toThrow(ConfigError)
    expect(() => createHttpHandler({ cache, unmatched: 'skip' as '404' })).toThrow(ConfigError)
    expect(() => createHttpHandler({ cache, metrics: 'x' as unknown as () => string })).toThrow(ConfigError)
  })
})

describe('createHttpHandler over node:http', () => {
  it('GET /cache/status: the status, the metrics and the hit ratios', async () => {
    const { url, cache } = await serve()
    await cache.get('A')
    const b = await body(await fetch(`${url}/cache/status`))
    const status = b.status as Record<string, unknown>
    expect(status.today).toBe(TODAY)
    expect(status.dirty).toBe(0)
    expect(status.closed).toBe(false)
    const metrics = b.metrics as { l1Hits: number; l1Misses: number }
    expect(metrics.l1Hits).toBeGreaterThan(0)
    const ratio = b.hitRatio as { l1: number; l2: number | null }
    expect(ratio.l1).toBe(metrics.l1Hits / (metrics.l1Hits + metrics.l1Misses))
    expect(ratio.l2).toBeNull()
  })

  it('GET /stock/:product, /projection and /available answer from the cache', async () => {
    const { url } = await serve()
    const res = await fetch(`${url}/stock/B`)
    expect(res.status).toBe(200)
    expect(await body(res)).toEqual({
      product: 'B',
      location: null,
      today: TODAY,
      stockToday: 5,
      minClosing7d: -5,
      firstStockoutDate: addDays(TODAY, 2),
      status: 'CRITICAL',
      stale: false,
      computedAt: expect.any(Number),
    })
    const p = await body(await fetch(`${url}/stock/A/projection`))
    expect(p.product).toBe('A')
    expect((p.days as Array<{ closing: number }>).length).toBe(29)
    expect((p.days as Array<{ closing: number }>)[3]!.closing).toBe(96)

    const a = await body(await fetch(`${url}/stock/C/available?qty=15`))
    expect(a).toMatchObject({ product: 'C', qty: '15', rule: 'promise', date: null, reason: 'not-sustained' })
    const point = await body(await fetch(`${url}/stock/C/available?qty=15&rule=point`))
    expect(point).toMatchObject({ rule: 'point', date: TODAY, dayIndex: 0, reason: null })
    const small = await body(await fetch(`${url}/stock/A/available?qty=96.5`))
    expect(small).toMatchObject({ date: null })
    const ok = await body(await fetch(`${url}/stock/A/available?qty=96`))
    expect(ok).toMatchObject({ date: TODAY, dayIndex: 0 })
  })

  it('product ids are URL-decoded from the path: %2F and non-ASCII ids reach the cache as they are', async () => {
    const { url, db } = await serve()
    db.insert('stock_movements', { product_code: 'a/b ü', quantity: '7' })
    const b = await body(await fetch(`${url}/stock/${encodeURIComponent('a/b ü')}`))
    expect(b).toMatchObject({ product: 'a/b ü', stockToday: 7 })
  })

  it('GET /stock lists a page of cache.list(): statuses, limit and cursor', async () => {
    const { url } = await serve()
    const all = await body(await fetch(`${url}/stock?status=CRITICAL,ATTENTION`))
    const items = all.items as Array<{ product: string; status: string }>
    expect(items.map((p) => [p.product, p.status])).toEqual([
      ['B', 'CRITICAL'],
      ['C', 'ATTENTION'],
    ])
    expect(all.cursor).toBeNull()
    expect(all.source).toBe('l1')
    const first = await body(await fetch(`${url}/stock?limit=2`))
    expect((first.items as Array<{ product: string }>).map((p) => p.product)).toEqual(['B', 'C'])
    expect(typeof first.cursor).toBe('string')
    const second = await body(await fetch(`${url}/stock?limit=2&cursor=${encodeURIComponent(String(first.cursor))}`))
    expect((second.items as Array<{ product: string }>).map((p) => p.product)).toEqual(['A'])
    expect(second.cursor).toBeNull()
  })

  it('the default listLimit is 50 and the option changes it', async () => {
    const { url } = await serve({ listLimit: 1 })
    const page = await body(await fetch(`${url}/stock`))
    expect((page.items as unknown[]).length).toBe(1)
    expect(typeof page.cursor).toBe('string')
  })

  it('bad product ids are 400 with E_INVALID_INPUT, and nothing is read', async () => {
    const { url, reader } = await serve()
    const reads = reader.calls.length
    for (const path of [
      '/stock/',
      '/stock/%01A',
      `/stock/${'x'.repeat(201)}`,
      '/stock/%ED%A0%80', // a lone surrogate, as (invalid) UTF-8
      '/stock/%E0%A4%A', // broken percent-encoding
      '/stock/A%1FB/projection',
      '/stock/%7F/available?qty=1',
    ]) {
      const e = await errorOf(await fetch(`${url}${path}`), 400)
      expect(e.code).toBe('E_INVALID_INPUT')
      expect(e.message.length).toBeGreaterThan(0)
    }
    expect((await errorOf(await fetch(`${url}/stock/A?location=`), 400)).code).toBe('E_INVALID_INPUT')
    expect(reader.calls.length).toBe(reads)
  })

  it('bad query values are 400 with E_INVALID_INPUT: qty, rule, includePending, limit, status, cursor', async () => {
    const { url } = await serve()
    for (const q of ['', '?qty=', '?qty=abc', '?qty=1e3', '?qty=-1', '?qty=1.', '?qty=%201', '?qty=1&rule=soon']) {
      const e = await errorOf(await fetch(`${url}/stock/A/available${q}`), 400)
      expect(e.code).toBe('E_INVALID_INPUT')
    }
    expect((await errorOf(await fetch(`${url}/stock/A/available?qty=1&includePending=1`), 400)).code).toBe(
      'E_INVALID_INPUT',
    )
    for (const q of ['limit=0', 'limit=1001', 'limit=x', 'status=BAD', 'status=', 'cursor=nope']) {
      const e = await errorOf(await fetch(`${url}/stock?${q}`), 400)
      expect(e.code).toBe('E_INVALID_INPUT')
    }
  })

  it('POST refresh is 403 until authorize is given', async () => {
    const { url } = await serve()
    const e = await errorOf(await fetch(`${url}/stock/A/refresh`, { method: 'POST' }), 403)
    expect(e.code).toBe('E_REFRESH_DISABLED')
    expect(e.message).toMatch(/authorize/)
  })

  it('POST refresh: 401 when authorize says no, 200 with the recomputed value when it says yes', async () => {
    const asked: string[] = []
    const { url, db } = await serve({
      authorize: async (req, action) => {
        asked.push(action)
        return req.headers.authorization === 'Bearer ok'
      },
    })
    // Not attached: the cache is not told about this write, so only a refresh shows it.
    db.insert('stock_movements', { product_code: 'A', quantity: '50' })
    expect((await body(await fetch(`${url}/stock/A`))).stockToday).toBe(100)
    const denied = await fetch(`${url}/stock/A/refresh`, { method: 'POST', headers: { authorization: 'Bearer no' } })
    expect((await errorOf(denied, 401)).code).toBe('E_UNAUTHORIZED')
    expect(denied.headers.get('www-authenticate')).toContain('Bearer')
    expect((await body(await fetch(`${url}/stock/A`))).stockToday).toBe(100)
    const res = await fetch(`${url}/stock/A/refresh`, { method: 'POST', headers: { authorization: 'Bearer ok' } })
    expect(res.status).toBe(200)
    expect((await body(res)).stockToday).toBe(150)
    expect((await body(await fetch(`${url}/stock/A`))).stockToday).toBe(150)
    expect(asked).toEqual(['refresh', 'refresh'])
  })

  it('a wrong method on a known route is 405 with allow; HEAD answers the GET headers without a body', async () => {
    const { url } = await serve()
    const post = await fetch(`${url}/stock/A`, { method: 'POST' })
    expect((await errorOf(post, 405)).code).toBe('E_METHOD_NOT_ALLOWED')
    expect(post.headers.get('allow')).toBe('GET, HEAD')
    const get = await fetch(`${url}/stock/A/refresh`)
    expect((await errorOf(get, 405)).code).toBe('E_METHOD_NOT_ALLOWED')
    expect(get.headers.get('allow')).toBe('POST')
    const del = await fetch(`${url}/cache/status`, { method: 'DELETE' })
    expect(del.status).toBe(405)

    const full = await fetch(`${url}/stock/A/projection`)
    const text = await full.text()
    const head = await fetch(`${url}/stock/A/projection`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('content-type')).toBe('application/json; charset=utf-8')
    expect(Number(head.headers.get('content-length'))).toBe(Buffer.byteLength(text))
    expect(await head.text()).toBe('')
  })

  it('unknown paths are a JSON 404 without next', async () => {
    const { url } = await serve()
    for (const path of ['/nope', '/stock/A/other', '/stock/A/projection/x', '/cache', '/assets/other.js']) {
      expect((await errorOf(await fetch(`${url}${path}`), 404)).code).toBe('E_NOT_FOUND')
    }
  })

  it('GET /metrics: the Prometheus text of the cache by default, with its content type', async () => {
    const s = seeded()
    await s.cache.get('B')
    const url = await listen(createHttpHandler({ cache: s.cache }))
    const res = await fetch(`${url}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe(PROMETHEUS_CONTENT_TYPE)
    const text = await res.text()
    expect(text).toMatch(/^# HELP stockcast_/m)
    expect(text).toMatch(/^# TYPE stockcast_\w+ (counter|gauge|histogram)$/m)
  })

  it('GET /metrics with a metrics option serves its text', async () => {
    const { url } = await serve({ metrics: async () => 'custom_metric 42\n' })
    const res = await fetch(`${url}/metrics`)
    expect(res.headers.get('content-type')).toBe(PROMETHEUS_CONTENT_TYPE)
    expect(await res.text()).toBe('custom_metric 42\n')
  })

  it('cache errors map to their code: 503 for unavailable sources and a closed cache, 500 without details', async () => {
    const s = seeded()
    const url = await listen(
      createHttpHandler({
        cache: s.cache,
        metrics: () => {
          throw new Error('password=hunter2')
        },
      }),
    )
    s.reader.failWith = new Error('connection refused')
    const down = await errorOf(await fetch(`${url}/stock/A`), 503)
    expect(down.code).toBe('E_SOURCE_UNAVAILABLE')
    const internal = await errorOf(await fetch(`${url}/metrics`), 500)
    expect(internal).toEqual({ code: 'E_INTERNAL', message: 'internal error' })
    // No rebuild and no listing store: list() is a ConfigError, a 500 with its code and message.
    const config = await errorOf(await fetch(`${url}/stock?status=CRITICAL`), 500)
    expect(config.code).toBe('E_CONFIG')
    expect(config.message).not.toMatch(/\n\s+at /)
    s.reader.failWith = undefined
    await s.cache.close()
    expect((await errorOf(await fetch(`${url}/stock/A`), 503)).code).toBe('E_CLOSED')
  })

  it('serves the dashboard page and the uPlot files from the package', async () => {
    const { url } = await serve()
    const page = await fetch(`${url}/`)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self' 'sha256-/)
    const html = await page.text()
    expect(html).toContain('<title>stockcast dashboard</title>')
    expect(html).toContain('src="assets/uplot.js"')
    expect(html).not.toMatch(/(src|href)="\//) // relative URLs only
    expect((await fetch(`${url}/index.html`)).status).toBe(200)

    const require = createRequire(import.meta.url)
    const js = await fetch(`${url}/assets/uplot.js`)
    expect(js.status).toBe(200)
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    expect(js.headers.get('cache-control')).toBe('public, max-age=86400')
    expect(Buffer.from(await js.arrayBuffer())).toEqual(readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js')))
    const css = await fetch(`${url}/assets/uplot.css`)
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8')
    expect(await css.text()).toBe(readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'))
  })

  it('dashboard: false serves no page and no assets', async () => {
    const { url } = await serve({ dashboard: false })
    expect((await fetch(`${url}/`)).status).toBe(404)
    expect((await fetch(`${url}/assets/uplot.js`)).status).toBe(404)
    expect((await fetch(`${url}/stock/A`)).status).toBe(200)
  })

  it('basePath: routes under the prefix only, and the bare prefix redirects to the page with a slash', async () => {
    const { url } = await serve({ basePath: '/ops/' })
    expect((await body(await fetch(`${url}/ops/stock/A`))).product).toBe('A')
    expect((await fetch(`${url}/ops/`)).status).toBe(200)
    expect((await fetch(`${url}/stock/A`)).status).toBe(404)
    expect((await fetch(`${url}/opsx/stock/A`)).status).toBe(404)
    const bare = await fetch(`${url}/ops?every=5`, { redirect: 'manual' })
    expect(bare.status).toBe(308)
    expect(new URL(bare.headers.get('location')!, `${url}/ops`).href).toBe(`${url}/ops/?every=5`)
  })
})

describe('createHttpHandler in frameworks', () => {
  it('Express 5: mounted with app.use, the mount path stripped; unmatched requests go to next()', async () => {
    const { cache } = seeded()
    await cache.rebuildAll()
    const app = express()
    app.use('/stock-api', createHttpHandler({ cache, metrics: () => '' }))
    app.use((_req, res) => {
      res.status(418).send('express fallback')
    })
    const url = await listen(app)
    expect((await body(await fetch(`${url}/stock-api/cache/status`))).status).toMatchObject({ today: TODAY })
    expect(await body(await fetch(`${url}/stock-api/stock/B`))).toMatchObject({ product: 'B', status: 'CRITICAL' })
    expect((await errorOf(await fetch(`${url}/stock-api/stock/%01`), 400)).code).toBe('E_INVALID_INPUT')
    const other = await fetch(`${url}/stock-api/nope`)
    expect(other.status).toBe(418)
    expect(await other.text()).toBe('express fallback')
    expect((await fetch(`${url}/elsewhere`)).status).toBe(418)
    const bare = await fetch(`${url}/stock-api`, { redirect: 'manual' })
    expect(bare.status).toBe(308)
    expect(new URL(bare.headers.get('location')!, `${url}/stock-api`).href).toBe(`${url}/stock-api/`)
    expect(await (await fetch(`${url}/stock-api/`)).text()).toContain('<title>stockcast dashboard</title>')
  })

  it('Express 5 with unmatched: 404 answers unmatched requests itself', async () => {
    const { cache } = seeded()
    const app = express()
    app.use('/stock-api', createHttpHandler({ cache, metrics: () => '', unmatched: '404' }))
    app.use((_req, res) => {
      res.status(418).send('express fallback')
    })
    const url = await listen(app)
    expect((await errorOf(await fetch(`${url}/stock-api/nope`), 404)).code).toBe('E_NOT_FOUND')
  })

  it('Fastify 5: reply.hijack() then the handler on the raw request and reply', async () => {
    const { cache } = seeded()
    const handler = createHttpHandler({ cache, basePath: '/stock-api', metrics: () => '' })
    const app = Fastify()
    const route = async (
      request: { raw: http.IncomingMessage },
      reply: { hijack(): void; raw: http.ServerResponse },
    ) => {
      reply.hijack()
      await handler(request.raw, reply.raw)
    }
    app.all('/stock-api', route)
    app.all('/stock-api/*', route)
    await app.listen({ port: 0, host: '127.0.0.1' })
    cleanups.push(() => app.close())
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    expect((await body(await fetch(`${url}/stock-api/cache/status`))).status).toMatchObject({ today: TODAY })
    expect(await body(await fetch(`${url}/stock-api/stock/C`))).toMatchObject({ product: 'C', status: 'ATTENTION' })
    expect((await errorOf(await fetch(`${url}/stock-api/stock/A`, { method: 'POST' }), 405)).code).toBe(
      'E_METHOD_NOT_ALLOWED',
    )
    expect((await errorOf(await fetch(`${url}/stock-api/nope`), 404)).code).toBe('E_NOT_FOUND')
    // Outside the handler's routes, Fastify answers its own 404.
    const outside = await fetch(`${url}/elsewhere`)
    expect(outside.status).toBe(404)
    expect(((await outside.json()) as { message: string }).message).toMatch(/not found/i)
  })
})
