import { createHash, createHmac, randomUUID } from 'node:crypto'
import type { StockProjection } from '../cache/types.js'
import { ConfigError } from '../errors.js'
import type { StockStatus } from '../projection/types.js'
import type { TransitionEvent, TransitionKind, UpdatedEvent } from '../stock/stock-events.js'
import type { StockCache } from '../stock/types.js'
import { backoffDelay } from '../util/backoff.js'
import { type Clock, defaultTimers, type Timers } from '../util/timers.js'
import { type DeliveredState, memoryWebhookState, type WebhookStateStore } from './webhook-state.js'

/** The JSON body of one delivery (a POST). */
export interface WebhookPayload {
  /** Stable for the same key and transition: the `idempotency-key` header too, so receivers can drop duplicates. */
  id: string
  kind: TransitionKind
  /** The cache key: the product, or product + U+001F + location. */
  key: string
  product: string
  location: string | null
  status: StockStatus
  firstStockoutDate: string | null
  stockToday: number
  minClosing7d: number
  /** D0 of the projection. */
  today: string
  /** Epoch ms when the projection was computed. */
  computedAt: number
  /** Epoch ms when the delivery saw the transition. */
  at: number
}

/** What `onDelivered` receives. */
export interface WebhookDelivered {
  payload: WebhookPayload
  /** Attempts it took (1 when the first one succeeded). */
  attempts: number
  /** The HTTP status of the answer (2xx). */
  status: number
}

/** What `onFailed` receives. */
export interface WebhookFailed {
  payload: WebhookPayload
  attempts: number
  /** The last HTTP status, when the receiver answered. */
  status?: number
  error: Error
}

/** The last error a delivery met (an attempt, or the state store). */
export interface WebhookError {
  message: string
  /** Epoch ms. */
  at: number
  key?: string
  kind?: TransitionKind
  /** The HTTP status, when a receiver answered. */
  status?: number
}

export interface WebhookStatus {
  /** Deliveries waiting: not yet attempted, or waiting for a retry. */
  queued: number
  /** Attempts (HTTP requests) in progress. */
  inFlight: number
  /** Deliveries a receiver answered with 2xx. */
  delivered: number
  /** Deliveries given up (a 4xx other than 408/429, or every retry failed). */
  failed: number
  /** Attempts after a first one (every retry of every delivery). */
  retries: number
  lastError?: WebhookError
}

/** The fetch this helper calls, typed by the members it uses (the global `fetch` fits). */
export type WebhookFetch = (
  url: string,
  init: { method: 'POST'; headers: Record<string, string>; body: string; signal: AbortSignal; redirect: 'manual' },
) => Promise<{
  status: number
  headers: { get(name: string): string | null }
  body?: { cancel(): Promise<void> } | null
}>

export interface WebhookDeliveryOptions {
  /** Where to POST each transition: an `http:` or `https:` URL. */
  url: string
  /** The transitions to send; the others only update the delivered state. @default all four */
  kinds?: readonly TransitionKind[]
  /** Extra request headers (`authorization`, ...); they cannot replace the helper's own. @default none */
  headers?: Record<string, string>
  /** Sign each body: `x-stockcast-signature: sha256=<hex HMAC-SHA256 of the body with this secret>`. @default none */
  secret?: string
  /**
   * Where each key's last delivered state is kept. The default memory state forgets it on restart: a restarted
   * process compares each key with the `initial` baseline again and may re-send what a receiver already has. Pass
   * `fileWebhookState(path)` or `sqlWebhookState(db)` (@stockcast/sql) to avoid that.
   * @default memoryWebhookState()
   */
  state?: WebhookStateStore
  /**
   * A key seen for the first time with no saved state: `'baseline'` compares it with "not out, not critical", so a
   * key already out of stock or CRITICAL sends `stockout` / `critical` once; `'quiet'` takes the state before the
   * change that brought the key (the value the cache held) as delivered, or the current state when there was none
   * (its first computation after a start), so only changes from now on are sent (for adopting webhooks on a running
   * system without a burst of old news).
   * @default 'baseline'
   */
  initial?: 'baseline' | 'quiet'
  /** Retries after a failed first attempt (5xx, 408, 429, network errors and timeouts). @default 8 */
  retries?: number
  /** The first retry's delay, doubled per retry (`backoffDelay`). @default 500 */
  backoffMs?: number
  /** Cap of every retry delay, `retry-after` included. @default 60_000 */
  maxBackoffMs?: number
  /** Each attempt is aborted after this many ms (and retried). @default 10_000 */
  timeoutMs?: number
  /** Attempts in flight at once, over all keys (one key's deliveries are always sent one at a time, in order). @default 4 */
  concurrency?: number
  /** Runs retry delays and attempt timeouts. @default defaultTimers */
  timers?: Timers
  /** Where `at` and state times come from. @default Date */
  clock?: Clock
  /** The HTTP client. @default globalThis.fetch */
  fetch?: WebhookFetch
  /** Called after each delivery a receiver accepted (errors it throws are ignored). @default none */
  onDelivered?: (d: WebhookDelivered) => void
  /**
   * Called when a delivery is given up. The key's later queued deliveries are dropped with it and its delivered
   * state is left as it was: the key's next change compares again and re-sends (errors it throws are ignored).
   * @default none
   */
  onFailed?: (f: WebhookFailed) => void
}

/** A running delivery (`createWebhookDelivery`). */
export interface WebhookDelivery {
  /**
   * Stop taking events and unsubscribe, cancel waiting retries (those deliveries stay undelivered: they are sent
   * after a restart), wait for attempts in flight (each ends within `timeoutMs`) and the last state writes, then
   * close the state store. `cache.close()` calls it after its last flush, once what is queued went out or `timeoutMs`
   * passed.
   */
  stop(): Promise<void>
  /** Resolve once nothing is queued, in flight or unsaved (after `stop()`: once the in-flight work ended). */
  drain(): Promise<void>
  status(): WebhookStatus
}

const KINDS: readonly TransitionKind[] = ['stockout', 'stockout-cleared', 'critical', 'critical-cleared']
/** Keys per `state.get` call. */
const LOAD_BATCH = 500

/** One step of a key's queue: a transition to send, or (for a kind not sent) only a new delivered state. */
interface Step {
  kind: TransitionKind
  send: boolean
  /** The key's delivered state once this step is done. */
  after: DeliveredState
  payload: WebhookPayload
}

/** Everything the delivery knows about one key. */
interface Lane {
  key: string
  /** The newest projection not yet compared. */
  latest: StockProjection | undefined
  /** The state store was read for this key. */
  loaded: boolean
  /** The last delivered state (undefined: none saved and none chosen yet). */
  delivered: DeliveredState | undefined
  /** `delivered` is a baseline chosen here, not yet saved: save it before the first send (so ids survive restarts). */
  baseline: boolean
  queue: Step[]
  running: boolean
  /** Waiting for a load or a retry of one. */
  loading: boolean
  /** The value the cache held before the first change seen for the key (the `quiet` baseline), if any. */
  previous: StockProjection | undefined
}

type Outcome =
  | { ok: true; status: number }
  | { ok: false; retry: boolean; status?: number; retryAfterMs?: number; error: Error }

const isInt = (x: unknown, min: number): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= min
const isMs = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0

/** A saved state read back from a store; anything else is treated as no state (the key is compared afresh). */
function isDeliveredState(s: unknown): s is DeliveredState {
  if (s === null || typeof s !== 'object') return false
  const d = s as Partial<DeliveredState>
  return (
    typeof d.out === 'boolean' &&
    typeof d.critical === 'boolean' &&
    (d.status === 'OK' || d.status === 'ATTENTION' || d.status === 'CRITICAL') &&
    isInt(d.seq, 0) &&
    typeof d.epoch === 'string' &&
    (d.date === undefined || d.date === null || typeof d.date === 'string')
  )
}

/** `retry-after` as ms: delay-seconds or an HTTP date; undefined when absent or unreadable. */
function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null) return undefined
  const v = value.trim()
  if (/^\d+$/.test(v)) return Number(v) * 1000
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

function checkOptions(cache: StockCache, o: WebhookDeliveryOptions): void {
  const bad = (option: string, message: string) => new ConfigError(`createWebhookDelivery: ${message}`, { option })
  if (
    cache === null ||
    typeof cache !== 'object' ||
    typeof cache.on !== 'function' ||
    typeof cache.off !== 'function' ||
    typeof cache.onClose !== 'function'
  )
    throw bad('cache', 'cache must be a StockCache (createStockCache)')
  if (o === null || typeof o !== 'object') throw bad('options', 'options must be an object with a url')
  let url: URL | undefined
  try {
    url = typeof o.url === 'string' ? new URL(o.url) : undefined
  } catch {}
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:'))
    throw bad('url', `url must be an http: or https: URL, got ${JSON.stringify(o.url)}`)
  if (o.kinds !== undefined) {
    if (!Array.isArray(o.kinds) || o.kinds.length === 0)
      throw bad('kinds', `kinds must be a non-empty array of ${KINDS.join(', ')}`)
    for (const k of o.kinds)
      if (!KINDS.includes(k)) throw bad('kinds', `unknown kind ${JSON.stringify(k)} (one of ${KINDS.join(', ')})`)
  }
  if (o.headers !== undefined) {
    if (o.headers === null || typeof o.headers !== 'object' || Array.isArray(o.headers))
      throw bad('headers', 'headers must be an object of strings')
    for (const [k, v] of Object.entries(o.headers))
      if (typeof v !== 'string') throw bad('headers', `header ${JSON.stringify(k)} must be a string`)
  }
  if (o.secret !== undefined && (typeof o.secret !== 'string' || o.secret === ''))
    throw bad('secret', 'secret must be a non-empty string')
  if (o.state !== undefined && (typeof o.state?.get !== 'function' || typeof o.state.set !== 'function'))
    throw bad('state', 'state must be a WebhookStateStore (get and set)')
  if (o.initial !== undefined && o.initial !== 'baseline' && o.initial !== 'quiet')
    throw bad('initial', `initial must be 'baseline' or 'quiet', got ${JSON.stringify(o.initial)}`)
  if (o.retries !== undefined && !isInt(o.retries, 0))
    throw bad('retries', `retries must be an integer >= 0, got ${o.retries}`)
  if (o.backoffMs !== undefined && !isMs(o.backoffMs))
    throw bad('backoffMs', `backoffMs must be a number of ms >= 0, got ${o.backoffMs}`)
  if (o.maxBackoffMs !== undefined && !isMs(o.maxBackoffMs))
    throw bad('maxBackoffMs', `maxBackoffMs must be a number of ms >= 0, got ${o.maxBackoffMs}`)
  if (o.timeoutMs !== undefined && !(isMs(o.timeoutMs) && o.timeoutMs > 0))
    throw bad('timeoutMs', `timeoutMs must be a number of ms > 0, got ${o.timeoutMs}`)
  if (o.concurrency !== undefined && !isInt(o.concurrency, 1))
    throw bad('concurrency', `concurrency must be an integer >= 1, got ${o.concurrency}`)
  if (
    o.timers !== undefined &&
    (typeof o.timers?.setTimeout !== 'function' || typeof o.timers.clearTimeout !== 'function')
  )
    throw bad('timers', 'timers must have setTimeout(fn, ms) and clearTimeout(handle)')
  if (o.clock !== undefined && typeof o.clock?.now !== 'function') throw bad('clock', 'clock must have now()')
  if (o.fetch !== undefined && typeof o.fetch !== 'function') throw bad('fetch', 'fetch must be a function')
  if (o.fetch === undefined && typeof globalThis.fetch !== 'function')
    throw bad('fetch', 'this runtime has no global fetch: pass options.fetch')
  if (o.onDelivered !== undefined && typeof o.onDelivered !== 'function')
    throw bad('onDelivered', 'onDelivered must be a function')
  if (o.onFailed !== undefined && typeof o.onFailed !== 'function') throw bad('onFailed', 'onFailed must be a function')
}

/**
 * POST the cache's stock-out and CRITICAL transitions to a URL, at least once, in order per key, with retries.
 *
 * Level-triggered: each key's last *delivered* state (out of stock? CRITICAL?) is kept in `state`. Every `updated`
 * event (the first value an instance computes for a key included) and every `transition` event is compared with it
 * (and with the deliveries already queued), and the differences are queued: `stockout` / `stockout-cleared` first,
 * then `critical` / `critical-cleared`. A 2xx answer saves the new delivered state. So a transition that happened
 * while the process was down, or that was sent but not saved when it crashed, is sent once the key is computed
 * again after the restart (`cache.rebuildAll()` computes every key), and a transition already saved is never sent
 * again. A key that flips back before its delivery sends both (out, then cleared). Keys are compared only when the
 * cache computes them: a key whose delivery failed is sent again on its next change, and events emitted before the
 * delivery was created are not seen (create it before the first reads). Each key's delivered state, once read, is
 * kept in memory (a small object per key). One delivery per state store: two processes sharing one would both send
 * (the receiver can drop the copies by `id`).
 *
 * Each delivery is a JSON `WebhookPayload` with headers `content-type: application/json`, `idempotency-key: <id>`,
 * `x-stockcast-kind: <kind>` and, with `secret`, `x-stockcast-signature: sha256=<hex>`. The id is derived from the
 * key, its state's epoch and the delivery's sequence number: retries and re-sends after a restart carry the same id.
 * 2xx is delivered; 5xx, 408, 429, network errors and timeouts are retried (honouring `retry-after`, capped by
 * `maxBackoffMs`); any other answer fails the delivery at once (`onFailed`).
 *
 * @example
 * ```ts
 * const hooks = createWebhookDelivery(cache, {
 *   url: 'https://erp.example.com/hooks/stock',
 *   secret: process.env.WEBHOOK_SECRET,
 *   state: fileWebhookState('./webhooks-state.json'),
 * })
 * // on shutdown: cache.close() stops it too (hooks.stop() stops it alone)
 * await cache.close()
 * ```
 */
export function createWebhookDelivery(cache: StockCache, options: WebhookDeliveryOptions): WebhookDelivery {
  checkOptions(cache, options)
  const url = options.url
  const kinds = new Set<TransitionKind>(options.kinds ?? KINDS)
  const extraHeaders = { ...(options.headers ?? {}) }
  const secret = options.secret
  const state = options.state ?? memoryWebhookState()
  const initial = options.initial ?? 'baseline'
  const retries = options.retries ?? 8
  const backoffMs = options.backoffMs ?? 500
  const maxBackoffMs = options.maxBackoffMs ?? 60_000
  const timeoutMs = options.timeoutMs ?? 10_000
  const concurrency = options.concurrency ?? 4
  const timers = options.timers ?? defaultTimers
  const clock = options.clock ?? Date
  const fetchFn: WebhookFetch = options.fetch ?? ((u, init) => globalThis.fetch(u, init))
  const onDelivered = options.onDelivered
  const onFailed = options.onFailed

  const lanes = new Map<string, Lane>()
  let stopped = false
  let inFlight = 0
  let delivered = 0
  let failed = 0
  let retried = 0
  let lastError: WebhookError | undefined
  /** Lanes with work (loading, queued or running): drain() waits for none. */
  const busy = new Set<Lane>()
  const idleWaiters: Array<() => void> = []
  /** Waits for a retry delay: stop() ends them early. */
  const sleeping = new Map<unknown, () => void>()
  /** Attempts waiting for a free slot (`concurrency`). */
  const slotWaiters: Array<() => void> = []
  /** Lanes' run loops in progress, for stop(). */
  const runs = new Set<Promise<void>>()

  const now = () => clock.now()
  const noteError = (message: string, extra: Omit<WebhookError, 'message' | 'at'> = {}) => {
    lastError = { message, at: now(), ...extra }
  }

  // --- idle tracking ---------------------------------------------------------------------------------------------
  const isIdle = () => busy.size === 0 && toSave.size === 0 && saving === undefined && toLoad.size === 0
  const checkIdle = () => {
    if (!isIdle()) return
    for (const w of idleWaiters.splice(0)) w()
  }
  const settleLane = (lane: Lane) => {
    if (!lane.loading && !lane.running && lane.queue.length === 0) busy.delete(lane)
    else busy.add(lane)
    checkIdle()
  }

  /** Wait `ms` on `timers`; resolves early (false) when stop() runs. */
  const sleep = (ms: number): Promise<boolean> =>
    new Promise<boolean>((resolve) => {
      if (stopped) return resolve(false)
      const handle = timers.setTimeout(() => {
        sleeping.delete(handle)
        resolve(!stopped)
      }, ms)
      sleeping.set(handle, () => {
        timers.clearTimeout(handle)
        resolve(false)
      })
    })

  // --- saving: group commit, retried with backoff ---------------------------------------------------------------
  const toSave = new Map<string, DeliveredState>()
  let saving: Promise<void> | undefined
  let saveFailures = 0
  /** Save these states soon: one `state.set` for everything saved while the previous write ran. */
  const save = (key: string, s: DeliveredState) => {
    toSave.set(key, s)
    saving ??= flushSaves()
  }
  const flushSaves = async (): Promise<void> => {
    await Promise.resolve() // the states of one event burst go in one write
    while (toSave.size > 0) {
      const batch = new Map(toSave)
      toSave.clear()
      try {
        await state.set(batch)
        saveFailures = 0
      } catch (e) {
        // Keep them (a newer state of a key wins) and try again; the receiver already has them, so in this process
        // nothing is re-sent, and a crash before the write only re-sends (at least once).
        for (const [k, s] of batch) if (!toSave.has(k)) toSave.set(k, s)
        noteError(`webhook state: saving ${batch.size} key(s) failed: ${(e as Error).message}`)
        if (stopped || !(await sleep(backoffDelay(saveFailures++, backoffMs, maxBackoffMs)))) break
      }
    }
    saving = undefined
    checkIdle()
  }

  // --- loading: batched state reads ---------------------------------------------------------------------------------
  const toLoad = new Set<Lane>()
  let loadScheduled = false
  let loadFailures = 0
  const requestLoad = (lane: Lane) => {
    lane.loading = true
    busy.add(lane)
    toLoad.add(lane)
    if (loadScheduled) return
    loadScheduled = true
    queueMicrotask(() => {
      loadScheduled = false
      void loadNow()
    })
  }
  const loadNow = async (): Promise<void> => {
    const batch = [...toLoad].slice(0, LOAD_BATCH)
    for (const l of batch) toLoad.delete(l)
    if (toLoad.size > 0) {
      loadScheduled = true
      queueMicrotask(() => {
        loadScheduled = false
        void loadNow()
      })
    }
    let found: Map<string, DeliveredState>
    try {
      found = await state.get(batch.map((l) => l.key))
      loadFailures = 0
    } catch (e) {
      noteError(`webhook state: reading ${batch.length} key(s) failed: ${(e as Error).message}`)
      if (await sleep(backoffDelay(loadFailures++, backoffMs, maxBackoffMs))) for (const l of batch) requestLoad(l)
      else
        for (const l of batch) {
          l.loading = false
          settleLane(l)
        }
      return
    }
    for (const lane of batch) {
      lane.loading = false
      const s = found.get(lane.key)
      if (lane.delivered === undefined && isDeliveredState(s)) lane.delivered = { ...s }
      lane.loaded = true
      evaluate(lane)
      settleLane(lane)
    }
  }

  // --- comparing ----------------------------------------------------------------------------------------------------
  const payloadOf = (p: StockProjection, kind: TransitionKind, key: string, s: DeliveredState): WebhookPayload => ({
    id: createHash('sha256').update(`${key}\u0000${s.epoch}\u0000${s.seq}\u0000${kind}`).digest('hex').slice(0, 32),
    kind,
    key,
    product: p.product,
    location: p.location,
    status: p.status,
    firstStockoutDate: p.firstStockoutDate,
    stockToday: p.stockToday,
    minClosing7d: p.minClosing7d,
    today: p.today,
    computedAt: p.computedAt,
    at: now(),
  })

  /** Compare the lane's newest projection with its delivered state plus its queue; queue the differences. */
  const evaluate = (lane: Lane) => {
    const p = lane.latest
    if (p === undefined || stopped) return
    lane.latest = undefined
    const isOut = p.firstStockoutDate !== null
    const isCritical = p.status === 'CRITICAL'
    let base = lane.queue.at(-1)?.after ?? lane.delivered
    if (base === undefined) {
      const epoch = randomUUID()
      // Quiet: the receiver is taken to know the state before this change (the value the cache held), or, with no
      // such value (the first computation after a start), the current one.
      const known = lane.previous
      lane.previous = undefined
      if (initial === 'quiet' && known === undefined) {
        const s: DeliveredState = {
          out: isOut,
          critical: isCritical,
          date: p.firstStockoutDate,
          status: p.status,
          seq: 0,
          epoch,
          at: now(),
        }
        lane.delivered = s
        save(lane.key, s)
        return
      }
      base =
        initial === 'quiet' && known !== undefined
          ? {
              out: known.firstStockoutDate !== null,
              critical: known.status === 'CRITICAL',
              date: known.firstStockoutDate,
              status: known.status,
              seq: 0,
              epoch,
              at: now(),
            }
          : { out: false, critical: false, date: null, status: 'OK', seq: 0, epoch, at: now() }
      lane.delivered = base
      lane.baseline = true
    }
    const step = (kind: TransitionKind, change: Partial<DeliveredState>) => {
      const send = kinds.has(kind)
      const after: DeliveredState = {
        ...base!,
        ...change,
        status: p.status,
        seq: base!.seq + (send ? 1 : 0),
        at: now(),
      }
      lane.queue.push({ kind, send, after, payload: payloadOf(p, kind, lane.key, after) })
      base = after
    }
    if (base.out !== isOut) step(isOut ? 'stockout' : 'stockout-cleared', { out: isOut, date: p.firstStockoutDate })
    if (base.critical !== isCritical) step(isCritical ? 'critical' : 'critical-cleared', { critical: isCritical })
    if (lane.queue.length > 0 && !lane.running) {
      const r = run(lane).finally(() => runs.delete(r))
      runs.add(r)
    }
  }

  const onProjection = (key: string, projection: StockProjection, previous: StockProjection | undefined) => {
    if (stopped) return
    let lane = lanes.get(key)
    if (lane === undefined) {
      lane = {
        key,
        latest: undefined,
        loaded: false,
        delivered: undefined,
        baseline: false,
        queue: [],
        running: false,
        loading: false,
        previous,
      }
      lanes.set(key, lane)
    }
    lane.latest = projection
    if (lane.loaded) {
      evaluate(lane)
      settleLane(lane)
    } else if (!lane.loading) requestLoad(lane)
  }
  const onUpdated = (e: UpdatedEvent) => onProjection(e.key, e.projection, e.previous)
  const onTransition = (e: TransitionEvent) => onProjection(e.key, e.projection, e.previous)

  // --- sending ------------------------------------------------------------------------------------------------------
  const acquire = async (): Promise<void> => {
    if (inFlight < concurrency) {
      inFlight++
      return
    }
    await new Promise<void>((r) => slotWaiters.push(r))
  }
  /** Hand the slot to the next waiter (it keeps `inFlight` as is), or free it. */
  const release = () => {
    const next = slotWaiters.shift()
    if (next !== undefined) next()
    else inFlight--
  }

  const headersOf = (payload: WebhookPayload, body: string): Record<string, string> => {
    const h: Record<string, string> = {}
    const own = new Set(['content-type', 'idempotency-key', 'x-stockcast-kind', 'x-stockcast-signature'])
    for (const [k, v] of Object.entries(extraHeaders)) if (!own.has(k.toLowerCase())) h[k] = v
    h['content-type'] = 'application/json'
    h['idempotency-key'] = payload.id
    h['x-stockcast-kind'] = payload.kind
    if (secret !== undefined)
      h['x-stockcast-signature'] = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`
    return h
  }

  const attempt = async (headers: Record<string, string>, body: string): Promise<Outcome> => {
    const ac = new AbortController()
    const timer = timers.setTimeout(() => ac.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
    try {
      // Redirects are not followed (fetch would turn the POST into a GET): a 3xx fails the delivery.
      const res = await fetchFn(url, { method: 'POST', headers, body, signal: ac.signal, redirect: 'manual' })
      // The body is not read: cancel it so the connection is released.
      await res.body?.cancel().catch(() => {})
      const status = res.status
      if (status >= 200 && status < 300) return { ok: true, status }
      const retry = status >= 500 || status === 408 || status === 429
      const after = retry ? retryAfterMs(res.headers.get('retry-after'), now()) : undefined
      return {
        ok: false,
        retry,
        status,
        ...(after === undefined ? {} : { retryAfterMs: after }),
        error: new Error(`${url} answered ${status}`),
      }
    } catch (e) {
      const reason = ac.signal.aborted ? (ac.signal.reason as Error) : (e as Error)
      return { ok: false, retry: true, error: new Error(`POST ${url} failed: ${reason?.message ?? String(reason)}`) }
    } finally {
      timers.clearTimeout(timer)
    }
  }

  /** Send one step with its retries: true when delivered, false when given up, undefined when stop() cut it short. */
  const deliver = async (step: Step): Promise<boolean | undefined> => {
    const body = JSON.stringify(step.payload)
    const headers = headersOf(step.payload, body)
    for (let n = 0; ; n++) {
      if (stopped) return undefined
      if (n > 0) retried++
      await acquire()
      if (stopped) {
        release()
        return undefined
      }
      let out: Outcome
      try {
        out = await attempt(headers, body)
      } finally {
        release()
      }
      if (out.ok) {
        delivered++
        safely(() => onDelivered?.({ payload: step.payload, attempts: n + 1, status: out.status }))
        return true
      }
      noteError(out.error.message, {
        key: step.payload.key,
        kind: step.kind,
        ...(out.status === undefined ? {} : { status: out.status }),
      })
      if (!out.retry || n >= retries) {
        failed++
        safely(() =>
          onFailed?.({
            payload: step.payload,
            attempts: n + 1,
            ...(out.status === undefined ? {} : { status: out.status }),
            error: out.error,
          }),
        )
        return false
      }
      const wait = Math.min(out.retryAfterMs ?? backoffDelay(n, backoffMs, maxBackoffMs), maxBackoffMs)
      if (!(await sleep(wait))) return undefined
    }
  }

  /** Work through a lane's queue, one step at a time. */
  const run = async (lane: Lane): Promise<void> => {
    lane.running = true
    busy.add(lane)
    try {
      while (lane.queue.length > 0 && !stopped) {
        const step = lane.queue[0]!
        if (step.send && lane.baseline) {
          // Save the chosen baseline (its epoch) first, so a re-send after a crash carries the same id. If that
          // fails, send anyway: the delivery matters more than its id.
          lane.baseline = false
          try {
            await state.set(new Map([[lane.key, lane.delivered!]]))
          } catch (e) {
            noteError(`webhook state: saving ${JSON.stringify(lane.key)} failed: ${(e as Error).message}`)
          }
        }
        const ok = step.send ? await deliver(step) : true
        if (ok === undefined) break
        if (ok) {
          lane.queue.shift()
          lane.delivered = step.after
          lane.baseline = false
          save(lane.key, step.after)
        } else {
          // Given up: the rest would reach the receiver out of order. The delivered state stays; the key's next
          // change is compared with it and queues what is still different.
          lane.queue.length = 0
        }
      }
    } finally {
      lane.running = false
      settleLane(lane)
    }
  }

  cache.on('updated', onUpdated)
  cache.on('transition', onTransition)

  let stopping: Promise<void> | undefined
  // cache.close() stops the delivery too (after its last flush, so the transitions it computed are queued first).
  let unregister: (() => void) | undefined
  const api: WebhookDelivery = {
    stop() {
      stopping ??= (async () => {
        stopped = true
        unregister?.()
        cache.off('updated', onUpdated)
        cache.off('transition', onTransition)
        for (const wake of [...sleeping.values()]) wake()
        sleeping.clear()
        for (const w of slotWaiters.splice(0)) {
          inFlight++ // each waiter releases the slot it is handed
          w()
        }
        // Each run loop ends after its attempt in flight (bounded by timeoutMs) and records what it delivered.
        while (runs.size > 0) await Promise.allSettled([...runs])
        for (const l of lanes.values()) {
          if (l.loading) {
            l.loading = false
            toLoad.delete(l)
            settleLane(l)
          }
        }
        // Saves still due (one more try each if the store failed).
        if (toSave.size > 0) saving ??= flushSaves()
        await saving
        if (toSave.size > 0) {
          const rest = new Map(toSave)
          toSave.clear()
          await state.set(rest).catch((e: Error) => noteError(`webhook state: final save failed: ${e.message}`))
        }
        await state.close?.()
        for (const w of idleWaiters.splice(0)) w()
      })()
      return stopping
    },

    drain() {
      if (isIdle() || (stopped && stopping !== undefined)) return stopping ?? Promise.resolve()
      return new Promise<void>((r) => idleWaiters.push(r))
    },

    status() {
      let queued = 0
      for (const l of busy) for (const s of l.queue) if (s.send) queued++
      return {
        queued: Math.max(0, queued - inFlight),
        inFlight,
        delivered,
        failed,
        retries: retried,
        ...(lastError === undefined ? {} : { lastError: { ...lastError } }),
      }
    },
  }
  // On close: what is queued gets up to `timeoutMs` to go out (a receiver that is down does not hold close() up longer;
  // the rest stays undelivered and is sent after a restart), then stop.
  unregister = cache.onClose(async () => {
    await new Promise<void>((resolve) => {
      const t = timers.setTimeout(resolve, timeoutMs)
      void api.drain().then(() => {
        timers.clearTimeout(t)
        resolve()
      })
    })
    await api.stop()
  })
  return api
}

/** Run a user callback; what it throws must not break the delivery. */
function safely(fn: () => void): void {
  try {
    fn()
  } catch {}
}
