// The general-purpose tiered cache (issue 14): `createCache` and its types.
export { createCache } from './cache.js'
export type * from './types.js'
