// Black-box, issue 18 defect 10: how requests are counted. A caller that had the whole response
// (END_STREAM) and then resets its unfinished upload (RST_STREAM CANCEL, RFC 9113 8.1) was counted
// as 200 `stream reset` on both sidecars; it is complete. A caller that cancels mid-body still counts
// as `stream reset`.
import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { startMesh, freePort, pairSpec, eventually } from './harness/mesh.ts'

const appPort = await freePort()
const app = http.createServer((req, res) => {
  // /early answers at once, without reading the upload; /trickle sends a byte every 100 ms.
  if (req.url === '/early') { res.end('early'); return }
  req.resume()
  res.writeHead(200)
  const timer = setInterval(() => res.write('.'), 100)
  res.once('close', () => clearInterval(timer))
}).listen(appPort, '127.0.0.1')
await once(app, 'listening')
t.teardown(() => { app.closeAllConnections(); app.close() })

const mesh = await startMesh(t, pairSpec(appPort))
const outbound = mesh.sidecar('client').ports.outbound

async function metric (sidecar: 'client' | 'web', name: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${mesh.sidecar(sidecar).adminUrl}/metrics`)).text()
  return new Map(text.split('\n').filter((l) => l.startsWith(`${name}{`)).map((l) => [l.slice(name.length, l.lastIndexOf(' ')), Number(l.split(' ').pop())]))
}
const counted = async (sidecar: 'client' | 'web'): Promise<string[]> =>
  [...(await metric(sidecar, 'remora_requests_total')).entries()].map(([labels, n]) => `${/status="(\d+)"/.exec(labels)?.[1]} "${/reason="([^"]*)"/.exec(labels)?.[1]}" x${n}`).sort()
const inflight = async (sidecar: 'client' | 'web'): Promise<number> => [...(await metric(sidecar, 'remora_requests_in_flight')).values()].reduce((a, b) => a + b, 0)

t.test('a whole response, then the caller resets its unfinished upload: complete, on both sidecars', async (t) => {
  const session = http2.connect(`http://127.0.0.1:${outbound}`)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  const result = await new Promise<{ status: number, body: string }>((resolve) => {
    const s = session.request({ ':method': 'POST', ':path': '/early', ':authority': 'web' }, { endStream: false })
    s.write('part of an upload')
    let status = 0
    let body = ''
    s.on('response', (h) => { status = Number(h[':status']) })
    s.setEncoding('utf8')
    s.on('data', (c: string) => { body += c })
    s.on('error', () => {})
    // The answer is whole (END_STREAM): the rest of the upload is not needed any more.
    s.on('end', () => s.close(http2.constants.NGHTTP2_CANCEL))
    s.on('close', () => resolve({ status, body }))
  })
  t.same(result, { status: 200, body: 'early' })
  await eventually(async () => await inflight('client') === 0 && await inflight('web') === 0, 5000, 'no request left in flight')
  t.same(await counted('client'), ['200 "" x1'], 'outbound: 200, no reason')
  t.same(await counted('web'), ['200 "" x1'], 'inbound: 200, no reason')
})

t.test('a caller that cancels in the middle of the body is still counted as stream reset', async (t) => {
  const resets = async (): Promise<number> => [...(await metric('client', 'remora_requests_total')).entries()].filter(([l]) => l.includes('status="200"') && l.includes('reason="stream reset"')).reduce((n, [, v]) => n + v, 0)
  const before = await resets()
  const session = http2.connect(`http://127.0.0.1:${outbound}`)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  await new Promise<void>((resolve) => {
    const s = session.request({ ':method': 'GET', ':path': '/trickle', ':authority': 'web' })
    s.once('data', () => s.close(http2.constants.NGHTTP2_CANCEL))
    s.on('error', () => {})
    s.on('close', () => resolve())
  })
  await sleep(100)
  await eventually(async () => await inflight('client') === 0 && await inflight('web') === 0, 5000, 'no request left in flight')
  t.equal(await resets(), before + 1, 'outbound: 200 stream reset')
})
