/**
 * Install `wrapped` as `target[key]` (an own, writable, configurable property) and return the function that takes it
 * away again: the previous own property comes back, or none when the method was inherited. When another wrapper was
 * installed over ours meanwhile, ours stays in its chain (the caller makes it a pass-through) and nothing is undone.
 */
export function replaceMethod(target: object, key: string, wrapped: (...args: any[]) => unknown): () => void {
  const own = Object.getOwnPropertyDescriptor(target, key)
  Object.defineProperty(target, key, { value: wrapped, configurable: true, writable: true })
  return () => {
    if ((target as Record<string, unknown>)[key] !== wrapped) return
    if (own !== undefined) Object.defineProperty(target, key, own)
    else delete (target as Record<string, unknown>)[key]
  }
}
