import { E_TIMEOUT, Mutex, type MutexInterface, withTimeout } from 'async-mutex'
import { LockTimeoutError } from '../errors.js'

/** A per-key async-mutex map: locks are made on demand and dropped once idle, so memory stays bounded. */
export class KeyedLocks {
  readonly #locks = new Map<string, { mutex: MutexInterface; users: number }>()
  readonly #timeoutMs: number
  waits = 0
  timeouts = 0

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs
  }

  get size(): number {
    return this.#locks.size
  }

  isLocked(key: string): boolean {
    return this.#locks.get(key)?.mutex.isLocked() ?? false
  }

  /** Acquire the lock of `key`; throws LockTimeoutError after `lockTimeoutMs`. Returns the release function. */
  async acquire(key: string, productId?: string): Promise<() => void> {
    let slot = this.#locks.get(key)
    if (slot === undefined) {
      slot = { mutex: withTimeout(new Mutex(), this.#timeoutMs), users: 0 }
      this.#locks.set(key, slot)
    }
    slot.users++
    if (slot.mutex.isLocked()) this.waits++
    let release: MutexInterface.Releaser
    try {
      release = await slot.mutex.acquire()
    } catch (cause) {
      this.#drop(key, slot)
      if (cause === E_TIMEOUT) {
        this.timeouts++
        throw new LockTimeoutError(
          `lock of ${JSON.stringify(key)} not acquired within lockTimeoutMs=${this.#timeoutMs}: another recompute of it is still running; the product stays dirty`,
          { key, ...(productId === undefined ? {} : { productId }), option: 'lockTimeoutMs' },
        )
      }
      throw cause
    }
    let released = false
    return () => {
      if (released) return
      released = true
      release()
      this.#drop(key, slot)
    }
  }

  #drop(key: string, slot: { users: number }): void {
    slot.users--
    if (slot.users === 0 && this.#locks.get(key) === slot) this.#locks.delete(key)
  }
}
