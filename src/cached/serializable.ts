import { InvalidInputError } from '../errors.js'

/**
 * Throw an `InvalidInputError` naming the path of the first part of `value` that a shared store's JSON would not
 * give back as it was: `undefined` (dropped), a function or symbol, a bigint, a non-finite number, a `Date` (read
 * back as a string), a `Map`, `Set`, class instance or typed array (read back as a plain object or lost), or a cycle.
 * Plain objects, arrays, strings, finite numbers, booleans and null pass.
 */
export function assertSerializable(value: unknown, key: string): void {
  const seen = new Set<object>()
  const fail = (path: string, what: string): never => {
    throw new InvalidInputError(
      `the value of ${JSON.stringify(key)} cannot be stored: ${path === '' ? 'it' : path} is ${what}, which a shared store's JSON does not give back as it was; convert it (a Date to an ISO string, a Map to an object) first`,
      { key },
    )
  }
  const walk = (v: unknown, path: string): void => {
    switch (typeof v) {
      case 'string':
      case 'boolean':
        return
      case 'number':
        if (!Number.isFinite(v)) fail(path, String(v))
        return
      case 'undefined':
        fail(path, 'undefined')
        return
      case 'bigint':
        fail(path, 'a bigint')
        return
      case 'function':
        fail(path, 'a function')
        return
      case 'symbol':
        fail(path, 'a symbol')
        return
    }
    if (v === null) return
    const o = v as object
    if (seen.has(o)) fail(path, 'a cycle')
    if (Array.isArray(o)) {
      seen.add(o)
      for (let i = 0; i < o.length; i++) walk(o[i], `${path}[${i}]`)
      seen.delete(o)
      return
    }
    const proto = Object.getPrototypeOf(o)
    if (proto !== Object.prototype && proto !== null) {
      fail(path, `a ${(o as { constructor?: { name?: string } }).constructor?.name ?? 'non-plain'} object`)
    }
    seen.add(o)
    for (const [k, child] of Object.entries(o)) walk(child, path === '' ? k : `${path}.${k}`)
    seen.delete(o)
  }
  walk(value, '')
}
