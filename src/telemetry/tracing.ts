// OpenTelemetry traces made by the proxy itself at the points it knows (no auto-instrumentation):
// a SERVER span per inbound request, a CLIENT span per outbound attempt; W3C and B3 propagation;
// OTLP export through the SDK's batch processor, with spans dropped (never traffic slowed) when
// the collector is slow or away.
// Only the light API is loaded here; the SDK (tens of MB) is imported when tracing is switched on.
import { INVALID_SPAN_CONTEXT, isSpanContextValid, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type SpanContext, type TextMapGetter, type TextMapPropagator, type TextMapSetter } from '@opentelemetry/api'
import type { Logger } from 'pino'
import type { Environment } from '../config/env.ts'
import type { MeshTracer } from './mesh-span.ts'
import type { ProxyMetrics } from './metrics.ts'

export type { Span }

/**
 * A request's headers as the proxy holds them (lower-case names; http/headers.ts's Headers is this
 * shape): what trace context is read from and written into.
 */
export type Headers = Record<string, string | string[]>

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
  /** Resource attributes remora knows (service.namespace, k8s.*); OTEL_RESOURCE_ATTRIBUTES wins. */
  readonly resource: Readonly<Record<string, string>>
  readonly env: Environment
  readonly metrics: ProxyMetrics
  readonly log: Logger
}

/**
 * Where the workload runs, as the resource semantic conventions name it: `service.namespace` keeps
 * `web` of one namespace apart from `web` of another in Jaeger; `k8s.*` where Kubernetes told us.
 */
export function resourceAttributes (where: { readonly namespace?: string, readonly podName?: string, readonly nodeName?: string }): Record<string, string> {
  const out: Record<string, string> = {}
  if (where.namespace !== undefined) {
    out['service.namespace'] = where.namespace
    out['k8s.namespace.name'] = where.namespace
  }
  if (where.podName !== undefined) out['k8s.pod.name'] = where.podName
  if (where.nodeName !== undefined) out['k8s.node.name'] = where.nodeName
  return out
}

/** Tracing is on when an OTLP endpoint or a trace exporter is configured, and the SDK is not disabled. */
export function tracingWanted (env: Environment): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false
  const exporter = env.OTEL_TRACES_EXPORTER?.trim().toLowerCase()
  if (exporter === 'none') return false
  return exporter !== undefined || env.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined
}

/** The propagators of the default propagation (W3C always; B3 as the caller sent it). */
export interface MeshFormats {
  readonly w3c: TextMapPropagator
  readonly b3single: TextMapPropagator
  readonly b3multi: TextMapPropagator
}

export class Tracing {
  readonly enabled: boolean
  readonly #sdk: { shutdown (): Promise<void> } | undefined
  readonly #formats: MeshFormats | undefined
  /** remora's span maker (see mesh-span.ts); the SDK's own tracer if that could not be set up. */
  readonly #tracer: { startSpan (name: string, kind: SpanKind, parent: Context): Span }
  /** The sampler follows the caller's decision (the default, parentbased_*). */
  readonly #parentBased: boolean

  private constructor (sdk: { shutdown (): Promise<void> } | undefined, formats?: MeshFormats, sampler?: string, tracer?: MeshTracer) {
    this.#sdk = sdk
    const sdkTracer = trace.getTracer('remora')
    this.#tracer = tracer ?? { startSpan: (name, kind, parent) => sdkTracer.startSpan(name, { kind }, parent) }
    this.#formats = formats
    this.enabled = sdk !== undefined
    this.#parentBased = sampler === undefined || sampler.trim() === '' || sampler.trim().startsWith('parentbased_')
  }

  /**
   * Should this hop make a span? Not when the caller's trace is unsampled and the sampler follows
   * the caller: nothing would be recorded, so the request goes on with its trace headers untouched
   * and costs next to nothing.
   */
  traces (headers: Headers): boolean {
    if (!this.enabled) return false
    return !(this.#parentBased && unsampledCaller(headers))
  }

  static async start (o: TracingOptions): Promise<Tracing> {
    if (!tracingWanted(o.env)) return new Tracing(undefined)
    const { startSdk } = await import('./tracing-sdk.ts')
    const { sdk, formats, tracer } = startSdk(o)
    if (typeof tracer === 'string') o.log.warn({ reason: tracer }, 'tracing: using the SDK\'s own spans, which cost more')
    o.log.info({ service: o.env.OTEL_SERVICE_NAME ?? o.serviceName, endpoint: o.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? o.env.OTEL_EXPORTER_OTLP_ENDPOINT, sampler: o.env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on' }, 'tracing on: OTLP export')
    return new Tracing(sdk, formats, o.env.OTEL_TRACES_SAMPLER, typeof tracer === 'string' ? undefined : tracer)
  }

  /** The caller's trace context from whichever format it sent (W3C wins over B3). */
  extract (headers: Headers): Context {
    const f = this.#formats
    if (f === undefined) return propagation.extract(ROOT_CONTEXT, headers, getter)
    // What the default composite propagator (B3 multi, B3 single, then W3C) does, without asking
    // each format for headers the request does not have: each extractor leaves the context as it
    // is when its headers are absent, and B3's reads both of its encodings.
    const b3 = headers.b3 !== undefined || headers['x-b3-traceid'] !== undefined
    const tp = headers.traceparent
    // The common case, a version-00 traceparent alone, is read here (what the W3C propagator reads,
    // without its regular expression); anything else goes to the propagators.
    if (!b3 && typeof tp === 'string' && headers.tracestate === undefined) {
      const parent = parseTraceparent(tp)
      if (parent !== undefined) return remoteParent(parent)
    }
    let ctx = ROOT_CONTEXT
    if (b3) ctx = extractWith(f.b3multi, ctx, headers)
    if (tp !== undefined) ctx = extractWith(f.w3c, ctx, headers)
    return ctx
  }

  start (name: string, kind: SpanKind, parent: Context): Span | undefined {
    if (!this.enabled) return undefined
    return this.#tracer.startSpan(name, kind, parent)
  }

  /** Writes `span`'s context into `headers`, replacing the old values (formats: see MeshFormats). */
  inject (span: Span | undefined, headers: Headers): void {
    if (span === undefined) return
    const b3single = headers.b3 !== undefined
    const b3multi = headers['x-b3-traceid'] !== undefined
    const f = this.#formats
    // W3C always writes traceparent for a valid span context: overwritten in place, not deleted.
    // Deleting only the headers that are there matters too: a delete turns the header object into
    // a slow dictionary for the rest of the request (and deleting absent keys is not free either).
    // (A recording span is the SDK's own, its ids valid by construction: the check is for the rest.)
    const keepTraceparent = f !== undefined && (span.isRecording() || isSpanContextValid(span.spanContext()))
    for (const h of TRACE_HEADERS) {
      if (headers[h] !== undefined && !(keepTraceparent && h === 'traceparent')) delete headers[h]
    }
    if (f !== undefined && !b3single && !b3multi) {
      // W3C alone, as its propagator writes it (tracestate left to it).
      const c = span.spanContext()
      if (c.traceState === undefined) {
        if (keepTraceparent) headers.traceparent = formatTraceparent(c)
        return
      }
    }
    const ctx = trace.setSpan(ROOT_CONTEXT, span)
    if (f === undefined) { propagation.inject(ctx, headers, setter); return }
    f.w3c.inject(ctx, headers, setter)
    if (b3single) f.b3single.inject(ctx, headers, setter)
    if (b3multi) f.b3multi.inject(ctx, headers, setter)
  }

  async shutdown (): Promise<void> {
    await this.#sdk?.shutdown().catch(() => {})
  }
}

export { SpanKind, SpanStatusCode }

function extractWith (p: TextMapPropagator, ctx: Context, headers: Headers): Context {
  // As CompositePropagator: a propagator that throws leaves the context as it was.
  try { return p.extract(ctx, headers, getter) } catch { return ctx }
}

/** The API's context key of the current span, learnt once through its public `trace.setSpan`. */
const SPAN_KEY: symbol = (() => {
  let key: symbol | undefined
  const probe: Context = { getValue: () => undefined, setValue: (k) => { key = k; return probe }, deleteValue: () => probe }
  trace.setSpan(probe, trace.wrapSpanContext(INVALID_SPAN_CONTEXT))
  if (key === undefined) throw new Error('@opentelemetry/api: trace.setSpan set no context key')
  return key
})()

/**
 * A context holding only the caller's span context: what `trace.setSpanContext(ROOT_CONTEXT, …)`
 * makes, without copying a Map per request. Adding anything to it makes an ordinary context.
 * Its span context was checked as it was parsed (`parseTraceparent`), so it is valid.
 */
export class RemoteParent implements Context {
  readonly #span: Span
  constructor (parent: SpanContext) { this.#span = trace.wrapSpanContext(parent) }
  getValue (key: symbol): unknown { return key === SPAN_KEY ? this.#span : undefined }
  setValue (key: symbol, value: unknown): Context { return trace.setSpan(ROOT_CONTEXT, this.#span).setValue(key, value) }
  deleteValue (key: symbol): Context { return key === SPAN_KEY ? ROOT_CONTEXT : this }
}

export function remoteParent (parent: SpanContext): Context { return new RemoteParent(parent) }

/** Lower-case hex digits only, as W3C trace context requires. */
function hexAt (s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false
  }
  return true
}

function zeros (s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) !== 48) return false
  return true
}

/**
 * A version-00 `traceparent` of exactly 55 characters as a remote span context, or undefined for
 * anything else (invalid, or another form the W3C propagator is left to judge).
 */
export function parseTraceparent (tp: string): SpanContext | undefined {
  if (tp.length !== 55 || !tp.startsWith('00-') || tp[35] !== '-' || tp[52] !== '-') return undefined
  if (!hexAt(tp, 3, 35) || !hexAt(tp, 36, 52) || !hexAt(tp, 53, 55)) return undefined
  const traceId = tp.slice(3, 35)
  const spanId = tp.slice(36, 52)
  if (zeros(traceId) || zeros(spanId)) return undefined
  return { traceId, spanId, traceFlags: Number.parseInt(tp.slice(53, 55), 16), isRemote: true }
}

/** The `traceparent` of a valid span context (version 00), as the W3C propagator writes it. */
export function formatTraceparent (c: SpanContext): string {
  return `00-${c.traceId}-${c.spanId}-${(c.traceFlags & 0xff).toString(16).padStart(2, '0')}`
}

function one (v: string | string[] | undefined): string | undefined { return Array.isArray(v) ? v[0] : v }

/** The caller sent a trace context that says "not sampled" (W3C flags, or B3). */
export function unsampledCaller (headers: Headers): boolean {
  const tp = one(headers.traceparent)
  if (tp !== undefined) return /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}/.test(tp) && (Number.parseInt(tp.slice(53, 55), 16) & 1) === 0
  const b3 = one(headers.b3)
  if (b3 !== undefined) return b3 === '0' || b3.split('-')[2] === '0'
  const sampled = one(headers['x-b3-sampled'])
  return sampled === '0' || sampled === 'false'
}

/** Trace and span id for log lines, or nothing for an unsampled or absent span. */
export function logIds (span: Span | undefined): { trace_id?: string, span_id?: string } {
  if (span === undefined) return {}
  const c = span.spanContext()
  return (c.traceFlags & 1) === 1 ? { trace_id: c.traceId, span_id: c.spanId } : {}
}
