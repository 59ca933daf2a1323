// The OpenTelemetry SDK set-up, imported only when tracing is on: OTLP http/protobuf export behind
// the batch processor, with a bounded queue in front that drops (and counts) rather than blocks.
import { CompositePropagator, ExportResultCode, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core'
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3'
import { NodeSDK } from '@opentelemetry/sdk-node'
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources'
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace'
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base'
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http'
import { TraceExporterMetricsHelper } from '@opentelemetry/otlp-transformer'
import { ROOT_CONTEXT, trace, type Context, type ContextManager, type TracerProvider } from '@opentelemetry/api'
import type { IdGenerator, Sampler } from '@opentelemetry/sdk-trace'
import { PooledIdGenerator } from './ids.ts'
import { MeshSpan, MeshTracer, type TracerParts } from './mesh-span.ts'
import type { ProxyMetrics } from './metrics.ts'
import { encodeSpan, spanSerializer } from './otlp-encoding.ts'
import type { MeshFormats, TracingOptions } from './tracing.ts'

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
    // remora's spans are queued as their bytes (see EncodedSpan); the batch processor reads only
    // their sampled flag and resource, and the exporter hands them to spanSerializer.
    this.#inner.onEnd(span instanceof MeshSpan ? encodeSpan(span) as unknown as ReadableSpan : span)
  }

  forceFlush (): Promise<void> { return this.#inner.forceFlush() }
  shutdown (): Promise<void> { return this.#inner.shutdown() }
}

/**
 * The SDK's OTLP http/protobuf exporter (its transport, retries, timeouts, compression and every
 * OTEL_EXPORTER_OTLP_* variable), assembled as its OTLPTraceExporter is, with remora's span encoder
 * in place of the SDK's serializer (see otlp-encoding.ts for why).
 */
function otlpExporter (): SpanExporter {
  const options = convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' })
  return new OTLPExporterBase(createOtlpHttpExportDelegate(options, spanSerializer, 'otlp_http_span_exporter', TraceExporterMetricsHelper, undefined))
}

/** No ambient context: `active()` is always the root, `with()` just calls. */
class ExplicitContext implements ContextManager {
  active (): Context { return ROOT_CONTEXT }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>> (_context: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    return fn.call(thisArg, ...args)
  }

  bind<T> (_context: Context, target: T): T { return target }
  enable (): this { return this }
  disable (): this { return this }
}

/**
 * remora's tracer, made of the pieces the SDK configured from the environment (sampler, id
 * generator, detected resource) and remora's processor chain. The SDK keeps the first three to
 * itself, so they are read from its tracer; should a future SDK hold them elsewhere, the SDK's own
 * tracer is used instead (slower, same spans) and the reason logged.
 */
function meshTracer (processor: SpanProcessor): MeshTracer | string {
  const provider = trace.getTracerProvider() as TracerProvider & { getDelegate?: () => TracerProvider }
  const sdkTracer = provider.getDelegate?.().getTracer('remora') as { _sampler?: Sampler, _idGenerator?: IdGenerator, _resource?: TracerParts['resource'], instrumentationScope?: TracerParts['scope'] } | undefined
  if (sdkTracer === undefined) return 'no SDK tracer provider registered'
  const { _sampler: sampler, _idGenerator: idGenerator, _resource: resource, instrumentationScope: scope } = sdkTracer
  if (typeof sampler?.shouldSample !== 'function') return 'the SDK tracer has no sampler where expected'
  if (typeof idGenerator?.generateSpanId !== 'function' || typeof idGenerator.generateTraceId !== 'function') return 'the SDK tracer has no id generator where expected'
  if (typeof resource?.attributes !== 'object' || typeof scope?.name !== 'string') return 'the SDK tracer has no resource or scope where expected'
  return new MeshTracer({ sampler, idGenerator, resource, scope, processor })
}

export function startSdk (o: TracingOptions): { sdk: NodeSDK, formats: MeshFormats | undefined, tracer: MeshTracer | string } {
    const maxQueue = Number(o.env.OTEL_BSP_MAX_QUEUE_SIZE ?? 2048)
    // The exporter reports settled batches to the bounded queue in front of the batch processor.
    const settle = { to: (_n: number): void => {} }
    const exporter = new CountingExporter(otlpExporter(), o.metrics, (n) => settle.to(n))
    const batch = new BatchSpanProcessor({
      exporter,
      maxQueueSize: maxQueue,
      // The specification's default. A batch is encoded on the event loop in one go (about 10 µs a
      // span): 2048 spans held every request up for 20 ms or more (p99 ×1.5 at 100 % sampling), and
      // left no room in the bounded queue while on its way, so spans ending meanwhile were dropped.
      // Larger batches did not raise throughput in bench:tracing.
      maxExportBatchSize: Math.min(maxQueue, Number(o.env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE ?? 512)),
      scheduledDelayMillis: Number(o.env.OTEL_BSP_SCHEDULE_DELAY ?? 1000),
    })
    const bounded = new BoundedProcessor(batch, o.metrics, maxQueue)
    settle.to = (n) => bounded.settled(n)
    const sdk = new NodeSDK({
      // remora passes every span's context explicitly; an AsyncLocalStorage context manager would
      // only tax every callback of the process.
      contextManager: new ExplicitContext(),
      // Traces only: metrics go out through /metrics (Prometheus) and logs through pino. Left to the
      // environment's defaults the SDK would also start OTLP metric and log pipelines, and record
      // its own metrics for every span.
      metricReaders: [],
      logRecordProcessors: [],
      // OTEL_SERVICE_NAME wins (the spec says so); else the workload's name: never "unknown_service".
      serviceName: o.env.OTEL_SERVICE_NAME ?? o.serviceName,
      // remora's own attributes first: the detectors (OTEL_RESOURCE_ATTRIBUTES among them) merge over them.
      resource: defaultResource().merge(resourceFromAttributes(o.resource)),
      autoDetectResources: true,
      spanProcessors: [bounded],
      idGenerator: new PooledIdGenerator(),
      // W3C first, B3 single and multi also read; OTEL_PROPAGATORS overrides (see MeshFormats).
      textMapPropagator: o.env.OTEL_PROPAGATORS !== undefined
        ? undefined as never
        : new CompositePropagator({ propagators: [MESH_FORMATS.b3multi, MESH_FORMATS.b3single, MESH_FORMATS.w3c] }),
    })
    sdk.start()
    return { sdk, formats: o.env.OTEL_PROPAGATORS !== undefined ? undefined : MESH_FORMATS, tracer: meshTracer(bounded) }
}

/**
 * The default propagation: W3C is always written; B3 (single or multi) is written too when the
 * caller used it, so B3 apps keep working and W3C-only traffic carries no extra headers per hop.
 */
export const MESH_FORMATS = Object.freeze({
  w3c: new W3CTraceContextPropagator(),
  b3single: new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER }),
  b3multi: new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER }),
})
