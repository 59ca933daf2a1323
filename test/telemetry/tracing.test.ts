// Traces a user sees in Jaeger: one trace across three workloads with the right parent/child
// links, service names and attributes; retries as attempts; W3C, B3 and no-context callers;
// sampled and unsampled; a dead or slow collector never touches traffic.
import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import { request } from 'undici'
import { eventually, startMesh, type Mesh, type Teardown } from '../harness/mesh.ts'
import { startApp } from '../harness/apps.ts'
import { startReceiver, type ReceivedSpan } from '../harness/otlp.ts'
import { metric } from '../harness/metrics.ts'
import { ROOT_CONTEXT, SpanKind, trace, type Tracer } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'

const INTERNAL = 1
const SERVER = 2
const CLIENT = 3
const KIND: Record<number, string> = { [INTERNAL]: 'request (INTERNAL)', [SERVER]: 'SERVER', [CLIENT]: 'CLIENT' }
const TRACE_HEADERS = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled']

/** An instrumented app's own tracer (service "<name>-app"), exporting to the same receiver. */
function appTracer (t: Teardown, name: string, receiverUrl: string): Tracer {
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': `${name}-app` }),
    spanProcessors: [new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url: `${receiverUrl}/v1/traces` }) })],
  })
  t.teardown(() => provider.shutdown())
  return provider.getTracer('test-app')
}

const w3c = new W3CTraceContextPropagator()
const carrier = { get: (c: http.IncomingHttpHeaders, k: string) => c[k] as string | undefined, keys: (c: http.IncomingHttpHeaders) => Object.keys(c) }

/**
 * An app that forwards the trace headers (and nothing else of the mesh) to `next` through its own
 * sidecar. With a tracer it is an instrumented app: its own span sits between the two sidecar hops.
 */
function forwarder (name: string, next: () => { via: number, host: string } | undefined, seen: http.IncomingHttpHeaders[], tracer?: () => Tracer | undefined): http.RequestListener {
  return (req, res) => {
    seen.push(req.headers)
    const hop = next()
    const appTracer = tracer?.()
    const span = appTracer?.startSpan(`${name} handler`, { kind: SpanKind.SERVER }, w3c.extract(ROOT_CONTEXT, req.headers, carrier))
    if (hop === undefined) { span?.end(); res.end(name); return }
    const headers: Record<string, string> = { host: hop.host }
    for (const h of TRACE_HEADERS) if (typeof req.headers[h] === 'string') headers[h] = req.headers[h]
    if (span !== undefined) {
      for (const h of TRACE_HEADERS) delete headers[h]
      w3c.inject(trace.setSpan(ROOT_CONTEXT, span), headers, { set: (c, k, v) => { c[k] = v } })
    }
    request(`http://127.0.0.1:${hop.via}${req.url ?? '/'}`, { headers }).then(async (r) => {
      span?.end()
      res.writeHead(r.statusCode).end(`${name}>${await r.body.text()}`)
    }, (err: Error) => res.writeHead(500).end(err.message))
  }
}

async function chain (t: Teardown, env: Record<string, string>, tracers: Record<string, Tracer> = {}): Promise<{ mesh: Mesh, seen: Record<string, http.IncomingHttpHeaders[]> }> {
  const seen: Record<string, http.IncomingHttpHeaders[]> = { a: [], b: [], c: [] }
  // The apps learn their sidecar's outbound port once the mesh is up.
  const ref: { mesh?: Mesh } = {}
  const c = await startApp(t, forwarder('c', () => undefined, seen.c, () => tracers.c))
  const b = await startApp(t, forwarder('b', () => ({ via: ref.mesh?.sidecar('b').ports.outbound ?? 0, host: 'c' }), seen.b, () => tracers.b))
  const a = await startApp(t, forwarder('a', () => ({ via: ref.mesh?.sidecar('a').ports.outbound ?? 0, host: 'b' }), seen.a, () => tracers.a))
  const mesh = ref.mesh = await startMesh(t, {
    workloads: { edge: { appPorts: [1] }, a: { appPorts: [a.port] }, b: { appPorts: [b.port] }, c: { appPorts: [c.port] }, gone: { appPorts: [9] } },
    services: [
      { name: 'a', port: 80, endpoints: [{ workload: 'a', targetPort: a.port }] },
      { name: 'b', port: 80, endpoints: [{ workload: 'b', targetPort: b.port }] },
      { name: 'c', port: 80, endpoints: [{ workload: 'c', targetPort: c.port }] },
      // one endpoint whose sidecar never runs: connection refused, retried on the other
      { name: 'flaky', port: 80, balancer: 'round-robin', endpoints: [{ workload: 'gone', targetPort: 9 }, { workload: 'c', targetPort: c.port }] },
    ],
  }, { env: { OTEL_BSP_SCHEDULE_DELAY: '100', ...env }, only: ['edge', 'a', 'b', 'c'] })
  return { mesh, seen }
}

const byTrace = (spans: ReceivedSpan[], traceId: string): ReceivedSpan[] => spans.filter((s) => s.traceId === traceId)

t.test('one trace across edge → a → b → c: every hop a request span, an attempt CLIENT span and a SERVER span, linked through the apps\' own spans, named, attributed', async (t) => {
  const receiver = await startReceiver(t)
  const tracers = { a: appTracer(t, 'a', receiver.url), b: appTracer(t, 'b', receiver.url) }
  const { mesh, seen } = await chain(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url }, tracers)
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  const root = '00f067aa0ba902b7'
  const res = await request(`${mesh.sidecar('edge').proxyUrl}/orders/42?x=1`, { headers: { host: 'a', traceparent: `00-${traceId}-${root}-01` } })
  t.equal(await res.body.text(), 'a>b>c')
  await eventually(() => byTrace(receiver.spans, traceId).length >= 11, 10_000, 'nine sidecar and two app spans exported')
  const spans = byTrace(receiver.spans, traceId)
  const one = (service: string, kind: number): ReceivedSpan => {
    const found = spans.filter((s) => s.service === service && s.kind === kind)
    t.equal(found.length, 1, `one ${KIND[kind]} span from ${service}`)
    return found[0]
  }
  const edgeRequest = one('edge', INTERNAL)
  const edgeClient = one('edge', CLIENT)
  const aServer = one('a', SERVER)
  const aRequest = one('a', INTERNAL)
  const aClient = one('a', CLIENT)
  const bServer = one('b', SERVER)
  const bRequest = one('b', INTERNAL)
  const bClient = one('b', CLIENT)
  const cServer = one('c', SERVER)
  t.equal(edgeRequest.parentSpanId, root, "the first sidecar's request span is a child of the caller's span")
  t.equal(edgeClient.parentSpanId, edgeRequest.spanId, 'its attempt is a child of the request span')
  const aApp = one('a-app', SERVER)
  const bApp = one('b-app', SERVER)
  t.equal(aServer.parentSpanId, edgeClient.spanId, 'a SERVER ← edge CLIENT')
  t.equal(aApp.parentSpanId, aServer.spanId, "a's app span ← a's sidecar SERVER span")
  t.equal(aRequest.parentSpanId, aApp.spanId, "a's request span ← a's app span (the app sent its own context)")
  t.equal(aClient.parentSpanId, aRequest.spanId)
  t.equal(bServer.parentSpanId, aClient.spanId)
  t.equal(bApp.parentSpanId, bServer.spanId)
  t.equal(bRequest.parentSpanId, bApp.spanId)
  t.equal(bClient.parentSpanId, bRequest.spanId)
  t.equal(cServer.parentSpanId, bClient.spanId)
  t.match(edgeRequest.attributes, { 'http.request.method': 'GET', 'url.path': '/orders/42', 'server.address': 'a', 'server.port': 80, 'http.response.status_code': 200 })
  t.match(edgeClient.attributes, { 'server.port': 80, 'network.peer.port': mesh.sidecar('a').ports.inbound, 'remora.attempt': 1 })
  t.match(aServer.attributes, { 'client.address': '127.0.0.1' })
  t.match(edgeRequest.resource, { 'service.name': 'edge', 'service.namespace': 'test', 'k8s.namespace.name': 'test' }, "the resource names the workload's namespace (from the mesh file)")
  t.match(edgeClient.attributes, { 'http.request.method': 'GET', 'url.path': '/orders/42', 'server.address': 'a', 'http.response.status_code': 200, 'network.peer.address': '127.0.0.1', 'remora.peer.identity': 'spiffe://cluster.local/ns/test/sa/a' })
  t.match(cServer.attributes, { 'http.request.method': 'GET', 'http.response.status_code': 200, 'network.peer.address': '127.0.0.1' })
  t.equal(edgeClient.name, 'GET')
  t.ok(spans.every((s) => s.status.code !== 2), 'no span in error')
  t.equal(seen.c[0].traceparent, `00-${traceId}-${cServer.spanId}-01`, 'the app sees the SERVER span as its parent')
  t.equal(seen.c[0]['x-b3-spanid'], undefined, 'a W3C caller gets W3C only: no extra B3 headers per hop')

  const access = mesh.sidecar('edge').logs().find((l) => l.access === 'outbound' && l.path === '/orders/42?x=1')
  t.equal(access?.trace_id, traceId, 'the access log line carries trace_id')
  t.equal(access?.span_id, edgeRequest.spanId, "and span_id, the request span's")
})

t.test('a retried request shows each attempt; B3 callers, callers with no context, unsampled callers', async (t) => {
  const receiver = await startReceiver(t)
  const { mesh, seen } = await chain(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url })
  const edge = mesh.sidecar('edge')

  const retryTrace = '11111111111111111111111111111111'
  const r = await request(`${edge.proxyUrl}/retry`, { headers: { host: 'flaky', traceparent: `00-${retryTrace}-2222222222222222-01` } })
  t.equal(r.statusCode, 200)
  await r.body.text()
  await eventually(() => byTrace(receiver.spans, retryTrace).filter((s) => s.service === 'edge').length >= 3, 10_000, 'two attempts and the request span exported')
  const attempts = byTrace(receiver.spans, retryTrace).filter((s) => s.service === 'edge' && s.kind === CLIENT)
  t.equal(attempts.length, 2, 'one CLIENT span per attempt')
  const [failed, retried] = attempts.sort((x, y) => Number(x.attributes['http.request.resend_count'] ?? 0) - Number(y.attributes['http.request.resend_count'] ?? 0))
  t.equal(failed.status.code, 2, 'the failed attempt is in error')
  t.equal(failed.attributes['error.type'], 'connect refused')
  t.ok(failed.events.some((e) => e.name === 'retry' && e.attributes['remora.retry.reason'] === 'connect refused'), 'with a retry event and its reason')
  t.equal(retried.attributes['http.request.resend_count'], 1)
  t.equal(retried.parentSpanId, failed.parentSpanId, 'both attempts are children of one request span')
  const requestSpan = byTrace(receiver.spans, retryTrace).find((s) => s.service === 'edge' && s.kind === INTERNAL)
  t.equal(requestSpan?.spanId, failed.parentSpanId, 'the request span')
  t.equal(requestSpan?.parentSpanId, '2222222222222222', "whose parent is the caller's span")
  await eventually(() => byTrace(receiver.spans, retryTrace).some((s) => s.service === 'c' && s.kind === SERVER), 10_000, 'peer span exported')
  t.ok(byTrace(receiver.spans, retryTrace).some((s) => s.service === 'c' && s.kind === SERVER && s.parentSpanId === retried.spanId), 'the peer continues the successful attempt')

  const b3Trace = 'a0000000000000000000000000000001'
  await (await request(`${edge.proxyUrl}/b3`, { headers: { host: 'c', b3: `${b3Trace}-b000000000000001-1` } })).body.text()
  const multiTrace = 'a0000000000000000000000000000002'
  await (await request(`${edge.proxyUrl}/b3multi`, { headers: { host: 'c', 'x-b3-traceid': multiTrace, 'x-b3-spanid': 'b000000000000002', 'x-b3-sampled': '1' } })).body.text()
  await eventually(() => byTrace(receiver.spans, b3Trace).length >= 3 && byTrace(receiver.spans, multiTrace).length >= 3, 10_000, 'B3 traces exported')
  t.equal(byTrace(receiver.spans, b3Trace).find((s) => s.service === 'edge' && s.kind === INTERNAL)?.parentSpanId, 'b000000000000001', 'B3 single header is read')
  const b3Server = byTrace(receiver.spans, b3Trace).find((s) => s.service === 'c' && s.kind === SERVER)
  const b3Seen = seen.c.find((h) => String(h.b3).startsWith(b3Trace))
  t.equal(b3Seen?.b3, `${b3Trace}-${b3Server?.spanId}-1`, 'and written back in B3 single for the B3 app')
  t.equal(b3Seen?.traceparent, `00-${b3Trace}-${b3Server?.spanId}-01`, 'with W3C beside it')
  t.equal(byTrace(receiver.spans, multiTrace).find((s) => s.service === 'edge' && s.kind === INTERNAL)?.parentSpanId, 'b000000000000002', 'B3 multi header is read')
  const multiSeen = seen.c.find((h) => h['x-b3-traceid'] === multiTrace)
  t.equal(multiSeen?.['x-b3-spanid'], byTrace(receiver.spans, multiTrace).find((s) => s.service === 'c' && s.kind === SERVER)?.spanId, 'and written back in B3 multi')

  const before = seen.c.length
  await (await request(`${edge.proxyUrl}/fresh`, { headers: { host: 'c' } })).body.text()
  const fresh = String(seen.c[before].traceparent)
  const freshTrace = fresh.split('-')[1]
  t.match(fresh, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, 'no context: a new sampled trace starts (parent-based, root always on)')
  await eventually(() => byTrace(receiver.spans, freshTrace).length >= 3, 10_000, 'fresh trace exported')
  t.equal(byTrace(receiver.spans, freshTrace).find((s) => s.service === 'edge' && s.kind === INTERNAL)?.parentSpanId, '', "the edge's request span is the root")

  const unsampled = 'c0000000000000000000000000000003'
  await (await request(`${edge.proxyUrl}/unsampled`, { headers: { host: 'c', traceparent: `00-${unsampled}-d000000000000003-00` } })).body.text()
  t.equal(seen.c.at(-1)?.traceparent, `00-${unsampled}-d000000000000003-00`, 'an unsampled caller\'s context reaches the app untouched: no span was made for it')
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(byTrace(receiver.spans, unsampled).length, 0, 'nothing exported for an unsampled trace')
  const line = edge.logs().find((l) => l.path === '/unsampled')
  t.equal(line?.trace_id, undefined, 'and no trace_id on its log line')
})

t.test('a request with no trace context that is retried is one trace: a root request span, one CLIENT span per attempt inside it, timed below the millisecond', async (t) => {
  const receiver = await startReceiver(t)
  const { mesh } = await chain(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url })
  const edge = mesh.sidecar('edge')
  const r = await request(`${edge.proxyUrl}/no-context`, { headers: { host: 'flaky' } })
  t.equal(r.statusCode, 200)
  t.equal(await r.body.text(), 'c')
  await eventually(() => edge.logs().some((l) => l.path === '/no-context'), 10_000, 'the access log line')
  const line = edge.logs().find((l) => l.path === '/no-context')
  t.equal(line?.attempts, 2, 'the request took two attempts')
  const traceId = String(line?.trace_id)
  t.match(traceId, /^[0-9a-f]{32}$/, 'the access log names the trace')
  await eventually(() => byTrace(receiver.spans, traceId).length >= 4, 10_000, 'the request span, two attempts and the peer\'s SERVER span exported')
  const ours = receiver.spans.filter((s) => s.service === 'edge' && s.attributes['url.path'] === '/no-context')
  t.equal(ours.length, 3, 'three spans from the edge sidecar for this request')
  t.ok(ours.every((s) => s.traceId === traceId), 'all in the trace the access log names: no attempt starts a trace of its own')
  const root = ours.find((s) => s.kind === INTERNAL)
  t.equal(root?.parentSpanId, '', 'the request span is the root')
  t.equal(line?.span_id, root?.spanId, 'and the access log\'s span_id')
  t.equal(root?.attributes['http.response.status_code'], 200, 'it ends with what the app got')
  t.equal(root?.status.code, 0, 'not in error: the retry succeeded')
  const [first, second] = ours.filter((s) => s.kind === CLIENT).sort((x, y) => Number(x.attributes['remora.attempt']) - Number(y.attributes['remora.attempt']))
  t.equal(first?.parentSpanId, root?.spanId, 'attempt 1 is a child of the request span')
  t.equal(second?.parentSpanId, root?.spanId, 'attempt 2 too')
  t.match(first?.attributes, { 'remora.attempt': 1, 'error.type': 'connect refused', 'remora.endpoint': `127.0.0.1:${mesh.ports.get('gone')?.inbound}/9` })
  t.equal(first?.status.code, 2, 'the failed attempt is in error')
  t.match(second?.attributes, { 'remora.attempt': 2, 'http.request.resend_count': 1, 'http.response.status_code': 200 })
  t.type(second?.attributes['remora.retry.backoff_ms'], 'number', 'the attempt says how long the call waited before it')
  await eventually(() => byTrace(receiver.spans, traceId).some((s) => s.service === 'c' && s.kind === SERVER), 10_000, 'the peer\'s span')
  t.equal(byTrace(receiver.spans, traceId).find((s) => s.service === 'c' && s.kind === SERVER)?.parentSpanId, second?.spanId, 'the peer continues attempt 2')

  // One clock for start and end, below the millisecond: children lie inside their parents.
  const spans = byTrace(receiver.spans, traceId)
  t.ok(spans.some((s) => s.start % 1_000_000n !== 0n), 'start times are not whole milliseconds')
  for (const child of spans) {
    const parent = spans.find((p) => p.spanId === child.parentSpanId && p.service === child.service)
    if (parent === undefined) continue
    t.ok(parent.start <= child.start && child.end <= parent.end, `${child.service}'s ${KIND[child.kind]} span lies inside its parent (${parent.start}..${parent.end} ⊇ ${child.start}..${child.end})`)
  }
})

t.test('SERVER spans: a 4xx, the app\'s or the proxy\'s, is not an error; a 5xx is', async (t) => {
  const receiver = await startReceiver(t)
  const app = await startApp(t, (req, res) => { res.writeHead(req.url === '/missing' ? 404 : 503).end() })
  const mesh = await startMesh(t, {
    workloads: { edge: { appPorts: [1] }, api: { appPorts: [app.port], authorization: { default: 'deny' } }, open: { appPorts: [app.port] } },
    services: [{ name: 'api', port: 80, endpoints: [{ workload: 'api', targetPort: app.port }] }, { name: 'open', port: 80, endpoints: [{ workload: 'open', targetPort: app.port }] }],
  }, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' } })
  const edge = mesh.sidecar('edge')
  const call = async (host: string, path: string, traceId: string): Promise<ReceivedSpan | undefined> => {
    const r = await request(`${edge.proxyUrl}${path}`, { headers: { host, traceparent: `00-${traceId}-1000000000000001-01` } })
    await r.body.text()
    await eventually(() => byTrace(receiver.spans, traceId).some((s) => s.kind === SERVER), 10_000, `${path}: SERVER span`)
    return byTrace(receiver.spans, traceId).find((s) => s.kind === SERVER)
  }
  const denied = await call('api', '/denied', 'e0000000000000000000000000000001')
  t.equal(denied?.attributes['http.response.status_code'], 403)
  t.equal(denied?.attributes['remora.proxy_error'], 'forbidden', 'the proxy\'s reason is on the span')
  t.equal(denied?.status.code, 0, 'a 403 the proxy answered leaves the SERVER span unset')
  const missing = await call('open', '/missing', 'e0000000000000000000000000000002')
  t.equal(missing?.attributes['http.response.status_code'], 404)
  t.equal(missing?.status.code, 0, 'a 404 from the app leaves it unset')
  const failing = await call('open', '/fail', 'e0000000000000000000000000000003')
  t.equal(failing?.status.code, 2, 'a 503 is an error')
  t.equal(failing?.attributes['error.type'], '503')
  await eventually(() => byTrace(receiver.spans, 'e0000000000000000000000000000001').some((s) => s.kind === CLIENT), 10_000, 'the CLIENT span')
  t.equal(byTrace(receiver.spans, 'e0000000000000000000000000000001').find((s) => s.kind === CLIENT)?.status.code, 2, 'the caller\'s side of a 403 is in error (CLIENT spans count 4xx)')
})

t.test('the standard OTEL_EXPORTER_OTLP_* variables: a signal-specific endpoint, headers, gzip', async (t) => {
  const receiver = await startReceiver(t)
  receiver.path = '/collector/traces'
  const { mesh } = await chain(t, {
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/collector/traces`,
    OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20tenant-7,x-scope-orgid=team-a',
    OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
  })
  const r = await request(`${mesh.sidecar('edge').proxyUrl}/std`, { headers: { host: 'a', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' } })
  t.equal(r.statusCode, 200)
  await r.body.text()
  await eventually(() => byTrace(receiver.spans, '0af7651916cd43dd8448eb211c80319c').length === 9, 10_000, 'the nine sidecar spans arrive')
  t.ok(receiver.requests.length > 0)
  for (const h of receiver.requests) {
    t.equal(h.authorization, 'Bearer tenant-7', 'the configured headers are sent (percent-decoded)')
    t.equal(h['x-scope-orgid'], 'team-a')
    t.equal(h['content-encoding'], 'gzip', 'compressed as configured')
  }
})

t.test('a dead collector: traffic unaffected, failed exports counted', async (t) => {
  const { mesh } = await chain(t, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_EXPORTER_OTLP_TIMEOUT: '500' })
  const edge = mesh.sidecar('edge')
  let ok = 0
  for (let i = 0; i < 20; i++) {
    const r = await request(`${edge.proxyUrl}/${i}`, { headers: { host: 'c' } })
    if (r.statusCode === 200) ok++
    await r.body.text()
  }
  t.equal(ok, 20, 'every request succeeded')
  await eventually(async () => await metric(edge.adminUrl, 'remora_spans_dropped_total', { reason: 'export failed' }) >= 1, 10_000, 'export failures counted')
})

t.test('a collector that never answers: traffic unaffected, spans beyond the queue dropped and counted', async (t) => {
  const receiver = await startReceiver(t)
  receiver.delayMs = 60_000
  const { mesh } = await chain(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_MAX_QUEUE_SIZE: '8', OTEL_EXPORTER_OTLP_TIMEOUT: '30000' })
  const edge = mesh.sidecar('edge')
  let ok = 0
  await Promise.all(Array.from({ length: 4 }, async (_, w) => {
    for (let i = 0; i < 15; i++) {
      const r = await request(`${edge.proxyUrl}/${w}/${i}`, { headers: { host: 'c' } })
      if (r.statusCode === 200) ok++
      await r.body.text()
    }
  }))
  t.equal(ok, 60, 'every request succeeded while the collector hangs')
  // A span ends when the sidecar's side of the response closes, just after the client has read it.
  let dropped = 0
  await eventually(async () => {
    dropped = await metric(edge.adminUrl, 'remora_spans_dropped_total', { reason: 'queue full' })
    return dropped >= 60 - 8
  }, 3000, 'dropped spans counted').catch(() => {})
  t.ok(dropped >= 60 - 8, `spans beyond the 8-span queue are dropped and counted (${dropped})`)
})

t.test('span ids go out over HTTP/2 as never-indexed header fields, so they never fill HPACK\'s table', async (t) => {
  const receiver = await startReceiver(t)
  const seen: Array<{ headers: http2.IncomingHttpHeaders, neverIndexed: string[] }> = []
  const app = http2.createServer((req, res) => {
    seen.push({ headers: req.headers, neverIndexed: (req.headers as Record<symbol, string[] | undefined>)[http2.sensitiveHeaders] ?? [] })
    res.end('h2 app')
  })
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve))
  t.teardown(() => app.close())
  const appPort = (app.address() as { port: number }).port
  const mesh = await startMesh(t, {
    workloads: { edge: { appPorts: [1] }, api: { appPorts: [{ port: appPort, protocol: 'http2' }] } },
    services: [{ name: 'api', port: 80, protocol: 'http2', endpoints: [{ workload: 'api', targetPort: appPort }] }],
  }, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_BSP_SCHEDULE_DELAY: '100' } })
  const calls = [
    { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
    { b3: '0af7651916cd43dd8448eb211c80319d-b7ad6b7169203332-1' },
    { 'x-b3-traceid': '0af7651916cd43dd8448eb211c80319e', 'x-b3-spanid': 'b7ad6b7169203333', 'x-b3-sampled': '1' },
  ]
  for (const headers of calls) {
    const r = await request(`${mesh.sidecar('edge').proxyUrl}/h2`, { headers: { host: 'api', 'user-agent': 'hpack-test', ...headers } })
    t.equal(await r.body.text(), 'h2 app')
  }
  t.equal(seen.length, 3)
  for (const { headers, neverIndexed } of seen) {
    const written = ['traceparent', 'b3', 'x-b3-traceid', 'x-b3-spanid'].filter((h) => headers[h] !== undefined)
    t.ok(written.length > 0 && written.every((h) => neverIndexed.includes(h)), `the app got ${written.join(', ')} never-indexed (${neverIndexed.join(', ')})`)
    t.notOk(neverIndexed.includes('user-agent'), 'headers that repeat stay indexable')
  }
  t.match(String(seen[0].headers.traceparent), /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/, 'the server sidecar\'s span is the app\'s parent')
})

t.test('which callers are known unsampled', async (t) => {
  const { unsampledCaller } = await import('../../src/telemetry/tracing.ts')
  t.ok(unsampledCaller({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' }))
  t.notOk(unsampledCaller({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }))
  t.notOk(unsampledCaller({ traceparent: 'garbage-00' }), 'a malformed traceparent decides nothing')
  t.ok(unsampledCaller({ b3: '0' }))
  t.ok(unsampledCaller({ b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0' }))
  t.notOk(unsampledCaller({ b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1' }))
  t.ok(unsampledCaller({ 'x-b3-sampled': '0' }))
  t.notOk(unsampledCaller({}), 'no context: the sampler decides')
})

t.test('traceparent read and written as the W3C propagator does', async (t) => {
  const { parseTraceparent, formatTraceparent } = await import('../../src/telemetry/tracing.ts')
  const getter = { keys: (c: Record<string, string>) => Object.keys(c), get: (c: Record<string, string>, k: string) => c[k] }
  const valid = [
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00',
    '00-00000000000000000000000000000001-0000000000000001-ff',
  ]
  const invalid = [
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // zero trace id
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // zero span id
    '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', // upper case
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // forbidden version
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g',
    '00-4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra', // version 00 has no more fields
    '00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01',
  ]
  for (const tp of [...valid, ...invalid]) {
    const sdk = trace.getSpanContext(w3c.extract(ROOT_CONTEXT, { traceparent: tp }, getter))
    const ours = parseTraceparent(tp)
    t.same(ours, sdk, `${tp}: ${sdk === undefined ? 'rejected' : 'read'} as the SDK does`)
  }
  // Forms left to the SDK's propagator (another version, surrounding space): not read here.
  t.equal(parseTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future'), undefined)
  t.equal(parseTraceparent(' 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), undefined)
  // The context a parsed traceparent becomes behaves as the API's own.
  const { remoteParent } = await import('../../src/telemetry/tracing.ts')
  const parsed = parseTraceparent(valid[0])
  if (parsed === undefined) throw new Error('unreachable')
  const ctx = remoteParent(parsed)
  t.same(trace.getSpanContext(ctx), trace.getSpanContext(trace.setSpanContext(ROOT_CONTEXT, parsed)), 'holds the caller\'s span context')
  const key = Symbol('other')
  const more = ctx.setValue(key, 42)
  t.equal(more.getValue(key), 42, 'takes other values')
  t.same(trace.getSpanContext(more), parsed, 'and keeps the span context')
  t.equal(ctx.getValue(key), undefined, 'without changing the original')
  t.equal(trace.getSpanContext(trace.deleteSpan(ctx)), undefined, 'the span can be deleted')
  for (const traceFlags of [0, 1]) {
    const context = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags }
    const carrier: Record<string, string> = {}
    w3c.inject(trace.setSpanContext(ROOT_CONTEXT, context), carrier, { set: (c, k, v) => { c[k] = v } })
    t.equal(formatTraceparent(context), carrier.traceparent, `flags ${traceFlags}: written as the SDK writes it`)
  }
})
