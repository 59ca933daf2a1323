// remora's span: the SDK's sampler, ids, resource and span processors, in a lighter span object.
// Why not the SDK's own span: at 100 % sampling its Tracer.startSpan and Span (self-metrics, limit
// checks and a copy per attribute, three clocks) were most of what tracing cost inside a loaded
// sidecar (bench:tracing). The proxy sets only well-typed attributes from its own code, so this span
// keeps the object it is given and checks nothing per attribute. Everything around it stays as the
// SDK is configured: its sampler, the id generator it was given (ids.ts), the batch processor, the
// exporter.
import { SamplingDecision, SpanStatusCode, trace, TraceFlags, type Attributes, type AttributeValue, type Context, type Exception, type HrTime, type Link, type Span, type SpanContext, type SpanKind, type SpanStatus, type TimeInput } from '@opentelemetry/api'
import type { IdGenerator, ReadableSpan, Sampler, SpanProcessor, TimedEvent } from '@opentelemetry/sdk-trace'
import { RemoteParent } from './tracing.ts'

type Resource = ReadableSpan['resource']
type Scope = ReadableSpan['instrumentationScope']

/** What a tracer is made of: the SDK's configured pieces. */
export interface TracerParts {
  readonly sampler: Sampler
  readonly idGenerator: IdGenerator
  readonly resource: Resource
  readonly scope: Scope
  readonly processor: SpanProcessor
}

const NO_ATTRIBUTES: Attributes = Object.freeze({})
const NONE = Object.freeze([]) as unknown as never[]
const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET })

function hrTime (ms: number): HrTime {
  const s = Math.floor(ms / 1000)
  const ns = Math.round((ms - s * 1000) * 1e6)
  return ns >= 1e9 ? [s + 1, ns - 1e9] : [s, ns]
}

function toMs (t: TimeInput): number {
  if (Array.isArray(t)) return t[0] * 1000 + t[1] / 1e6
  return t instanceof Date ? t.getTime() : t
}

/** Starts spans as the SDK's tracer would (sampler first, then a recording span or just a context). */
export class MeshTracer {
  readonly #p: TracerParts
  constructor (parts: TracerParts) { this.#p = parts }

  startSpan (name: string, kind: SpanKind, parent: Context): Span {
    const p = this.#p
    const parentContext = trace.getSpanContext(parent)
    // A parent parsed by remora (RemoteParent) was validated then; others are checked as the SDK does.
    const validParent = parentContext !== undefined && (parent instanceof RemoteParent || trace.isSpanContextValid(parentContext)) ? parentContext : undefined
    const spanId = p.idGenerator.generateSpanId()
    const traceId = validParent?.traceId ?? p.idGenerator.generateTraceId()
    const sampling = p.sampler.shouldSample(parent, traceId, name, kind, NO_ATTRIBUTES, NONE)
    const spanContext: SpanContext = {
      traceId,
      spanId,
      traceFlags: sampling.decision === SamplingDecision.RECORD_AND_SAMPLED ? TraceFlags.SAMPLED : TraceFlags.NONE,
      traceState: sampling.traceState ?? validParent?.traceState,
    }
    if (sampling.decision === SamplingDecision.NOT_RECORD) return trace.wrapSpanContext(spanContext)
    const span = new MeshSpan(p, name, kind, spanContext, validParent, sampling.attributes === undefined ? NO_ATTRIBUTES : { ...sampling.attributes })
    p.processor.onStart(span as unknown as Parameters<SpanProcessor['onStart']>[0], parent)
    return span
  }
}

/** A recording span: the API's Span for the proxy, the SDK's ReadableSpan for the processors and exporter. */
export class MeshSpan implements Span, ReadableSpan {
  readonly kind: SpanKind
  readonly parentSpanContext: SpanContext | undefined
  readonly resource: Resource
  readonly instrumentationScope: Scope
  /** Shared empty lists until the first event or link: most spans have neither. */
  events: TimedEvent[] = NONE
  links: Link[] = NONE
  readonly droppedAttributesCount = 0
  readonly droppedEventsCount = 0
  readonly droppedLinksCount = 0
  name: string
  attributes: Attributes
  status: SpanStatus = UNSET
  ended = false
  readonly #context: SpanContext
  readonly #processor: SpanProcessor
  /**
   * Start and end from one high-resolution clock, the SDK's own (time origin + monotonic time):
   * Date.now() has whole milliseconds, so a child that started within the same millisecond as its
   * parent, or a parent's end read from another clock, drew the child outside its parent.
   */
  readonly #startMs = performance.timeOrigin + performance.now()
  #endMs = 0

  constructor (p: TracerParts, name: string, kind: SpanKind, context: SpanContext, parent: SpanContext | undefined, attributes: Attributes) {
    this.name = name
    this.kind = kind
    this.#context = context
    this.parentSpanContext = parent
    this.attributes = attributes
    this.resource = p.resource
    this.instrumentationScope = p.scope
    this.#processor = p.processor
  }

  spanContext (): SpanContext { return this.#context }
  get startTime (): HrTime { return hrTime(this.#startMs) }
  get endTime (): HrTime { return hrTime(this.ended ? this.#endMs : 0) }
  get duration (): HrTime { return this.ended ? hrTime(this.#endMs - this.#startMs) : [-1, -1] }
  isRecording (): boolean { return !this.ended }

  /** Writes `attributes` into the span as they are (the proxy's own, well-typed values; undefined skipped). */
  setAttributes (attributes: Attributes): this {
    if (this.ended) return this
    const own = this.#own()
    for (const key in attributes) if (attributes[key] !== undefined) own[key] = attributes[key]
    return this
  }

  setAttribute (key: string, value: AttributeValue): this {
    if (!this.ended && value !== undefined) this.#own()[key] = value
    return this
  }

  /**
   * Hands the span an attributes object built for it alone (spans.ts), taken as the span's own
   * without a copy when it has none yet. The caller must not touch the object afterwards, nor put
   * undefined values in it.
   */
  takeAttributes (attributes: Attributes): this {
    if (this.ended) return this
    if (this.attributes === NO_ATTRIBUTES) this.attributes = attributes
    else this.setAttributes(attributes)
    return this
  }

  /** The span's own attributes object: the shared empty one is replaced before the first write. */
  #own (): Attributes {
    if (this.attributes === NO_ATTRIBUTES) this.attributes = {}
    return this.attributes
  }

  addEvent (name: string, attributes?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.ended) return this
    const at = time ?? (typeof attributes === 'number' || Array.isArray(attributes) || attributes instanceof Date ? attributes : undefined)
    const attrs = at === attributes ? undefined : attributes as Attributes | undefined
    if (this.events === NONE) this.events = []
    this.events.push({ name, time: hrTime(at === undefined ? this.#now() : toMs(at)), attributes: attrs, droppedAttributesCount: 0 })
    return this
  }

  addLink (link: Link): this {
    if (this.ended) return this
    if (this.links === NONE) this.links = []
    this.links.push(link)
    return this
  }
  addLinks (links: Link[]): this { for (const l of links) this.addLink(l); return this }

  setStatus (status: SpanStatus): this {
    // As the SDK: OK is final, and UNSET never replaces a status.
    if (this.ended || this.status.code === SpanStatusCode.OK || status.code === SpanStatusCode.UNSET) return this
    this.status = status.code === SpanStatusCode.ERROR ? { code: status.code, message: status.message } : { code: status.code }
    return this
  }

  updateName (name: string): this { if (!this.ended) this.name = name; return this }

  recordException (exception: Exception, time?: TimeInput): void {
    const e = typeof exception === 'string' ? { message: exception } : exception
    this.addEvent('exception', { 'exception.type': e.name ?? 'Error', 'exception.message': e.message ?? '', ...(e.stack !== undefined ? { 'exception.stacktrace': e.stack } : {}) }, time)
  }

  end (endTime?: TimeInput): void {
    if (this.ended) return
    this.#endMs = endTime === undefined ? this.#now() : Math.max(this.#startMs, toMs(endTime))
    this.ended = true
    this.#processor.onEnd(this)
  }

  #now (): number { return performance.timeOrigin + performance.now() }
}
