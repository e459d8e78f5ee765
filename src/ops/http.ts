import type { IncomingMessage, ServerResponse } from 'node:http'
import type { StockProjection } from '../cache/types.js'
import { ConfigError, errors, InvalidInputError, StockcastError } from '../errors.js'
import { availabilityDate } from '../projection/availability.js'
import type { AvailabilityRule, StockStatus } from '../projection/types.js'
import type { StockCache } from '../stock/types.js'
import { isWellFormedText } from '../util/text.js'
import { DASHBOARD_CSP, dashboardHtml, type UplotAsset, uplotAsset } from './dashboard.js'
import { PROMETHEUS_CONTENT_TYPE, prometheusText } from './prometheus.js'

/** The actions `authorize` is asked about (only `refresh` writes). */
export type HttpAction = 'refresh'

export interface HttpHandlerOptions {
  /** The cache to serve. Only its methods are called: no SQL is built from request text. */
  cache: StockCache
  /**
   * Decides whether a request may run `action`. Only `true` allows it (anything else answers 401). Without it,
   * `POST /stock/:product/refresh` answers 403: the handler is read-only.
   * @default undefined (refresh disabled)
   */
  authorize?: (req: IncomingMessage, action: HttpAction) => boolean | Promise<boolean>
  /** The path prefix the routes sit under when node:http serves them under a prefix (`/stock-api`). @default '' */
  basePath?: string
  /** The body of `GET /metrics` (served as `PROMETHEUS_CONTENT_TYPE`). @default () => prometheusText(cache) */
  metrics?: () => string | Promise<string>
  /** Serve the dashboard page at `GET /` and its uPlot assets under `/assets/`. @default true */
  dashboard?: boolean
  /** Items per page of `GET /stock` when the request gives no `limit`. @default 50 */
  listLimit?: number
  /**
   * What a request outside the routes gets: `next()` (Express, or any caller that passes `next`) or a JSON 404.
   * @default 'next' when a `next` callback is passed, else '404'
   */
  unmatched?: 'next' | '404'
}

/** A `(req, res, next?)` handler: a node:http listener, Express middleware, or the body of a Fastify route. */
export type StockcastHttpHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  next?: (err?: unknown) => void,
) => Promise<void>

/** What `GET /stock/:product` and `POST /stock/:product/refresh` answer, and each item of `GET /stock`. */
export interface StockSummary {
  product: string
  location: string | null
  today: string
  stockToday: number
  minClosing7d: number
  firstStockoutDate: string | null
  status: StockStatus
  stale: boolean
  computedAt: number
}

/** Longest product id or location the handler accepts from a URL. */
export const MAX_ID_LENGTH = 200
/** Largest `limit` of `GET /stock`. */
export const MAX_LIST_LIMIT = 1000

const JSON_TYPE = 'application/json; charset=utf-8'
const GET = 'GET, HEAD'
const POST = 'POST'
// C0 and C1 control characters (U+001F is also the key separator).
const CONTROL = /\p{Cc}/u
const DECIMAL = /^\d{1,15}(\.\d{1,9})?$/
const INTEGER = /^\d{1,6}$/
const STATUSES: readonly string[] = ['OK', 'ATTENTION', 'CRITICAL']

/** A request that ends with a given status and JSON error (404, 405, 401, 403): not a StockcastError. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

/** The HTTP status of a cache error, by its stable code (so errors of another copy of the package map too). */
const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  E_INVALID_INPUT: 400,
  E_SOURCE_UNAVAILABLE: 503,
  E_READ_TIMEOUT: 503,
  E_STORE_UNAVAILABLE: 503,
  E_LOCK_TIMEOUT: 503,
  E_CLOSED: 503,
  E_WAIT_TIMEOUT: 503,
}

function errorAnswer(err: unknown): { status: number; code: string; message: string; headers: Record<string, string> } {
  if (err instanceof HttpError)
    return { status: err.status, code: err.code, message: err.message, headers: err.headers }
  const code = (err as { code?: unknown } | null)?.code
  if (
    err instanceof StockcastError ||
    (err instanceof Error && typeof code === 'string' && Object.hasOwn(errors, code))
  ) {
    const c = code as string
    return { status: STATUS_BY_CODE[c] ?? 500, code: c, message: err.message, headers: {} }
  }
  // A foreign error (a driver's, a bug): its message may carry internals, so only its kind is told.
  return { status: 500, code: 'E_INTERNAL', message: 'internal error', headers: {} }
}

function checkId(text: string, what: string): string {
  if (text === '') throw new InvalidInputError(`${what} is empty`)
  if (text.length > MAX_ID_LENGTH) {
    throw new InvalidInputError(`${what} is longer than ${MAX_ID_LENGTH} characters (${text.length})`)
  }
  if (!isWellFormedText(text)) throw new InvalidInputError(`${what} has an unpaired surrogate`)
  if (CONTROL.test(text)) throw new InvalidInputError(`${what} ${JSON.stringify(text)} has a control character`)
  return text
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new InvalidInputError(`product id ${JSON.stringify(segment)} is not valid percent-encoded UTF-8`)
  }
}

function summary(p: StockProjection): StockSummary {
  return {
    product: p.product,
    location: p.location,
    today: p.today,
    stockToday: p.stockToday,
    minClosing7d: p.minClosing7d,
    firstStockoutDate: p.firstStockoutDate,
    status: p.status,
    stale: p.stale,
    computedAt: p.computedAt,
  }
}

const ratio = (hits: number, misses: number): number | null => (hits + misses === 0 ? null : hits / (hits + misses))

function checkOptions(
  options: HttpHandlerOptions,
): Required<Omit<HttpHandlerOptions, 'authorize' | 'unmatched'>> & Pick<HttpHandlerOptions, 'authorize' | 'unmatched'> {
  if (options === null || typeof options !== 'object') {
    throw new ConfigError('createHttpHandler: options must be an object with a cache')
  }
  const cache = options.cache as Partial<StockCache> | undefined
  if (
    cache === null ||
    typeof cache !== 'object' ||
    !['get', 'list', 'status', 'metrics', 'refresh'].every((m) => typeof cache[m as keyof StockCache] === 'function')
  ) {
    throw new ConfigError('createHttpHandler: cache must be a StockCache (with get, list, status, metrics, refresh)', {
      option: 'cache',
    })
  }
  if (options.authorize !== undefined && typeof options.authorize !== 'function') {
    throw new ConfigError('createHttpHandler: authorize must be a function (req, action) => boolean', {
      option: 'authorize',
    })
  }
  let basePath = options.basePath ?? ''
  if (typeof basePath !== 'string' || (basePath !== '' && !basePath.startsWith('/')) || /[?#]/.test(basePath)) {
    throw new ConfigError(
      `createHttpHandler: basePath must be '' or a path starting with '/', got ${JSON.stringify(basePath)}`,
      { option: 'basePath' },
    )
  }
  basePath = basePath.replace(/\/+$/, '')
  if (options.metrics !== undefined && typeof options.metrics !== 'function') {
    throw new ConfigError('createHttpHandler: metrics must be a function returning the Prometheus text', {
      option: 'metrics',
    })
  }
  const dashboard = options.dashboard ?? true
  if (typeof dashboard !== 'boolean') {
    throw new ConfigError('createHttpHandler: dashboard must be a boolean', { option: 'dashboard' })
  }
  const listLimit = options.listLimit ?? 50
  if (!Number.isInteger(listLimit) || listLimit < 1 || listLimit > MAX_LIST_LIMIT) {
    throw new ConfigError(`createHttpHandler: listLimit must be an integer from 1 to ${MAX_LIST_LIMIT}`, {
      option: 'listLimit',
    })
  }
  if (options.unmatched !== undefined && options.unmatched !== 'next' && options.unmatched !== '404') {
    throw new ConfigError(`createHttpHandler: unmatched must be 'next' or '404'`, { option: 'unmatched' })
  }
  const c = options.cache
  return {
    cache: c,
    authorize: options.authorize,
    basePath,
    metrics: options.metrics ?? (() => prometheusText(c)),
    dashboard,
    listLimit,
    unmatched: options.unmatched,
  }
}

/** A matched route: the methods it takes and what it does. */
interface Route {
  allow: typeof GET | typeof POST
  run(): Promise<Answer>
}

interface Answer {
  status?: number
  type: string
  body: string | Buffer
  headers?: Record<string, string>
}

const json = (value: unknown, status = 200): Answer => ({ status, type: JSON_TYPE, body: JSON.stringify(value) })

/**
 * An HTTP handler over a cache: JSON reads of projections, a status and a Prometheus endpoint, and a dashboard page.
 * Read-only unless `authorize` is given. It only calls the cache's methods (no SQL is built from request text);
 * product ids come URL-decoded from the path and are checked (a bad one is a 400 with `E_INVALID_INPUT`).
 *
 * Routes (under `basePath`): `GET /` (the dashboard; also `/index.html`, `/assets/uplot.js`, `/assets/uplot.css`),
 * `GET /stock?status=CRITICAL,ATTENTION&limit=&cursor=&location=` (a page of `cache.list()`),
 * `GET /stock/:product` (a summary), `GET /stock/:product/projection` (the whole projection),
 * `GET /stock/:product/available?qty=&rule=promise|point&includePending=true`, `POST /stock/:product/refresh`,
 * `GET /cache/status` (status, metrics and hit ratios), `GET /metrics` (Prometheus text). `?location=` selects a
 * location on the product routes. HEAD works wherever GET does; another method on a route is a 405 with `allow`.
 *
 * Errors are JSON `{ "error": { "code", "message" } }`: the cache's codes (400 for `E_INVALID_INPUT`; 503 for
 * `E_SOURCE_UNAVAILABLE`, `E_READ_TIMEOUT`, `E_STORE_UNAVAILABLE`, `E_LOCK_TIMEOUT`, `E_CLOSED`, `E_WAIT_TIMEOUT`; 500 for
 * others),
 * and `E_NOT_FOUND` 404, `E_METHOD_NOT_ALLOWED` 405, `E_UNAUTHORIZED` 401, `E_REFRESH_DISABLED` 403,
 * `E_INTERNAL` 500 (an error that is not stockcast's; its message is not shown). Never a stack.
 *
 * @throws ConfigError for a bad option (a cache without get/list/status/metrics/refresh).
 * @example
 * ```ts
 * // node:http
 * http.createServer(createHttpHandler({ cache })).listen(8080)
 * // node:http under a prefix, with refresh allowed for a token
 * const handler = createHttpHandler({ cache, basePath: '/stock-api',
 *   authorize: (req) => req.headers.authorization === `Bearer ${process.env.OPS_TOKEN}` })
 * // Express (it strips the mount path from req.url; unmatched requests go to next())
 * app.use('/stock-api', createHttpHandler({ cache }))
 * // Fastify
 * const h = createHttpHandler({ cache, basePath: '/stock-api' })
 * fastify.all('/stock-api', async (request, reply) => { reply.hijack(); await h(request.raw, reply.raw) })
 * fastify.all('/stock-api/*', async (request, reply) => { reply.hijack(); await h(request.raw, reply.raw) })
 * ```
 */
export function createHttpHandler(options: HttpHandlerOptions): StockcastHttpHandler {
  const { cache, authorize, basePath, metrics, dashboard, listLimit, unmatched } = checkOptions(options)

  const location = (query: URLSearchParams): string | null => {
    const v = query.get('location')
    return v === null ? null : checkId(v, 'location')
  }

  const asset = (name: UplotAsset, type: string): Route => ({
    allow: GET,
    async run() {
      const bytes = uplotAsset(name)
      if (bytes === undefined)
        throw new HttpError(404, 'E_NOT_FOUND', 'uPlot is not installed (optional dependency uplot)')
      return { type, body: await bytes, headers: { 'cache-control': 'public, max-age=86400' } }
    },
  })

  /** The route of a path below `basePath` (null: not one of ours). */
  const route = (rest: string, query: URLSearchParams, req: IncomingMessage): Route | null => {
    const seg = rest.split('/').slice(1)
    const [a, b, c] = seg
    if (dashboard && seg.length === 1 && (a === '' || a === 'index.html')) {
      return {
        allow: GET,
        async run() {
          return {
            type: 'text/html; charset=utf-8',
            body: dashboardHtml(),
            headers: { 'content-security-policy': DASHBOARD_CSP, 'referrer-policy': 'no-referrer' },
          }
        },
      }
    }
    if (dashboard && seg.length === 2 && a === 'assets') {
      if (b === 'uplot.js') return asset('uplot.js', 'text/javascript; charset=utf-8')
      if (b === 'uplot.css') return asset('uplot.css', 'text/css; charset=utf-8')
      return null
    }
    if (seg.length === 1 && a === 'metrics') {
      return {
        allow: GET,
        async run() {
          return { type: PROMETHEUS_CONTENT_TYPE, body: await metrics() }
        },
      }
    }
    if (seg.length === 2 && a === 'cache' && b === 'status') {
      return {
        allow: GET,
        async run() {
          const m = cache.metrics()
          return json({
            status: cache.status(),
            metrics: m,
            hitRatio: { l1: ratio(m.l1Hits, m.l1Misses), l2: ratio(m.l2Hits, m.l2Misses) },
          })
        },
      }
    }
    if (a !== 'stock') return null
    if (seg.length === 1) {
      return {
        allow: GET,
        async run() {
          const status = query.get('status')
          const limit = query.get('limit')
          const cursor = query.get('cursor')
          if (limit !== null && !(INTEGER.test(limit) && Number(limit) >= 1 && Number(limit) <= MAX_LIST_LIMIT)) {
            throw new InvalidInputError(
              `limit must be an integer from 1 to ${MAX_LIST_LIMIT}, got ${JSON.stringify(limit)}`,
            )
          }
          const statuses = status === null ? undefined : status.split(',').map((s) => s.trim())
          if (statuses?.some((s) => !STATUSES.includes(s))) {
            throw new InvalidInputError(
              `status must be a comma-separated list of ${STATUSES.join(', ')}, got ${JSON.stringify(status)}`,
            )
          }
          const page = await cache.list({
            ...(statuses === undefined ? {} : { status: statuses as StockStatus[] }),
            limit: limit === null ? listLimit : Number(limit),
            ...(cursor === null ? {} : { cursor }),
            location: location(query),
          })
          return json({ items: page.items.map(summary), cursor: page.cursor, source: page.source })
        },
      }
    }
    if (seg.length > 3 || b === undefined) return null
    const action = c ?? ''
    if (action !== '' && action !== 'projection' && action !== 'available' && action !== 'refresh') return null
    const product = (): string => checkId(decodeSegment(b), 'product id')
    if (action === 'refresh') {
      return {
        allow: POST,
        async run() {
          const id = product()
          const where = location(query)
          if (authorize === undefined) {
            throw new HttpError(
              403,
              'E_REFRESH_DISABLED',
              'refresh is disabled: pass an `authorize` hook to createHttpHandler to allow it',
            )
          }
          if ((await authorize(req, 'refresh')) !== true) {
            throw new HttpError(401, 'E_UNAUTHORIZED', 'not authorized to refresh', {
              'www-authenticate': 'Bearer realm="stockcast"',
            })
          }
          return json(summary(await cache.refresh(id, where)))
        },
      }
    }
    return {
      allow: GET,
      async run() {
        const id = product()
        const where = location(query)
        if (action === 'available') {
          const qty = query.get('qty')
          if (qty === null || !DECIMAL.test(qty)) {
            throw new InvalidInputError(`qty must be a decimal string such as 12 or 12.5, got ${JSON.stringify(qty)}`)
          }
          const rule = query.get('rule') ?? 'promise'
          if (rule !== 'promise' && rule !== 'point') {
            throw new InvalidInputError(`rule must be promise or point, got ${JSON.stringify(rule)}`)
          }
          const pending = query.get('includePending') ?? 'false'
          if (pending !== 'true' && pending !== 'false') {
            throw new InvalidInputError(`includePending must be true or false, got ${JSON.stringify(pending)}`)
          }
          const p = await cache.get(id, { location: where })
          const includePending = pending === 'true'
          const a = availabilityDate(p, qty, { rule: rule as AvailabilityRule, includePending })
          return json({
            product: p.product,
            location: p.location,
            qty,
            rule: a.rule,
            includePending,
            date: a.date,
            dayIndex: a.dayIndex,
            reason: a.reason,
            today: p.today,
            stale: p.stale,
          })
        }
        const p = await cache.get(id, { location: where })
        return json(action === 'projection' ? p : summary(p))
      },
    }
  }

  const send = (req: IncomingMessage, res: ServerResponse, a: Answer): void => {
    const body = typeof a.body === 'string' ? Buffer.from(a.body) : a.body
    res.statusCode = a.status ?? 200
    res.setHeader('content-type', a.type)
    res.setHeader('content-length', body.length)
    res.setHeader('x-content-type-options', 'nosniff')
    if (a.headers?.['cache-control'] === undefined) res.setHeader('cache-control', 'no-store')
    for (const [k, v] of Object.entries(a.headers ?? {})) res.setHeader(k, v)
    if (req.method === 'HEAD') res.end()
    else res.end(body)
  }

  const fail = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
    const e = errorAnswer(err)
    send(req, res, { ...json({ error: { code: e.code, message: e.message } }, e.status), headers: e.headers })
  }

  return async function stockcastHttpHandler(req, res, next) {
    try {
      const url = req.url ?? '/'
      const q = url.indexOf('?')
      const path = q < 0 ? url : url.slice(0, q)
      const search = q < 0 ? '' : url.slice(q)
      const query = new URLSearchParams(search)
      let rest: string | null = null
      if (path.startsWith('/')) {
        if (basePath === '') rest = path
        else if (path === basePath || path.startsWith(`${basePath}/`)) rest = path.slice(basePath.length)
      }
      const r = rest === null ? null : route(rest === '' ? '/' : rest, query, req)
      if (r === null) {
        if (next !== undefined && unmatched !== '404') {
          next()
          return
        }
        throw new HttpError(404, 'E_NOT_FOUND', `no route for ${req.method ?? 'GET'} ${path}`)
      }
      const method = req.method ?? 'GET'
      if (!r.allow.split(', ').includes(method)) {
        throw new HttpError(405, 'E_METHOD_NOT_ALLOWED', `${method} is not allowed here (allowed: ${r.allow})`, {
          allow: r.allow,
        })
      }
      if (dashboard && (rest === '' || rest === '/') && !originalPath(req).endsWith('/')) {
        // The page's URLs are relative: without the trailing slash they would resolve one level up.
        const original = originalPath(req)
        res.statusCode = 308
        res.setHeader('location', `${original.slice(original.lastIndexOf('/') + 1) || '.'}/${search}`)
        res.setHeader('cache-control', 'no-store')
        res.end()
        return
      }
      send(req, res, await r.run())
    } catch (err) {
      if (res.headersSent) {
        res.destroy(err instanceof Error ? err : undefined)
        return
      }
      fail(req, res, err)
    }
  }
}

/** The path the client asked for: Express keeps it in `originalUrl` when it strips a mount path from `url`. */
function originalPath(req: IncomingMessage): string {
  const url = (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? '/'
  const q = url.indexOf('?')
  return q < 0 ? url : url.slice(0, q)
}
