import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { StockcastError } from '../errors.js'
import { availabilityDate, projectStock } from '../projection/index.js'
import type { AvailabilityRule, ProjectionInputs } from '../projection/types.js'

const HELP = `stockcast: projected stock from the command line

Usage:
  stockcast project [file.json] [--today YYYY-MM-DD] [--tz Zone] [--horizon N] [--scale N] [--safety Q] [--json]
  stockcast available <qty> [file.json] [--rule promise|point] [--pending] [...project options]

The input (a file, or standard input) is JSON: { "onHand": "120.5" | [{ "date"?, "quantity" }],
"supply": [{ "date", "quantity", "pending"? }], "demand": [...] }.
Database commands (install, verify triggers) come with the adapter packages.`

function main(argv: string[]): number {
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
  const [command, ...rest] = positionals
  if (values.help || command === undefined) {
    console.log(HELP)
    return command === undefined && !values.help ? 1 : 0
  }
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
    const text = readFileSync(file ?? 0, 'utf8')
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
    return 0
  }
  if (command === 'available') {
    const qty = rest[0]
    if (qty === undefined) throw new StockcastError('available needs a quantity: stockcast available 25 inputs.json')
    const p = projectStock(readInputs(rest[1]), options)
    const rule = (values.rule ?? 'promise') as AvailabilityRule
    if (rule !== 'promise' && rule !== 'point') throw new StockcastError(`--rule must be promise or point, got ${rule}`)
    const a = availabilityDate(p, qty, { rule, includePending: values.pending ?? false })
    console.log(
      values.json ? JSON.stringify(a) : a.date === null ? `never (${a.reason})` : `${a.date} (D${a.dayIndex})`,
    )
    return 0
  }
  console.error(`unknown command ${JSON.stringify(command)}\n\n${HELP}`)
  return 1
}

try {
  process.exitCode = main(process.argv.slice(2))
} catch (e) {
  console.error(e instanceof StockcastError ? `${e.name}: ${e.message}` : e)
  process.exitCode = 1
}
