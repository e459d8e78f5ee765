import calculateSlot from 'cluster-key-slot'
import {
  ConfigError,
  defaultTimers,
  InvalidInputError,
  projectionCodec,
  StockcastError,
  type StockProjection,
  type Store,
  type StoreEntry,
  StoreUnavailableError,
  type Timers,
} from 'stockcast'
import { assertClient, checkPrefix, isCluster, keyPattern, type RedisLike, redisKey, wellFormed } from './keys.js'
import { withTimeout } from './timeout.js'

export interface RedisStoreOptions {
  /** Keys are `prefix{product}`; `clear()` deletes only keys under it, so stores can share a database. @default 'stockcast:' */
  prefix?: string
  /** Entries expire this long after they are written (Redis `PX`); an entry's own `expiresAt` comes first. @default none */
  ttlMs?: number
  /**
   * A call that gets no answer within this many ms fails with `StoreUnavailableError`, so a cache falls through to
   * its sources at once while Redis is unreachable (ioredis otherwise queues commands until it reconnects).
   * @default 1000
   */
  timeoutMs?: number
  /** Runs the call timeouts. @default stockcast's `defaultTimers` */
  timers?: Timers
}

/** The Redis store (L2): a `Store` shared by every instance that uses the same Redis and prefix. */
export interface RedisStore<V = StockProjection> extends Store<V> {
  readonly prefix: string
}

/** Keys per MGET or script call. */
const CHUNK = 500

/**
 * Writes entries, each only if the key holds no entry or one whose version is not higher. An entry is the text
 * `version|computedAt|expiresAt|value` (the value in `projectionCodec`'s form: a projection compact, anything else
 * JSON), so the version is read without decoding the value.
 * KEYS: the keys (one slot). ARGV: per key, version, the entry text, PX ms ('' for none). Returns how many it wrote.
 */
const SET_IF_NEWER = `
local n = 0
for i, key in ipairs(KEYS) do
  local v = tonumber(ARGV[3 * i - 2])
  local cur = redis.call('GET', key)
  local keep = false
  if cur then
    local cv = tonumber(string.match(cur, '^(%d+)|'))
    if cv and cv > v then keep = true end
  end
  if not keep then
    local px = ARGV[3 * i]
    if px == '' then redis.call('SET', key, ARGV[3 * i - 1]) else redis.call('SET', key, ARGV[3 * i - 1], 'PX', px) end
    n = n + 1
  end
end
return n
`

type ScriptClient = RedisLike & {
  stockcastSetIfNewer(numKeys: number, ...args: (string | number)[]): Promise<number>
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

function encode<V>(key: string, e: StoreEntry<V>): string {
  if (!Number.isSafeInteger(e.version) || e.version < 0 || !Number.isFinite(e.computedAt)) {
    throw new InvalidInputError(
      `redisStore: entry ${JSON.stringify(key)} needs a non-negative integer version and a numeric computedAt`,
      { key },
    )
  }
  if (e.expiresAt !== undefined && !Number.isFinite(e.expiresAt)) {
    throw new InvalidInputError(`redisStore: entry ${JSON.stringify(key)} has an expiresAt that is not a number`, {
      key,
    })
  }
  let text: string
  try {
    text = projectionCodec.encode(e.value)
  } catch {
    throw new InvalidInputError(`redisStore: the value of ${JSON.stringify(key)} has no JSON form`, { key })
  }
  return `${e.version}|${e.computedAt}|${e.expiresAt ?? ''}|${text}`
}

function decode<V>(text: string): StoreEntry<V> | undefined {
  const a = text.indexOf('|')
  const b = text.indexOf('|', a + 1)
  const c = text.indexOf('|', b + 1)
  if (a < 0 || b < 0 || c < 0) return undefined
  const version = Number(text.slice(0, a))
  const computedAt = Number(text.slice(a + 1, b))
  const exp = text.slice(b + 1, c)
  let value: V
  try {
    value = projectionCodec.decode<V>(text.slice(c + 1))
  } catch {
    return undefined // not an entry this store wrote: a miss
  }
  const entry: StoreEntry<V> = { value, version, computedAt }
  if (exp !== '') entry.expiresAt = Number(exp)
  return entry
}

/** Group keys by cluster slot (one group on a single node). */
function bySlot(redis: RedisLike, keys: readonly string[]): string[][] {
  if (!isCluster(redis)) {
    const out: string[][] = []
    for (let i = 0; i < keys.length; i += CHUNK) out.push(keys.slice(i, i + CHUNK))
    return out
  }
  const groups = new Map<number, string[]>()
  for (const k of keys) {
    const slot = calculateSlot(k)
    let g = groups.get(slot)
    if (g === undefined) {
      g = []
      groups.set(slot, g)
    }
    g.push(k)
  }
  const out: string[][] = []
  for (const g of groups.values()) for (let i = 0; i < g.length; i += CHUNK) out.push(g.slice(i, i + CHUNK))
  return out
}

/**
 * A shared L2 store on Redis (ioredis; one node or a Cluster). `getMany` is one `MGET` (per slot on a cluster,
 * sent at once); `setMany` is one Lua script per slot that writes each entry only if the key holds no higher
 * version, atomically. `clear()` still works after `close()`. Any key fits (Redis keys are binary-safe); a key with an unpaired surrogate has no exact UTF-8
 * form and is never stored (always a miss). The client stays yours: `close()` does not quit it.
 *
 * @example
 * ```ts
 * import Redis from 'ioredis'
 * import { redisStore } from '@stockcast/redis'
 * const store = redisStore(new Redis(process.env.REDIS_URL), { prefix: 'stock:' })
 * ```
 */
export function redisStore<V = StockProjection>(redis: RedisLike, options: RedisStoreOptions = {}): RedisStore<V> {
  assertClient(redis, 'redisStore')
  if (options === null || typeof options !== 'object') throw new ConfigError('redisStore: options must be an object')
  const prefix = checkPrefix(options.prefix ?? 'stockcast:', 'redisStore')
  const ttlMs = options.ttlMs
  if (ttlMs !== undefined && !(Number.isSafeInteger(ttlMs) && ttlMs > 0)) {
    throw new ConfigError(`redisStore: ttlMs must be a positive integer, got ${String(ttlMs)}`, { option: 'ttlMs' })
  }
  const timeoutMs = options.timeoutMs ?? 1000
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new ConfigError(`redisStore: timeoutMs must be a positive number, got ${String(timeoutMs)}`, {
      option: 'timeoutMs',
    })
  }
  const timers = options.timers ?? defaultTimers
  if (typeof timers?.setTimeout !== 'function' || typeof timers.clearTimeout !== 'function') {
    throw new ConfigError('redisStore: timers must be an object with setTimeout(fn, ms) and clearTimeout(handle)', {
      option: 'timers',
    })
  }
  const client = redis as ScriptClient
  if (typeof client.stockcastSetIfNewer !== 'function') {
    redis.defineCommand('stockcastSetIfNewer', { lua: SET_IF_NEWER })
  }
  let closed = false

  /** `admin`: works after `close()` too (a cache closes its store; a test's or a script's cleanup comes after). */
  const call = async <T>(what: string, fn: () => Promise<T>, ms = timeoutMs, admin = false): Promise<T> => {
    if (closed && !admin)
      throw new StoreUnavailableError(`redisStore(${prefix}): ${what} after close()`, { tier: 'l2' })
    try {
      return await withTimeout(fn(), ms, timers, `redisStore(${prefix}): ${what}`)
    } catch (cause) {
      if (cause instanceof StockcastError) throw cause
      throw new StoreUnavailableError(`redisStore(${prefix}): ${what} failed: ${messageOf(cause)}`, {
        tier: 'l2',
        cause,
      })
    }
  }

  return {
    prefix,
    capabilities: { shared: true },

    async getMany(keys) {
      const out = new Map<string, StoreEntry<V>>()
      const byRedisKey = new Map<string, string>()
      for (const k of keys) if (wellFormed(k)) byRedisKey.set(redisKey(prefix, k), k)
      if (byRedisKey.size === 0) return out
      const groups = bySlot(redis, [...byRedisKey.keys()])
      const answers = await call('getMany', () => Promise.all(groups.map((g) => redis.mget(...g))))
      const now = Date.now()
      for (const [gi, g] of groups.entries()) {
        const values = answers[gi]!
        for (const [i, rk] of g.entries()) {
          const text = values[i]
          if (text === null || text === undefined) continue
          const e = decode<V>(text)
          if (e === undefined || (e.expiresAt !== undefined && e.expiresAt <= now)) continue
          out.set(byRedisKey.get(rk)!, e)
        }
      }
      return out
    },

    async setMany(entries) {
      if (entries.length === 0) return
      const now = Date.now()
      // Per Redis key: the entry to write (the highest version when a key comes twice in one call).
      const chosen = new Map<string, { version: number; text: string; px: string }>()
      for (const [k, e] of entries) {
        const text = encode(k, e)
        if (!wellFormed(k)) continue
        const rk = redisKey(prefix, k)
        const prev = chosen.get(rk)
        if (prev !== undefined && prev.version > e.version) continue
        let px = ttlMs
        if (e.expiresAt !== undefined) {
          const left = Math.ceil(e.expiresAt - now)
          if (left <= 0) continue
          px = px === undefined ? left : Math.min(px, left)
        }
        chosen.set(rk, { version: e.version, text, px: px === undefined ? '' : String(px) })
      }
      if (chosen.size === 0) return
      const groups = bySlot(redis, [...chosen.keys()])
      await call('setMany', () =>
        Promise.all(
          groups.map((g) => {
            const args: string[] = []
            for (const rk of g) {
              const c = chosen.get(rk)!
              args.push(String(c.version), c.text, c.px)
            }
            return client.stockcastSetIfNewer(g.length, ...g, ...args)
          }),
        ),
      )
    },

    async deleteMany(keys) {
      const rks = keys.filter((k) => wellFormed(k)).map((k) => redisKey(prefix, k))
      if (rks.length === 0) return
      await call('deleteMany', () => Promise.all(bySlot(redis, rks).map((g) => redis.unlink(...g))))
    },

    async clear() {
      const pattern = keyPattern(prefix)
      const nodes = isCluster(redis) ? redis.nodes('master') : [redis]
      await call(
        'clear',
        () =>
          Promise.all(
            nodes.map(async (node) => {
              let cursor = '0'
              do {
                const [next, found] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
                cursor = next
                // One UNLINK per key: on a cluster the keys of one node span many slots.
                if (found.length > 0) await Promise.all(found.map((k) => node.unlink(k)))
              } while (cursor !== '0')
            }),
          ),
        // A scan of the whole keyspace: give it time.
        Math.max(timeoutMs, 60_000),
        true,
      )
    },

    async close() {
      closed = true
    },
  }
}
