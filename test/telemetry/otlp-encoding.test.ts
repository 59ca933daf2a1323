// remora's OTLP span encoding: the same bytes as the SDK's own serializer for every kind of span,
// attribute, event and link, and what the official proto definitions decode from it (these
// definitions predate Span.flags, which the byte comparison covers).
import t, { type Test } from 'tap'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Tracer } from '@opentelemetry/api'
import { TraceState } from '@opentelemetry/core'
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace'
import { encodeSpan, encodeSpans } from '../../src/telemetry/otlp-encoding.ts'
import { Request } from '../harness/otlp.ts'

interface Decoded {
  resourceSpans: Array<{
    resource: { attributes: Array<{ key: string, value: Record<string, unknown> }> }
    scopeSpans: Array<{ scope: { name: string, version?: string }, spans: Array<Record<string, unknown> & { attributes?: Array<{ key: string, value: Record<string, unknown> }> }> }>
  }>
}

function decode (bytes: Uint8Array): Decoded {
  return Request.toObject(Request.decode(bytes), { longs: String, bytes: String, defaults: false }) as Decoded
}

function provider (service: string, scopes: string[]): { tracers: Tracer[], spans: () => ReadableSpan[] } {
  const exporter = new InMemorySpanExporter()
  const p = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': service, 'process.pid': 4242, 'host.arch': 'amd64' }),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  })
  return { tracers: scopes.map((s, i) => p.getTracer(s, i === 0 ? '1.2.3' : undefined)), spans: () => exporter.getFinishedSpans() }
}

const remoteParent = trace.setSpanContext(ROOT_CONTEXT, {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  traceFlags: 1,
  isRemote: true,
  traceState: new TraceState('vendor=a1b2,other=x'),
})

/** The same bytes as the SDK's serializer: the SDK's encoding is the specification here. */
function same (t: Test, spans: ReadableSpan[], what: string): Uint8Array {
  const ours = encodeSpans(spans)
  const theirs = ProtobufTraceSerializer.serializeRequest(spans) as Uint8Array
  t.equal(ours.length, theirs.length, `${what}: same length`)
  t.ok(Buffer.from(ours).equals(Buffer.from(theirs)), `${what}: same bytes`)
  return ours
}

t.test('a sidecar CLIENT span and SERVER span: same bytes as the SDK, and decoded right', async (t) => {
  const { tracers: [tracer], spans } = provider('web', ['remora'])
  const client = tracer.startSpan('GET', { kind: SpanKind.CLIENT, startTime: [1700000000, 123456789] }, remoteParent)
  client.setAttributes({ 'http.request.method': 'GET', 'url.path': '/hello', 'server.address': 'greeter', 'server.port': 80, 'network.peer.port': 40123, 'remora.peer.identity': 'spiffe://cluster.local/ns/default/sa/greeter' })
  client.setAttribute('http.response.status_code', 503)
  client.setStatus({ code: SpanStatusCode.ERROR, message: 'HTTP 503' })
  client.end([1700000001, 999999999])
  const server = tracer.startSpan('greeter.Greeter/SayHello', { kind: SpanKind.SERVER })
  server.setAttributes({ 'rpc.system': 'grpc', 'rpc.grpc.status_code': 0 })
  server.end()
  const bytes = same(t, spans(), 'two spans')
  const d = decode(bytes)
  t.equal(d.resourceSpans.length, 1)
  const resource = Object.fromEntries(d.resourceSpans[0].resource.attributes.map((a) => [a.key, a.value]))
  t.same(resource['service.name'], { stringValue: 'web' })
  t.same(resource['process.pid'], { intValue: '4242' })
  t.same(d.resourceSpans[0].scopeSpans[0].scope, { name: 'remora', version: '1.2.3' })
  const [c, s] = d.resourceSpans[0].scopeSpans[0].spans
  t.equal(Buffer.from(c.traceId as string, 'base64').toString('hex'), '4bf92f3577b34da6a3ce929d0e0e4736')
  t.equal(Buffer.from(c.parentSpanId as string, 'base64').toString('hex'), '00f067aa0ba902b7')
  t.equal(c.traceState, 'vendor=a1b2,other=x')
  t.equal(c.kind, 3)
  t.equal(c.startTimeUnixNano, '1700000000123456789', 'times are exact nanoseconds (past 2^53)')
  t.equal(c.endTimeUnixNano, '1700000001999999999')
  t.same(c.status, { code: 2, message: 'HTTP 503' })
  const attrs = Object.fromEntries((c.attributes ?? []).map((a) => [a.key, a.value]))
  t.same(attrs['url.path'], { stringValue: '/hello' })
  t.same(attrs['http.response.status_code'], { intValue: '503' })
  t.equal(s.kind, 2)
  t.equal(s.parentSpanId, undefined, 'a root span has no parent')
})

t.test('every attribute type, events and links: same bytes as the SDK', async (t) => {
  const { tracers: [tracer], spans } = provider('types', ['remora'])
  const values: Attributes = {
    ascii: 'plain',
    empty: '',
    accented: 'grüße aus Köln',
    emoji: 'remora 🐟 fish',
    long: 'x'.repeat(47) + 'é' + 'y'.repeat(200),
    longAscii: 'spiffe://cluster.local/ns/production-namespace/sa/a-rather-long-service-account',
    yes: true,
    no: false,
    zero: 0,
    int: 42,
    negative: -7,
    big: 2 ** 40 + 3,
    bigNegative: -(2 ** 45) - 1,
    maxSafe: Number.MAX_SAFE_INTEGER,
    double: 3.25,
    negativeDouble: -0.001,
    strings: ['a', 'b', 'ç'],
    numbers: [1, 2.5, -3],
    flags: [true, false],
    withHoles: ['a', null, 'c'],
    emptyList: [],
  }
  const span = tracer.startSpan('all types', { kind: SpanKind.INTERNAL, attributes: values, links: [{ context: { traceId: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', spanId: 'bbbbbbbbbbbbbbbb', traceFlags: 0, isRemote: true, traceState: new TraceState('k=v') }, attributes: { why: 'follows from' } }] }, remoteParent)
  span.addEvent('attempt', { 'http.request.resend_count': 1, endpoint: '10.0.0.7:8080' })
  span.addEvent('bare event')
  span.addLink({ context: { traceId: 'cccccccccccccccccccccccccccccccc', spanId: 'dddddddddddddddd', traceFlags: 1 } })
  span.end()
  same(t, spans(), 'all types')
})

t.test('lengths past what was reserved: long values, a long span, a batch over 2 MB', async (t) => {
  const { tracers: [tracer], spans } = provider('sizes', ['remora'])
  const a = tracer.startSpan('kv over 127 bytes')
  a.setAttribute('value', 'v'.repeat(130))
  a.setAttribute('value 16k', 'w'.repeat(17_000))
  a.end()
  const b = tracer.startSpan('tiny') // a span under 128 bytes: its reserved two length bytes shrink to one
  b.end()
  same(t, spans(), 'long values')
  const { tracers: [bulk], spans: bulkSpans } = provider('bulk', ['remora'])
  for (let i = 0; i < 3500; i++) {
    const s = bulk.startSpan(`span ${i}`, { kind: SpanKind.CLIENT }, remoteParent)
    s.setAttribute('payload', 'p'.repeat(600))
    s.end()
  }
  const bytes = same(t, bulkSpans(), '3500 spans')
  t.ok(bytes.length > 2 ** 21, 'the batch is over 2 MB (more than three length bytes)')
  t.equal(decode(bytes).resourceSpans[0].scopeSpans[0].spans.length, 3500)
})

t.test('spans of two resources and two scopes are grouped as the SDK groups them', async (t) => {
  const one = provider('one', ['remora', 'other-scope'])
  const two = provider('two', ['remora'])
  const mixed: ReadableSpan[] = []
  for (let i = 0; i < 3; i++) {
    for (const tracer of [...one.tracers, ...two.tracers]) tracer.startSpan(`s${i}`).end()
  }
  mixed.push(...one.spans(), ...two.spans())
  mixed.sort((x, y) => x.name.localeCompare(y.name)) // interleaved
  const d = decode(same(t, mixed, 'mixed'))
  t.equal(d.resourceSpans.length, 2)
  t.same(d.resourceSpans.map((r) => r.scopeSpans.map((s) => s.spans.length)), [[3, 3], [3]])
})

t.test('an encoded batch is a copy: the next batch does not overwrite it', async (t) => {
  const { tracers: [tracer], spans } = provider('copy', ['remora'])
  tracer.startSpan('first').end()
  const first = encodeSpans(spans())
  const kept = Buffer.from(first)
  tracer.startSpan('second, with a different name').end()
  encodeSpans(spans().slice(1))
  t.ok(Buffer.from(first).equals(kept))
  t.same(encodeSpans([]), new Uint8Array(0), 'no spans: an empty request')
})

t.test('spans encoded as they end: the batch is the same bytes, across chunk boundaries and for spans larger than a chunk\'s slack', async (t) => {
  const { tracers: [tracer], spans } = provider('ahead', ['remora'])
  for (let i = 0; i < 600; i++) {
    const s = tracer.startSpan(`span ${i}`, { kind: SpanKind.SERVER }, remoteParent)
    s.setAttributes({ 'http.request.method': 'GET', 'url.path': `/item/${i}`, 'server.port': 8080 })
    // Every 50th span is larger than the room left at a chunk's end.
    if (i % 50 === 0) s.setAttribute('payload', 'p'.repeat(5000 + i))
    s.end()
  }
  const plain = same(t, spans(), '600 spans')
  const ahead = spans().map(encodeSpan)
  // Bytes held by earlier spans survive later ones being encoded (ranges of chunks, not of a reused buffer).
  const first = Buffer.from(ahead[0].bytes)
  t.ok(Buffer.from(encodeSpans(ahead)).equals(Buffer.from(plain)), '600 spans encoded as they ended: the same bytes as encoded in the batch')
  t.ok(Buffer.from(ahead[0].bytes).equals(first), 'an early span\'s bytes are intact')
  t.equal(decode(plain).resourceSpans[0].scopeSpans[0].spans.length, 600)
  // Encoded and not yet encoded spans in one batch (remora's spans, and the SDK's should remora fall back to them).
  const mixed = spans().map((s, i) => i % 3 === 0 ? encodeSpan(s) : s)
  t.ok(Buffer.from(encodeSpans(mixed)).equals(Buffer.from(plain)), 'encoded and plain spans mixed: the same bytes')
  // Spans whose bytes are not side by side (here, in reverse order) are copied one by one, in the batch's order.
  const reversed = [...spans()].reverse()
  t.ok(Buffer.from(encodeSpans([...ahead].reverse())).equals(Buffer.from(ProtobufTraceSerializer.serializeRequest(reversed) as Uint8Array)), 'encoded spans out of order: the SDK\'s bytes for that order')
  // The batch takes the encoded bytes, not the span's current state: a span renamed after it was encoded keeps its encoded name.
  const late = spans()[1]
  const encoded = encodeSpan(late)
  ;(late as { name: string }).name = 'renamed after the end'
  t.same(decode(encodeSpans([encoded, spans()[2]])).resourceSpans[0].scopeSpans[0].spans.map((s) => s.name), ['span 1', 'span 2'])
  t.equal(encoded.spanContext().traceFlags, late.spanContext().traceFlags, 'the batch processor reads the span\'s sampled flag')
  t.equal(encoded.spanContext().traceId, '', 'and nothing else of its context is kept: its ids are in its bytes')
  t.equal(encodeSpan(spans()[3]).spanContext(), encoded.spanContext(), 'one flags-only context for all sampled spans')
  t.equal(encoded.resource, late.resource)
  t.equal(encoded.instrumentationScope, late.instrumentationScope)
})
