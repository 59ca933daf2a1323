// With mTLS, both spans of a hop name the peer's SPIFFE ID: the CLIENT span the identity it
// required of the server, the SERVER span the identity the caller's certificate proved.
import t from 'tap'
import { request } from 'undici'
import { startSecureMesh } from '../harness/control.ts'
import { namedApp, startApp } from '../harness/apps.ts'
import { eventually } from '../harness/mesh.ts'
import { startReceiver } from '../harness/otlp.ts'

t.test('spans carry the verified peer identities of an mTLS hop', async (t) => {
  const receiver = await startReceiver(t)
  const app = await startApp(t, namedApp('web'))
  const { mesh } = await startSecureMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' } })
  const res = await request(`${mesh.sidecar('client').proxyUrl}/hello`, { headers: { host: 'web' } })
  t.equal(res.statusCode, 200)
  await res.body.text()
  await eventually(() => receiver.spans.some((s) => s.kind === 3) && receiver.spans.some((s) => s.kind === 2), 10_000, 'client and server spans exported')
  const client = receiver.spans.find((s) => s.kind === 3)
  const server = receiver.spans.find((s) => s.kind === 2)
  t.equal(client?.attributes['remora.peer.identity'], 'spiffe://cluster.local/ns/test/sa/web', 'CLIENT span: the identity required of the server')
  t.equal(server?.attributes['remora.peer.identity'], 'spiffe://cluster.local/ns/test/sa/client', 'SERVER span: the identity the caller proved')
  t.equal(server?.parentSpanId, client?.spanId, 'one trace across the mTLS hop')
})
