/**
 * How many open caches use an object they close when they close (a store, a reader). A cache retains what it was
 * given and closes it on release only when no other open cache still uses it: one store object shared by two
 * caches stays open until both are closed.
 */
const users = new WeakMap<object, number>()

export function retain(o: object): void {
  users.set(o, (users.get(o) ?? 0) + 1)
}

/** True when this was the last user (the caller closes the object then). */
export function release(o: object): boolean {
  const n = (users.get(o) ?? 1) - 1
  if (n > 0) {
    users.set(o, n)
    return false
  }
  users.delete(o)
  return true
}
