// A redis-server of the history run's own, on a free port, that the run kills (SIGKILL, as a crash) and restarts.
// It keeps nothing on disk: a restarted server is empty, as after losing a cache node.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Redis from 'ioredis'

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function freePort() {
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

export async function ownRedis() {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'stockcast-history-redis-'))
  let proc
  const start = async () => {
    proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
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
    url: `redis://127.0.0.1:${port}`,
    start,
    stop,
    async close() {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
