import type { HistogramSnapshot, MetricsSnapshot } from '../cache/metrics.js'
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

function checkCache(cache: StockCache): void {
  if (typeof cache?.metrics !== 'function' || typeof cache.status !== 'function') {
    throw new ConfigError('expected a stock cache (createStockCache) with metrics() and status()', { option: 'cache' })
  }
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
 * (the HTTP handler does). Counters since the cache was created, gauges read now.
 *
 * @example
 * http.createServer((req, res) => {
 *   res.setHeader('content-type', PROMETHEUS_CONTENT_TYPE)
 *   res.end(prometheusText(cache, { labels: { cache: 'main' } }))
 * })
 */
export function prometheusText(cache: StockCache, options: PrometheusOptions = {}): string {
  checkCache(cache)
  const { prefix, labels } = checked(options)
  const m = cache.metrics()
  const s = cache.status()
  let out = ''
  for (const f of FAMILIES) {
    const name = prefix + f.name
    out += `# HELP ${name} ${escapeHelp(f.help)}\n# TYPE ${name} ${f.type}\n`
    for (const x of f.samples(m, s)) {
      out += `${name}${x.suffix ?? ''}${formatLabels(labels, x.labels)} ${formatValue(x.value)}\n`
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
 * scraped. Returns the function that removes them again (call it before closing the cache).
 *
 * @example
 * import * as client from 'prom-client'
 * const unregister = registerPrometheus(cache, { client, labels: { cache: 'main' } })
 * app.get('/metrics', async (_req, res) => res.type(client.register.contentType).send(await client.register.metrics()))
 */
export function registerPrometheus(cache: StockCache, options: RegisterPrometheusOptions): () => void {
  checkCache(cache)
  const { prefix, labels } = checked(options)
  const registry = options.registry ?? options.client?.register
  if (registry === undefined || typeof registry.registerMetric !== 'function') {
    throw new ConfigError(
      'registerPrometheus needs `registry` (a prom-client Registry) or `client` (the prom-client module): install prom-client and pass it',
      { option: 'registry' },
    )
  }
  // One snapshot per scrape: every family of a scrape reads the same counters.
  let snap: { at: number; m: MetricsSnapshot; s: StockCacheStatus } | undefined
  const read = () => {
    const now = Date.now()
    if (snap === undefined || now - snap.at > 50) snap = { at: now, m: cache.metrics(), s: cache.status() }
    return snap
  }
  const names: string[] = []
  try {
    for (const f of FAMILIES) {
      const name = prefix + f.name
      const metric: PromMetric = {
        name,
        help: f.help,
        type: f.type,
        aggregator: 'sum',
        async get() {
          const { m, s } = read()
          return {
            name,
            help: f.help,
            type: f.type,
            aggregator: 'sum',
            values: f.samples(m, s).map((x) => ({
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
      `registerPrometheus: ${cause instanceof Error ? cause.message : String(cause)} (already registered? give each cache its own labels and registry, or unregister first)`,
      { option: 'registry', cause },
    )
  }
  return () => {
    for (const n of names) registry.removeSingleMetric(n)
  }
}
