import { createHmac } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  ConfigError,
  createStockCache,
  type MemorySource,
  memorySource,
  type StockCache,
  type Timers,
} from '../src/index.js'
import {
  type DeliveredState,
  fileWebhookState,
  memoryWebhookState,
  type WebhookStateStore,
} from '../src/ops/webhook-state.js'
import {
  createWebhookDelivery,
  type WebhookDelivery,
  type WebhookDeliveryOptions,
  type WebhookFailed,
  type WebhookPayload,
} from '../src/ops/webhooks.js'
import { addDays, FakeClock, schema } from './helpers/fixtures.js'

const TODAY = '2026-11-22' // FakeClock's day
/** Marks wait for flush(): every recompute happens where the test says. */
const quiet = { debounceMs: 60_000, maxWaitMs: 60_000 }

interface Received {
  body: string
  json: WebhookPayload
  headers: IncomingHttpHeaders
}
type Answer = number | { status: number; headers?: Record<string, string> } | 'hang'

/** A local receiver: answers the planned statuses in turn, then `fallback`; records every request. */
async function receiver(fallback: Answer = 200) {
  const received: Received[] = []
  const plan: Answer[] = []
  const hung: ServerResponse[] = []
  let open = 0
  let maxOpen = 0
  const state = { fallback, delayMs: 0 }
  const server: Server = createServer((req, res) => {
    open++
    maxOpen = Math.max(maxOpen, open)
    res.on('close', () => open--)
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      received.push({ body, json: JSON.parse(body) as WebhookPayload, headers: req.headers })
      const a = plan.shift() ?? state.fallback
      if (a === 'hang') {
        hung.push(res)
        return
      }
      const { status, headers } = typeof a === 'number' ? { status: a, headers: {} } : a
      const answer = () => res.writeHead(status, headers).end('ok')
      if (state.delayMs > 0) setTimeout(answer, state.delayMs)
      else answer()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/stock`
  return {
    url,
    received,
    plan,
    state,
    maxOpen: () => maxOpen,
    /** The kinds of distinct deliveries, in the order they first arrived. */
    kinds: () => [...new Map(received.map((r) => [r.json.id, r.json.kind])).values()],
    close: async () => {
      for (const res of hung) res.destroy()
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function setup(fallback: Answer = 200) {
  const server = await receiver(fallback)
  cleanups.push(server.close)
  const db = memorySource(schema)
  return { server, db }
}

function cacheOn(db: MemorySource): StockCache {
  const cache = createStockCache({ schema, reader: db.reader, clock: new FakeClock(), ...quiet })
  db.attach(cache)
  cleanups.push(() => cache.close())
  return cache
}

function deliver(cache: StockCache, options: WebhookDeliveryOptions): WebhookDelivery {
  const hooks = createWebhookDelivery(cache, { backoffMs: 1, maxBackoffMs: 20, ...options })
  cleanups.push(() => hooks.stop())
  return hooks
}

/** Product `p` runs out in two days (CRITICAL), from 5 on hand. */
const runOut = (db: MemorySource, p: string) =>
  db.insert('order_lines', { product_code: p, open_qty: '8', ship_date: addDays(TODAY, 2) })
const restock = (db: MemorySource, p: string) => db.insert('stock_movements', { product_code: p, quantity: '100' })

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'stockcast-webhooks-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  return dir
}

describe('createWebhookDelivery', () => {
  it('sends stockout and critical, then both cleared, in order, retrying 503s, even when the key flips back first', async () => {
    const { server, db } = await setup()
    server.plan.push(503, 503, 503)
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const cache = cacheOn(db)
    const hooks = deliver(cache, { url: server.url })
    await cache.get('A') // a key that is fine sends nothing
    runOut(db, 'A')
    await cache.flush()
    restock(db, 'A') // back before the first delivery got through
    await cache.flush()
    await hooks.drain()
    expect(server.kinds()).toEqual(['stockout', 'critical', 'stockout-cleared', 'critical-cleared'])
    expect(server.received.length).toBe(7) // 3 refused attempts, then 4 deliveries
    expect(hooks.status()).toMatchObject({ queued: 0, inFlight: 0, delivered: 4, failed: 0, retries: 3 })
    expect(hooks.status().lastError).toMatchObject({ status: 503, key: 'A', kind: 'stockout' })
    // Retries carry the same body; every request's idempotency-key is its id.
    const first = server.received.filter((r) => r.json.kind === 'stockout')
    expect(new Set(first.map((r) => r.body)).size).toBe(1)
    for (const r of server.received) expect(r.headers['idempotency-key']).toBe(r.json.id)
    expect(new Set(server.received.map((r) => r.json.id)).size).toBe(4)
    expect(first[0]!.json).toMatchObject({
      key: 'A',
      product: 'A',
      location: null,
      status: 'CRITICAL',
      firstStockoutDate: addDays(TODAY, 2),
      stockToday: 5,
      minClosing7d: -3,
      today: TODAY,
    })
    expect(server.received.at(-1)!.json).toMatchObject({ kind: 'critical-cleared', status: 'OK', stockToday: 105 })
  })

  it('does not retry a 400: the delivery fails at once, and the key is sent again on its next change', async () => {
    const { server, db } = await setup(400)
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const cache = cacheOn(db)
    const failures: WebhookFailed[] = []
    const hooks = deliver(cache, { url: server.url, onFailed: (f) => failures.push(f) })
    runOut(db, 'A')
    await cache.flush()
    await hooks.drain()
    // The stockout failed; critical, queued behind it, is dropped with it (it would arrive out of order).
    expect(server.received.map((r) => r.json.kind)).toEqual(['stockout'])
    expect(hooks.status()).toMatchObject({ delivered: 0, failed: 1, retries: 0, queued: 0 })
    expect(failures).toHaveLength(1)
    expect(failures[0]).toMatchObject({ status: 400, attempts: 1, payload: { kind: 'stockout', key: 'A' } })
    server.state.fallback = 200
    db.insert('order_lines', { product_code: 'A', open_qty: '1', ship_date: addDays(TODAY, 3) }) // still out
    await cache.flush()
    await hooks.drain()
    expect(server.received.map((r) => r.json.kind)).toEqual(['stockout', 'stockout', 'critical'])
    // The same transition, the same id: a receiver that saw the refused one can drop the copy.
    expect(server.received[1]!.json.id).toBe(server.received[0]!.json.id)
    expect(hooks.status()).toMatchObject({ delivered: 2, failed: 1 })
  })

  it('does not follow a redirect (it would turn the POST into a GET): a 3xx fails the delivery', async () => {
    const { server, db } = await setup({ status: 302, headers: { location: '/elsewhere' } })
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const cache = cacheOn(db)
    const hooks = deliver(cache, { url: server.url, kinds: ['stockout'] })
    runOut(db, 'A')
    await cache.flush()
    await hooks.drain()
    expect(server.received.length).toBe(1)
    expect(hooks.status()).toMatchObject({ delivered: 0, failed: 1, retries: 0, lastError: { status: 302 } })
  })

  it('honours retry-after (capped by maxBackoffMs) and otherwise backs off', async () => {
    const { server, db } = await setup()
    server.plan.push(
      { status: 503, headers: { 'retry-after': '2' } },
      { status: 429, headers: { 'retry-after': '3600' } },
      503,
    )
    const waits: number[] = []
    // Real timers 100 times faster, recording the delays asked for.
    const timers: Timers = {
      setTimeout: (fn, ms) => {
        waits.push(ms)
        const t = setTimeout(fn, ms / 100)
        return t
      },
      clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
    }
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const cache = cacheOn(db)
    const hooks = deliver(cache, {
      url: server.url,
      kinds: ['stockout'],
      timers,
      timeoutMs: 60_000,
      backoffMs: 7,
      maxBackoffMs: 5000,
    })
    runOut(db, 'A')
    await cache.flush()
    await hooks.drain()
    expect(server.kinds()).toEqual(['stockout'])
    expect(hooks.status()).toMatchObject({ delivered: 1, retries: 3 })
    // Four attempts (each with its timeout timer), then: retry-after 2 s, retry-after capped, backoffDelay(2, 7).
    expect(waits.filter((ms) => ms === 60_000)).toHaveLength(4)
    expect(waits.filter((ms) => ms !== 60_000)).toEqual([2000, 5000, 28])
  })

  it('aborts an attempt that gets no answer within timeoutMs and retries it', async () => {
    const { server, db } = await setup()
    server.plan.push('hang')
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const cache = cacheOn(db)
    const hooks = deliver(cache, { url: server.url, kinds: ['stockout'], timeoutMs: 200 })
    runOut(db, 'A')
    await cache.flush()
    await hooks.drain()
    expect(server.received.length).toBe(2)
    expect(hooks.status()).toMatchObject({ delivered: 1, retries: 1, failed: 0 })
    expect(hooks.status().lastError!.message).toContain('no answer within 200 ms')
  })

  it('signs the body with HMAC-SHA256 and sends its own headers next to the caller`s', async () => {
    const { server, db } = await setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const cache = cacheOn(db)
    const hooks = deliver(cache, {
      url: server.url,
      secret: 's3cret',
      headers: { authorization: 'Bearer t0ken', 'Idempotency-Key': 'mine' },
    })
    runOut(db, 'A')
    await cache.flush()
    await hooks.drain()
    expect(server.received.length).toBe(2)
    for (const r of server.received) {
      const expected = `sha256=${createHmac('sha256', 's3cret').update(r.body).digest('hex')}`
      const other = `sha256=${createHmac('sha256', 'other').update(r.body).digest('hex')}`
      expect(r.headers['x-stockcast-signature']).toBe(expected)
      expect(r.headers['x-stockcast-signature']).not.toBe(other)
      expect(r.headers).toMatchObject({
        authorization: 'Bearer t0ken',
        'content-type': 'application/json',
        'idempotency-key': r.json.id,
        'x-stockcast-kind': r.json.kind,
      })
    }
  })

  it('initial: a key already CRITICAL at first sight sends once with baseline, nothing with quiet', async () => {
    const { server, db } = await setup()
    db.insert('stock_movements', { product_code: 'C', quantity: '5' })
    runOut(db, 'C')
    const baseline = await receiver()
    cleanups.push(baseline.close)
    const cache = cacheOn(db)
    const q = deliver(cache, { url: server.url, initial: 'quiet' })
    const b = deliver(cache, { url: baseline.url })
    await cache.get('C')
    db.insert('order_lines', { product_code: 'C', open_qty: '1', ship_date: addDays(TODAY, 4) }) // still CRITICAL
    await cache.flush()
    await Promise.all([q.drain(), b.drain()])
    expect(server.received).toEqual([])
    expect(baseline.kinds()).toEqual(['stockout', 'critical'])
    restock(db, 'C')
    await cache.flush()
    await Promise.all([q.drain(), b.drain()])
    expect(server.kinds()).toEqual(['stockout-cleared', 'critical-cleared'])
    expect(baseline.kinds()).toEqual(['stockout', 'critical', 'stockout-cleared', 'critical-cleared'])
  })

  it('quiet: a key computed before the delivery started sends the change that first brings it', async () => {
    const { server, db } = await setup()
    db.insert('stock_movements', { product_code: 'D', quantity: '5' })
    const cache = cacheOn(db)
    await cache.get('D') // OK, before the delivery exists (a rebuild at start)
    const q = deliver(cache, { url: server.url, initial: 'quiet' })
    runOut(db, 'D')
    await cache.flush()
    await q.drain()
    expect(server.kinds()).toEqual(['stockout', 'critical'])
  })

  it('kinds: only the chosen kinds are sent, the others still move the delivered state', async () => {
    const { server, db } = await setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const cache = cacheOn(db)
    const hooks = deliver(cache, { url: server.url, kinds: ['stockout'] })
    await cache.get('A')
    runOut(db, 'A')
    await cache.flush()
    const id = db.insert('stock_movements', { product_code: 'A', quantity: '100' })
    await cache.flush()
    db.delete('stock_movements', id) // out again
    await cache.flush()
    await hooks.drain()
    expect(server.received.map((r) => r.json.kind)).toEqual(['stockout', 'stockout'])
    expect(new Set(server.received.map((r) => r.json.id)).size).toBe(2)
  })

  it('keeps at most `concurrency` attempts in flight over all keys, and every key in order', async () => {
    const { server, db } = await setup()
    server.state.delayMs = 5
    server.plan.push(503, 503)
    const products = Array.from({ length: 8 }, (_, i) => `P${i}`)
    for (const p of products) db.insert('stock_movements', { product_code: p, quantity: '5' })
    const cache = cacheOn(db)
    const hooks = deliver(cache, { url: server.url, concurrency: 2 })
    await cache.getMany(products)
    for (const p of products) runOut(db, p)
    await cache.flush()
    for (const p of products) restock(db, p)
    await cache.flush()
    await hooks.drain()
    expect(server.maxOpen()).toBeLessThanOrEqual(2)
    expect(hooks.status()).toMatchObject({ delivered: 32, retries: 2 })
    for (const p of products) {
      const mine = [...new Map(server.received.filter((r) => r.json.key === p).map((r) => [r.json.id, r])).values()]
      expect(mine.map((r) => r.json.kind)).toEqual(['stockout', 'critical', 'stockout-cleared', 'critical-cleared'])
    }
  })

  it('after a restart with a file state, sends nothing already delivered and what changed meanwhile', async () => {
    const { server, db } = await setup()
    const path = join(await tempDir(), 'state.json')
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    db.insert('stock_movements', { product_code: 'B', quantity: '5' })
    const c1 = cacheOn(db)
    const h1 = deliver(c1, { url: server.url, state: fileWebhookState(path) })
    await c1.getMany(['A', 'B'])
    runOut(db, 'A')
    await c1.flush()
    await h1.drain()
    await h1.stop()
    expect(server.kinds()).toEqual(['stockout', 'critical'])
    // While down: B runs out.
    runOut(db, 'B')
    const c2 = cacheOn(db)
    const h2 = deliver(c2, { url: server.url, state: fileWebhookState(path) })
    await c2.getMany(['A', 'B']) // first values of a new instance: `updated`, no `transition`
    await h2.drain()
    expect(server.received.map((r) => `${r.json.key}:${r.json.kind}`)).toEqual([
      'A:stockout',
      'A:critical',
      'B:stockout',
      'B:critical',
    ])
    await h2.stop()
    const saved = JSON.parse(await readFile(path, 'utf8')) as { states: Record<string, DeliveredState> }
    expect(saved.states.A).toMatchObject({ out: true, critical: true, date: addDays(TODAY, 2), seq: 2 })
    expect(saved.states.B).toMatchObject({ out: true, critical: true, seq: 2 })
  })

  it('sends after a restart what was queued when it stopped (level-triggered), with the same ids', async () => {
    const { server, db } = await setup(503)
    const path = join(await tempDir(), 'state.json')
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const c1 = cacheOn(db)
    const h1 = deliver(c1, { url: server.url, state: fileWebhookState(path), retries: 1000 })
    await c1.get('A')
    runOut(db, 'A')
    await c1.flush()
    await vi.waitFor(() => expect(server.received.length).toBeGreaterThanOrEqual(2))
    await h1.stop()
    expect(h1.status().delivered).toBe(0)
    const refusedId = server.received[0]!.json.id
    const saved = JSON.parse(await readFile(path, 'utf8')) as { states: Record<string, DeliveredState> }
    expect(saved.states.A).toMatchObject({ out: false, critical: false, seq: 0 })
    server.state.fallback = 200
    const before = server.received.length
    const c2 = cacheOn(db)
    const h2 = deliver(c2, { url: server.url, state: fileWebhookState(path) })
    await c2.get('A')
    await h2.drain()
    const after = server.received.slice(before)
    expect(after.map((r) => r.json.kind)).toEqual(['stockout', 'critical'])
    expect(after[0]!.json.id).toBe(refusedId)
    expect(h2.status()).toMatchObject({ delivered: 2, failed: 0 })
  })

  it('retries a state store that fails to read or write, and delivers meanwhile', async () => {
    const { server, db } = await setup()
    const map = new Map<string, DeliveredState>()
    const inner = memoryWebhookState({ map })
    let failGets = 2
    let failSets = 2
    const flaky: WebhookStateStore = {
      get: (keys) => (failGets-- > 0 ? Promise.reject(new Error('state read down')) : inner.get(keys)),
      set: (entries) => (failSets-- > 0 ? Promise.reject(new Error('state write down')) : inner.set(entries)),
    }
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const cache = cacheOn(db)
    const hooks = deliver(cache, { url: server.url, state: flaky })
    runOut(db, 'A')
    await cache.flush()
    await hooks.drain()
    expect(server.kinds()).toEqual(['stockout', 'critical'])
    expect(failGets).toBeLessThan(0)
    expect(failSets).toBeLessThan(0)
    expect(map.get('A')).toMatchObject({ out: true, critical: true, seq: 2 })
    expect(hooks.status()).toMatchObject({ delivered: 2, failed: 0 })
    expect(hooks.status().lastError!.message).toMatch(/webhook state: .* failed: state (read|write) down/)
  })

  it('stop() unsubscribes: later changes are not sent', async () => {
    const { server, db } = await setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const cache = cacheOn(db)
    const hooks = deliver(cache, { url: server.url })
    await cache.get('A')
    await hooks.stop()
    runOut(db, 'A')
    await cache.flush()
    await hooks.drain()
    expect(cache.peek('A')!.status).toBe('CRITICAL')
    expect(server.received).toEqual([])
  })

  it('cache.close() stops the delivery after its last flush: the closing flush is delivered, the state closed', async () => {
    const { server, db } = await setup()
    db.insert('stock_movements', { product_code: 'A', quantity: '5' })
    const cache = createStockCache({ schema, reader: db.reader, clock: new FakeClock(), ...quiet })
    db.attach(cache)
    const inner = memoryWebhookState()
    let closed = 0
    const state: WebhookStateStore = {
      get: (keys) => inner.get(keys),
      set: (entries) => inner.set(entries),
      close: async () => {
        closed++
      },
    }
    createWebhookDelivery(cache, { url: server.url, state, backoffMs: 1 })
    await cache.get('A')
    runOut(db, 'A') // pending: close() flushes it, then stops the delivery, which sends what it queued
    await cache.close()
    expect(closed).toBe(1)
    expect(server.kinds()).toEqual(['stockout', 'critical'])
  })

  it('rejects bad options with a ConfigError naming the option', () => {
    const db = memorySource(schema)
    const cache = cacheOn(db)
    const bad = (o: Record<string, unknown>, option: string) => {
      const call = () => createWebhookDelivery(cache, { url: 'http://127.0.0.1:9/x', ...o } as WebhookDeliveryOptions)
      expect(call).toThrow(ConfigError)
      expect(call).toThrow(expect.objectContaining({ option }))
    }
    bad({ url: undefined }, 'url')
    bad({ url: 'ftp://example.com/x' }, 'url')
    bad({ url: 'not a url' }, 'url')
    bad({ kinds: [] }, 'kinds')
    bad({ kinds: ['stockout', 'restock'] }, 'kinds')
    bad({ headers: { a: 1 } }, 'headers')
    bad({ secret: '' }, 'secret')
    bad({ state: {} }, 'state')
    bad({ initial: 'loud' }, 'initial')
    bad({ retries: -1 }, 'retries')
    bad({ retries: 1.5 }, 'retries')
    bad({ backoffMs: Number.NaN }, 'backoffMs')
    bad({ maxBackoffMs: -1 }, 'maxBackoffMs')
    bad({ timeoutMs: 0 }, 'timeoutMs')
    bad({ concurrency: 0 }, 'concurrency')
    bad({ timers: { setTimeout() {} } }, 'timers')
    bad({ fetch: 'fetch' }, 'fetch')
    bad({ onFailed: 1 }, 'onFailed')
    expect(() => createWebhookDelivery({} as StockCache, { url: 'http://x/' })).toThrow(ConfigError)
  })
})

describe('webhook state stores', () => {
  const state = (over: Partial<DeliveredState> = {}): DeliveredState => ({
    out: true,
    critical: false,
    date: '2026-11-24',
    status: 'ATTENTION',
    seq: 1,
    epoch: 'e',
    at: 1,
    ...over,
  })

  it('memoryWebhookState returns copies', async () => {
    const s = memoryWebhookState()
    await s.set(new Map([['A', state()]]))
    const got = (await s.get(['A', 'B'])).get('A')!
    got.seq = 99
    expect(await s.get(['A', 'B'])).toEqual(new Map([['A', state()]]))
  })

  it('fileWebhookState: a missing file is empty; states survive a new instance; writes leave no temp files', async () => {
    const dir = await tempDir()
    const path = join(dir, 'state.json')
    const a = fileWebhookState(path)
    expect((await a.get(['A'])).size).toBe(0)
    // Concurrent sets: serialised, each one's states in the file once they resolve.
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => a.set(new Map([[`K${i}`, state({ seq: i })]]))).concat(
        a.set(new Map([['A', state()]])),
      ),
    )
    await a.set(new Map([['A', state({ out: false, date: null, seq: 2 })]]))
    await a.close!()
    const b = fileWebhookState(path)
    const got = await b.get(['A', 'K0', 'K19', 'missing'])
    expect([...got.keys()].sort()).toEqual(['A', 'K0', 'K19'])
    expect(got.get('A')).toEqual(state({ out: false, date: null, seq: 2 }))
    expect(got.get('K19')!.seq).toBe(19)
    expect(await readdir(dir)).toEqual(['state.json'])
  })

  it('fileWebhookState: a file that is not a state file is an error, and a bad path a ConfigError', async () => {
    const path = join(await tempDir(), 'state.json')
    await writeFile(path, '{"hello": 1}')
    await expect(fileWebhookState(path).get(['A'])).rejects.toThrow(/not a webhook state file/)
    await writeFile(path, 'nope')
    await expect(fileWebhookState(path).get(['A'])).rejects.toThrow(/not JSON/)
    expect(() => fileWebhookState('')).toThrow(ConfigError)
  })
})
