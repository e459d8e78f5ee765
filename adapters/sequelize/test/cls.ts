import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * A CLS namespace for `Sequelize.useCLS` on AsyncLocalStorage (the part of cls-hooked's API Sequelize v6 calls:
 * run, bind, get, set). Tests use it so CLS is covered without the cls-hooked package.
 */
export class AlsNamespace {
  readonly #als = new AsyncLocalStorage<Map<string, unknown>>()

  get active(): Map<string, unknown> | undefined {
    return this.#als.getStore()
  }

  get(key: string): unknown {
    return this.#als.getStore()?.get(key)
  }

  set<T>(key: string, value: T): T {
    const store = this.#als.getStore()
    if (store === undefined) throw new Error('No context available. ns.run() or ns.bind() must be called first.')
    store.set(key, value)
    return value
  }

  /** A new context that starts as a copy of the current one (nested contexts see the outer values). */
  run<T>(fn: (context: Map<string, unknown>) => T): T {
    const context = new Map(this.#als.getStore() ?? [])
    return this.#als.run(context, () => fn(context))
  }

  bind<A extends unknown[], R>(fn: (...args: A) => R, context?: Map<string, unknown>): (...args: A) => R {
    const ctx = context ?? this.#als.getStore() ?? new Map()
    return (...args: A) => this.#als.run(ctx, () => fn(...args))
  }
}
