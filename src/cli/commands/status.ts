import { parseArgs } from 'node:util'
import type { MetricsSnapshot } from '../../cache/metrics.js'
import type { StockCacheStatus } from '../../stock/types.js'
import { type CaptureVerifyReport, CONFIG_OPTIONS, type Command } from '../config.js'
import { EXIT, usageError } from '../output.js'

/** The metrics `status` shows (the full snapshot is in `--json`). */
const HEADLINE: ReadonlyArray<keyof MetricsSnapshot> = [
  'l1Hits',
  'l1Misses',
  'l2Hits',
  'l2Misses',
  'l2Errors',
  'recomputes',
  'reads',
  'sourceErrors',
  'errors',
  'marks',
  'rebuilds',
  'validations',
  'mismatches',
  'freshnessLagMs',
]

const captureLine = (r: CaptureVerifyReport): string => {
  if (r.ok) return `ok${r.installedVersion == null ? '' : ` (version ${r.installedVersion})`}`
  if (r.installedVersion === null) return 'not installed (run stockcast install)'
  const parts = [
    r.missing.length > 0 ? `${r.missing.length} missing` : '',
    r.extra.length > 0 ? `${r.extra.length} extra` : '',
    r.outdated.length > 0 ? `${r.outdated.length} outdated` : '',
  ].filter(Boolean)
  return `NOT ok: ${parts.join(', ') || 'see stockcast verify-triggers'}`
}

function statusLines(s: StockCacheStatus, products: number | undefined, capture: string | undefined): string[] {
  const row = (label: string, value: string) => `${label.padEnd(12)} ${value}`
  return [
    row('today', s.today),
    ...(products === undefined ? [] : [row('products', String(products))]),
    ...(capture === undefined ? [] : [row('capture', capture)]),
    row('dirty', `${s.dirty} (oldest ${s.oldestDirtyMs} ms)`),
    row('unprocessed', `${s.oldestUnprocessedMs} ms`),
    row('in flight', String(s.inFlight)),
    row('L1', `${s.l1Size} keys`),
    row('L2', s.degraded ? `DEGRADED (debt ${s.storeDebt} keys)` : `ok (debt ${s.storeDebt} keys)`),
    row('bus', s.busDegraded ? 'DEGRADED' : 'ok'),
    row('bulk depth', String(s.bulkDepth)),
    row('locks', String(s.locks)),
  ]
}

/**
 * `stockcast status [--json]`: the config's cache status and headline metrics, the product count when the reader
 * lists products and the change capture's verify result when there is one (both read the database).
 */
export const statusCommand: Command = {
  name: 'status',
  async run(args, ctx) {
    const { values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: { ...CONFIG_OPTIONS, json: { type: 'boolean' } },
    })
    if (positionals.length > 0) throw usageError(`status takes no arguments, got ${JSON.stringify(positionals[0])}`)
    const config = await ctx.loadConfig(values.config)
    const products = typeof config.reader?.products === 'function' ? (await config.reader.products()).length : undefined
    const verify = config.capture === undefined ? undefined : await config.capture.verify()
    const status = config.cache.status()
    const metrics = config.cache.metrics()
    if (values.json) {
      ctx.output.out(JSON.stringify({ status, metrics, products: products ?? null, capture: verify ?? null }, null, 2))
      return EXIT.ok
    }
    for (const line of statusLines(status, products, verify && captureLine(verify))) ctx.output.out(line)
    ctx.output.out(`${'metrics'.padEnd(12)} ${HEADLINE.map((k) => `${k} ${String(metrics[k])}`).join(', ')}`)
    return EXIT.ok
  },
}
