// Black-box: SIGTERM drains — in-flight requests finish, new work is refused with a reason, no hang.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startMesh } from './harness/mesh.ts'
import { startApp } from './harness/apps.ts'

t.test('SIGTERM lets an in-flight request finish, reports not ready, then exits 0 well before the grace period', async (t) => {
  const app = await startApp(t, (req, res) => {
    const delay = req.url === '/slow' ? 1500 : 0
    setTimeout(() => res.end(`done ${req.url}`), delay)
  })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { REMORA_SHUTDOWN_GRACE: '10s' } })
  const client = mesh.sidecar('client')
  const web = mesh.sidecar('web')

  const inflight = request(`${client.proxyUrl}/slow`, { headers: { host: 'web' } })
  await sleep(300)
  const started = Date.now()
  const exited = web.stop('SIGTERM')
  await sleep(100)
  const ready = await request(`${web.adminUrl}/ready`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }), () => ({ status: 0, body: 'admin closed' }))
  t.not(ready.status, 200, `/ready is no longer 200 while draining (${ready.body.trim()})`)

  const res = await inflight
  t.equal(res.statusCode, 200, 'the in-flight request completed')
  t.equal(await res.body.text(), 'done /slow')
  t.equal(await exited, 0, 'exit code 0')
  t.ok(Date.now() - started < 5000, 'exited once idle, not after the whole grace period')
  t.match(web.output, /draining/)

  const after = await request(`${client.proxyUrl}/fast`, { headers: { host: 'web' } })
  t.equal(after.statusCode, 502, 'a request after the peer is gone fails fast')
  t.equal(after.headers['remora-proxy-error'], 'connect refused')
  await after.body.text()
})

t.test('a request longer than the grace period is cut with a reason when the grace period ends', async (t) => {
  const app = await startApp(t, (_req, res) => { setTimeout(() => res.end('too late'), 20_000).unref() })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { REMORA_SHUTDOWN_GRACE: '1s' } })
  const client = mesh.sidecar('client')
  const inflight = request(`${client.proxyUrl}/forever`, { headers: { host: 'web' } })
  await sleep(300)
  const started = Date.now()
  t.equal(await mesh.sidecar('web').stop('SIGTERM'), 0)
  t.ok(Date.now() - started < 4000, 'the grace period bounds the shutdown')
  const res = await inflight
  t.equal(res.statusCode, 502, 'the caller gets an answer, not a hang')
  t.equal(res.headers['remora-proxy-error'], 'upstream reset')
  await res.body.text()
})
