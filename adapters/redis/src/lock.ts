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
import { withTimeout } from './timeout.js'

export interface RedisLockOptions {
  /** Lock keys are `prefix{product}`. @default 'stockcast:lock:' */
  prefix?: string
  /**
   * A lock ends by itself this long after it was taken, so an instance that dies holding it blocks the product for
   * at most this long. A recompute that outlives it cannot overwrite a newer value: stores keep the higher version.
   * @default 30_000
   */
  ttlMs?: number
  /**
   * An attempt that gets no answer within this many ms counts as Redis being unreachable. @default 1000
   */
  timeoutMs?: number
  /** Called when Redis could not be asked (the lock was skipped). @default ignore */
  onUnavailable?: (error: Error, key: string) => void
  /** Runs the pauses between attempts and the call timeouts. @default stockcast's `defaultTimers` */
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
 * backoff (5 ms doubling to 100 ms) until `timeoutMs`, then fail with `LockTimeoutError`. While Redis cannot be
 * reached (an error, or no answer within `timeoutMs` of the options), `acquire` resolves at once without the lock:
 * instances may then recompute a product at the same time, which costs work, not correctness (versions decide).
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
  const callTimeoutMs = options.timeoutMs ?? 1000
  if (!(Number.isFinite(callTimeoutMs) && callTimeoutMs > 0)) {
    throw new ConfigError(`redisLock: timeoutMs must be a positive number, got ${String(callTimeoutMs)}`, {
      option: 'timeoutMs',
    })
  }
  if (options.onUnavailable !== undefined && typeof options.onUnavailable !== 'function') {
    throw new ConfigError('redisLock: onUnavailable must be a function', { option: 'onUnavailable' })
  }
  const onUnavailable = options.onUnavailable
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
      for (let attempt = 0; ; attempt++) {
        let answer: unknown
        try {
          answer = await withTimeout(redis.set(rk, token, 'PX', ttlMs, 'NX'), callTimeoutMs, timers, 'redisLock')
        } catch (e) {
          // Redis cannot be asked: go on without the lock rather than fail the read. It only spares duplicate
          // recomputes; the store keeps the highest version whoever writes last.
          const error = e instanceof Error ? e : new Error(messageOf(e))
          onUnavailable?.(error, key)
          return async () => {}
        }
        if (answer === 'OK') {
          let released = false
          return async () => {
            if (released) return
            released = true
            // Best effort: if Redis is unreachable the lock ends with its ttl.
            await withTimeout(client.stockcastUnlock(rk, token), callTimeoutMs, timers, 'redisLock').catch(() => {})
          }
        }
        const left = deadline - Date.now()
        if (left <= 0) {
          throw new LockTimeoutError(
            `redisLock: lock of ${JSON.stringify(key)} not acquired within ${timeoutMs} ms (another instance holds it)`,
            { productId: key },
          )
        }
        await sleep(Math.min(left, backoffDelay(attempt, 5, 100) * (0.5 + Math.random())))
      }
    },
  }
}
