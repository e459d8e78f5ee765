import { parseArgs } from 'node:util'
import type { RebuildProgress, RebuildReport } from '../../stock/types.js'
import { CONFIG_OPTIONS, type Command } from '../config.js'
import { CliError, EXIT, type Output, seconds, usageError } from '../output.js'

type CliProgress = typeof import('cli-progress')

/** cli-progress, or undefined when it is not installed (an optional dependency, external in tsup.config.ts). */
async function loadCliProgress(): Promise<CliProgress | undefined> {
  try {
    const mod = (await import('cli-progress')) as CliProgress & { default?: CliProgress }
    return mod.default ?? mod
  } catch {
    return undefined
  }
}

/** Reports rebuild progress: `update` on each batch, `stop` once (also on failure). */
interface ProgressView {
  update(p: RebuildProgress): void
  stop(): void
}

/** A cli-progress bar on standard error (a terminal). */
function barView(lib: CliProgress, output: Output): ProgressView {
  const bar = new lib.SingleBar(
    {
      stream: output.errStream,
      format: 'rebuild [{bar}] {percentage}% | {value}/{total} products | {duration_formatted} | eta {eta_formatted}',
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
    },
    lib.Presets.shades_classic,
  )
  let started = false
  return {
    update(p) {
      if (!started) {
        bar.start(p.total, 0)
        started = true
      }
      bar.update(p.done)
    },
    stop() {
      if (started) bar.stop()
    },
  }
}

/** Plain lines on standard error, one each time progress passes another tenth (not a terminal, or no cli-progress). */
function linesView(output: Output): ProgressView {
  let shown = 0
  return {
    update(p) {
      const tenth = p.total === 0 ? 10 : Math.floor((p.done / p.total) * 10)
      if (tenth <= shown) return
      shown = tenth
      const pct = p.total === 0 ? 100 : Math.floor((p.done / p.total) * 100)
      output.err(`rebuild: ${p.done}/${p.total} products (${pct}%), ${seconds(p.elapsedMs)}`)
    },
    stop() {},
  }
}

/** `rebuilt 3000 products (3000 keys), 0 failed in 2.41 s: 1245 products/s` */
export function rebuildSummary(r: RebuildReport): string {
  const rate = r.ms > 0 ? Math.round(r.products / (r.ms / 1000)) : r.products
  return `rebuilt ${r.products} products (${r.keys} keys), ${r.failed} failed in ${seconds(r.ms)}: ${rate} products/s`
}

/**
 * `stockcast rebuild [--no-progress]`: `cache.rebuildAll()` with a progress bar on standard error when it is a
 * terminal (plain lines every tenth otherwise), then a summary line. Exit 1 when products failed.
 */
export const rebuildCommand: Command = {
  name: 'rebuild',
  async run(args, ctx) {
    const { values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: { ...CONFIG_OPTIONS, 'no-progress': { type: 'boolean' } },
    })
    if (positionals.length > 0) throw usageError(`rebuild takes no arguments, got ${JSON.stringify(positionals[0])}`)
    const config = await ctx.loadConfig(values.config)
    let view: ProgressView | undefined
    if (values['no-progress'] !== true) {
      const lib = ctx.output.errIsTTY ? await loadCliProgress() : undefined
      view = lib === undefined ? linesView(ctx.output) : barView(lib, ctx.output)
    }
    let report: RebuildReport
    try {
      report = await config.cache.rebuildAll(view === undefined ? {} : { onProgress: (p) => view.update(p) })
    } finally {
      view?.stop()
    }
    ctx.output.out(rebuildSummary(report))
    if (report.failed > 0) {
      throw new CliError(`rebuild: ${report.failed} of ${report.products} products failed`, EXIT.failed)
    }
    return EXIT.ok
  },
}
