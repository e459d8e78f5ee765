import { parseArgs } from 'node:util'
import { CONFIG_OPTIONS, type Command, requireCapture } from '../config.js'
import { EXIT, usageError } from '../output.js'
import { printVerifyReport, verifyFailure } from './verify-triggers.js'

/** `stockcast install`: `capture.install()` (idempotent), then its verify report. */
export const installCommand: Command = {
  name: 'install',
  async run(args, ctx) {
    const { values, positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: CONFIG_OPTIONS })
    if (positionals.length > 0) throw usageError(`install takes no arguments, got ${JSON.stringify(positionals[0])}`)
    const config = await ctx.loadConfig(values.config)
    const capture = requireCapture(config, 'install')
    await capture.install()
    ctx.output.out('installed the change capture (outbox and triggers)')
    const report = await capture.verify()
    printVerifyReport(report, ctx.output)
    if (!report.ok) throw verifyFailure(report)
    return EXIT.ok
  },
}
