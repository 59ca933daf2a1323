// OpenTelemetry traces made by the proxy itself at the points it knows (no auto-instrumentation):
// a SERVER span per inbound request, a CLIENT span per outbound attempt; W3C and B3 propagation;
// OTLP export through the SDK's batch processor, with spans dropped (never traffic slowed) when
// the collector is slow or away.
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api'
import { CompositePropagator, ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core'
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3'
import { NodeSDK } from '@opentelemetry/sdk-node'
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import type { Logger } from 'pino'
import type { Environment } from '../config/env.ts'
import type { Headers } from '../http/headers.ts'
import type { ProxyMetrics } from './metrics.ts'

export type { Span }

/** Headers any supported format may carry; replaced, not appended to, on each hop. */
const TRACE_HEADERS = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags']

const getter: TextMapGetter<Headers> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
}
const setter: TextMapSetter<Headers> = {
  set: (carrier, key, value) => { carrier[key] = value },
}

export interface TracingOptions {
  readonly serviceName: string
  readonly namespace: string | undefined
  readonly identity: string | undefined
  readonly env: Environment
  readonly metrics: ProxyMetrics
  readonly log: Logger
}

/** Tracing is on when an OTLP endpoint or a trace exporter is configured, and the SDK is not disabled. */
export function tracingWanted (env: Environment): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false
  const exporter = env.OTEL_TRACES_EXPORTER?.trim().toLowerCase()
  if (exporter === 'none') return false
  return exporter !== undefined || env.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined
}

/** Wraps the exporter to count what reached the collector and what was lost. */
class CountingExporter implements SpanExporter {
  readonly #inner: SpanExporter
  readonly #metrics: ProxyMetrics
  readonly #settled: (n: number) => void
  constructor (inner: SpanExporter, metrics: ProxyMetrics, settled: (n: number) => void) {
    this.#inner = inner
    this.#metrics = metrics
    this.#settled = settled
  }

  export (spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      this.#settled(spans.length)
      if (result.code === ExportResultCode.SUCCESS) this.#metrics.spansExported.inc(spans.length)
      else this.#metrics.spansDropped.inc({ reason: 'export failed' }, spans.length)
      done(result)
    })
  }

  shutdown (): Promise<void> { return this.#inner.shutdown() }
  forceFlush (): Promise<void> { return this.#inner.forceFlush?.() ?? Promise.resolve() }
}

/**
 * In front of the batch processor: a span that would overflow its queue is dropped here and
 * counted, so a collector that is slow or gone costs memory-bounded nothing and never blocks.
 */
class BoundedProcessor implements SpanProcessor {
  readonly #inner: SpanProcessor
  readonly #metrics: ProxyMetrics
  readonly #max: number
  #pending = 0
  constructor (inner: SpanProcessor, metrics: ProxyMetrics, max: number) {
    this.#inner = inner
    this.#metrics = metrics
    this.#max = max
  }

  settled (n: number): void { this.#pending = Math.max(0, this.#pending - n) }
  onStart (span: Parameters<SpanProcessor['onStart']>[0], parent: Context): void { this.#inner.onStart(span, parent) }
  onEnd (span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & 1) === 0) return
    if (this.#pending >= this.#max) { this.#metrics.spansDropped.inc({ reason: 'queue full' }); return }
    this.#pending++
    this.#inner.onEnd(span)
  }

  forceFlush (): Promise<void> { return this.#inner.forceFlush() }
  shutdown (): Promise<void> { return this.#inner.shutdown() }
}

export class Tracing {
  readonly enabled: boolean
  readonly #sdk: NodeSDK | undefined
  readonly #tracer = trace.getTracer('remora')

  private constructor (sdk: NodeSDK | undefined) {
    this.#sdk = sdk
    this.enabled = sdk !== undefined
  }

  static off (): Tracing { return new Tracing(undefined) }

  static start (o: TracingOptions): Tracing {
    if (!tracingWanted(o.env)) return new Tracing(undefined)
    const maxQueue = Number(o.env.OTEL_BSP_MAX_QUEUE_SIZE ?? 2048)
    // The exporter reports settled batches to the bounded queue in front of the batch processor.
    const settle = { to: (_n: number): void => {} }
    const exporter = new CountingExporter(new OTLPTraceExporter(), o.metrics, (n) => settle.to(n))
    const batch = new BatchSpanProcessor({
      exporter,
      maxQueueSize: maxQueue,
      scheduledDelayMillis: Number(o.env.OTEL_BSP_SCHEDULE_DELAY ?? 1000),
    })
    const bounded = new BoundedProcessor(batch, o.metrics, maxQueue)
    settle.to = (n) => bounded.settled(n)
    const sdk = new NodeSDK({
      // OTEL_SERVICE_NAME wins (the spec says so); else the workload's name: never "unknown_service".
      serviceName: o.env.OTEL_SERVICE_NAME ?? o.serviceName,
      autoDetectResources: true,
      spanProcessors: [bounded],
      // W3C first, B3 single and multi also read and written; OTEL_PROPAGATORS overrides.
      textMapPropagator: o.env.OTEL_PROPAGATORS !== undefined
        ? undefined as never
        : new CompositePropagator({
          propagators: [
            new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER }),
            new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER }),
            new W3CTraceContextPropagator(),
          ],
        }),
    })
    sdk.start()
    o.log.info({ service: o.env.OTEL_SERVICE_NAME ?? o.serviceName, endpoint: o.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? o.env.OTEL_EXPORTER_OTLP_ENDPOINT, sampler: o.env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on' }, 'tracing on: OTLP export')
    return new Tracing(sdk)
  }

  /** The caller's trace context from whichever format it sent (W3C wins over B3). */
  extract (headers: Headers): Context {
    return propagation.extract(ROOT_CONTEXT, headers, getter)
  }

  start (name: string, kind: SpanKind, parent: Context, attributes: Attributes): Span | undefined {
    if (!this.enabled) return undefined
    return this.#tracer.startSpan(name, { kind, attributes }, parent)
  }

  /** Writes `span`'s context into `headers` in every configured format, replacing the old values. */
  inject (span: Span | undefined, headers: Headers): void {
    if (span === undefined) return
    for (const h of TRACE_HEADERS) delete headers[h]
    propagation.inject(trace.setSpan(context.active(), span), headers, setter)
  }

  async shutdown (): Promise<void> {
    await this.#sdk?.shutdown().catch(() => {})
  }
}

export { SpanKind, SpanStatusCode }

/** Trace and span id for log lines, or nothing for an unsampled or absent span. */
export function logIds (span: Span | undefined): { trace_id?: string, span_id?: string } {
  if (span === undefined) return {}
  const c = span.spanContext()
  return (c.traceFlags & 1) === 1 ? { trace_id: c.traceId, span_id: c.spanId } : {}
}
