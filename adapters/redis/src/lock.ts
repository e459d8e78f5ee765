import { randomBytes } from 'node:crypto'
import {
  backoffDelay,
  ConfigError,
  type DistributedLock,
  defaultTimers,
  LockTimeoutError,
  type Timers,
} from 'stockcast'
import { assertClient, checkPrefix, type RedisLike, redisKey, wellFormed } from './keys.js'

export interface RedisLockOptions {
  /** Lock keys are `prefix{product}`. @default 'stockcast:lock:' */
  prefix?: string
  /**
   * A lock ends by itself this long after it was taken, so an instance that dies holding it blocks the product for
   * at most this long. A recompute that outlives it cannot overwrite a newer value: stores keep the higher version.
   * @default 30_000
   */
  ttlMs?: number
  /** Runs the pauses between attempts. @default stockcast's `defaultTimers` */
  timers?: Timers
}

/** DEL the key only while it still holds this owner's token. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

type ScriptClient = RedisLike & { stockcastUnlock(key: string, token: string): Promise<number> }

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

/**
 * A per-product lock over Redis (`SET key token NX PX ttl`; released by a script that deletes the key only while it
 * holds the owner's token), so that one instance at a time recomputes a product. Waiters retry with a short jittered
 * backoff (5 ms doubling to 100 ms) until `timeoutMs`, then fail with `LockTimeoutError`.
 *
 * @example
 * ```ts
 * createStockCache({ schema, reader, store: redisStore(redis), bus: redisBus(redis), lock: redisLock(redis) })
 * ```
 */
export function redisLock(redis: RedisLike, options: RedisLockOptions = {}): DistributedLock {
  assertClient(redis, 'redisLock')
  if (options === null || typeof options !== 'object') throw new ConfigError('redisLock: options must be an object')
  const prefix = checkPrefix(options.prefix ?? 'stockcast:lock:', 'redisLock')
  const ttlMs = options.ttlMs ?? 30_000
  if (!(Number.isSafeInteger(ttlMs) && ttlMs > 0)) {
    throw new ConfigError(`redisLock: ttlMs must be a positive integer, got ${String(ttlMs)}`, { option: 'ttlMs' })
  }
  const timers = options.timers ?? defaultTimers
  if (typeof timers?.setTimeout !== 'function' || typeof timers.clearTimeout !== 'function') {
    throw new ConfigError('redisLock: timers must be an object with setTimeout(fn, ms) and clearTimeout(handle)', {
      option: 'timers',
    })
  }
  const client = redis as ScriptClient
  if (typeof client.stockcastUnlock !== 'function') {
    redis.defineCommand('stockcastUnlock', { numberOfKeys: 1, lua: RELEASE })
  }
  const sleep = (ms: number) => new Promise<void>((r) => timers.setTimeout(r, ms))

  return {
    async acquire(key, timeoutMs) {
      if (typeof key !== 'string' || !wellFormed(key)) {
        throw new LockTimeoutError(`redisLock: cannot lock ${JSON.stringify(key)} (not a well-formed string)`)
      }
      const rk = redisKey(prefix, key)
      const token = randomBytes(12).toString('base64url')
      const deadline = Date.now() + timeoutMs
      let lastError: unknown
      for (let attempt = 0; ; attempt++) {
        try {
          if ((await redis.set(rk, token, 'PX', ttlMs, 'NX')) === 'OK') {
            let released = false
            return async () => {
              if (released) return
              released = true
              // Best effort: if Redis is unreachable the lock ends with its ttl.
              await client.stockcastUnlock(rk, token).catch(() => {})
            }
          }
        } catch (e) {
          lastError = e
        }
        const left = deadline - Date.now()
        if (left <= 0) {
          const why = lastError === undefined ? 'another instance holds it' : `Redis: ${messageOf(lastError)}`
          throw new LockTimeoutError(
            `redisLock: lock of ${JSON.stringify(key)} not acquired within ${timeoutMs} ms (${why})`,
            {
              productId: key,
              ...(lastError === undefined ? {} : { cause: lastError }),
            },
          )
        }
        await sleep(Math.min(left, backoffDelay(attempt, 5, 100) * (0.5 + Math.random())))
      }
    },
  }
}
