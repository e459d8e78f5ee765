import { readFile } from 'node:fs/promises'
import { ConfigError, StockcastError } from '../errors.js'
import type { StockStatus } from '../projection/types.js'
import { writeFileAtomic } from '../util/files.js'

/**
 * What a webhook receiver was last told about one key: the state after the last delivery that got a 2xx answer.
 * `createWebhookDelivery` compares every new projection of the key with it and sends the differences.
 */
export interface DeliveredState {
  /** Out of stock (the projection had a `firstStockoutDate`) as last delivered. */
  out: boolean
  /** `CRITICAL` as last delivered. */
  critical: boolean
  /** The stock-out day of the last delivered `stockout`, while `out`; null otherwise. */
  date?: string | null
  /** The projection's status at the last delivery. */
  status: StockStatus
  /** Deliveries sent for the key so far: the next delivery's id is made from `epoch` and `seq + 1`. */
  seq: number
  /** Chosen when the key is first seen without a saved state; with `seq`, delivery ids never repeat. */
  epoch: string
  /** Epoch ms when this state was recorded. */
  at: number
}

/**
 * Where `createWebhookDelivery` keeps each key's last delivered state, so that a restart does not re-send what a
 * receiver already has. `memoryWebhookState()`, `fileWebhookState(path)` and `sqlWebhookState(db)` (@stockcast/sql)
 * implement it.
 */
export interface WebhookStateStore {
  /** The saved states of these keys (keys without one are absent from the map). */
  get(keys: readonly string[]): Promise<Map<string, DeliveredState>>
  /** Save these states (insert or replace per key). */
  set(entries: ReadonlyMap<string, DeliveredState>): Promise<void>
  /** Release what the store owns (`stop()` of the delivery calls it). */
  close?(): Promise<void>
}

/** A copy that shares nothing with the caller's object. */
const copy = (s: DeliveredState): DeliveredState => ({ ...s })

export interface MemoryWebhookStateOptions {
  /** The map to keep states in (tests pass one to look inside). @default a new Map */
  map?: Map<string, DeliveredState>
}

/**
 * States in this process's memory: a restart forgets them, so the first computation of each key after a restart
 * is compared with the `initial` baseline again and may re-send a transition the receiver already has.
 */
export function memoryWebhookState(options: MemoryWebhookStateOptions = {}): WebhookStateStore {
  const map = options.map ?? new Map<string, DeliveredState>()
  if (!(map instanceof Map)) throw new ConfigError('memoryWebhookState: map must be a Map', { option: 'map' })
  return {
    async get(keys) {
      return copiesOf(map, keys)
    },
    async set(entries) {
      for (const [k, s] of entries) map.set(k, copy(s))
    },
  }
}

/** The file's layout; `version` lets a later layout read this one. */
interface StateFile {
  version: 1
  states: Record<string, DeliveredState>
}

/** The state store could not read or write its file (the delivery retries, see `createWebhookDelivery`). */
const fileError = (message: string, cause?: unknown) =>
  new StockcastError(message, cause === undefined ? {} : { cause })

/**
 * States in one JSON file: read once (a missing file is an empty state), kept in memory, and written whole after
 * every `set` (writes are serialised; sets that arrive while one is written share the next write). Each write goes to
 * a temporary file in the same folder, then replaces the file by `rename`, so a crash leaves the old file or the new
 * one, never half of one. One process per file. Meant for up to some thousands of keys (every write rewrites the
 * file); use `sqlWebhookState` beyond that, or when several instances share the state.
 *
 * @example
 * ```ts
 * const hooks = createWebhookDelivery(cache, { url, state: fileWebhookState('/var/lib/app/webhooks.json') })
 * ```
 */
export function fileWebhookState(path: string): WebhookStateStore {
  if (typeof path !== 'string' || path === '') {
    throw new ConfigError(`fileWebhookState: path must be a non-empty string, got ${JSON.stringify(path)}`, {
      option: 'path',
    })
  }
  let states: Map<string, DeliveredState> | undefined
  let loading: Promise<Map<string, DeliveredState>> | undefined
  /** The write in progress, and the one queued behind it (for every set made since it started). */
  let writing: Promise<void> | undefined
  let queued: Promise<void> | undefined

  const load = (): Promise<Map<string, DeliveredState>> => {
    if (states !== undefined) return Promise.resolve(states)
    loading ??= (async () => {
      let text: string
      try {
        text = await readFile(path, 'utf8')
      } catch (e) {
        if ((e as { code?: unknown }).code !== 'ENOENT') {
          throw fileError(`fileWebhookState: cannot read ${path}: ${(e as Error).message}`, e)
        }
        states = new Map()
        return states
      }
      let doc: unknown
      try {
        doc = JSON.parse(text)
      } catch (e) {
        throw fileError(`fileWebhookState: ${path} is not JSON (${(e as Error).message})`, e)
      }
      const d = doc as Partial<StateFile> | null
      if (d === null || typeof d !== 'object' || d.version !== 1 || d.states === null || typeof d.states !== 'object') {
        throw fileError(`fileWebhookState: ${path} is not a webhook state file (version 1)`)
      }
      states = new Map(Object.entries(d.states))
      return states
    })().finally(() => {
      loading = undefined
    })
    return loading
  }

  const writeOnce = async (): Promise<void> => {
    const doc: StateFile = { version: 1, states: Object.fromEntries(states ?? []) }
    try {
      await writeFileAtomic(path, JSON.stringify(doc))
    } catch (e) {
      throw fileError(`fileWebhookState: cannot write ${path}: ${(e as Error).message}`, e)
    }
  }

  /** Write the current map; sets made during a write wait for it and share the one write that follows. */
  const persist = (): Promise<void> => {
    if (writing === undefined) {
      writing = writeOnce().finally(() => {
        writing = undefined
      })
      return writing
    }
    queued ??= writing
      .catch(() => {})
      .then(() => {
        queued = undefined
        return persist()
      })
    return queued
  }

  return {
    async get(keys) {
      return copiesOf(await load(), keys)
    },
    async set(entries) {
      const map = await load()
      for (const [k, s] of entries) map.set(k, copy(s))
      await persist()
    },
    async close() {
      while (writing !== undefined || queued !== undefined) await (queued ?? writing)!.catch(() => {})
    },
  }
}

/** Copies of the states of `keys` that `map` holds. */
function copiesOf(map: ReadonlyMap<string, DeliveredState>, keys: Iterable<string>): Map<string, DeliveredState> {
  const out = new Map<string, DeliveredState>()
  for (const k of keys) {
    const s = map.get(k)
    if (s !== undefined) out.set(k, copy(s))
  }
  return out
}
