import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { StockcastError } from '../errors.js'
import { availabilityDate, projectStock } from '../projection/index.js'
import type { AvailabilityRule, ProjectionInputs } from '../projection/types.js'
import { installCommand } from './commands/install.js'
import { rebuildCommand } from './commands/rebuild.js'
import { refreshCommand } from './commands/refresh.js'
import { statusCommand } from './commands/status.js'
import { uninstallCommand } from './commands/uninstall.js'
import { validateCommand } from './commands/validate.js'
import { verifyTriggersCommand } from './commands/verify-triggers.js'
import { watchCommand } from './commands/watch.js'
import { type Command, type CommandContext, closeConfig, type LoadedConfig, loadConfig } from './config.js'
import { CliError, cliTimers, EXIT, type ExitCode, processOutput, reportFailure, usageError } from './output.js'

const HELP = `stockcast: projected stock from the command line

Usage:
  stockcast <command> [options]

Projections from a JSON file (no database):
  project [file.json] [--today YYYY-MM-DD] [--tz Zone] [--horizon N] [--scale N] [--safety Q] [--json]
  available <qty> [file.json] [--rule promise|point] [--pending] [...project options]
    The input (a file, or standard input) is JSON: { "onHand": "120.5" | [{ "date"?, "quantity" }],
    "supply": [{ "date", "quantity", "pending"? }], "demand": [...] }.

Your cache and database (every command takes --config <module>, or the env STOCKCAST_CONFIG):
  status [--json]                     cache status, headline metrics, product count, change capture check
  rebuild [--no-progress]             recompute every product (a progress bar on a terminal), then a summary
  refresh <product...> [--location L] [--json]
                                      recompute now; print stock today, status and stock-out date
  validate [--sample N] [--repair] [--json]
                                      compare cached values with a fresh computation
  verify-triggers                     check the change capture's triggers, functions and outbox
  install                             install the change capture (outbox and triggers; idempotent)
  uninstall                           drop the change capture's triggers, functions and outbox
  watch <product> [--location L] [--every S] [--for S]
                                      print the projection now and whenever it changes (an updated event, or
                                      a poll every S seconds, default 5); stops on Ctrl-C or after --for S

The config module (resolved from the current directory, loaded with import()) exports \`cache\` (from
createStockCache) and optionally \`capture\` (e.g. sqlChangeCapture from @stockcast/sql: install, uninstall,
verify-triggers, and watch consumes its outbox), \`reader\` (with products(): unknown products are reported) and
\`close()\` (closes your pools); or a default export that is such an object or a function returning one.

Exit codes:
  0  ok
  1  the check failed (validate found mismatches, verify-triggers is not ok, rebuild had failures), or another error
  2  usage: unknown command, bad option or argument
  3  config: the module is not found, does not load, or exports the wrong shape
  4  a database (source or store) is unreachable
  5  unknown product (the config's reader does not list it)
Failures print one line to standard error (the stack too with STOCKCAST_DEBUG=1).`

/** The database commands, by name. */
const COMMANDS: ReadonlyMap<string, Command> = new Map(
  [
    statusCommand,
    rebuildCommand,
    refreshCommand,
    validateCommand,
    verifyTriggersCommand,
    installCommand,
    uninstallCommand,
    watchCommand,
  ].map((c) => [c.name, c]),
)

/** `project` and `available`: the calculator on a JSON file, as before the database commands existed. */
function projectionCommand(command: 'project' | 'available', argv: string[]): ExitCode {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      today: { type: 'string' },
      tz: { type: 'string' },
      horizon: { type: 'string' },
      scale: { type: 'string' },
      safety: { type: 'string' },
      rule: { type: 'string' },
      pending: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const rest = positionals
  // Everything below comes from the command line (options, the input file): its errors are usage errors.
  try {
    const num = (v: string | undefined, name: string) => {
      if (v === undefined) return undefined
      const n = Number(v)
      if (!Number.isInteger(n)) throw new StockcastError(`--${name} must be an integer, got ${JSON.stringify(v)}`)
      return n
    }
    const options = {
      ...(values.today ? { today: values.today } : {}),
      ...(values.tz ? { timeZone: values.tz } : {}),
      ...(values.horizon ? { horizonDays: num(values.horizon, 'horizon') } : {}),
      ...(values.scale ? { scale: num(values.scale, 'scale') } : {}),
      ...(values.safety ? { safetyStock: values.safety } : {}),
    }
    const readInputs = (file: string | undefined): ProjectionInputs => {
      let text: string
      try {
        text = readFileSync(file ?? 0, 'utf8')
      } catch (cause) {
        throw new StockcastError(`cannot read ${file ?? 'standard input'}: ${(cause as Error).message}`, { cause })
      }
      try {
        return JSON.parse(text) as ProjectionInputs
      } catch (cause) {
        throw new StockcastError(`${file ?? 'standard input'} is not valid JSON`, { cause })
      }
    }
    if (command === 'project') {
      const p = projectStock(readInputs(rest[0]), options)
      if (values.json) console.log(JSON.stringify(p, null, 2))
      else {
        console.log(
          `D0 ${p.today} (${p.timeZone})  stock today ${p.stockToday}  7-day min ${p.minClosing7d} on ${p.minClosing7dDate}`,
        )
        console.log(`status ${p.status}  first stock-out ${p.firstStockoutDate ?? 'none'}`)
        console.table(
          p.days.map((d) => ({
            date: d.date,
            opening: d.opening,
            supply: d.supply,
            demand: d.demand,
            closing: d.closing,
          })),
        )
      }
      return EXIT.ok
    }
    const qty = rest[0]
    if (qty === undefined) throw new StockcastError('available needs a quantity: stockcast available 25 inputs.json')
    const p = projectStock(readInputs(rest[1]), options)
    const rule = (values.rule ?? 'promise') as AvailabilityRule
    if (rule !== 'promise' && rule !== 'point') throw new StockcastError(`--rule must be promise or point, got ${rule}`)
    const a = availabilityDate(p, qty, { rule, includePending: values.pending ?? false })
    console.log(
      values.json ? JSON.stringify(a) : a.date === null ? `never (${a.reason})` : `${a.date} (D${a.dayIndex})`,
    )
    return EXIT.ok
  } catch (e) {
    if (e instanceof StockcastError) throw new CliError(e.message, EXIT.usage, { cause: e })
    throw e
  }
}

/** The command word: the first argument that is not an option (nor `--config`'s value). */
function splitCommand(argv: readonly string[]): { command: string | undefined; rest: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--') break
    if (a === '--config') {
      i++
      continue
    }
    if (a.startsWith('-')) continue
    return { command: a, rest: [...argv.slice(0, i), ...argv.slice(i + 1)] }
  }
  return { command: undefined, rest: [...argv] }
}

/** parseArgs' errors as usage errors naming the command, their advice sentence left out; others unchanged. */
function parseArgsError(e: unknown, command: string): unknown {
  const code = (e as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS_')) return e
  const first = (e as Error).message.split(/\.\s/)[0]!.replace(/\.$/, '')
  return usageError(`${command}: ${first} (stockcast --help lists the options)`)
}

/** Run the CLI; returns the exit code. Every loaded config is closed before it returns. */
async function main(argv: string[]): Promise<ExitCode> {
  const output = processOutput
  const loaded: LoadedConfig[] = []
  let interrupted: Promise<void> | undefined
  const ctx: CommandContext = {
    output,
    timers: cliTimers,
    async loadConfig(spec) {
      const config = await loadConfig(spec)
      loaded.push(config)
      return config
    },
    // Signal handlers only for a command that waits for them (watch); once, so a second Ctrl-C still kills.
    get interrupted() {
      interrupted ??= new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve())
        process.once('SIGTERM', () => resolve())
      })
      return interrupted
    },
  }
  let code: ExitCode
  let failure: unknown
  try {
    const { command, rest } = splitCommand(argv)
    const wantsHelp = rest.includes('--help') || rest.includes('-h') || command === 'help'
    if (wantsHelp) {
      output.out(HELP)
      return EXIT.ok
    }
    if (command === undefined) throw usageError('no command given (stockcast --help lists them)')
    const projection = command === 'project' || command === 'available' ? command : undefined
    const cmd = COMMANDS.get(command)
    if (projection === undefined && cmd === undefined) {
      const like = [...COMMANDS.keys()].filter((name) => name.startsWith(command))
      const hint = like.length === 1 ? `did you mean ${like[0]}? ` : ''
      throw usageError(`unknown command ${JSON.stringify(command)} (${hint}stockcast --help lists them)`)
    }
    try {
      code = projection !== undefined ? projectionCommand(projection, rest) : await cmd!.run(rest, ctx)
    } catch (e) {
      throw parseArgsError(e, command)
    }
  } catch (e) {
    failure = e
    code = EXIT.failed
  }
  for (const config of loaded) {
    const e = await closeConfig(config)
    if (e !== undefined) failure ??= e
  }
  if (failure !== undefined) code = reportFailure(failure, output)
  return code
}

/** Exit once standard output and error have taken everything written (pools a config left open do not hold us). */
async function exit(code: number): Promise<never> {
  await Promise.all(
    [process.stdout, process.stderr].map((s) => new Promise<void>((resolve) => s.write('', () => resolve()))),
  )
  process.exit(code)
}

await exit(await main(process.argv.slice(2)))
