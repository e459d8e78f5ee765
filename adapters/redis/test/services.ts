// Redis for the tests: the machine's server (127.0.0.1:6379, or STOCKCAST_REDIS_URL), and servers of the tests' own
// on free ports (one to stop and restart, or a 3-node cluster), started from `redis-server` and removed afterwards.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import Redis, { Cluster } from 'ioredis'
import { type OwnRedisServer, ownRedis } from '../../../test-support/redis-server.mjs'

export { describeService, uniquePrefix } from '../../../test-support/services.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

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

/** A `redis-server` of the test's own on a free port (nothing kept on disk), which the test may stop and start. */
export class OwnRedis {
  private constructor(readonly server: OwnRedisServer) {}

  static async start(extra: readonly string[] = []): Promise<OwnRedis> {
    return new OwnRedis(await ownRedis(extra))
  }

  get port(): number {
    return this.server.port
  }

  get url(): string {
    return this.server.url
  }

  start(): Promise<void> {
    return this.server.start()
  }

  /** Kill it (SIGKILL: as a crash) and wait until it is gone. */
  stop(): Promise<void> {
    return this.server.stop()
  }

  close(): Promise<void> {
    return this.server.close()
  }
}

/** A 3-master Redis Cluster of the test's own (no replicas), on free ports. */
export class OwnCluster {
  private constructor(readonly nodes: OwnRedis[]) {}

  static async start(extra: readonly string[] = []): Promise<OwnCluster> {
    const nodes: OwnRedis[] = []
    for (let i = 0; i < 3; i++) {
      nodes.push(
        await OwnRedis.start([
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${process.pid}-${i}-${Date.now()}.conf`,
          '--cluster-node-timeout',
          '2000',
          ...extra,
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
