import { parseArgs } from 'node:util'
import type { StockProjection } from '../../cache/types.js'
import { firstDifference } from '../../stock/compare.js'
import type { UpdatedEvent } from '../../stock/stock-events.js'
import { every } from '../../util/timers.js'
import {
  type CaptureListener,
  CONFIG_OPTIONS,
  type Command,
  checkKnownProducts,
  checkProductArgs,
  numberOption,
} from '../config.js'
import { CliError, daysTable, EXIT, isUnreachable, oneLine, projectionLine, usageError } from '../output.js'

/** `[14:03:07]` in local time. */
const clockTime = (ms: number): string => new Date(ms).toTimeString().slice(0, 8)

/**
 * `stockcast watch <product> [--location L] [--every S] [--for S]`: print the projection (a line, then the closing
 * stock of each day) now and whenever it changes: on each `updated` event for the key and on a poll of `cache.get`
 * every `--every` seconds. When the config's capture can `listen`, its outbox is consumed while watching, so writes
 * by any client show up. Runs until SIGINT / SIGTERM, or for `--for` seconds after the first print.
 */
export const watchCommand: Command = {
  name: 'watch',
  async run(args, ctx) {
    const { values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        ...CONFIG_OPTIONS,
        location: { type: 'string' },
        every: { type: 'string' },
        for: { type: 'string' },
      },
    })
    // Listen for Ctrl-C before anything prints: a signal with no listener kills the process at once, unclosed.
    const interrupted = ctx.interrupted
    checkProductArgs(positionals, 'watch')
    if (positionals.length > 1) throw usageError(`watch takes one product, got ${positionals.length}`)
    const product = positionals[0]!
    const location = values.location ?? null
    const everyMs = (numberOption(values.every, 'every') ?? 5) * 1000
    const forSeconds = numberOption(values.for, 'for')
    const config = await ctx.loadConfig(values.config)
    await checkKnownProducts(config, [product])
    const { cache } = config

    let last: StockProjection | undefined
    const show = (p: StockProjection) => {
      if (last !== undefined && firstDifference(last, p) === null) return
      last = p
      ctx.output.out(`[${clockTime(Date.now())}] ${projectionLine(p)}`)
      for (const line of daysTable(p)) ctx.output.out(line)
    }

    let fail: (e: unknown) => void = () => {}
    let finish: () => void = () => {}
    const done = new Promise<void>((resolve, reject) => {
      fail = reject
      finish = resolve
    })
    const onUpdated = (e: UpdatedEvent) => {
      if (e.product === product && e.location === location) show(e.projection)
    }
    let listener: CaptureListener | undefined
    let stopPolling = () => {}
    let stopTimer: unknown
    cache.on('updated', onUpdated)
    try {
      if (typeof config.capture?.listen === 'function') {
        try {
          listener = await config.capture.listen(cache)
        } catch (cause) {
          if (isUnreachable(cause)) throw cause
          const why = `the change capture's listener did not start: ${oneLine(cause)} (stockcast verify-triggers checks it)`
          throw new CliError(`watch: ${why}`, EXIT.failed, { cause })
        }
      }
      show(await cache.get(product, { location }))
      stopPolling = every(ctx.timers, everyMs, () => {
        cache.get(product, { location }).then(show, fail)
      })
      if (forSeconds !== undefined) stopTimer = ctx.timers.setTimeout(finish, forSeconds * 1000)
      interrupted.then(finish)
      await done
      return EXIT.ok
    } finally {
      stopPolling()
      if (stopTimer !== undefined) ctx.timers.clearTimeout(stopTimer)
      cache.off('updated', onUpdated)
      await listener?.stop()
    }
  },
}
