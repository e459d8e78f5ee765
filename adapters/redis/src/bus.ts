import type { Cluster, Redis } from 'ioredis'
import {
  type BusState,
  ConfigError,
  type InvalidationBus,
  type InvalidationMessage,
  invalidationMessageOf,
  StockcastError,
} from 'stockcast'
import { assertClient, type RedisLike } from './keys.js'

export interface RedisBusOptions {
  /** The pub/sub channel (instances of one cache share it). @default 'stockcast:invalidate' */
  channel?: string
  /** Called with a message that is not one of this bus's (bad JSON or shape); it is dropped. @default ignore */
  onInvalid?: (text: string) => void
}

/** The bus `redisBus` returns. */
export interface RedisBus extends InvalidationBus {
  readonly channel: string
}

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e))

function parse(text: string): InvalidationMessage | undefined {
  try {
    return invalidationMessageOf(JSON.parse(text))
  } catch {
    return undefined
  }
}

/**
 * An invalidation bus over Redis pub/sub (ioredis; one node or a Cluster). Publishing uses the client you pass;
 * each `subscribe` opens a connection of its own (`duplicate()`), closed by the function it returns. ioredis
 * reconnects and subscribes again by itself; meanwhile the bus reports `degraded` (from the moment the connection
 * closes) and `recovered` (once the subscription holds again), and the cache serves nothing from L1 in between.
 *
 * Pub/sub delivers at most once: a message published while a subscriber is disconnected is lost, and that outage is
 * what `degraded` covers. See the README for what a lost message costs.
 *
 * @example
 * ```ts
 * const redis = new Redis(process.env.REDIS_URL)
 * createStockCache({ schema, reader, store: redisStore(redis), bus: redisBus(redis), lock: redisLock(redis) })
 * ```
 */
export function redisBus(redis: RedisLike, options: RedisBusOptions = {}): RedisBus {
  assertClient(redis, 'redisBus')
  if (options === null || typeof options !== 'object') throw new ConfigError('redisBus: options must be an object')
  const channel = options.channel ?? 'stockcast:invalidate'
  if (typeof channel !== 'string' || channel.length === 0) {
    throw new ConfigError(`redisBus: channel must be a non-empty string, got ${JSON.stringify(channel)}`, {
      option: 'channel',
    })
  }
  if (options.onInvalid !== undefined && typeof options.onInvalid !== 'function') {
    throw new ConfigError('redisBus: onInvalid must be a function', { option: 'onInvalid' })
  }
  const onInvalid = options.onInvalid

  return {
    channel,
    async publish(message) {
      await redis.publish(channel, JSON.stringify(message))
    },

    async subscribe(handler, onState) {
      const sub = (redis as Redis | Cluster).duplicate() as RedisLike
      let stopped = false
      let down = false
      const report = (state: BusState, cause?: Error) => {
        try {
          onState?.(state, cause)
        } catch {
          // a listener's failure is not the bus's
        }
      }
      sub.on('error', () => {
        // ioredis reports connection errors here as it retries; 'close' and 'ready' say what matters.
      })
      sub.on('message', (ch: string, text: string) => {
        if (ch !== channel || stopped) return
        const m = parse(text)
        if (m === undefined) onInvalid?.(text)
        else handler(m)
      })
      sub.on('close', () => {
        if (stopped || down) return
        down = true
        report('degraded', new Error(`redisBus(${channel}): the subscription's connection closed`))
      })
      sub.on('ready', () => {
        if (stopped || !down) return
        // ioredis subscribes again on reconnect; subscribing here as well says when it holds (SUBSCRIBE is idempotent).
        sub.subscribe(channel).then(
          () => {
            if (stopped || !down) return
            down = false
            report('recovered')
          },
          () => {
            // the connection went away again: 'close' then 'ready' come again
          },
        )
      })
      try {
        await sub.subscribe(channel)
      } catch (e) {
        stopped = true
        sub.disconnect()
        throw new StockcastError(`redisBus(${channel}): subscribe failed: ${messageOf(e)}`, { cause: e })
      }
      return async () => {
        if (stopped) return
        stopped = true
        await sub.quit().catch(() => sub.disconnect())
      }
    },
  }
}
