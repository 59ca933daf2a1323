// What the proxy answered itself is logged and counted as the client got it: a gRPC caller refused
// with a trailers-only UNAVAILABLE is a gRPC failure in the access log, in remora_requests_total and
// in the dashboard's success rate, not an HTTP 200; a refused CONNECT tunnel leaves a line too.
import t from 'tap'
import http2 from 'node:http2'
import net from 'node:net'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { request } from 'undici'
import * as grpc from '@grpc/grpc-js'
import { ProxyErrors, type ProxyErrorReason } from '../../src/errors.ts'
import { eventually, freePort, ROOT, startMesh, startSidecars, writeMesh, type MeshSpec, type SidecarProcess } from '../harness/mesh.ts'
import { startApp } from '../harness/apps.ts'
import { echoClient, unary } from '../harness/grpc-echo.ts'
import { samples, scrapeMetrics, type MetricFamily } from '../harness/metrics.ts'

/** The label matchers of the dashboard's success-rate numerator, applied as Prometheus would. */
function successRateSays (): (labels: Record<string, string>) => boolean {
  const dashboard = JSON.parse(readFileSync(`${ROOT}k8s/addons/grafana/remora-dashboard.json`, 'utf8')) as { panels: Array<{ title: string, targets: Array<{ expr: string }> }> }
  const panel = dashboard.panels.find((p) => p.title.startsWith('Success rate'))
  const numerator = panel?.targets[0].expr.split(' / ')[0] ?? ''
  const matchers = [...numerator.matchAll(/(\w+)(=~|!~|!=|=)"([^"]*)"/g)].filter(([, name]) => name === 'status' || name === 'grpc_status')
  if (matchers.length < 2) throw new Error(`the success-rate panel no longer reads status and grpc_status: ${numerator}`)
  return (labels) => matchers.every(([, name, op, value]) => {
    const v = labels[name] ?? ''
    const re = new RegExp(`^(?:${value})$`)
    return op === '=~' ? re.test(v) : op === '!~' ? !re.test(v) : op === '=' ? v === value : v !== value
  })
}

interface Case { host: string, reason: ProxyErrorReason, /** Which sidecar made the answer. */ by: 'edge' | 'server' }

t.test('every proxy-made answer is logged and counted with the status the HTTP/1.1, h2 or gRPC caller received', async (t) => {
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => release())
  const app = await startApp(t, (req, res) => {
    if (req.url === '/hold') { void held.then(() => res.end('released')); return }
    if (req.headers.host === 'slow') { setTimeout(() => res.end('late'), 2000).unref(); return }
    if (req.headers.host === 'crash') { req.socket.destroy(); return }
    res.end('ok')
  })
  const nothing = await freePort()
  const http1 = [{ port: app.port, protocol: 'http1' as const }]
  const spec: MeshSpec = {
    workloads: {
      edge: { appPorts: [1] },
      api: { appPorts: http1 },
      down: { appPorts: [nothing] },
      locked: { appPorts: http1, authorization: { default: 'deny' } },
      limited: { appPorts: http1, inbound: { rateLimit: { requestsPerSecond: 0.001, burst: 1 } } },
      gone: { appPorts: [1] },
    },
    services: [
      { name: 'crash', port: 80, endpoints: [{ workload: 'api', targetPort: app.port }] },
      { name: 'limited', port: 80, endpoints: [{ workload: 'limited', targetPort: app.port }] },
      { name: 'empty', port: 80, endpoints: [] },
      { name: 'gone', port: 80, endpoints: [{ workload: 'gone', targetPort: 1 }] },
      { name: 'slow', port: 80, timeout: '300ms', endpoints: [{ workload: 'api', targetPort: app.port }] },
      { name: 'busy', port: 80, limits: { maxConcurrent: 1, maxQueued: 0 }, endpoints: [{ workload: 'api', targetPort: app.port }] },
      { name: 'down', port: 80, endpoints: [{ workload: 'down', targetPort: nothing }] },
      { name: 'locked', port: 80, endpoints: [{ workload: 'locked', targetPort: app.port }] },
    ],
  }
  // An endpoint naming an app port api does not declare (the mesh file allows it only by address).
  const mesh = await writeMesh(spec)
  spec.services.push({ name: 'undeclared', port: 80, endpoints: [{ address: `127.0.0.1:${mesh.ports.get('api')?.inbound}`, targetPort: nothing }] })
  await mesh.write(spec)
  // registry-only: an unknown authority is refused (allow-any would pass it through).
  await startSidecars(t, mesh, { only: ['edge', 'api', 'down', 'locked', 'limited'], env: { REMORA_OUTBOUND_POLICY: 'registry-only' } })
  const edge = mesh.sidecar('edge')
  // limited's one token goes to this request; what follows is refused.
  await (await request(`${edge.proxyUrl}/primer`, { headers: { host: 'limited' } })).body.text()

  // busy's one slot is taken by a request that waits until the end of the test.
  const holding = request(`${edge.proxyUrl}/hold`, { headers: { host: 'busy' } })
  await eventually(() => app.requests >= 1, 10_000, 'the holding request reached the app')

  const cases: Case[] = [
    { host: 'nowhere', reason: ProxyErrors.unknownAuthority, by: 'edge' },
    { host: 'empty', reason: ProxyErrors.noEndpoints, by: 'edge' },
    { host: 'gone', reason: ProxyErrors.connectRefused, by: 'edge' },
    { host: 'slow', reason: ProxyErrors.timeout, by: 'edge' },
    { host: 'busy', reason: ProxyErrors.overloaded, by: 'edge' },
    { host: 'down', reason: ProxyErrors.appUnavailable, by: 'server' },
    { host: 'locked', reason: ProxyErrors.forbidden, by: 'server' },
    { host: 'limited', reason: ProxyErrors.rateLimited, by: 'server' },
    { host: 'undeclared', reason: ProxyErrors.targetPortRefused, by: 'server' },
    { host: 'crash', reason: ProxyErrors.appReset, by: 'server' },
  ]
  const h2 = http2.connect(`http://127.0.0.1:${edge.ports.outbound}`)
  t.teardown(() => h2.close())
  const countedAsSuccess = successRateSays()

  for (const c of cases) {
    const path = (caller: string): string => `/${c.host}/${caller}`
    const r1 = await request(`${edge.proxyUrl}${path('h1')}`, { headers: { host: c.host } })
    await r1.body.text()
    t.equal(r1.statusCode, c.reason.status, `${c.host}, HTTP/1.1 caller: ${c.reason.status}`)
    const h2status = await new Promise<number>((resolve, reject) => {
      const s = h2.request({ ':path': path('h2'), ':authority': c.host })
      s.once('response', (h) => { s.resume(); s.once('end', () => resolve(Number(h[':status']))) })
      s.once('error', reject)
      s.end()
    })
    t.equal(h2status, c.reason.status, `${c.host}, h2 caller: ${c.reason.status}`)
    const client = echoClient(t, edge, c.host)
    const { err } = await unary(client, { message: 'hi' })
    client.close()
    t.equal(err?.code, c.reason.grpcStatus, `${c.host}, gRPC caller: ${grpc.status[c.reason.grpcStatus]}`)

    // The access log of the sidecar that answered, and of the client's sidecar (they relay it).
    const owners: SidecarProcess[] = c.by === 'edge' ? [edge] : [edge, mesh.sidecar(c.host === 'crash' || c.host === 'undeclared' ? 'api' : c.host)]
    for (const s of owners) {
      const direction = s === edge ? 'outbound' : 'inbound'
      const ours = (): Array<Record<string, unknown>> => s.logs().filter((l) => l.access === direction && (l.path === '/remora.test.Echo/Unary' ? l.authority === c.host : String(l.path).startsWith(`/${c.host}/`)))
      await eventually(() => ours().length >= 3, 10_000, `${s.name}: three ${c.host} lines`)
      const lines = ours()
      const grpcLine = lines.find((l) => l.path === '/remora.test.Echo/Unary')
      t.match(grpcLine, { status: 200, grpc_status: String(c.reason.grpcStatus), error: c.reason.reason }, `${s.name} logs the gRPC refusal as ${grpc.status[c.reason.grpcStatus]} with its reason`)
      for (const caller of ['h1', 'h2']) {
        t.match(lines.find((l) => String(l.path).startsWith(`/${c.host}/${caller}`)), { status: c.reason.status, error: c.reason.reason }, `${s.name} logs the ${caller} refusal`)
      }
    }
  }

  // remora_requests_total on the client's sidecar: each gRPC refusal under the code the client got.
  let families: MetricFamily[] = []
  await eventually(async () => {
    families = await scrapeMetrics(edge.adminUrl)
    return true
  })
  const series = samples(families, 'remora_requests_total')
  for (const c of cases) {
    const grpcSeries = series.filter((m) => m.labels?.reason === c.reason.reason && m.labels.grpc_status === String(c.reason.grpcStatus))
    t.ok(grpcSeries.length === 1 && Number(grpcSeries[0].value) >= 1, `${c.host}: counted with grpc_status="${c.reason.grpcStatus}" and reason "${c.reason.reason}"`)
    t.notOk(series.some((m) => m.labels?.reason === c.reason.reason && m.labels.status === '200' && m.labels.grpc_status === ''), `${c.host}: never as a plain 200`)
    const countsAsSuccess = grpcSeries.length === 1 && countedAsSuccess(grpcSeries[0].labels ?? {})
    const clientError = c.reason.grpcStatus === grpc.status.PERMISSION_DENIED
    t.equal(countsAsSuccess, clientError, `${c.host}: the dashboard's success rate counts ${grpc.status[c.reason.grpcStatus]} as ${clientError ? 'a client error (not the service failing)' : 'a failure'}`)
  }
  release()
  await (await holding).body.text()
})

t.test('a refused CONNECT tunnel is logged and counted with its reason, as any refused request', async (t) => {
  const mesh = await startMesh(t, { workloads: { edge: { appPorts: [1] } }, services: [] }, { env: { REMORA_OUTBOUND_POLICY: 'registry-only' } })
  const edge = mesh.sidecar('edge')
  const connect = async (target: string): Promise<string> => {
    const socket = net.connect(edge.ports.outbound, '127.0.0.1')
    await once(socket, 'connect')
    socket.end(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`)
    let text = ''
    socket.on('data', (c: Buffer) => { text += c.toString() })
    await once(socket, 'close')
    return text
  }
  const unknown = await connect('nowhere.example:443')
  t.match(unknown, /^HTTP\/1\.1 503 /, 'the client gets 503')
  t.match(unknown, /remora-proxy-error: unknown authority/i, 'with the reason')
  t.match(unknown, /unknown authority: nowhere\.example:443/, 'and a body naming the authority')
  const malformed = await connect('no-port')
  t.match(malformed, /^HTTP\/1\.1 400 /, 'a CONNECT target without a port is a 400')
  await eventually(() => edge.logs().filter((l) => l.method === 'CONNECT').length >= 2, 10_000, 'two CONNECT lines')
  const lines = edge.logs().filter((l) => l.method === 'CONNECT')
  t.match(lines.find((l) => l.authority === 'nowhere.example:443'), { access: 'outbound', status: 503, error: 'unknown authority' }, 'the refused tunnel has an access-log line with its reason')
  t.match(lines.find((l) => l.authority === 'no-port'), { status: 400, error: 'malformed request' })
  const metrics = await (await request(`${edge.adminUrl}/metrics`)).body.text()
  t.match(metrics, /remora_requests_total\{direction="outbound",authority="unknown",status="503",grpc_status="",reason="unknown authority"\} 1/, 'and is counted')
  t.match(metrics, /remora_requests_in_flight\{direction="outbound"\} 0/, 'nothing left in flight')
})
