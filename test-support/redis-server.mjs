// A redis-server of a test's own, on a free port, that the test kills (SIGKILL, as a crash) and restarts: used by the
// Redis adapter's tests (one node, a cluster's nodes) and the history checker. It keeps nothing on disk: a restarted
// server is empty, as after losing a cache node.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Redis from 'ioredis'

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** Start one; `extra` are more redis-server arguments (cluster mode). */
export async function ownRedis(extra = []) {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'stockcast-redis-'))
  let proc
  const start = async () => {
    proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra],
      { stdio: 'ignore' },
    )
    for (let i = 0; i < 100; i++) {
      const c = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
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
    throw new Error(`redis-server on port ${port} did not start`)
  }
  const stop = async () => {
    const p = proc
    proc = undefined
    if (p === undefined || p.exitCode !== null) return
    await new Promise((resolve) => {
      p.once('exit', resolve)
      p.kill('SIGKILL')
    })
  }
  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    stop,
    async close() {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
