/**
 * Every error stockcast throws is a `StockcastError` with a stable `code`, a plain message that names the
 * value at fault, and context (`productId`, `key`, `tier`, `source`, `option`) where one applies.
 * Errors that wrap another keep it as `cause`.
 */
export interface ErrorContext {
  /** The product whose read, mark or recompute failed. */
  productId?: string
  /** Every product at fault when there are several (`productId` is then the first). */
  products?: readonly string[]
  /** The cache key (product, or product and location). */
  key?: string
  /** The tier that failed: `l1`, `l2` or `l3`. */
  tier?: 'l1' | 'l2' | 'l3'
  /** The schema source (table) that produced the bad value. */
  source?: string
  /** The option at fault. */
  option?: string
  /** The wrapped error. */
  cause?: unknown
}

export class StockcastError extends Error {
  static readonly code: string = 'E_STOCKCAST'
  readonly code: string
  readonly productId?: string
  readonly products?: readonly string[]
  readonly key?: string
  readonly tier?: 'l1' | 'l2' | 'l3'
  readonly source?: string
  readonly option?: string

  constructor(message: string, context: ErrorContext = {}) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause })
    this.name = new.target.name
    this.code = (new.target as typeof StockcastError).code
    if (context.productId !== undefined) this.productId = context.productId
    if (context.products !== undefined) this.products = context.products
    if (context.key !== undefined) this.key = context.key
    if (context.tier !== undefined) this.tier = context.tier
    if (context.source !== undefined) this.source = context.source
    if (context.option !== undefined) this.option = context.option
  }
}

/** A schema, an option or a setup is wrong. Thrown at construction time, before anything runs. */
export class ConfigError extends StockcastError {
  static override readonly code = 'E_CONFIG'
}

/** A value given to the SDK (a product id, a quantity, a date) or read from a source is not valid. Nothing is cached. */
export class InvalidInputError extends StockcastError {
  static override readonly code = 'E_INVALID_INPUT'
}

/** A product's lock was not acquired within `lockTimeoutMs`. The product stays dirty. */
export class LockTimeoutError extends StockcastError {
  static override readonly code = 'E_LOCK_TIMEOUT'
}

/** The source reader (L3) failed and no old value could be served within `graceMs`. */
export class SourceUnavailableError extends StockcastError {
  static override readonly code: string = 'E_SOURCE_UNAVAILABLE'
}

/**
 * The source reader did not answer within `readTimeoutMs`. A `SourceUnavailableError`: stale-if-error applies, the
 * product stays dirty and is retried.
 */
export class ReadTimeoutError extends SourceUnavailableError {
  static override readonly code = 'E_READ_TIMEOUT'
}

/** The shared store (L2) failed. Reads fall through to L3; this surfaces in `error` events and from direct store calls. */
export class StoreUnavailableError extends StockcastError {
  static override readonly code = 'E_STORE_UNAVAILABLE'
}

/** A `get(product, { atLeast })` waited longer than `waitTimeoutMs` for a version that never arrived. */
export class WaitTimeoutError extends StockcastError {
  static override readonly code = 'E_WAIT_TIMEOUT'
}

/** The cache was closed; it serves no more reads and takes no more marks. */
export class ClosedError extends StockcastError {
  static override readonly code = 'E_CLOSED'
}

/**
 * `validate({ report: true })` (the precision job) found cached values that differ from a fresh computation. `products`
 * names them; the mismatching products were marked for recompute when `repair` was on.
 */
export class MismatchError extends StockcastError {
  static override readonly code = 'E_MISMATCH'
}

/** Every error class by its code. */
export const errors = {
  E_STOCKCAST: StockcastError,
  E_CONFIG: ConfigError,
  E_INVALID_INPUT: InvalidInputError,
  E_LOCK_TIMEOUT: LockTimeoutError,
  E_SOURCE_UNAVAILABLE: SourceUnavailableError,
  E_READ_TIMEOUT: ReadTimeoutError,
  E_STORE_UNAVAILABLE: StoreUnavailableError,
  E_WAIT_TIMEOUT: WaitTimeoutError,
  E_CLOSED: ClosedError,
  E_MISMATCH: MismatchError,
} as const
