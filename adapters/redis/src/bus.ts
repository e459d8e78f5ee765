import type { Cluster, Redis } from 'ioredis'
import {
  type BusState,
  ConfigError,
  type InvalidationBus,
  type InvalidationMessage,
  invalidationMessageOf,
  StockcastError,
} from 'stockcast'
import { assertClient, isCluster, type RedisLike } from './keys.js'

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

type Report = (state: BusState, cause?: Error) => void

/**
 * A subscription on a Cluster, on a connection of its own to one node (a `PUBLISH` reaches every node of a
 * cluster). ioredis' own Cluster subscriber moves to another node without telling anyone; this one reports
 * `degraded` when its connection ends and `recovered` once it is subscribed again, on the next known node.
 */
async function subscribeOnCluster(
  cluster: Cluster,
  channel: string,
  onMessage: (ch: string, text: string) => void,
  report: Report,
): Promise<() => Promise<void>> {
  let stopped = false
  let down = false
  let conn: Redis | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  let attempt = 0
  let next = Math.floor(Math.random() * 1024)

  const connect = async (): Promise<void> => {
    const nodes = cluster.nodes('all')
    if (nodes.length === 0) throw new Error('the cluster client knows no node yet')
    const node = nodes[next++ % nodes.length]!
    const o = node.options
    // The node's own options (auth, TLS, timeouts) on a connection of its own.
    const c = node.duplicate({
      lazyConnect: true,
      // No reconnects of its own: when it ends, the next node is tried.
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
    })
    c.on('error', () => {
      // 'end' says what matters
    })
    c.on('message', onMessage)
    let live = false
    c.once('end', () => {
      if (!live || stopped || conn !== c) return
      conn = undefined
      lost(new Error(`redisBus(${channel}): the subscription's connection to ${o.host}:${o.port} ended`))
    })
    try {
      await c.connect()
      await c.subscribe(channel)
    } catch (e) {
      c.disconnect()
      throw e
    }
    if (stopped) {
      c.disconnect()
      return
    }
    live = true
    conn = c
  }
  const lost = (cause: Error) => {
    if (!down) {
      down = true
      report('degraded', cause)
    }
    retry()
  }
  const retry = () => {
    if (stopped || timer !== undefined) return
    timer = setTimeout(
      () => {
        timer = undefined
        if (stopped) return
        connect().then(
          () => {
            attempt = 0
            if (stopped || !down) return
            down = false
            report('recovered')
          },
          () => retry(),
        )
      },
      Math.min(2000, 50 * 2 ** attempt++),
    )
    timer.unref?.()
  }

  // The first subscription tries each known node once before it fails.
  for (let tried = 1; ; tried++) {
    try {
      await connect()
      break
    } catch (e) {
      if (tried >= cluster.nodes('all').length) throw e
    }
  }
  return async () => {
    if (stopped) return
    stopped = true
    if (timer !== undefined) clearTimeout(timer)
    const c = conn
    conn = undefined
    await c?.quit().catch(() => c.disconnect())
  }
}

/**
 * An invalidation bus over Redis pub/sub (ioredis; one node or a Cluster). Publishing uses the client you pass;
 * each `subscribe` opens a connection of its own (`duplicate()`; on a Cluster, a connection to one of its nodes),
 * closed by the function it returns. It reconnects and subscribes again by itself (on a Cluster, on the next node);
 * meanwhile the bus reports `degraded` (from the moment the connection closes) and `recovered` (once the
 * subscription holds again), and the cache serves nothing from L1 in between.
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
      let stopped = false
      let down = false
      const report: Report = (state, cause) => {
        try {
          onState?.(state, cause)
        } catch {
          // a listener's failure is not the bus's
        }
      }
      const onMessage = (ch: string, text: string) => {
        if (ch !== channel || stopped) return
        const m = parse(text)
        if (m === undefined) onInvalid?.(text)
        else handler(m)
      }
      if (isCluster(redis)) {
        try {
          const stop = await subscribeOnCluster(redis, channel, onMessage, report)
          return async () => {
            stopped = true
            await stop()
          }
        } catch (e) {
          throw new StockcastError(`redisBus(${channel}): subscribe failed: ${messageOf(e)}`, { cause: e })
        }
      }
      const sub = (redis as Redis).duplicate()
      sub.on('error', () => {
        // ioredis reports connection errors here as it retries; 'close' and 'ready' say what matters.
      })
      sub.on('message', onMessage)
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
