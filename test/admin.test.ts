// The admin port: health, readiness, metrics that count real traffic, and the loopback-only pages.
import t from 'tap'
import { request } from 'undici'
import { isLoopback } from '../src/admin/server.ts'
import { eventually, startMesh } from './harness/mesh.ts'
import { namedApp, startApp } from './harness/apps.ts'

t.test('live, ready, metrics and the loopback-only pages', async (t) => {
  const app = await startApp(t, namedApp('web'))
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { REMORA_OUTBOUND_POLICY: 'registry-only' } }) // unknown hosts are refused (not passed through), so they are counted
  const client = mesh.sidecar('client')
  const get = async (path: string, init: { method?: 'GET' | 'POST' } = {}): Promise<{ status: number, text: string }> => {
    const res = await request(`${client.adminUrl}${path}`, init)
    return { status: res.statusCode, text: await res.body.text() }
  }
  t.equal((await get('/live')).status, 200)
  const ready = await get('/ready')
  t.equal(ready.status, 200)
  t.match(ready.text, /endpoint table version 1 from file:/)

  for (let i = 0; i < 3; i++) await (await request(`${client.proxyUrl}/x`, { headers: { host: 'web' } })).body.text()
  await (await request(`${client.proxyUrl}/x`, { headers: { host: 'nowhere' } })).body.text()
  // A request is counted when its response has closed on the sidecar's side, a moment after the client read it.
  let metrics = ''
  await eventually(async () => /remora_request_duration_seconds_count\{direction="outbound",authority="web\.test:80"\} 3/.test(metrics = (await get('/metrics')).text), 3000, 'three requests counted')
  t.match(metrics, /remora_requests_total\{direction="outbound",authority="web\.test:80",status="200",grpc_status="",reason=""\} 3/)
  t.match(metrics, /remora_requests_total\{direction="outbound",authority="unknown",status="503",grpc_status="",reason="unknown authority"\} 1/)
  t.match(metrics, /remora_request_duration_seconds_count\{direction="outbound",authority="web\.test:80"\} 3/)
  t.match(metrics, /remora_endpoints\{authority="web\.test:80"\} 1/)
  t.match(metrics, /remora_process_resident_memory_bytes/)
  t.notMatch(metrics, /path=|\/x/, 'no paths in labels')

  const config = JSON.parse((await get('/config.json')).text) as { workload: string }
  t.equal(config.workload, 'client')
  const endpoints = JSON.parse((await get('/endpoints.json')).text) as { source: string, services: Array<{ name: string }> }
  t.match(endpoints.source, /^file:/)
  t.same(endpoints.services.map((s) => s.name), ['web'])
  t.equal((await get('/shutdown')).status, 405, 'shutdown needs POST')
  t.equal((await get('/nope')).status, 404)

  const res = await get('/shutdown', { method: 'POST' })
  t.equal(res.status, 202)
  const code = await new Promise((resolve) => client.proc.once('exit', resolve))
  t.equal(code, 0, 'POST /shutdown drains and exits 0')
})

t.test('loopback detection used to guard /config.json, /endpoints.json and /shutdown', async (t) => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) t.ok(isLoopback(a), a)
  for (const a of ['10.0.0.1', '::ffff:10.0.0.1', '192.168.1.1', 'fe80::1', undefined]) t.notOk(isLoopback(a), String(a))
})
