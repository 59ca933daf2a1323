// Issue 18, "What to build": a bounded soak. Steady load through a client sidecar to a service with
// two endpoints, while faults are injected: slow uploads, HTTP/2 streams reset mid-body, the peer
// sidecar of one endpoint restarted (SIGTERM, start again) and the other endpoint's app restarted.
// Asserts zero lost acknowledged requests (every request answered 200 with its own id was received
// by an app), no crossed answers, nothing left in flight, and flat memory on the client sidecar.
// SOAK_SECONDS sets the duration (20 s in `npm test`; minutes by hand), the figures go to comments.
import t from 'tap'
import http2 from 'node:http2'
import net from 'node:net'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { eventually, startMesh } from './harness/mesh.ts'
import { startApp, type App } from './harness/apps.ts'
import { rssMiB } from './harness/load.ts'
import { metric } from './harness/metrics.ts'

const SECONDS = Number(process.env.SOAK_SECONDS ?? 20)
const CONCURRENCY = 8

interface Recording { app: App, ids: Set<string> }
async function recordingApp (): Promise<Recording> {
  const ids = new Set<string>()
  const app = await startApp(t, (req, res) => {
    const id = /\/soak\/(\d+)$/.exec(req.url ?? '')?.[1]
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('error', () => {})
    req.on('end', () => {
      // Received whole: from here an answer is an acknowledgement.
      if (id !== undefined && body === `payload ${id}`) ids.add(id)
      res.end(id === undefined ? 'ok' : `ack ${id}`)
    })
  })
  return { app, ids }
}

const a = await recordingApp()
const b = await recordingApp()
const mesh = await startMesh(t, {
  workloads: { client: { appPorts: [1] }, 'web-a': { appPorts: [a.app.port] }, 'web-b': { appPorts: [b.app.port] } },
  services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web-a', targetPort: a.app.port }, { workload: 'web-b', targetPort: b.app.port }] }],
}, { env: { REMORA_REQUEST_BODY_TIMEOUT: '1s', REMORA_REQUEST_BODY_MIN_RATE: '1000', REMORA_SHUTDOWN_GRACE: '5s' } })
const client = mesh.sidecar('client')
const webA = mesh.sidecar('web-a')

t.test(`a ${SECONDS} s soak with slow clients, resets, a peer restart and an app restart loses no acknowledged request`, async (t) => {
  const started = performance.now()
  const running = (): boolean => performance.now() - started < SECONDS * 1000
  const stats = { sent: 0, acked: 0, failed: new Map<string, number>(), crossed: 0, slow: 0, resets: 0, peerRestarts: 0, appRestarts: 0 }
  const acked: string[] = []
  const rss: Array<{ at: number, mib: number }> = []

  // Steady load: POST /soak/<id> with a body naming the id, keep-alive connections.
  const pool = new Pool(client.proxyUrl, { connections: CONCURRENCY })
  t.teardown(() => pool.destroy())
  let next = 0
  const worker = async (): Promise<void> => {
    while (running()) {
      const id = String(next++)
      stats.sent++
      try {
        const res = await pool.request({ method: 'POST', path: `/soak/${id}`, headers: { host: 'web' }, body: `payload ${id}` })
        const text = await res.body.text()
        if (res.statusCode === 200 && text === `ack ${id}`) { stats.acked++; acked.push(id) } else if (res.statusCode === 200) stats.crossed++
        else {
          const key = `${res.statusCode} ${String(res.headers['remora-proxy-error'] ?? '')}`
          stats.failed.set(key, (stats.failed.get(key) ?? 0) + 1)
        }
      } catch (err) {
        const key = `error ${(err as Error).message}`
        stats.failed.set(key, (stats.failed.get(key) ?? 0) + 1)
      }
    }
  }

  // Slow clients: an upload trickling a byte every 300 ms, every 500 ms (each cut by the body timeout).
  const slowClients = async (): Promise<void> => {
    while (running()) {
      const socket = net.connect(client.ports.outbound, '127.0.0.1')
      socket.on('error', () => {})
      socket.write('POST /slow HTTP/1.1\r\nHost: web\r\nContent-Length: 100000\r\n\r\nx')
      const drip = setInterval(() => { if (!socket.destroyed) socket.write('x') }, 300)
      socket.once('close', () => { clearInterval(drip); stats.slow++ })
      await sleep(500)
    }
  }

  // Resets: HTTP/2 streams cancelled mid-body, a few a second.
  const resets = async (): Promise<void> => {
    const session = http2.connect(client.proxyUrl)
    session.on('error', () => {})
    while (running() && !session.destroyed) {
      const stream = session.request({ ':method': 'POST', ':path': '/reset', ':authority': 'web' })
      stream.on('error', () => {})
      stream.write('half a body')
      await sleep(20)
      stream.close(http2.constants.NGHTTP2_CANCEL)
      stats.resets++
      await sleep(200)
    }
    session.destroy()
  }

  // Peer restarts (web-a's sidecar) and app restarts (web-b's app), interleaved.
  const restarts = async (): Promise<void> => {
    const step = SECONDS * 1000 / 5
    for (let k = 1; k <= 4 && running(); k++) {
      await sleep(step)
      if (!running()) return
      if (k % 2 === 1) {
        await webA.stop('SIGTERM')
        await webA.start()
        stats.peerRestarts++
      } else {
        const server = b.app.server
        server.close()
        server.closeAllConnections()
        await sleep(200)
        server.listen(b.app.port, '127.0.0.1')
        await once(server, 'listening')
        stats.appRestarts++
      }
    }
  }

  const sampler = async (): Promise<void> => {
    while (running()) {
      if (client.proc.pid !== undefined) rss.push({ at: performance.now() - started, mib: rssMiB(client.proc.pid) })
      await sleep(500)
    }
  }

  await Promise.all([...Array.from({ length: CONCURRENCY }, worker), slowClients(), resets(), restarts(), sampler()])

  t.equal(client.proc.exitCode, null, 'the client sidecar ran throughout')
  const lost = acked.filter((id) => !a.ids.has(id) && !b.ids.has(id))
  t.same(lost.slice(0, 20), [], `no acknowledged request was lost (${stats.acked} acknowledged)`)
  t.equal(stats.crossed, 0, 'no request got another request\'s answer')
  t.ok(stats.acked > stats.sent / 2, `most requests were acknowledged (${stats.acked} of ${stats.sent})`)
  t.ok(stats.peerRestarts >= 1 && stats.appRestarts >= 1 && stats.slow > 0 && stats.resets > 0, 'every fault was injected')
  for (const s of [client, webA, mesh.sidecar('web-b')]) {
    let last = -1
    try { await eventually(async () => (last = await metric(s.adminUrl, 'remora_requests_in_flight')) === 0, 10_000, 'nothing in flight') } catch { /* asserted */ }
    t.equal(last, 0, `${s.name}: nothing left in flight`)
  }
  // Memory: the average of the last quarter against the second quarter (after warm-up).
  const quarter = (q: number): number => {
    const xs = rss.filter((r) => r.at >= q * SECONDS * 250 && r.at < (q + 1) * SECONDS * 250).map((r) => r.mib)
    return xs.length === 0 ? Number.NaN : xs.reduce((x, y) => x + y, 0) / xs.length
  }
  const warm = quarter(1)
  const end = quarter(3)
  t.ok(end <= Math.max(warm * 1.3, warm + 20), `client sidecar memory stays flat: ${warm.toFixed(0)} MiB after warm-up, ${end.toFixed(0)} MiB at the end`)
  t.comment(`soak ${SECONDS} s: sent ${stats.sent}, acknowledged ${stats.acked}, lost 0 of them: ${lost.length}; failed ${JSON.stringify(Object.fromEntries(stats.failed))}`)
  t.comment(`faults: ${stats.slow} slow uploads, ${stats.resets} resets, ${stats.peerRestarts} peer restarts, ${stats.appRestarts} app restarts`)
  t.comment(`client sidecar RSS: first ${rss[0]?.mib} MiB, after warm-up ${warm.toFixed(1)}, end ${end.toFixed(1)}, max ${Math.max(...rss.map((r) => r.mib))} MiB`)
})
