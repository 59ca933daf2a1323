// /metrics as Prometheus reads it: parsed with a text-format parser, the values match the traffic
// sent, labels stay bounded, and the Grafana dashboard only asks for metrics that exist.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { request } from 'undici'
import { eventually, startMesh } from '../harness/mesh.ts'
import { startApp } from '../harness/apps.ts'
import { metric } from '../harness/metrics.ts'

// The parser itself, not the harness's scrape: what is checked here is the exposition as Prometheus reads it.
const require = createRequire(import.meta.url)
interface Sample { labels?: Record<string, string>, value?: string, count?: string, buckets?: Record<string, string> }
interface Family { name: string, type: string, metrics: Sample[] }
const parse = require('parse-prometheus-text-format') as (text: string) => Family[]

const ROOT = new URL('../..', import.meta.url).pathname

t.test('metrics count the traffic sent, by direction, destination, status and reason', async (t) => {
  const app = await startApp(t, (req, res) => { res.writeHead(req.url === '/fail' ? 503 : 200).end('x') })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  }, { env: { REMORA_OUTBOUND_POLICY: 'registry-only' } }) // unknown hosts are refused (not passed through), so they are counted
  const client = mesh.sidecar('client')
  const send = async (host: string, path: string): Promise<void> => { await (await request(`${client.proxyUrl}${path}`, { headers: { host } })).body.text() }
  for (let i = 0; i < 5; i++) await send('web', `/ok/${i}?q=${i}`)
  for (let i = 0; i < 3; i++) await send('web', '/fail')
  for (let i = 0; i < 2; i++) await send(`nowhere-${i}`, '/')

  // Each request is counted when the sidecar's side of its response closes, just after the client read it.
  let text = ''
  await eventually(async () => /^remora_request_duration_seconds_count\{direction="outbound",authority="web\.test:80"\} 8$/m.test(text = await (await request(`${client.adminUrl}/metrics`)).body.text()), 3000, 'eight requests counted')
  const families = parse(text)
  const family = (name: string): Family => {
    const f = families.find((x) => x.name === name)
    if (f === undefined) throw new Error(`no ${name}`)
    return f
  }
  const requests = family('remora_requests_total')
  t.equal(requests.type, 'COUNTER')
  const count = (labels: Record<string, string>): number => requests.metrics
    .filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
    .reduce((sum, m) => sum + Number(m.value), 0)
  t.equal(count({ direction: 'outbound', authority: 'web.test:80', status: '200' }), 5)
  t.equal(count({ direction: 'outbound', authority: 'web.test:80', status: '503', reason: '' }), 3, "the app's own 503s are counted as such")
  t.equal(count({ direction: 'outbound', authority: 'unknown', reason: 'unknown authority' }), 2, 'two different unknown hosts share one bounded label')
  // The parser flattens labelled histograms, so the per-series count is read from the text itself.
  t.equal(family('remora_request_duration_seconds').type, 'HISTOGRAM')
  t.match(text, /^remora_request_duration_seconds_count\{direction="outbound",authority="web\.test:80"\} 8$/m, 'eight requests timed')
  t.equal((text.match(/^remora_request_duration_seconds_bucket\{le="[^"]+",direction="outbound",authority="web\.test:80"\}/gm) ?? []).length, 16, 'fifteen latency buckets (0.5 ms to 30 s) and +Inf')
  t.equal(Number(family('remora_endpoints').metrics[0].value), 1)
  for (const f of families.filter((x) => x.name.startsWith('remora_') && !x.name.startsWith('remora_process') && !x.name.startsWith('remora_nodejs'))) {
    for (const m of f.metrics) {
      for (const [k, v] of Object.entries(m.labels ?? {})) t.notMatch(v, /\/|\?/, `${f.name}{${k}} carries no path (${v})`)
    }
  }

  const inboundOk = await metric(mesh.sidecar('web').adminUrl, 'remora_requests_total', { direction: 'inbound', status: '200' })
  t.equal(inboundOk, 5, "the server's sidecar counts the same requests inbound")
})

t.test('TCP metrics: connections opened and closed, bytes each way, how long they lasted', async (t) => {
  const app = await startApp(t, (req, res) => { req.resume(); req.on('end', () => res.end('y'.repeat(10_000))) })
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  })
  const client = mesh.sidecar('client')
  // Three separate connections, each closed by the client after one request with a 5,000-byte body.
  for (let i = 0; i < 3; i++) {
    const res = await request(`${client.proxyUrl}/`, { method: 'POST', body: 'x'.repeat(5000), headers: { host: 'web', connection: 'close' } })
    await res.body.text()
  }
  const value = (name: string, labels: Record<string, string>): Promise<number> => metric(client.adminUrl, name, labels)
  await eventually(async () => await value('remora_tcp_connections_closed_total', { direction: 'outbound' }) >= 3, 3000, 'three outbound connections closed')
  t.ok(await value('remora_tcp_connections_opened_total', { direction: 'outbound' }) >= 3)
  t.ok(await value('remora_tcp_bytes_total', { direction: 'outbound', flow: 'received' }) >= 15_000, 'the three request bodies were received')
  t.ok(await value('remora_tcp_bytes_total', { direction: 'outbound', flow: 'sent' }) >= 30_000, 'the three responses were sent')
  const text = await (await request(`${client.adminUrl}/metrics`)).body.text()
  t.match(text, /^remora_tcp_connection_duration_seconds_count\{direction="outbound"\} [3-9]\d*$/m, 'their durations were observed')
  // The server side saw one multiplexed connection from the client's sidecar, still open.
  t.equal(await value('remora_tcp_connections_opened_total', { direction: 'inbound' }), 0, 'the client sidecar accepted nothing inbound')
  t.equal(await metric(mesh.sidecar('web').adminUrl, 'remora_tcp_connections_opened_total', { direction: 'inbound' }), 1, "the three requests shared one sidecar-to-sidecar connection")
})

t.test('the Grafana dashboard is valid JSON and queries only metrics remora exports', async (t) => {
  const dashboard = JSON.parse(readFileSync(`${ROOT}k8s/addons/grafana/remora-dashboard.json`, 'utf8')) as { panels: Array<{ id: number, title: string, targets: Array<{ expr: string }> }> }
  const app = await startApp(t, (_req, res) => res.end('x'))
  const mesh = await startMesh(t, {
    workloads: { client: { appPorts: [1] }, web: { appPorts: [app.port] } },
    services: [{ name: 'web', port: 80, endpoints: [{ workload: 'web', targetPort: app.port }] }],
  })
  await (await request(`${mesh.sidecar('client').proxyUrl}/`, { headers: { host: 'web' } })).body.text()
  const text = await (await request(`${mesh.sidecar('client').adminUrl}/metrics`)).body.text()
  const exported = new Set(parse(text).map((f) => f.name))
  t.equal(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length, 'panel ids are unique')
  for (const panel of dashboard.panels) {
    for (const { expr } of panel.targets) {
      for (const name of expr.match(/remora_[a-z_]+/g) ?? []) {
        const base = name.replace(/_(bucket|count|sum)$/, '')
        t.ok(exported.has(name) || exported.has(base), `${panel.title}: ${name} is exported`)
      }
    }
  }
})
