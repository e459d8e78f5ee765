// Redis for the tests: the machine's server (127.0.0.1:6379, or STOCKCAST_REDIS_URL), and servers of the tests' own
// on free ports (one to stop and restart, or a 3-node cluster), started from `redis-server` and removed afterwards.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import Redis, { Cluster } from 'ioredis'

export { describeService, uniquePrefix } from '../../../test-support/services.js'

export const REDIS_URL = process.env.STOCKCAST_REDIS_URL ?? 'redis://127.0.0.1:6379'

async function probe(): Promise<string | null> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  r.on('error', () => {})
  try {
    await Promise.race([
      (async () => {
        await r.connect()
        await r.ping()
      })(),
      new Promise((_, rej) => setTimeout(() => rej(new Error('timed out after 3 s')), 3000)),
    ])
    return null
  } catch (e) {
    return `Redis unreachable at ${REDIS_URL}: ${(e as Error).message}`
  } finally {
    r.disconnect()
  }
}

/** Null when the machine's Redis answers, else why not. */
export const redisDown = await probe()

/** Null when `redis-server` can be started by the tests, else why not. */
export const redisServerMissing = await new Promise<string | null>((resolve) => {
  execFile('redis-server', ['--version'], (err) => resolve(err ? `redis-server not found: ${err.message}` : null))
})

/** A client on the machine's Redis. */
export function redisClient(): Redis {
  return new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A `redis-server` of the test's own on a free port (nothing kept on disk), which the test may stop and start. */
export class OwnRedis {
  #proc: ChildProcess | undefined
  readonly #dir = mkdtempSync(join(tmpdir(), 'stockcast-redis-'))
  constructor(
    readonly port: number,
    readonly extra: readonly string[] = [],
  ) {}

  static async start(extra: readonly string[] = []): Promise<OwnRedis> {
    const r = new OwnRedis(await freePort(), extra)
    await r.start()
    return r
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']
    this.#proc = spawn('redis-server', [...args, '--dir', this.#dir, ...this.extra], { stdio: 'ignore' })
    for (let i = 0; i < 100; i++) {
      const c = new Redis(this.port, '127.0.0.1', {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      })
      c.on('error', () => {})
      try {
        await c.connect()
        await c.ping()
        return
      } catch {
        await sleep(50)
      } finally {
        c.disconnect()
      }
    }
    throw new Error(`redis-server on port ${this.port} did not start`)
  }

  /** Kill it (SIGKILL: as a crash) and wait until it is gone. */
  async stop(): Promise<void> {
    const p = this.#proc
    this.#proc = undefined
    if (p === undefined || p.exitCode !== null) return
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve())
      p.kill('SIGKILL')
    })
  }

  async close(): Promise<void> {
    await this.stop()
    rmSync(this.#dir, { recursive: true, force: true })
  }
}

/** A 3-master Redis Cluster of the test's own (no replicas), on free ports. */
export class OwnCluster {
  private constructor(readonly nodes: OwnRedis[]) {}

  static async start(): Promise<OwnCluster> {
    const nodes: OwnRedis[] = []
    for (let i = 0; i < 3; i++) {
      nodes.push(
        await OwnRedis.start([
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${process.pid}-${i}.conf`,
          '--cluster-node-timeout',
          '2000',
        ]),
      )
    }
    await promisify(execFile)('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ])
    const cluster = new OwnCluster(nodes)
    // Wait until every slot is served.
    for (let i = 0; i < 100; i++) {
      const c = new Redis(nodes[0]!.port, '127.0.0.1')
      try {
        const info = await c.cluster('INFO')
        if (String(info).includes('cluster_state:ok')) return cluster
      } finally {
        c.disconnect()
      }
      await sleep(100)
    }
    throw new Error('the test cluster did not reach cluster_state:ok')
  }

  client(): Cluster {
    return new Cluster(this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })))
  }

  async close(): Promise<void> {
    for (const n of this.nodes) await n.close()
  }
}
