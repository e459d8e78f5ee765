import type { HistogramSnapshot, MetricsSnapshot } from '../cache/metrics.js'
import type { Cache, CacheMetrics } from '../cached/types.js'
import { ConfigError } from '../errors.js'
import type { StockCache, StockCacheStatus } from '../stock/types.js'

/** The content type of the Prometheus text exposition format that `prometheusText` writes. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

export interface PrometheusOptions {
  /** Constant labels on every sample, such as `{ cache: 'main' }` when one process runs several caches. @default {} */
  labels?: Readonly<Record<string, string>>
  /** The metric name prefix. @default 'stockcast_' */
  prefix?: string
}

type Labels = Readonly<Record<string, string>>

/** One sample: an optional name suffix (`_bucket`), labels and a value. */
interface Sample {
  suffix?: string
  labels?: Labels
  value: number
}

/** One metric family, read from a snapshot of the cache. */
interface Family {
  name: string
  help: string
  type: 'counter' | 'gauge' | 'histogram'
  samples(m: MetricsSnapshot, s: StockCacheStatus): Sample[]
}

const one = (value: number): Sample[] => [{ value }]
const ratio = (hits: number, misses: number): number => (hits + misses === 0 ? 0 : hits / (hits + misses))

function histogram(h: HistogramSnapshot): Sample[] {
  const out: Sample[] = h.le.map((le, i) => ({ suffix: '_bucket', labels: { le: String(le) }, value: h.counts[i]! }))
  out.push({ suffix: '_bucket', labels: { le: '+Inf' }, value: h.count })
  out.push({ suffix: '_sum', value: h.sum })
  out.push({ suffix: '_count', value: h.count })
  return out
}

/** Every family stockcast exposes (names without the prefix). Counters end in `_total`, durations in `_seconds`. */
const FAMILIES: readonly Family[] = [
  {
    name: 'gets_total',
    help: 'Reads by tier and result: l1 hit or miss, then l2 hit or miss (a miss of both recomputes from the sources).',
    type: 'counter',
    samples: (m) => [
      { labels: { tier: 'l1', result: 'hit' }, value: m.l1Hits },
      { labels: { tier: 'l1', result: 'miss' }, value: m.l1Misses },
      { labels: { tier: 'l2', result: 'hit' }, value: m.l2Hits },
      { labels: { tier: 'l2', result: 'miss' }, value: m.l2Misses },
    ],
  },
  {
    name: 'hit_ratio',
    help: 'Hits over reads since start, per tier (0 before the first read of the tier).',
    type: 'gauge',
    samples: (m) => [
      { labels: { tier: 'l1' }, value: ratio(m.l1Hits, m.l1Misses) },
      { labels: { tier: 'l2' }, value: ratio(m.l2Hits, m.l2Misses) },
    ],
  },
  {
    name: 'recomputes_total',
    help: 'Products recomputed from the sources.',
    type: 'counter',
    samples: (m) => one(m.recomputes),
  },
  {
    name: 'keys_computed_total',
    help: 'Keys (products, locations) computed.',
    type: 'counter',
    samples: (m) => one(m.keysComputed),
  },
  {
    name: 'recompute_batch_duration_seconds',
    help: 'Time a recompute batch spent loading from the sources and computing.',
    type: 'histogram',
    samples: (m) => histogram(m.batchSeconds),
  },
  {
    name: 'source_reads_total',
    help: 'Calls of the source reader.',
    type: 'counter',
    samples: (m) => one(m.reads),
  },
  {
    name: 'queue_depth',
    help: 'Products marked dirty and not yet recomputed.',
    type: 'gauge',
    samples: (_m, s) => one(s.dirty),
  },
  {
    name: 'batches_in_flight',
    help: 'Recompute batches running now.',
    type: 'gauge',
    samples: (_m, s) => one(s.inFlight),
  },
  {
    name: 'freshness_lag_seconds',
    help: 'Age of the oldest committed change not yet reflected (pending marks and the change capture backlog).',
    type: 'gauge',
    samples: (_m, s) => one(s.oldestUnprocessedMs / 1000),
  },
  {
    name: 'marks_total',
    help: 'Products marked changed (after commit).',
    type: 'counter',
    samples: (m) => one(m.marks),
  },
  {
    name: 'lock_waits_total',
    help: 'Lock acquisitions that had to wait.',
    type: 'counter',
    samples: (m) => one(m.lockWaits),
  },
  {
    name: 'lock_timeouts_total',
    help: 'Lock acquisitions that gave up after lockTimeoutMs.',
    type: 'counter',
    samples: (m) => one(m.lockTimeouts),
  },
  {
    name: 'store_errors_total',
    help: 'Calls of the shared store (L2) that failed.',
    type: 'counter',
    samples: (m) => one(m.l2Errors),
  },
  {
    name: 'source_errors_total',
    help: 'Source reads that failed (the products stay dirty).',
    type: 'counter',
    samples: (m) => one(m.sourceErrors),
  },
  {
    name: 'source_read_timeouts_total',
    help: 'Source reads that did not answer within readTimeoutMs.',
    type: 'counter',
    samples: (m) => one(m.readTimeouts),
  },
  {
    name: 'stale_served_total',
    help: 'Values served flagged stale: asked for (allowStale) or because the sources failed (stale-if-error).',
    type: 'counter',
    samples: (m) => [
      { labels: { reason: 'allow_stale' }, value: m.staleServed },
      { labels: { reason: 'source_error' }, value: m.staleIfError },
    ],
  },
  {
    name: 'bus_messages_total',
    help: 'Invalidation messages over the bus, by direction.',
    type: 'counter',
    samples: (m) => [
      { labels: { direction: 'received' }, value: m.busReceived },
      { labels: { direction: 'published' }, value: m.busPublished },
    ],
  },
  {
    name: 'bus_publish_errors_total',
    help: 'Invalidation messages that could not be published.',
    type: 'counter',
    samples: (m) => one(m.busPublishErrors),
  },
  {
    name: 'degraded',
    help: '1 while a tier is bypassed: l2 (the shared store failed) or bus (messages may be lost).',
    type: 'gauge',
    samples: (_m, s) => [
      { labels: { tier: 'l2' }, value: s.degraded ? 1 : 0 },
      { labels: { tier: 'bus' }, value: s.busDegraded ? 1 : 0 },
    ],
  },
  {
    name: 'l1_entries',
    help: 'Keys held in the in-process tier.',
    type: 'gauge',
    samples: (_m, s) => one(s.l1Size),
  },
  {
    name: 'store_debt',
    help: 'Store keys that must be deleted before the store is trusted again.',
    type: 'gauge',
    samples: (_m, s) => one(s.storeDebt),
  },
  {
    name: 'transitions_total',
    help: 'Keys that moved into or out of stock-out or CRITICAL.',
    type: 'counter',
    samples: (m) => one(m.transitions),
  },
  {
    name: 'validations_total',
    help: 'validate() runs (the precision job runs it on a schedule).',
    type: 'counter',
    samples: (m) => one(m.validations),
  },
  {
    name: 'validation_mismatches_total',
    help: 'Keys whose cached value differed from a fresh computation.',
    type: 'counter',
    samples: (m) => one(m.mismatches),
  },
  {
    name: 'errors_total',
    help: "Errors reported through the 'error' event.",
    type: 'counter',
    samples: (m) => one(m.errors),
  },
]

/** One family of the general-purpose caches (`createCache`): samples of one cache, labelled with its name. */
interface GeneralFamily {
  name: string
  help: string
  type: 'counter' | 'gauge'
  samples(m: CacheMetrics): Sample[]
}

const GENERAL_FAMILIES: readonly GeneralFamily[] = [
  {
    name: 'cache_gets_total',
    help: 'Reads of a general-purpose cache by tier and result (memory, tier1.., or a miss that called the function).',
    type: 'counter',
    samples: (m) => [
      { labels: { tier: 'memory', result: 'hit' }, value: m.hits.memory },
      ...m.hits.tiers.map((v, i) => ({ labels: { tier: `tier${i + 1}`, result: 'hit' }, value: v })),
      { labels: { tier: 'all', result: 'miss' }, value: m.misses },
    ],
  },
  {
    name: 'cache_hit_ratio',
    help: 'Hits over reads of a general-purpose cache since start.',
    type: 'gauge',
    samples: (m) => one(m.hitRatio),
  },
  {
    name: 'cache_calls_total',
    help: "Calls of a key's function.",
    type: 'counter',
    samples: (m) => one(m.calls),
  },
  {
    name: 'cache_single_flight_joins_total',
    help: 'Reads that joined a call already running for their key.',
    type: 'counter',
    samples: (m) => one(m.joins),
  },
  {
    name: 'cache_stale_served_total',
    help: 'Values served past their ttl: under swr, or because the function failed (stale-if-error).',
    type: 'counter',
    samples: (m) => [
      { labels: { reason: 'swr' }, value: m.staleServed.swr },
      { labels: { reason: 'error' }, value: m.staleServed.error },
    ],
  },
  {
    name: 'cache_errors_total',
    help: 'Function calls that failed or timed out.',
    type: 'counter',
    samples: (m) => one(m.errors),
  },
  {
    name: 'cache_invalidations_total',
    help: 'Keys and tags (tables included) invalidated.',
    type: 'counter',
    samples: (m) => [
      { labels: { kind: 'key' }, value: m.invalidations.keys },
      { labels: { kind: 'tag' }, value: m.invalidations.tags },
    ],
  },
  {
    name: 'cache_dropped_slow_fills_total',
    help: 'Values not cached because their key or a tag was invalidated while the function ran.',
    type: 'counter',
    samples: (m) => one(m.droppedSlowFills),
  },
  {
    name: 'cache_tier_errors_total',
    help: 'Shared tier calls that failed.',
    type: 'counter',
    samples: (m) => one(m.tierErrors),
  },
]

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/

function checked(options: PrometheusOptions): { prefix: string; labels: Labels } {
  const prefix = options.prefix ?? 'stockcast_'
  if (typeof prefix !== 'string' || (prefix !== '' && !NAME.test(prefix))) {
    throw new ConfigError(
      `prefix must be a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*), got ${String(prefix)}`,
      {
        option: 'prefix',
      },
    )
  }
  const labels = options.labels ?? {}
  for (const [k, v] of Object.entries(labels)) {
    if (!LABEL.test(k) || k.startsWith('__') || k === 'le') {
      throw new ConfigError(`label name ${JSON.stringify(k)} is not a valid Prometheus label name`, {
        option: 'labels',
      })
    }
    if (typeof v !== 'string') throw new ConfigError(`label ${k} must be a string`, { option: 'labels' })
  }
  return { prefix, labels }
}

/** What the metrics come from: a stock cache, general-purpose caches (`createCache`), or both. */
export type PrometheusSource = StockCache | Cache

const isGeneral = (c: unknown): c is Cache =>
  typeof (c as Cache | null)?.cached === 'function' && typeof (c as Cache).metrics === 'function'
const isStock = (c: unknown): c is StockCache =>
  typeof (c as StockCache | null)?.metrics === 'function' && typeof (c as StockCache).status === 'function'

/** Split what to observe: at most one stock cache, general caches with distinct names. */
function sources(what: PrometheusSource | readonly PrometheusSource[]): {
  stock: StockCache | undefined
  general: Cache[]
} {
  const list = Array.isArray(what) ? what : [what]
  let stock: StockCache | undefined
  const general: Cache[] = []
  const names = new Set<string>()
  for (const c of list) {
    if (isGeneral(c)) {
      if (names.has(c.name)) {
        throw new ConfigError(
          `two general-purpose caches are named ${JSON.stringify(c.name)}: their samples would clash`,
          {
            option: 'cache',
          },
        )
      }
      names.add(c.name)
      general.push(c)
    } else if (isStock(c)) {
      if (stock !== undefined) {
        throw new ConfigError('one stock cache per exposition: give another one its own registry or prefix', {
          option: 'cache',
        })
      }
      stock = c
    } else {
      throw new ConfigError(
        'expected a stock cache (createStockCache) or a general-purpose cache (createCache), or an array of them',
        { option: 'cache' },
      )
    }
  }
  if (list.length === 0)
    throw new ConfigError('nothing to observe: pass a cache or an array of caches', { option: 'cache' })
  return { stock, general }
}

interface Collected {
  name: string
  help: string
  type: string
  samples: Sample[]
}

/** The families to expose for these sources (their names are fixed by which kinds are present). */
function familyNames(src: ReturnType<typeof sources>, prefix: string): string[] {
  return [
    ...(src.stock === undefined ? [] : FAMILIES.map((f) => prefix + f.name)),
    ...(src.general.length === 0 ? [] : GENERAL_FAMILIES.map((f) => prefix + f.name)),
  ]
}

/** Read every source once and build the families' samples. */
function collect(src: ReturnType<typeof sources>, prefix: string): Collected[] {
  const out: Collected[] = []
  if (src.stock !== undefined) {
    const m = src.stock.metrics()
    const s = src.stock.status()
    for (const f of FAMILIES) out.push({ name: prefix + f.name, help: f.help, type: f.type, samples: f.samples(m, s) })
  }
  if (src.general.length > 0) {
    const metrics = src.general.map((c) => c.metrics())
    for (const f of GENERAL_FAMILIES) {
      const samples: Sample[] = []
      for (const m of metrics) {
        for (const x of f.samples(m)) samples.push({ ...x, labels: { cache: m.name, ...x.labels } })
      }
      out.push({ name: prefix + f.name, help: f.help, type: f.type, samples })
    }
  }
  return out
}

const escapeLabel = (v: string) => v.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('"', '\\"')
const escapeHelp = (v: string) => v.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Number.POSITIVE_INFINITY) return '+Inf'
  if (v === Number.NEGATIVE_INFINITY) return '-Inf'
  return String(v)
}

function formatLabels(constant: Labels, own: Labels | undefined): string {
  const all = own === undefined ? constant : { ...constant, ...own }
  const parts = Object.entries(all).map(([k, v]) => `${k}="${escapeLabel(v)}"`)
  return parts.length === 0 ? '' : `{${parts.join(',')}}`
}

/**
 * The cache's metrics in the Prometheus text format (version 0.0.4), without prom-client: serve it at `/metrics`
 * (the HTTP handler does). Counters since the cache was created, gauges read now. Pass an array to expose a stock
 * cache and general-purpose caches (`createCache`, families `stockcast_cache_*`, labelled by `cache` name) together.
 *
 * @example
 * http.createServer((req, res) => {
 *   res.setHeader('content-type', PROMETHEUS_CONTENT_TYPE)
 *   res.end(prometheusText(cache, { labels: { cache: 'main' } }))
 * })
 */
export function prometheusText(
  cache: PrometheusSource | readonly PrometheusSource[],
  options: PrometheusOptions = {},
): string {
  const src = sources(cache)
  const { prefix, labels } = checked(options)
  let out = ''
  for (const f of collect(src, prefix)) {
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`
    for (const x of f.samples) {
      out += `${f.name}${x.suffix ?? ''}${formatLabels(labels, x.labels)} ${formatValue(x.value)}\n`
    }
  }
  return out
}

/** The parts of prom-client's module that `registerPrometheus` uses (typed structurally: prom-client is optional). */
export interface PromClientLike {
  register: PromRegistryLike
}

/** The parts of a prom-client `Registry` that `registerPrometheus` uses. */
export interface PromRegistryLike {
  registerMetric(metric: never): void
  removeSingleMetric(name: string): void
}

interface PromMetric {
  name: string
  help: string
  type: string
  aggregator: 'sum'
  get(): Promise<{
    name: string
    help: string
    type: string
    aggregator: 'sum'
    values: Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>
  }>
  reset(): void
}

export interface RegisterPrometheusOptions extends PrometheusOptions {
  /** The registry to add the metrics to. @default the prom-client module's global `register` */
  registry?: PromRegistryLike
  /** The prom-client module (`import * as client from 'prom-client'`); needed when `registry` is not given. */
  client?: PromClientLike
}

/**
 * Add the cache's metrics to a prom-client registry: each family reads `metrics()` / `status()` when the registry is
 * scraped. Returns the function that removes them again (call it before closing the cache). Register every cache of a
 * process in one call (an array: one stock cache, general-purpose caches by name) so the families are not registered
 * twice.
 *
 * @example
 * import * as client from 'prom-client'
 * const unregister = registerPrometheus(cache, { client, labels: { cache: 'main' } })
 * app.get('/metrics', async (_req, res) => res.type(client.register.contentType).send(await client.register.metrics()))
 */
export function registerPrometheus(
  cache: PrometheusSource | readonly PrometheusSource[],
  options: RegisterPrometheusOptions,
): () => void {
  const src = sources(cache)
  const { prefix, labels } = checked(options)
  const registry = options.registry ?? options.client?.register
  if (registry === undefined || typeof registry.registerMetric !== 'function') {
    throw new ConfigError(
      'registerPrometheus needs `registry` (a prom-client Registry) or `client` (the prom-client module): install prom-client and pass it',
      { option: 'registry' },
    )
  }
  // One reading per scrape: every family of a scrape reads the same counters.
  let snap: { at: number; families: Map<string, Collected> } | undefined
  const read = (name: string): Collected => {
    const now = Date.now()
    if (snap === undefined || now - snap.at > 50) {
      snap = { at: now, families: new Map(collect(src, prefix).map((f) => [f.name, f])) }
    }
    return snap.families.get(name)!
  }
  const helpOf = new Map<string, { help: string; type: string }>([
    ...FAMILIES.map((f) => [prefix + f.name, f] as const),
    ...GENERAL_FAMILIES.map((f) => [prefix + f.name, f] as const),
  ])
  const names: string[] = []
  try {
    for (const name of familyNames(src, prefix)) {
      const { help, type } = helpOf.get(name)!
      const metric: PromMetric = {
        name,
        help,
        type,
        aggregator: 'sum',
        async get() {
          return {
            name,
            help,
            type,
            aggregator: 'sum',
            values: read(name).samples.map((x) => ({
              value: x.value,
              labels: { ...labels, ...x.labels },
              ...(x.suffix === undefined ? {} : { metricName: name + x.suffix }),
            })),
          }
        },
        reset() {},
      }
      registry.registerMetric(metric as never)
      names.push(name)
    }
  } catch (cause) {
    for (const n of names) registry.removeSingleMetric(n)
    throw new ConfigError(
      `registerPrometheus: ${cause instanceof Error ? cause.message : String(cause)} (already registered? register every cache in one call, or give each its own registry or prefix)`,
      { option: 'registry', cause },
    )
  }
  return () => {
    for (const n of names) registry.removeSingleMetric(n)
  }
}
