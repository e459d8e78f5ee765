import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { SourceReader } from '../cache/types.js'
import type { StockCache } from '../stock/types.js'
import type { Timers } from '../util/timers.js'
import {
  CliError,
  configError,
  EXIT,
  type ExitCode,
  isUnreachable,
  type Output,
  oneLine,
  usageError,
} from './output.js'

/** What a change capture's `verify()` reports (the `VerifyReport` of @stockcast/sql, typed structurally). */
export interface CaptureVerifyReport {
  ok: boolean
  installedVersion?: number | null
  expectedVersion?: number
  missing: readonly string[]
  extra: readonly string[]
  outdated: readonly string[]
}

/** A running outbox consumer, as far as `watch` uses it. */
export interface CaptureListener {
  stop(): Promise<void>
}

/** The change capture (the `SqlChangeCapture` of @stockcast/sql), typed structurally: only what the CLI calls. */
export interface CliCapture {
  install(): Promise<void>
  uninstall(): Promise<void>
  verify(): Promise<CaptureVerifyReport>
  /** When present, `watch` consumes the outbox into the cache while it runs. */
  listen?(cache: StockCache): Promise<CaptureListener>
}

/** What a config module exports (named), or what its default export is or returns. */
export interface CliConfig {
  cache: StockCache
  /** Needed by `install`, `uninstall` and `verify-triggers`. */
  capture?: CliCapture
  /** With `products()`, the CLI tells an unknown product from one without rows (exit code 5). */
  reader?: SourceReader
  /** Closes what the cache does not own (connection pools); called after `cache.close()`. */
  close?: () => Promise<void> | void
}

/** A loaded config and the absolute path it came from. */
export interface LoadedConfig extends CliConfig {
  readonly path: string
}

const CACHE_METHODS = ['get', 'getMany', 'refresh', 'validate', 'rebuildAll', 'status', 'metrics', 'on', 'off', 'close']
const CAPTURE_METHODS = ['install', 'uninstall', 'verify']

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null
const missingMethods = (v: Record<string, unknown>, names: readonly string[]): string[] =>
  names.filter((n) => typeof v[n] !== 'function')

/** Check the shape of a config object; the error names what is missing. */
export function checkConfig(value: unknown, where: string): CliConfig {
  if (!isObject(value)) {
    throw configError(`${where} must export \`cache\` (a StockCache), or a default export that is or returns one`)
  }
  const { cache, capture, reader, close } = value
  if (cache === undefined) throw configError(`${where} exports no \`cache\` (the StockCache from createStockCache)`)
  if (!isObject(cache)) throw configError(`${where}: \`cache\` is not a StockCache (createStockCache returns one)`)
  const noCache = missingMethods(cache, CACHE_METHODS)
  if (noCache.length > 0) {
    throw configError(`${where}: \`cache\` is not a StockCache: it has no ${noCache.map((m) => `${m}()`).join(', ')}`)
  }
  if (capture !== undefined) {
    const noCapture = isObject(capture) ? missingMethods(capture, CAPTURE_METHODS) : CAPTURE_METHODS
    if (noCapture.length > 0) {
      throw configError(
        `${where}: \`capture\` is not a change capture: it has no ${noCapture.map((m) => `${m}()`).join(', ')}`,
      )
    }
    if (isObject(capture) && capture.listen !== undefined && typeof capture.listen !== 'function') {
      throw configError(`${where}: \`capture.listen\` must be a function`)
    }
  }
  if (reader !== undefined) {
    if (!isObject(reader) || typeof reader.read !== 'function') {
      throw configError(`${where}: \`reader\` is not a SourceReader: it has no read()`)
    }
    if (reader.products !== undefined && typeof reader.products !== 'function') {
      throw configError(`${where}: \`reader.products\` must be a function`)
    }
  }
  if (close !== undefined && typeof close !== 'function') throw configError(`${where}: \`close\` must be a function`)
  return value as unknown as CliConfig
}

/** A failure while loading: a connection error keeps exit code 4 (the module connects at import), else 3. */
function loadError(where: string, cause: unknown): CliError {
  if (isUnreachable(cause)) return new CliError(`${where}: ${oneLine(cause)}`, EXIT.unreachable, { cause })
  return configError(`${where} failed to load: ${oneLine(cause)}`, cause)
}

/**
 * Load the config module: `spec` (from `--config`), else `STOCKCAST_CONFIG`, resolved from `cwd`. Named exports
 * (`cache`, `capture`, `reader`, `close`) win; otherwise the default export, an object or a (sync or async) function
 * returning one.
 */
export async function loadConfig(
  spec: string | undefined,
  cwd: string = process.cwd(),
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoadedConfig> {
  const given = spec ?? env.STOCKCAST_CONFIG
  if (given === undefined || given === '') {
    throw configError('no config: pass --config <module> or set STOCKCAST_CONFIG')
  }
  const path = resolve(cwd, given)
  const where = `config ${given}`
  if (!existsSync(path)) throw configError(`config module not found: ${path}`)
  let mod: Record<string, unknown>
  try {
    mod = (await import(pathToFileURL(path).href)) as Record<string, unknown>
  } catch (cause) {
    throw loadError(where, cause)
  }
  let value: unknown = mod
  if (mod.cache === undefined && mod.default !== undefined) {
    value = mod.default
    if (typeof value === 'function') {
      try {
        value = await (value as () => unknown)()
      } catch (cause) {
        throw loadError(`${where} (its default export)`, cause)
      }
    }
  }
  const c = checkConfig(value, where)
  const loaded: LoadedConfig = { path, cache: c.cache }
  if (c.capture !== undefined) loaded.capture = c.capture
  if (c.reader !== undefined) loaded.reader = c.reader
  // Called on `c`: a config object's close() may use `this`.
  if (c.close !== undefined) loaded.close = () => c.close!()
  return loaded
}

/** Close the cache, then the config's own resources; every step runs. Returns the first error, if any. */
export async function closeConfig(config: CliConfig): Promise<unknown> {
  let first: unknown
  try {
    await config.cache.close()
  } catch (e) {
    first = e
  }
  try {
    await config.close?.()
  } catch (e) {
    first ??= e
  }
  return first
}

/** The options every database command takes. */
export const CONFIG_OPTIONS = {
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

/** What a command runs with. The dispatcher closes whatever `loadConfig` loaded once the command settles. */
export interface CommandContext {
  readonly output: Output
  readonly timers: Timers
  /** Load the config (`--config`, else STOCKCAST_CONFIG). */
  loadConfig(spec: string | undefined): Promise<LoadedConfig>
  /** Resolves when the user interrupts (SIGINT or SIGTERM); `watch` stops then. */
  readonly interrupted: Promise<void>
}

/** One subcommand of the CLI (a file under src/cli/commands). */
export interface Command {
  readonly name: string
  /** Parses its own arguments (strictly), runs, and returns the exit code; throws CliError and the like. */
  run(args: string[], ctx: CommandContext): Promise<ExitCode>
}

/** The config's capture, or a config error naming the command that needs it. */
export function requireCapture(config: LoadedConfig, command: string): CliCapture {
  if (config.capture === undefined) {
    throw configError(`${command} needs \`capture\` in the config (${config.path} exports none)`)
  }
  return config.capture
}

/** Fail with exit code 5 when the reader can list products and some of `products` are not among them. */
export async function checkKnownProducts(config: LoadedConfig, products: readonly string[]): Promise<void> {
  if (typeof config.reader?.products !== 'function') return
  const known = new Set(await config.reader.products())
  const unknown = products.filter((p) => !known.has(p))
  if (unknown.length === 0) return
  const names = unknown.map((p) => JSON.stringify(p)).join(', ')
  throw new CliError(
    `unknown product${unknown.length > 1 ? 's' : ''} ${names}: the reader does not list ${unknown.length > 1 ? 'them' : 'it'}`,
    EXIT.unknownProduct,
  )
}

/** A product argument: non-empty (the cache rejects the rest with its own message). */
export function checkProductArgs(products: readonly string[], command: string): void {
  if (products.length === 0)
    throw usageError(`${command} needs at least one product: stockcast ${command} <product...>`)
  for (const p of products) if (p.trim() === '') throw usageError(`${command}: a product id must not be empty`)
}

/** A number option: finite and > 0 (or >= 0 with `allowZero`), else a usage error. */
export function numberOption(
  value: string | undefined,
  name: string,
  options: { integer?: boolean; allowZero?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  const ok =
    value.trim() !== '' &&
    Number.isFinite(n) &&
    (options.integer !== true || Number.isInteger(n)) &&
    (options.allowZero === true ? n >= 0 : n > 0)
  if (!ok) {
    const kind = options.integer === true ? 'an integer' : 'a number'
    throw usageError(
      `--${name} must be ${kind} ${options.allowZero === true ? '>= 0' : '> 0'}, got ${JSON.stringify(value)}`,
    )
  }
  return n
}
