// A TCP proxy in front of a real service, for fault injection: `freeze()` stops forwarding bytes both ways (the
// connections stay open: the service and its clients see a peer that no longer answers, as in a network partition),
// `thaw()` delivers what it held and resumes. A connection closed on one side is closed on the other.
import net from 'node:net'

export async function tcpProxy(targetPort, targetHost = '127.0.0.1') {
  const pairs = new Set()
  let frozen = false
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost)
    const pair = { client, upstream, held: [] }
    pairs.add(pair)
    const forward = (from, to) => {
      from.on('data', (chunk) => {
        if (frozen) pair.held.push([to, chunk])
        else to.write(chunk)
      })
    }
    forward(client, upstream)
    forward(upstream, client)
    const close = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('close', close)
    upstream.on('close', close)
    client.on('error', () => {})
    upstream.on('error', () => {})
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: server.address().port,
    /** Connections (pairs) open through the proxy. */
    get open() {
      return pairs.size
    },
    /** Hold every byte from now on (new connections are accepted, then hang). */
    freeze() {
      frozen = true
    },
    /** Let bytes through again, the held ones first (as TCP delivers them once a partition heals). */
    thaw() {
      frozen = false
      for (const p of pairs) {
        for (const [to, chunk] of p.held) if (!to.destroyed) to.write(chunk)
        p.held.length = 0
      }
    },
    async close() {
      for (const p of pairs) {
        p.client.destroy()
        p.upstream.destroy()
      }
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
