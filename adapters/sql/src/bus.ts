import { randomBytes } from 'node:crypto'
import {
  type BusState,
  ConfigError,
  defaultTimers,
  type InvalidationBus,
  type InvalidationMessage,
  InvalidInputError,
  invalidationMessageOf,
  StockcastError,
  type Timers,
} from 'stockcast'
import type { SqlDb } from './types.js'

export interface SqlBusOptions {
  /**
   * The NOTIFY channel, a lowercase identifier of at most 63 bytes (instances of one cache share it).
   * @default 'stockcast_invalidate'
   */
  channel?: string
  /** Called with a notification on the channel that is not one of this bus's (bad JSON or shape); it is dropped. */
  onInvalid?: (text: string) => void
  /**
   * Runs the reconnect backoff of the LISTEN connection and the wait for the parts of a large message.
   * @default stockcast's `defaultTimers`
   */
  timers?: Timers
}

/** The bus `sqlBus` returns. */
export interface SqlBus extends InvalidationBus {
  readonly channel: string
}

/**
 * The largest payload this bus sends in one notification, in bytes: PostgreSQL refuses payloads of 8000 bytes or
 * more. A message with more products goes as several notifications of one statement (one transaction).
 */
export const NOTIFY_PAYLOAD_BYTES = 7900

const CHANNEL = /^[a-z_][a-z0-9_]*$/

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

const bytes = (text: string) => Buffer.byteLength(text, 'utf8')

/** A part of a message sent as several notifications: [publish id, index from 0, count]. */
type Part = [id: string, index: number, count: number]

/** The most parts a message is sent as (a bound on what a subscriber holds for a stray notification). */
const MAX_PARTS = 100_000

/** How long a subscriber waits for the missing parts of a message before handing on the parts it has. */
const ASSEMBLY_MS = 2000

function isPart(part: unknown): part is Part {
  return (
    Array.isArray(part) &&
    part.length === 3 &&
    typeof part[0] === 'string' &&
    Number.isSafeInteger(part[2]) &&
    part[2] >= 2 &&
    part[2] <= MAX_PARTS &&
    Number.isSafeInteger(part[1]) &&
    part[1] >= 0 &&
    part[1] < part[2]
  )
}

/** A notification's message (and its part, when it is one of several), or undefined when it is not a message. */
function parse(text: string): { message: InvalidationMessage; part?: Part } | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  const message = invalidationMessageOf(value)
  if (message === undefined) return undefined
  const part = (value as { part?: unknown }).part
  // Every part is a valid message on its own: one with a part this bus does not know goes on alone.
  return isPart(part) ? { message, part } : { message }
}

/**
 * `message` as JSON payloads of at most `limit` bytes. One payload when it fits; else parts, each a valid message
 * with the same version and origin and some of the products, plus `part: [id, index, count]` so that subscribers
 * hand on the message whole. `tooLong` lists the products that do not fit in a payload even alone (they are left
 * out).
 */
export function notifyPayloads(
  message: InvalidationMessage,
  limit = NOTIFY_PAYLOAD_BYTES,
): { payloads: string[]; tooLong: string[] } {
  const { version, origin } = message
  const whole = JSON.stringify({ products: message.products, version, origin })
  if (bytes(whole) <= limit) return { payloads: [whole], tooLong: [] }
  const id = randomBytes(6).toString('base64url')
  const payload = (products: string[], part?: Part) =>
    JSON.stringify(part === undefined ? { products, version, origin } : { products, version, origin, part })
  // A part's size is that of an empty one (with the widest part numbers), plus each product's JSON, plus a comma
  // between two.
  const base = bytes(payload([], [id, MAX_PARTS, MAX_PARTS]))
  const chunks: string[][] = []
  const tooLong: string[] = []
  let chunk: string[] = []
  let size = base
  for (const p of message.products) {
    const n = bytes(JSON.stringify(p))
    if (base + n > limit) {
      tooLong.push(p)
      continue
    }
    const more = chunk.length === 0 ? n : n + 1
    if (size + more > limit) {
      chunks.push(chunk)
      chunk = [p]
      size = base + n
    } else {
      chunk.push(p)
      size += more
    }
  }
  if (chunk.length > 0) chunks.push(chunk)
  if (chunks.length > MAX_PARTS) throw new InvalidInputError(`a message of ${chunks.length} parts is too large`)
  if (chunks.length <= 1) return { payloads: chunks.map((c) => payload(c)), tooLong }
  return { payloads: chunks.map((c, i) => payload(c, [id, i, chunks.length])), tooLong }
}

/**
 * An invalidation bus over PostgreSQL LISTEN/NOTIFY, for deployments without Redis (`fromPg`, `fromSequelize` on
 * postgres; PGlite within one process). `publish` sends `pg_notify(channel, message)`. A message too large for one
 * notification (PostgreSQL refuses payloads of 8000 bytes) goes as several of at most 7 900 bytes, in one statement
 * (one transaction: they are delivered together): each is a valid message (same version and origin, some of the
 * products) and carries `part: [id, index, count]`, so a subscriber hands the message on whole once every part has
 * arrived (or, should the rest never come, the parts it has after 2 s or when its connection is lost: each part is a
 * valid invalidation). A product id over ~7 800 bytes cannot be sent: `publish` sends the rest and rejects with an
 * `InvalidInputError` naming it.
 *
 * Each `subscribe` holds a connection of its own with `LISTEN` (`db.listen`), given back by the function it returns.
 * A lost LISTEN connection is replaced with backoff (100 ms doubling to 5 s); meanwhile the bus reports `degraded`
 * (as soon as the loss is seen) and `recovered` (once `LISTEN` holds again), and the cache serves nothing from L1 in
 * between. Notifications that are not a message (bad JSON or shape) are dropped (`onInvalid`).
 *
 * NOTIFY delivers at most once: a notification sent while a subscriber is not listening is lost, and that outage is
 * what `degraded` covers. MySQL/MariaDB have no LISTEN: a `ConfigError` (use another bus there).
 *
 * @example
 * ```ts
 * const db = fromPg(pool)
 * const cache = createStockCache({ schema, reader: sqlReader(db, schema), store: sqlStore(db), bus: sqlBus(db), lock: sqlLock(db) })
 * ```
 */
export function sqlBus(db: SqlDb, options: SqlBusOptions = {}): SqlBus {
  if (db === null || typeof db !== 'object' || typeof db.query !== 'function') {
    throw new ConfigError('sqlBus: db must be an SqlDb (fromPg or fromPGlite)', { option: 'db' })
  }
  if (options === null || typeof options !== 'object') throw new ConfigError('sqlBus: options must be an object')
  if (db.dialect !== 'postgres') {
    throw new ConfigError(
      `sqlBus: LISTEN/NOTIFY is PostgreSQL only, this db is ${JSON.stringify(db.dialect)} (${db.driver}); ` +
        'use another bus there (redisBus from @stockcast/redis)',
      { option: 'db' },
    )
  }
  if (typeof db.listen !== 'function') {
    throw new ConfigError(
      `sqlBus: this db (${db.driver}) cannot LISTEN; pass fromPg(pool) on the same database for the bus`,
      { option: 'db' },
    )
  }
  const channel = options.channel ?? 'stockcast_invalidate'
  if (typeof channel !== 'string' || !CHANNEL.test(channel) || bytes(channel) > 63) {
    throw new ConfigError(
      `sqlBus: channel must be a lowercase identifier (a-z, 0-9, _) of at most 63 bytes, got ${JSON.stringify(channel)}`,
      { option: 'channel' },
    )
  }
  if (options.onInvalid !== undefined && typeof options.onInvalid !== 'function') {
    throw new ConfigError('sqlBus: onInvalid must be a function', { option: 'onInvalid' })
  }
  const timers = options.timers
  if (timers !== undefined && (typeof timers?.setTimeout !== 'function' || typeof timers.clearTimeout !== 'function')) {
    throw new ConfigError('sqlBus: timers must be an object with setTimeout(fn, ms) and clearTimeout(handle)', {
      option: 'timers',
    })
  }
  const onInvalid = options.onInvalid
  const clock = timers ?? defaultTimers
  const listen = db.listen.bind(db)
  const where = `sqlBus(${channel})`

  return {
    channel,
    async publish(message) {
      if (invalidationMessageOf(message) === undefined) {
        throw new InvalidInputError(`${where}: publish takes { products: string[], version: number, origin: string }`)
      }
      const { payloads, tooLong } = notifyPayloads(message)
      if (payloads.length === 1) await db.query('SELECT pg_notify($1, $2)', [channel, payloads[0]])
      else if (payloads.length > 1) {
        // One statement, one transaction: the parts are delivered together at its commit.
        await db.query('SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p', [channel, payloads])
      }
      if (tooLong.length > 0) {
        const shown = tooLong.map((p) => JSON.stringify(p.length > 60 ? `${p.slice(0, 60)}…` : p)).join(', ')
        throw new InvalidInputError(
          `${where}: ${tooLong.length} product id(s) too long for a notification (over ${NOTIFY_PAYLOAD_BYTES} ` +
            `bytes as JSON with the message), not announced: ${shown}`,
          { productId: tooLong[0], products: tooLong },
        )
      }
    },

    async subscribe(handler, onState) {
      let stopped = false
      let down = false
      const report = (state: BusState, cause?: Error) => {
        try {
          onState?.(state, cause)
        } catch {
          // a listener's failure is not the bus's
        }
      }
      const deliver = (m: InvalidationMessage) => {
        try {
          handler(m)
        } catch {
          // a handler's failure is not the bus's
        }
      }
      // Messages sent as several parts, until every part has arrived (they come in one burst: one transaction).
      const assembling = new Map<
        string,
        { version: number; origin: string; parts: Map<number, string[]>; count: number; timer: unknown }
      >()
      /** Hand on the message of `key` with the parts that have arrived (every part is a valid message). */
      const assembled = (key: string) => {
        const a = assembling.get(key)
        if (a === undefined) return
        assembling.delete(key)
        clock.clearTimeout(a.timer)
        const products = [...a.parts].sort((x, y) => x[0] - y[0]).flatMap(([, p]) => p)
        deliver({ products, version: a.version, origin: a.origin })
      }
      const onNotify = (payload: string) => {
        if (stopped) return
        const parsed = parse(payload)
        if (parsed === undefined) {
          onInvalid?.(payload)
          return
        }
        const { message, part } = parsed
        if (part === undefined) {
          deliver(message)
          return
        }
        const [id, index, count] = part
        const key = JSON.stringify([id, message.version, message.origin, count])
        let a = assembling.get(key)
        if (a === undefined) {
          // Parts that never complete (a connection lost midway) are handed on as they are.
          const timer = clock.setTimeout(() => assembled(key), ASSEMBLY_MS)
          a = { version: message.version, origin: message.origin, parts: new Map(), count, timer }
          assembling.set(key, a)
        }
        a.parts.set(index, message.products)
        if (a.parts.size === count) assembled(key)
      }
      const onLost = (error: Error) => {
        if (stopped || down) return
        down = true
        // The rest of a message being assembled will not come on this connection.
        for (const key of [...assembling.keys()]) assembled(key)
        report('degraded', new Error(`${where}: the LISTEN connection was lost: ${error.message}`, { cause: error }))
      }
      const onReconnect = () => {
        if (stopped) return
        // A db whose listen() does not report the loss itself: the outage is over already, report it whole (the
        // cache still drops what it read meanwhile).
        if (!down) report('degraded', new Error(`${where}: the LISTEN connection was lost and replaced`))
        down = false
        report('recovered')
      }
      let stop: () => Promise<void>
      try {
        stop = await listen(channel, onNotify, onReconnect, { timers, onLost })
      } catch (e) {
        stopped = true
        throw new StockcastError(`${where}: LISTEN failed: ${messageOf(e)}`, { cause: e })
      }
      return async () => {
        if (stopped) return
        stopped = true
        for (const a of assembling.values()) clock.clearTimeout(a.timer)
        assembling.clear()
        await stop()
      }
    },
  }
}
