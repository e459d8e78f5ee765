import { InvalidInputError } from '../errors.js'

/** Separates product and location in a cache key (U+001F, never part of a real id). */
export const KEY_SEPARATOR = '\u001f'

/** The cache key of a product, or of a product at one location. */
export function keyOf(product: string, location?: string | null): string {
  return location === undefined || location === null ? product : product + KEY_SEPARATOR + location
}

/** The product and location a key stands for. */
export function parseKey(key: string): { product: string; location: string | null } {
  const i = key.indexOf(KEY_SEPARATOR)
  return i < 0 ? { product: key, location: null } : { product: key.slice(0, i), location: key.slice(i + 1) }
}

/** A product id must be a non-empty string without U+001F. */
export function assertProduct(product: unknown, where: string): asserts product is string {
  if (typeof product !== 'string' || product === '' || product.includes(KEY_SEPARATOR)) {
    throw new InvalidInputError(
      `${where}: a product id must be a non-empty string, got ${product === '' ? 'an empty string' : typeof product === 'string' ? JSON.stringify(product) : String(product)}`,
      typeof product === 'string' ? { productId: product } : {},
    )
  }
}

export function assertLocation(location: unknown, where: string): asserts location is string | null | undefined {
  if (location === undefined || location === null) return
  if (typeof location !== 'string' || location === '' || location.includes(KEY_SEPARATOR)) {
    throw new InvalidInputError(`${where}: a location must be a non-empty string, got ${JSON.stringify(location)}`)
  }
}

/** A read's `consistency` option: `'default'`, `'strong'` or absent. */
export function assertConsistency(value: unknown, where: string): void {
  if (value !== undefined && value !== 'default' && value !== 'strong') {
    throw new InvalidInputError(`${where}: consistency must be 'default' or 'strong', got ${JSON.stringify(value)}`)
  }
}
