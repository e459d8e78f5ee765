import type { Store, StoreEntry } from '../../src/index.js'

/** Wraps a real store; throws on command (never a mock of its data). */
export class ChaosStore implements Store {
  down = false
  calls = 0
  constructor(readonly inner: Store) {}
  get capabilities() {
    return this.inner.capabilities
  }
  #check(): void {
    this.calls++
    if (this.down) throw new Error('connection refused (chaos)')
  }
  async getMany(keys: readonly string[]): Promise<Map<string, StoreEntry>> {
    this.#check()
    return this.inner.getMany(keys)
  }
  async setMany(entries: ReadonlyArray<readonly [string, StoreEntry]>) {
    this.#check()
    return this.inner.setMany(entries)
  }
  async deleteMany(keys: readonly string[]): Promise<void> {
    this.#check()
    return this.inner.deleteMany(keys)
  }
  async clear(): Promise<void> {
    this.#check()
    return this.inner.clear()
  }
  close(): Promise<void> {
    return this.inner.close()
  }
}
