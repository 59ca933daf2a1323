// Black-box: a request crosses two sidecars (client → its sidecar → peer sidecar → app) unchanged.
import t from 'tap'
import { request } from 'undici'
import { startMesh } from './harness/mesh.ts'
import { startApp } from './harness/apps.ts'

t.test('HTTP/1.1 GET and POST through two sidecars reach the app with Host and body intact', async (t) => {
  const { port: appPort } = await startApp(t, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      res.setHeader('x-app-host', req.headers.host ?? '')
      res.setHeader('x-app-orig-proto', String(req.headers['remora-orig-proto']))
      res.end(`${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`)
    })
  })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [appPort] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: appPort }] }],
  })
  const client = mesh.sidecar('client')
  const get = await request(`${client.proxyUrl}/a/b?c=d`, { headers: { host: 'web' } })
  t.equal(get.statusCode, 200)
  t.equal(await get.body.text(), 'GET /a/b?c=d ')
  t.equal(get.headers['x-app-host'], 'web', 'the app sees the Host the client sent')
  t.equal(get.headers['x-app-orig-proto'], 'undefined', 'mesh headers never reach the app')
  const post = await request(`${client.proxyUrl}/submit`, { method: 'POST', headers: { host: 'web.test:80' }, body: 'hello' })
  t.equal(await post.body.text(), 'POST /submit hello')
})

t.test('an app cannot forge mesh headers in its responses (remora-proxy-error would be misread as the proxy\'s own)', async (t) => {
  const { port: appPort } = await startApp(t, (_req, res) => {
    res.writeHead(503, { 'remora-proxy-error': 'overloaded', 'remora-upgrade-status': '101', 'x-real': 'yes' }).end('busy')
  })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [appPort] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: appPort }] }],
  })
  const res = await request(`${mesh.sidecar('client').proxyUrl}/`, { headers: { host: 'web' } })
  t.equal(res.statusCode, 503, "the app's own status")
  t.equal(res.headers['x-real'], 'yes')
  t.equal(res.headers['remora-proxy-error'], undefined, 'the forged proxy error is dropped')
  t.equal(res.headers['remora-upgrade-status'], undefined)
  t.equal(await res.body.text(), 'busy')
})
