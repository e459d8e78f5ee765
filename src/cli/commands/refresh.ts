import { parseArgs } from 'node:util'
import type { StockProjection } from '../../cache/types.js'
import { CONFIG_OPTIONS, type Command, checkKnownProducts, checkProductArgs } from '../config.js'
import { EXIT, projectionLine } from '../output.js'

/**
 * `stockcast refresh <product...> [--location L] [--json]`: recompute each product from the sources now and print
 * its stock today, status and first stock-out date. Exit 5 when the reader lists products and one is not among them.
 */
export const refreshCommand: Command = {
  name: 'refresh',
  async run(args, ctx) {
    const { values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: { ...CONFIG_OPTIONS, location: { type: 'string' }, json: { type: 'boolean' } },
    })
    checkProductArgs(positionals, 'refresh')
    const config = await ctx.loadConfig(values.config)
    await checkKnownProducts(config, positionals)
    const results: StockProjection[] = []
    for (const product of positionals) {
      const p = await config.cache.refresh(product, values.location ?? null)
      results.push(p)
      if (!values.json) ctx.output.out(projectionLine(p))
    }
    if (values.json) ctx.output.out(JSON.stringify(results, null, 2))
    return EXIT.ok
  },
}
