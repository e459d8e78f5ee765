// Waiting in tests: for asynchronous work (a bus delivery, a listener, a timer) to show, never a fixed sleep followed
// by an assertion. Shared by the core's and the adapters' tests.

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Poll `check` every 10 ms until it returns true, or fail after `timeoutMs` naming `what`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(10)
  }
}

/**
 * Until the clock has moved past now: an invalidation of the general-purpose cache outdates values computed in its
 * own millisecond too, so a value recomputed in that millisecond is served but not cached.
 */
export async function nextMs(): Promise<void> {
  const t = Date.now()
  await until(() => Date.now() > t, 1000, 'the next millisecond')
}
