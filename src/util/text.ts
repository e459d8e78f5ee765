const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * False for text with an unpaired surrogate: it has no exact UTF-8 form, so no database column, Redis key or hash of
 * its bytes holds it as it is (a store never stores such a key; a reader rejects such an id). The one check the
 * adapters share.
 */
export function isWellFormedText(text: string): boolean {
  return !LONE_SURROGATE.test(text)
}
