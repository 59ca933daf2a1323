// remora's lighter span against the SDK's own: with the same sampler, ids, resource and processor,
// the processor and exporter receive the same span (fields, and the same OTLP bytes), sampling
// decisions are the SDK sampler's, and the API's rules (status, end once) hold.
import t from 'tap'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type SpanContext } from '@opentelemetry/api'
import { TraceState } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { AlwaysOffSampler, AlwaysOnSampler, InMemorySpanExporter, ParentBasedSampler, SimpleSpanProcessor, TraceIdRatioBasedSampler, TracerProvider, type IdGenerator, type ReadableSpan, type Sampler } from '@opentelemetry/sdk-trace'
import { MeshSpan, MeshTracer } from '../../src/telemetry/mesh-span.ts'
import { encodeSpans } from '../../src/telemetry/otlp-encoding.ts'
import { parseTraceparent, remoteParent } from '../../src/telemetry/tracing.ts'
import { startSdk } from '../../src/telemetry/tracing-sdk.ts'
import { ProxyMetrics } from '../../src/telemetry/metrics.ts'
import pino from 'pino'

/** Hands out the same ids to both tracers, so their spans can be compared field by field. */
class FixedIds implements IdGenerator {
  seed = 12345
  #hex (chars: number): string {
    let s = ''
    while (s.length < chars) {
      this.seed = (Math.imul(this.seed, 1103515245) + 12345) >>> 0
      s += this.seed.toString(16).padStart(8, '0')
    }
    return s.slice(0, chars)
  }

  generateTraceId (): string { return this.#hex(32) }
  generateSpanId (): string { return this.#hex(16) }
}

const resource = resourceFromAttributes({ 'service.name': 'web' })
const remote = (flags: number): Context => trace.setSpanContext(ROOT_CONTEXT, {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  spanId: '00f067aa0ba902b7',
  traceFlags: flags,
  isRemote: true,
  traceState: new TraceState('vendor=a1b2'),
})

function both (sampler: Sampler): { sdk: (parent: Context) => ReturnType<typeof trace.wrapSpanContext>, ours: (parent: Context) => ReturnType<typeof trace.wrapSpanContext>, sdkSpans: () => ReadableSpan[], ourSpans: () => ReadableSpan[] } {
  const sdkExporter = new InMemorySpanExporter()
  const ourExporter = new InMemorySpanExporter()
  const sdkIds = new FixedIds()
  const ourIds = new FixedIds()
  const provider = new TracerProvider({ resource, sampler, idGenerator: sdkIds, spanProcessors: [new SimpleSpanProcessor({ exporter: sdkExporter })] })
  const sdkTracer = provider.getTracer('remora')
  const ours = new MeshTracer({ sampler, idGenerator: ourIds, resource, scope: { name: 'remora' }, processor: new SimpleSpanProcessor({ exporter: ourExporter }) })
  return {
    sdk: (parent) => sdkTracer.startSpan('GET', { kind: SpanKind.CLIENT }, parent),
    ours: (parent) => ours.startSpan('GET', SpanKind.CLIENT, parent),
    sdkSpans: () => sdkExporter.getFinishedSpans(),
    ourSpans: () => ourExporter.getFinishedSpans(),
  }
}

function fields (s: ReadableSpan): Record<string, unknown> {
  const c: SpanContext = s.spanContext()
  return {
    name: s.name,
    kind: s.kind,
    context: { traceId: c.traceId, spanId: c.spanId, traceFlags: c.traceFlags, traceState: c.traceState?.serialize() },
    parent: s.parentSpanContext?.spanId,
    parentRemote: s.parentSpanContext?.isRemote,
    attributes: s.attributes,
    events: s.events.map((e) => ({ name: e.name, attributes: e.attributes })),
    links: s.links.map((l) => ({ spanId: l.context.spanId, attributes: l.attributes })),
    status: s.status,
    resource: s.resource.attributes,
    scope: s.instrumentationScope.name,
    ended: s.ended,
    dropped: [s.droppedAttributesCount, s.droppedEventsCount, s.droppedLinksCount],
  }
}

t.test('the processor and exporter get the same span from either tracer', async (t) => {
  const { sdk, ours, sdkSpans, ourSpans } = both(new ParentBasedSampler({ root: new AlwaysOnSampler() }))
  for (const make of [sdk, ours]) {
    const child = make(remote(1))
    child.setAttributes({ 'http.request.method': 'GET', 'url.path': '/hello', 'server.port': 80 })
    child.addEvent('retry', { 'remora.retry.reason': 'status 503', 'remora.attempt': 1 })
    child.addLink({ context: { traceId: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', spanId: 'bbbbbbbbbbbbbbbb', traceFlags: 1 }, attributes: { why: 'follows from' } })
    child.setAttribute('http.response.status_code', 503)
    child.setStatus({ code: SpanStatusCode.ERROR, message: 'HTTP 503' })
    child.end()
    const root = make(ROOT_CONTEXT)
    root.setStatus({ code: SpanStatusCode.OK })
    root.setStatus({ code: SpanStatusCode.ERROR, message: 'ignored: OK is final' })
    root.end()
    root.end()
    root.setAttribute('after.end', true)
  }
  t.equal(ourSpans().length, 2, 'each span reaches the processor once, however often it is ended')
  t.same(ourSpans().map(fields), sdkSpans().map(fields), 'every field the exporter reads is the same')
  const [child, root] = ourSpans()
  t.equal(child.spanContext().traceId, '4bf92f3577b34da6a3ce929d0e0e4736', 'a child continues its parent\'s trace')
  t.equal(child.spanContext().traceState?.serialize(), 'vendor=a1b2', 'and carries its tracestate')
  t.equal(root.status.code, SpanStatusCode.OK)
  t.same([child.events.length, child.links.length, root.events.length, root.links.length], [1, 1, 0, 0], 'events and links only where added')
  for (const s of ourSpans()) {
    const start = s.startTime[0] * 1e3 + s.startTime[1] / 1e6
    const end = s.endTime[0] * 1e3 + s.endTime[1] / 1e6
    t.ok(Math.abs(start - Date.now()) < 60_000, 'starts at wall-clock time')
    t.ok(end >= start && s.duration[0] >= 0 && s.duration[1] >= 0, 'ends after it starts')
    t.ok(s.startTime[1] < 1e9 && s.endTime[1] < 1e9, 'nanoseconds below one second')
  }
  // The encoder's output for our spans, with times made equal, is the SDK spans' output.
  const sameTimes = (s: ReadableSpan): ReadableSpan => ({ ...fieldsOf(s), startTime: [1, 2], endTime: [3, 4], events: s.events.map((e) => ({ ...e, time: [5, 6] })) })
  const sdkBytes = Buffer.from(encodeSpans(sdkSpans().map(sameTimes)))
  const ourBytes = Buffer.from(encodeSpans(ourSpans().map(sameTimes)))
  t.ok(ourBytes.equals(sdkBytes), 'the same OTLP bytes')
})

/** A ReadableSpan's fields as a plain object (class getters and methods included). */
function fieldsOf (s: ReadableSpan): ReadableSpan {
  return { name: s.name, kind: s.kind, spanContext: () => s.spanContext(), parentSpanContext: s.parentSpanContext, attributes: s.attributes, links: s.links, events: s.events, status: s.status, resource: s.resource, instrumentationScope: s.instrumentationScope, droppedAttributesCount: s.droppedAttributesCount, droppedEventsCount: s.droppedEventsCount, droppedLinksCount: s.droppedLinksCount, startTime: s.startTime, endTime: s.endTime, duration: s.duration, ended: s.ended }
}

t.test('attributes handed over with takeAttributes: the same span as set one by one, and the shared empty object is never written', async (t) => {
  const { ours, ourSpans } = both(new AlwaysOnSampler())
  const taken = ours(remote(1)) as MeshSpan
  const built = { 'http.request.method': 'GET', 'url.path': '/hello' }
  taken.takeAttributes(built)
  taken.setAttribute('http.response.status_code', 200)
  taken.end()
  const copied = ours(remote(1))
  copied.setAttributes({ 'http.request.method': 'GET', 'url.path': '/hello' })
  copied.setAttribute('http.response.status_code', 200)
  copied.end()
  const [a, b] = ourSpans()
  t.same(a.attributes, b.attributes, 'the same attributes either way')
  t.equal(a.attributes, built, 'taken as the span\'s own object, not copied')
  // A span given nothing has the shared empty attributes; the first write gives it its own.
  const [first, second] = [ours(remote(1)), ours(remote(1))] as MeshSpan[]
  t.equal(first.attributes, second.attributes, 'no attributes: one shared empty object')
  first.setAttribute('only.first', 1)
  second.end()
  t.same(second.attributes, {}, 'a write to one span does not reach another')
  t.ok(Object.isFrozen(second.attributes))
  // With attributes already there, takeAttributes adds to them (undefined values skipped, as setAttributes does).
  first.takeAttributes({ 'url.path': '/x', skipped: undefined })
  first.end()
  t.same(first.attributes, { 'only.first': 1, 'url.path': '/x' })
  // After the end, nothing changes.
  first.takeAttributes({ late: true })
  t.notOk('late' in first.attributes)
})

t.test('a parent parsed from traceparent is continued; an invalid parent starts a new trace', async (t) => {
  const { ours, sdk, ourSpans, sdkSpans } = both(new AlwaysOnSampler())
  const parsed = parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')
  if (parsed === undefined) throw new Error('traceparent not parsed')
  const child = ours(remoteParent(parsed))
  sdk(remoteParent(parsed)).end()
  t.equal(child.spanContext().traceId, '4bf92f3577b34da6a3ce929d0e0e4736', 'the caller\'s trace goes on')
  child.end()
  t.equal(ourSpans()[0].parentSpanContext?.spanId, '00f067aa0ba902b7', 'under the caller\'s span')
  // An ordinary context with an invalid span context (an all-zero trace id): as the SDK, a new trace.
  const invalid = trace.setSpanContext(ROOT_CONTEXT, { traceId: '0'.repeat(32), spanId: '00f067aa0ba902b7', traceFlags: 1, isRemote: true })
  ours(invalid).end()
  sdk(invalid).end()
  t.same(fields(ourSpans()[0]), fields(sdkSpans()[0]), 'the child: as the SDK\'s tracer makes it')
  const [ourRoot, sdkRoot] = [ourSpans()[1], sdkSpans()[1]]
  t.not(ourRoot.spanContext().traceId, '0'.repeat(32), 'a new trace id')
  t.equal(ourRoot.parentSpanContext, undefined, 'and no parent')
  t.same(fields(ourRoot), fields(sdkRoot), 'as the SDK\'s tracer does')
})

t.test('sampling is the SDK sampler\'s decision', async (t) => {
  const off = both(new AlwaysOffSampler())
  const span = off.ours(remote(1))
  t.notOk(span.isRecording(), 'always_off: not recording')
  t.equal(span.spanContext().traceId, '4bf92f3577b34da6a3ce929d0e0e4736', 'but the trace goes on')
  t.equal(span.spanContext().traceFlags & 1, 0, 'marked unsampled')
  span.end()
  t.equal(off.ourSpans().length, 0, 'and nothing is exported')

  const parentBased = both(new ParentBasedSampler({ root: new AlwaysOnSampler() }))
  t.notOk(parentBased.ours(remote(0)).isRecording(), 'parent-based follows an unsampled caller')
  t.ok(parentBased.ours(remote(1)).isRecording(), 'and a sampled one')

  const ratio = both(new TraceIdRatioBasedSampler(0.5))
  let kept = 0
  for (let i = 0; i < 200; i++) {
    const ours = ratio.ours(ROOT_CONTEXT)
    const theirs = ratio.sdk(ROOT_CONTEXT)
    t.equal(ours.isRecording(), theirs.isRecording(), `trace ${i}: the same decision as the SDK's tracer`)
    if (ours.isRecording()) kept++
  }
  t.ok(kept > 0 && kept < 200, 'a ratio sampler keeps some and drops some')
})

t.test('the sidecar\'s SDK set-up yields remora\'s tracer, not the slower fallback', async (t) => {
  const { sdk, tracer } = startSdk({ serviceName: 'web', resource: {}, env: {}, metrics: new ProxyMetrics(), log: pino({ level: 'silent' }) })
  t.teardown(() => sdk.shutdown())
  t.type(tracer, MeshTracer, typeof tracer === 'string' ? tracer : 'MeshTracer')
})

t.test('the resource names the namespace and pod, and OTEL_RESOURCE_ATTRIBUTES still wins', async (t) => {
  const { resourceAttributes } = await import('../../src/telemetry/tracing.ts')
  const resource = resourceAttributes({ namespace: 'shop', podName: 'web-7d4f9-x2x8q', nodeName: 'node-3' })
  t.same(resource, { 'service.namespace': 'shop', 'k8s.namespace.name': 'shop', 'k8s.pod.name': 'web-7d4f9-x2x8q', 'k8s.node.name': 'node-3' })
  t.same(resourceAttributes({ namespace: 'shop' }), { 'service.namespace': 'shop', 'k8s.namespace.name': 'shop' }, 'no pod or node outside Kubernetes')
  // One SDK per process registers globally (as in a sidecar): the previous test's goes first.
  trace.disable()
  // The SDK's environment detector reads the process's own environment.
  process.env.OTEL_RESOURCE_ATTRIBUTES = 'k8s.node.name=from-env'
  t.teardown(() => { delete process.env.OTEL_RESOURCE_ATTRIBUTES })
  const { sdk, tracer } = startSdk({ serviceName: 'web', resource, env: {}, metrics: new ProxyMetrics(), log: pino({ level: 'silent' }) })
  t.teardown(() => sdk.shutdown())
  if (typeof tracer === 'string') throw new Error(tracer)
  // Not ended: nothing is exported (no collector listens here).
  const span = tracer.startSpan('GET', SpanKind.SERVER, ROOT_CONTEXT) as MeshSpan
  t.match(span.resource.attributes, { 'service.name': 'web', 'service.namespace': 'shop', 'k8s.namespace.name': 'shop', 'k8s.pod.name': 'web-7d4f9-x2x8q' })
  t.equal(span.resource.attributes['k8s.node.name'], 'from-env', 'the environment overrides what remora knows')
})
