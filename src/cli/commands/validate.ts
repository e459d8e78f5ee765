import { parseArgs } from 'node:util'
import type { ValidationMismatch } from '../../stock/validate.js'
import { CONFIG_OPTIONS, type Command, numberOption } from '../config.js'
import { CliError, EXIT, keyLabel, usageError } from '../output.js'

/** Mismatches printed in full (the rest are counted). */
const SHOWN = 5

const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v))
const mismatchLine = (m: ValidationMismatch): string =>
  `  ${keyLabel(m.product, m.location)}: ${m.field} cached ${show(m.cached)}, truth ${show(m.truth)}`

/**
 * `stockcast validate [--sample N] [--repair] [--json]`: compare what the cache would serve (L1, else the store) with
 * a fresh computation. Exit 1 when there are mismatches (the first few are printed).
 */
export const validateCommand: Command = {
  name: 'validate',
  async run(args, ctx) {
    const { values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        ...CONFIG_OPTIONS,
        sample: { type: 'string' },
        repair: { type: 'boolean' },
        json: { type: 'boolean' },
      },
    })
    if (positionals.length > 0) throw usageError(`validate takes no arguments, got ${JSON.stringify(positionals[0])}`)
    const sample = numberOption(values.sample, 'sample', { integer: true, allowZero: true })
    const config = await ctx.loadConfig(values.config)
    const report = await config.cache.validate({
      ...(sample === undefined ? {} : { sample }),
      ...(values.repair ? { repair: true } : {}),
    })
    const n = report.mismatches.length
    if (values.json) ctx.output.out(JSON.stringify(report, null, 2))
    else {
      ctx.output.out(
        `checked ${report.checked} keys: ${n} mismatches (rate ${report.rate}), ${report.uncached} uncached, ` +
          `${report.skipped} skipped, ${report.invalid.length} invalid`,
      )
      for (const m of report.mismatches.slice(0, SHOWN)) ctx.output.out(mismatchLine(m))
      if (n > SHOWN) ctx.output.out(`  ... and ${n - SHOWN} more`)
      for (const i of report.invalid.slice(0, SHOWN)) ctx.output.out(`  invalid ${i.product}: ${i.message}`)
    }
    if (n > 0) {
      const repaired = values.repair ? ' (marked dirty for recompute)' : ''
      throw new CliError(`validate: ${n} mismatches in ${report.checked} keys${repaired}`, EXIT.failed)
    }
    return EXIT.ok
  },
}
