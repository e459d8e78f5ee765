import { parseArgs } from 'node:util'
import { CONFIG_OPTIONS, type Command, requireCapture } from '../config.js'
import { EXIT, usageError } from '../output.js'

/** `stockcast uninstall`: `capture.uninstall()`: drops the triggers, their functions and the outbox. */
export const uninstallCommand: Command = {
  name: 'uninstall',
  async run(args, ctx) {
    const { values, positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: CONFIG_OPTIONS })
    if (positionals.length > 0) throw usageError(`uninstall takes no arguments, got ${JSON.stringify(positionals[0])}`)
    const config = await ctx.loadConfig(values.config)
    await requireCapture(config, 'uninstall').uninstall()
    ctx.output.out('uninstalled the change capture (triggers, functions and outbox dropped)')
    return EXIT.ok
  },
}
