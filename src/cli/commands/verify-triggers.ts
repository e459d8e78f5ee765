import { parseArgs } from 'node:util'
import { type CaptureVerifyReport, CONFIG_OPTIONS, type Command, requireCapture } from '../config.js'
import { CliError, EXIT, type Output, usageError } from '../output.js'

const version = (r: CaptureVerifyReport): string =>
  `installed version ${r.installedVersion ?? 'none'}, expected ${r.expectedVersion ?? 'unknown'}`

/** Print a verify report: one line, then the missing, extra and outdated objects. */
export function printVerifyReport(r: CaptureVerifyReport, output: Output): void {
  output.out(`change capture: ${r.ok ? 'ok' : 'NOT ok'} (${version(r)})`)
  for (const [label, names] of [
    ['missing', r.missing],
    ['extra', r.extra],
    ['outdated', r.outdated],
  ] as const) {
    for (const name of names) output.out(`  ${label.padEnd(8)} ${name}`)
  }
}

/** The one failure line: what is wrong, naming the first objects. */
export function verifyFailure(r: CaptureVerifyReport): CliError {
  if (r.installedVersion === null && r.extra.length === 0 && r.outdated.length === 0) {
    return new CliError('change capture not installed (run stockcast install)', EXIT.failed)
  }
  const parts = (
    [
      ['missing', r.missing],
      ['extra', r.extra],
      ['outdated', r.outdated],
    ] as const
  )
    .filter(([, names]) => names.length > 0)
    .map(
      ([label, names]) =>
        `${label} ${names.slice(0, 3).join(', ')}${names.length > 3 ? ` (+${names.length - 3})` : ''}`,
    )
  return new CliError(`change capture not ok: ${parts.join('; ') || version(r)}`, EXIT.failed)
}

/** `stockcast verify-triggers`: `capture.verify()`; exit 1 when anything is missing, extra or outdated. */
export const verifyTriggersCommand: Command = {
  name: 'verify-triggers',
  async run(args, ctx) {
    const { values, positionals } = parseArgs({ args, strict: true, allowPositionals: true, options: CONFIG_OPTIONS })
    if (positionals.length > 0) {
      throw usageError(`verify-triggers takes no arguments, got ${JSON.stringify(positionals[0])}`)
    }
    const config = await ctx.loadConfig(values.config)
    const report = await requireCapture(config, 'verify-triggers').verify()
    printVerifyReport(report, ctx.output)
    if (!report.ok) throw verifyFailure(report)
    return EXIT.ok
  },
}
