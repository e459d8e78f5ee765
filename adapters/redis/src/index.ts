export type { RedisLike } from './keys.js'
export type { RedisStore, RedisStoreOptions } from './store.js'
export { redisStore } from './store.js'
