// One scenario for sqlLock on every server dialect: its session's connection goes through a TCP proxy the test
// freezes (a network partition), and nothing may hang.
import { LockTimeoutError } from 'stockcast'
import { expect } from 'vitest'
import { tcpProxy } from '../../../test-support/tcp-proxy.mjs'
import { type SqlDb, sqlLock } from '../src/index.js'

export interface PartitionSetup {
  /** The server's URL (host and port are proxied). */
  url: string
  defaultPort: number
  /** A pool to `url` (the proxy's), as an SqlDb, and how to end it and tell how many connections it holds. */
  open(url: string): { db: SqlDb; end(): Promise<void>; connections?(): number }
  /** Another instance's connection, straight to the server. */
  direct: SqlDb
  /** Whether any session holds the lock of `namespace + key`. */
  held(namespace: string, key: string): Promise<boolean>
  namespace: string
}

export async function partitionScenario(o: PartitionSetup): Promise<void> {
  const target = new URL(o.url)
  const proxy = await tcpProxy(Number(target.port || o.defaultPort), target.hostname)
  target.port = String(proxy.port)
  const viaProxy = o.open(target.toString())
  const lost: Error[] = []
  const a = sqlLock(viaProxy.db, { namespace: o.namespace, queryTimeoutMs: 300, onSessionLost: (e) => lost.push(e) })
  const b = sqlLock(o.direct, { namespace: o.namespace })
  try {
    const releaseK = await a.acquire('K', 2000)
    expect(await o.held(o.namespace, 'K')).toBe(true)
    proxy.freeze()
    // The release gets no answer: after 300 ms the session counts as lost and its connection is closed.
    const t0 = Date.now()
    await releaseK()
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(lost).toHaveLength(1)
    expect(lost[0]!.message).toMatch(/no answer within 300 ms/)
    // The server saw the connection go: the key is free for another instance.
    await (await b.acquire('K', 3000))()
    // While the partition lasts, an acquire fails in its time (no session can be opened); it does not hang.
    const t1 = Date.now()
    const err = await a.acquire('K2', 800).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(LockTimeoutError)
    expect((err as Error).message).toMatch(/could not be asked/)
    expect(Date.now() - t1).toBeLessThan(2500)
    proxy.thaw()
    // Healed: a new session takes keys again, and connections opened too late were not kept.
    const r3 = await a.acquire('K3', 5000)
    expect(await o.held(o.namespace, 'K3')).toBe(true)
    await r3()
    expect(await o.held(o.namespace, 'K3')).toBe(false)
    if (viaProxy.connections !== undefined) {
      const deadline = Date.now() + 5000
      while (viaProxy.connections() > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      expect(viaProxy.connections(), 'connections opened too late are thrown away').toBeLessThanOrEqual(1)
    }
  } finally {
    proxy.thaw()
    await a.close()
    await b.close()
    await viaProxy.end()
    await proxy.close()
  }
}
