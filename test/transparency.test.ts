// Black-box: a request crosses two sidecars (client → its sidecar → peer sidecar → app) unchanged.
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { request } from 'undici'
import { startMesh, freePort } from './harness/mesh.ts'

t.test('HTTP/1.1 GET and POST through two sidecars reach the app with Host and body intact', async (t) => {
  const appPort = await freePort()
  const app = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      res.setHeader('x-app-host', req.headers.host ?? '')
      res.setHeader('x-app-orig-proto', String(req.headers['remora-orig-proto']))
      res.end(`${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`)
    })
  }).listen(appPort, '127.0.0.1')
  await once(app, 'listening')
  t.teardown(() => { app.close() })
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
