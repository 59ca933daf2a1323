// A service's `idleTimeout`: an upstream exchange that moves no bytes either way this long is reset.
// Black-box through two sidecars, on both framings between them: an HTTP/1.1 caller's request
// travels as HTTP/1.1 over the peer's connection pool, an h2 caller's as an h2 stream.
import t from 'tap'
import http2 from 'node:http2'
import { once } from 'node:events'
import { request } from 'undici'
import { startMesh } from '../harness/mesh.ts'
import { startApp } from '../harness/apps.ts'

t.test('an upstream that goes quiet is reset after the service\'s idleTimeout, whatever the caller spoke', async (t) => {
  const held: Array<() => void> = []
  const app = await startApp(t, (req, res) => {
    req.resume()
    // /silent never answers; /stall sends its head and a first piece, then nothing.
    if (req.url === '/stall') { res.writeHead(200, { 'content-type': 'text/plain' }); res.write('first piece\n') }
    held.push(() => res.destroy())
  })
  t.teardown(() => { for (const f of held) f() })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, idleTimeout: '600ms', retry: { attempts: 1 }, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  })
  const client = mesh.sidecar('client')

  const h1 = await request(`${client.proxyUrl}/silent`, { headers: { host: 'web' } })
  t.equal(h1.statusCode, 504, 'HTTP/1.1 caller, silent upstream: 504')
  t.equal(h1.headers['remora-proxy-error'], 'timeout', 'with the timeout reason')
  await h1.body.text()

  const stalled = await request(`${client.proxyUrl}/stall`, { headers: { host: 'web' } })
  t.equal(stalled.statusCode, 200, 'HTTP/1.1 caller, stalled body: the head went out')
  await t.rejects(stalled.body.text(), 'then the cut-off body fails instead of hanging')

  const session = http2.connect(client.proxyUrl)
  t.teardown(() => session.destroy())
  const stream = session.request({ ':path': '/silent', ':authority': 'web' })
  stream.end()
  const [head] = await once(stream, 'response') as [http2.IncomingHttpHeaders]
  t.equal(head[':status'], 504, 'h2 caller, silent upstream: 504')
  t.equal(head['remora-proxy-error'], 'timeout', 'with the timeout reason')
  // The exchange ends inside the test: a stream still open when teardown closes the session and
  // stops the sidecars is reset under it (an uncaught ECONNRESET on the stream failed CI twice).
  stream.resume()
  await once(stream, 'end')
  session.close()
  await once(session, 'close')
})
