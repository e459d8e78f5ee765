/**
 * Bulk mode (`disableCacheTemporarily`): while a block runs, marks are only collected (no scheduled recompute;
 * reads of marked units go straight to the sources). Blocks nest; the outermost one settles what they touched:
 * a batched recompute, or a rebuild of everything when at least `rebuildThreshold` units were touched.
 */
export class BulkMode {
  #depth = 0
  blocks = 0
  rebuilds = 0

  constructor(readonly rebuildThreshold: number) {}

  get depth(): number {
    return this.#depth
  }

  get active(): boolean {
    return this.#depth > 0
  }

  enter(): void {
    this.#depth++
    this.blocks++
  }

  /** Leave a block; true when it was the outermost (the caller settles). */
  exit(): boolean {
    this.#depth--
    return this.#depth === 0
  }

  /** Whether settling `touched` units should rebuild everything instead (needs a way to list every unit). */
  shouldRebuild(touched: number, canList: boolean): boolean {
    return canList && touched >= this.rebuildThreshold
  }
}
