import type { Cluster, Redis } from 'ioredis'
import { ConfigError, isWellFormedText } from 'stockcast'

/** A client the adapters accept: one ioredis connection or an ioredis Cluster. */
export type RedisLike = Redis | Cluster

/** The separator of a (product, location) key (stockcast's `KEY_SEPARATOR`). */
const UNIT_SEPARATOR = '\u001f'

/** False for text with an unpaired surrogate (stockcast's `isWellFormedText`): Redis could not hold it as it is. */
export const wellFormed = isWellFormedText

/** True for an ioredis Cluster (its slots matter: a multi-key command must stay in one slot). */
export function isCluster(redis: RedisLike): redis is Cluster {
  return (redis as { isCluster?: boolean }).isCluster === true
}

/** Checks that `redis` looks like an ioredis client. */
export function assertClient(redis: unknown, where: string): asserts redis is RedisLike {
  const r = redis as { get?: unknown; duplicate?: unknown; defineCommand?: unknown }
  if (r === null || typeof r !== 'object' || typeof r.get !== 'function' || typeof r.defineCommand !== 'function') {
    throw new ConfigError(`${where}: pass an ioredis client (new Redis(...) or new Redis.Cluster(...))`, {
      option: 'redis',
    })
  }
}

/** Checks a key prefix option. */
export function checkPrefix(prefix: unknown, where: string): string {
  if (typeof prefix !== 'string' || !wellFormed(prefix)) {
    throw new ConfigError(`${where}: prefix must be a string of well-formed UTF-16, got ${JSON.stringify(prefix)}`, {
      option: 'prefix',
    })
  }
  if (prefix.includes('{') || prefix.includes('}')) {
    throw new ConfigError(
      `${where}: prefix must not contain { or }: the adapter puts each product's keys in a hash tag of their own ` +
        `(one Redis Cluster slot per product), got ${JSON.stringify(prefix)}`,
      { option: 'prefix' },
    )
  }
  return prefix
}

/**
 * The Redis key of a cache key: `prefix{product}` and `prefix{product}\x1flocation`. The product is the hash tag, so
 * a product's roll-up and location entries share a slot (one `MGET` reads them on a cluster). A product holding `}`
 * ends the tag early: its keys still share one slot.
 */
export function redisKey(prefix: string, key: string): string {
  const i = key.indexOf(UNIT_SEPARATOR)
  return i < 0 ? `${prefix}{${key}}` : `${prefix}{${key.slice(0, i)}}${key.slice(i)}`
}

/** A glob (`SCAN MATCH`) matching exactly the keys `redisKey` makes with this prefix. */
export function keyPattern(prefix: string): string {
  return `${prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}{*`
}
