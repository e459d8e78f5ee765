import type { StockProjection } from '../cache/types.js'
import { ReadTimeoutError, SourceUnavailableError, StoreUnavailableError } from '../errors.js'
import type { Timers } from '../util/timers.js'

/** The CLI's exit codes (documented in the help text and the README). */
export const EXIT = {
  ok: 0,
  /** The check failed (validate found mismatches, verify-triggers is not ok, rebuild had failures), or another error. */
  failed: 1,
  /** Unknown command, bad option or argument. */
  usage: 2,
  /** The config module is missing, does not load, or has the wrong shape. */
  config: 3,
  /** The database (or another source or store) is unreachable. */
  unreachable: 4,
  /** A product the reader does not list. */
  unknownProduct: 5,
} as const

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

/** A failure the CLI reports with its own exit code and one-line message. */
export class CliError extends Error {
  readonly exitCode: ExitCode

  constructor(message: string, exitCode: ExitCode, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CliError'
    this.exitCode = exitCode
  }
}

export const usageError = (message: string): CliError => new CliError(message, EXIT.usage)
export const configError = (message: string, cause?: unknown): CliError =>
  new CliError(message, EXIT.config, cause === undefined ? undefined : { cause })

/**
 * stockcast's own codes for an unreachable source or store. Compared by code, not `instanceof`: the config's cache
 * comes from the `stockcast` package, whose error classes are not the CLI bundle's.
 */
const UNAVAILABLE_CODES = new Set([SourceUnavailableError.code, ReadTimeoutError.code, StoreUnavailableError.code])

/** Socket-level codes (Node, pg, mysql2) that mean the server could not be reached or dropped the connection. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
])

/** pg's own messages for a connection that failed or ended (they carry no code). */
const PG_CONNECTION_MESSAGES =
  /^Connection terminated|^timeout expired|^Connection ended|Client has encountered a connection error/

/** Each error in `error`'s `cause` chain and inside AggregateErrors (Node reports a refused dual-stack connect so). */
function* errorTree(error: unknown, seen = new Set<unknown>()): Generator<unknown> {
  if (error === null || error === undefined || seen.has(error)) return
  seen.add(error)
  yield error
  if (typeof error !== 'object') return
  if (error instanceof AggregateError) for (const e of error.errors) yield* errorTree(e, seen)
  yield* errorTree((error as { cause?: unknown }).cause, seen)
}

/**
 * True when `error` means a database is unreachable: a SourceUnavailableError (ReadTimeoutError) or
 * StoreUnavailableError, or a
 * connection failure (socket codes, PostgreSQL's class 08 and shutdown codes, pg's connection messages) anywhere in
 * its cause chain.
 */
export function isUnreachable(error: unknown): boolean {
  for (const e of errorTree(error)) {
    if (typeof e !== 'object' || e === null) continue
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') {
      if (UNAVAILABLE_CODES.has(code) || CONNECTION_CODES.has(code)) return true
      // SQLSTATE class 08 (connection exception), 57P01..57P03 (shutting down, cannot connect now).
      if (/^08[0-9A-Z]{3}$/.test(code) || /^57P0[123]$/.test(code)) return true
    }
    const message = (e as { message?: unknown }).message
    if (typeof message === 'string' && PG_CONNECTION_MESSAGES.test(message)) return true
  }
  return false
}

/** The exit code for an error a command threw. */
export function exitCodeOf(error: unknown): ExitCode {
  if (error instanceof CliError) return error.exitCode
  if ((error as { code?: unknown } | null)?.code?.toString().startsWith('ERR_PARSE_ARGS_')) return EXIT.usage
  if (isUnreachable(error)) return EXIT.unreachable
  return EXIT.failed
}

/** The error's message on one line; an error with an empty message falls back to its cause's, then its name. */
export function oneLine(error: unknown): string {
  let text = ''
  for (const e of errorTree(error)) {
    const m = e instanceof Error ? e.message : typeof e === 'string' ? e : ''
    if (m.trim() !== '') {
      text = m
      break
    }
  }
  if (text === '') text = error instanceof Error ? error.name : String(error)
  return text.replace(/\s*\n\s*/g, ' ').trim()
}

/** Where the CLI writes: standard output for results, standard error for progress and the one failure line. */
export interface Output {
  out(line: string): void
  err(line: string): void
  /** True when standard error is a terminal (the progress bar draws there). */
  readonly errIsTTY: boolean
  readonly errStream: NodeJS.WritableStream
}

export const processOutput: Output = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  get errIsTTY() {
    return process.stderr.isTTY === true
  },
  errStream: process.stderr,
}

/** Print the one failure line (`stockcast: <message>`; the stack too with STOCKCAST_DEBUG=1) and return the exit code. */
export function reportFailure(error: unknown, output: Output = processOutput): ExitCode {
  output.err(`stockcast: ${oneLine(error)}`)
  if (process.env.STOCKCAST_DEBUG === '1') output.err(error instanceof Error ? (error.stack ?? '') : String(error))
  return exitCodeOf(error)
}

/**
 * The CLI's timers: the global ones, not unref'd (unlike `defaultTimers`), so that a watch waiting for its next poll
 * or its `--for` end keeps the process alive.
 */
export const cliTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
}

/** `1.23 s` */
export const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`

/** The product, with its location when there is one: `SKU-1 @ WH-2`. */
export const keyLabel = (product: string, location: string | null | undefined): string =>
  location === null || location === undefined ? product : `${product} @ ${location}`

/** One line: stock today, status, 7-day minimum and first stock-out date. */
export function projectionLine(p: StockProjection): string {
  return [
    keyLabel(p.product, p.location),
    `stock today ${p.stockToday}`,
    `status ${p.status}`,
    `7-day min ${p.minClosing7d} on ${p.minClosing7dDate}`,
    `stock-out ${p.firstStockoutDate ?? 'none'}`,
  ].join('  ')
}

/** The days' closing stock, seven to a line (`MM-DD closing`), indented under a `projectionLine`. */
export function daysTable(p: StockProjection, perLine = 7): string[] {
  const cells = p.days.map((d) => `${d.date.slice(5)} ${String(d.closing).padStart(7)}`)
  const lines: string[] = []
  for (let i = 0; i < cells.length; i += perLine) {
    lines.push(`  D${String(i).padEnd(3)}${cells.slice(i, i + perLine).join('  ')}`)
  }
  return lines
}
