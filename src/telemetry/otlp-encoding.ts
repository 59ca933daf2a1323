// OTLP/protobuf encoding of a batch of finished spans (an ExportTraceServiceRequest), for the SDK's
// own OTLP/HTTP transport. Hand-written because the SDK's serializer was the largest single cost
// of 100 % sampling in bench:tracing: it walks every batch twice (once to size it, once to write
// it) at about 10 µs a span on the event loop. This one writes once, into one reused buffer, and
// is checked byte for byte against the SDK's serializer (test/telemetry/otlp-encoding.test.ts).
import type { Attributes, AttributeValue, HrTime, Link, SpanContext } from '@opentelemetry/api'
import { ProtobufTraceSerializer, type IExportTraceServiceResponse, type ISerializer } from '@opentelemetry/otlp-transformer'
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace'

// Protobuf wire types.
const VARINT = 0
const FIXED64 = 1
const LEN = 2
const FIXED32 = 5

// Span.flags: the W3C flags, plus whether (and that) the parent was remote.
const FLAGS_HAS_IS_REMOTE = 0x100
const FLAGS_IS_REMOTE = 0x200

const TWO_32 = 4294967296
const MIN_INT64 = -(2 ** 63)
const MAX_INT64 = 2 ** 63
/** Below this many UTF-16 units a string is copied by a JS loop; above, by Buffer's native write. */
const SHORT_STRING = 48
/** A buffer grown past this by one large batch is let go afterwards instead of kept for the next. */
const KEEP_BYTES = 4 << 20

function varintSize (v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5
}

/** Hex digit (as a char code) → its value. */
const NIBBLE = new Uint8Array(128)
for (let i = 0; i < 16; i++) {
  NIBBLE['0123456789abcdef'.charCodeAt(i)] = i
  NIBBLE['0123456789ABCDEF'.charCodeAt(i)] = i
}

/** A protobuf writer over one growable buffer. Lengths are written in reserved bytes and moved up if they need more. */
class Writer {
  buf: Buffer
  pos = 0
  constructor (size = 1 << 16) { this.buf = Buffer.allocUnsafe(size) }

  ensure (n: number): void {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = Buffer.allocUnsafe(size)
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
  }

  /** Writes the varint of a non-negative integer below 2^32 at `p` (room assumed); returns the position after it. */
  varintAt (p: number, v: number): number {
    const b = this.buf
    while (v > 0x7f) { b[p++] = (v & 0x7f) | 0x80; v >>>= 7 }
    b[p++] = v
    return p
  }

  /** Tag and varint of a non-negative integer below 2^32 (what every tag and length is). */
  uint32 (v: number): void {
    this.ensure(5)
    this.pos = this.varintAt(this.pos, v)
  }

  tag (field: number, wire: number): void { this.uint32((field << 3) | wire) }

  /** An int64 varint: negative numbers as ten-byte two's complement, as protobuf requires. */
  int64 (v: number): void {
    if (v >= 0 && v < TWO_32) { this.uint32(v); return }
    let low: number
    let high: number
    if (v >= 0) {
      low = v >>> 0
      high = Math.floor(v / TWO_32) >>> 0
    } else {
      const abs = -v
      low = ~(abs >>> 0) >>> 0
      high = ~(Math.floor(abs / TWO_32) >>> 0) >>> 0
      low = (low + 1) >>> 0
      if (low === 0) high = (high + 1) >>> 0
    }
    this.ensure(10)
    const b = this.buf
    while (high > 0 || low > 0x7f) {
      b[this.pos++] = (low & 0x7f) | 0x80
      low = ((low >>> 7) | (high << 25)) >>> 0
      high >>>= 7
    }
    b[this.pos++] = low
  }

  /** Four little-endian bytes at `p` (room assumed); Buffer's writeUInt32LE range-checks every call. */
  u32At (p: number, v: number): void {
    const b = this.buf
    b[p] = v & 0xff
    b[p + 1] = (v >>> 8) & 0xff
    b[p + 2] = (v >>> 16) & 0xff
    b[p + 3] = v >>> 24
  }

  fixed32 (v: number): void {
    this.ensure(4)
    this.u32At(this.pos, v >>> 0)
    this.pos += 4
  }

  /** [seconds, nanoseconds] as unsigned nanoseconds since the epoch, exactly (the value is past 2^53). */
  time (t: HrTime): void {
    const seconds = t[0]
    const high16 = Math.floor(seconds / 65536)
    const a = (seconds - high16 * 65536) * 1e9 + t[1] // < 2^53: exact
    const b = high16 * 1e9 // the rest is b × 2^16, split into 32-bit halves below
    let low = (a % TWO_32) + (b % 65536) * 65536
    let carry = 0
    if (low >= TWO_32) { low -= TWO_32; carry = 1 }
    const high = Math.floor(a / TWO_32) + Math.floor(b / 65536) + carry
    this.ensure(8)
    this.u32At(this.pos, low >>> 0)
    this.u32At(this.pos + 4, high >>> 0)
    this.pos += 8
  }

  double (v: number): void {
    this.ensure(8)
    this.buf.writeDoubleLE(v, this.pos)
    this.pos += 8
  }

  string (s: string): void {
    const n = s.length
    if (n < SHORT_STRING) {
      // Optimistically ASCII: copied byte by byte after a one-byte length; anything else starts over.
      this.ensure(n + 1)
      const b = this.buf
      let p = this.pos + 1
      let i = 0
      for (; i < n; i++) {
        const c = s.charCodeAt(i)
        if (c > 0x7f) break
        b[p++] = c
      }
      if (i === n) { b[this.pos] = n; this.pos = p; return }
    }
    const bytes = Buffer.byteLength(s, 'utf8')
    this.uint32(bytes)
    this.ensure(bytes)
    this.pos += this.buf.write(s, this.pos, bytes, 'utf8')
  }

  /** Raw bytes, as they are. */
  copy (v: Uint8Array): void {
    this.ensure(v.length)
    this.buf.set(v, this.pos)
    this.pos += v.length
  }

  bytes (v: Uint8Array): void {
    this.uint32(v.length)
    this.copy(v)
  }

  /** A trace or span id, hex in the API, raw bytes on the wire. */
  id (hex: string): void {
    const n = hex.length >>> 1
    this.uint32(n)
    this.ensure(n)
    const b = this.buf
    let p = this.pos
    for (let i = 0; i < 2 * n; i += 2) b[p++] = (NIBBLE[hex.charCodeAt(i) & 0x7f] << 4) | NIBBLE[hex.charCodeAt(i + 1) & 0x7f]
    this.pos = p
  }

  /** Starts a length-delimited body with `reserve` bytes kept for its length; returns where. */
  begin (reserve: number): number {
    this.ensure(reserve)
    const at = this.pos
    this.pos += reserve
    return at
  }

  /** Writes the body's length at `at`, moving the body when the length needs another size than reserved. */
  end (at: number, reserve: number): void {
    const length = this.pos - at - reserve
    const size = varintSize(length)
    if (size !== reserve) {
      this.ensure(size - reserve)
      this.buf.copyWithin(at + size, at + reserve, this.pos)
      this.pos += size - reserve
    }
    this.varintAt(at, length)
  }
}

/**
 * Field numbers of the OTLP messages written here, as opentelemetry-proto numbers them
 * (collector/trace/v1, trace/v1, resource/v1, common/v1).
 */
const RequestField = { resourceSpans: 1 } as const
const ResourceSpansField = { resource: 1, scopeSpans: 2, schemaUrl: 3 } as const
const ResourceField = { attributes: 1, droppedAttributes: 2 } as const
const ScopeSpansField = { scope: 1, spans: 2, schemaUrl: 3 } as const
const ScopeField = { name: 1, version: 2, attributes: 3, droppedAttributes: 4 } as const
const SpanField = {
  traceId: 1, spanId: 2, traceState: 3, parentSpanId: 4, name: 5, kind: 6, startTime: 7, endTime: 8,
  attributes: 9, droppedAttributes: 10, events: 11, droppedEvents: 12, links: 13, droppedLinks: 14, status: 15, flags: 16,
} as const
const StatusField = { message: 2, code: 3 } as const
const EventField = { time: 1, name: 2, attributes: 3, droppedAttributes: 4 } as const
const LinkField = { traceId: 1, spanId: 2, traceState: 3, attributes: 4, droppedAttributes: 5, flags: 6 } as const
const KeyValueField = { key: 1, value: 2 } as const
const AnyValueField = { string: 1, bool: 2, int: 3, double: 4, array: 5, kvlist: 6, bytes: 7 } as const
const ArrayValueField = { values: 1 } as const
const KeyValueListField = { values: 1 } as const

function anyValue (w: Writer, value: AttributeValue | undefined | Record<string, unknown>): void {
  switch (typeof value) {
    case 'string': w.tag(AnyValueField.string, LEN); w.string(value); return
    case 'boolean': w.tag(AnyValueField.bool, VARINT); w.uint32(value ? 1 : 0); return
    case 'number':
      if (Number.isInteger(value) && value >= MIN_INT64 && value < MAX_INT64) { w.tag(AnyValueField.int, VARINT); w.int64(value) } else { w.tag(AnyValueField.double, FIXED64); w.double(value) }
      return
  }
  if (value instanceof Uint8Array) { w.tag(AnyValueField.bytes, LEN); w.bytes(value); return }
  if (Array.isArray(value)) {
    w.tag(AnyValueField.array, LEN)
    const list = w.begin(1)
    for (const item of value as unknown[]) {
      w.tag(ArrayValueField.values, LEN)
      const at = w.begin(1)
      anyValue(w, item as AttributeValue)
      w.end(at, 1)
    }
    w.end(list, 1)
    return
  }
  if (typeof value === 'object' && value !== null) {
    w.tag(AnyValueField.kvlist, LEN)
    const list = w.begin(1)
    attributes(w, value as Attributes, KeyValueListField.values)
    w.end(list, 1)
  }
  // null and undefined: an empty AnyValue, as the SDK writes them.
}

/** Repeated KeyValue in field `field`. */
function attributes (w: Writer, attrs: Attributes, field: number): void {
  for (const key in attrs) {
    if (!Object.hasOwn(attrs, key)) continue
    w.tag(field, LEN)
    const kv = w.begin(1)
    w.tag(KeyValueField.key, LEN)
    w.string(key)
    w.tag(KeyValueField.value, LEN)
    const value = w.begin(1)
    anyValue(w, attrs[key])
    w.end(value, 1)
    w.end(kv, 1)
  }
}

function flags (ctx: SpanContext, remote: boolean | undefined): number {
  return (ctx.traceFlags & 0xff) | FLAGS_HAS_IS_REMOTE | (remote === true ? FLAGS_IS_REMOTE : 0)
}

function event (w: Writer, e: TimedEvent): void {
  w.tag(SpanField.events, LEN)
  const at = w.begin(1)
  w.tag(EventField.time, FIXED64); w.time(e.time)
  w.tag(EventField.name, LEN); w.string(e.name)
  if (e.attributes !== undefined) attributes(w, e.attributes, EventField.attributes)
  w.tag(EventField.droppedAttributes, VARINT); w.uint32(e.droppedAttributesCount ?? 0)
  w.end(at, 1)
}

function link (w: Writer, l: Link): void {
  w.tag(SpanField.links, LEN)
  const at = w.begin(1)
  const c = l.context
  w.tag(LinkField.traceId, LEN); w.id(c.traceId)
  w.tag(LinkField.spanId, LEN); w.id(c.spanId)
  const state = c.traceState?.serialize()
  if (state !== undefined && state !== '') { w.tag(LinkField.traceState, LEN); w.string(state) }
  if (l.attributes !== undefined) attributes(w, l.attributes, LinkField.attributes)
  w.tag(LinkField.droppedAttributes, VARINT); w.uint32(l.droppedAttributesCount ?? 0)
  w.tag(LinkField.flags, FIXED32); w.fixed32(flags(c, c.isRemote))
  w.end(at, 1)
}

function span (w: Writer, s: ReadableSpan): void {
  w.tag(ScopeSpansField.spans, LEN)
  const at = w.begin(2)
  const ctx = s.spanContext()
  w.tag(SpanField.traceId, LEN); w.id(ctx.traceId)
  w.tag(SpanField.spanId, LEN); w.id(ctx.spanId)
  const state = ctx.traceState?.serialize()
  if (state !== undefined && state !== '') { w.tag(SpanField.traceState, LEN); w.string(state) }
  const parent = s.parentSpanContext
  if (parent?.spanId !== undefined && parent.spanId !== '') { w.tag(SpanField.parentSpanId, LEN); w.id(parent.spanId) }
  w.tag(SpanField.name, LEN); w.string(s.name)
  w.tag(SpanField.kind, VARINT); w.uint32((s.kind as number) + 1)
  w.tag(SpanField.startTime, FIXED64); w.time(s.startTime)
  w.tag(SpanField.endTime, FIXED64); w.time(s.endTime)
  attributes(w, s.attributes, SpanField.attributes)
  w.tag(SpanField.droppedAttributes, VARINT); w.uint32(s.droppedAttributesCount)
  for (const e of s.events) event(w, e)
  w.tag(SpanField.droppedEvents, VARINT); w.uint32(s.droppedEventsCount)
  for (const l of s.links) link(w, l)
  w.tag(SpanField.droppedLinks, VARINT); w.uint32(s.droppedLinksCount)
  w.tag(SpanField.status, LEN)
  const status = w.begin(1)
  if (s.status.message !== undefined && s.status.message !== '') { w.tag(StatusField.message, LEN); w.string(s.status.message) }
  w.tag(StatusField.code, VARINT); w.uint32(s.status.code)
  w.end(status, 1)
  w.tag(SpanField.flags, FIXED32); w.fixed32(flags(ctx, parent?.isRemote))
  w.end(at, 2)
}

/** What a batch holds: spans encoded as they ended (remora's), or not yet encoded (the SDK's). */
type Batched = ReadableSpan | EncodedSpan

/** Spans grouped by resource, then by instrumentation scope (by identity: the SDK shares both objects). */
function group (spans: readonly Batched[]): Map<ReadableSpan['resource'], Map<ReadableSpan['instrumentationScope'], Batched[]>> {
  const byResource = new Map<ReadableSpan['resource'], Map<ReadableSpan['instrumentationScope'], Batched[]>>()
  for (const s of spans) {
    let byScope = byResource.get(s.resource)
    if (byScope === undefined) byResource.set(s.resource, byScope = new Map())
    const list = byScope.get(s.instrumentationScope)
    if (list === undefined) byScope.set(s.instrumentationScope, [s])
    else list.push(s)
  }
  return byResource
}

let writer = new Writer()

/** Spans encoded as they end go into 64 KiB chunks; each encoded span names its range of one. */
const CHUNK_BYTES = 64 << 10
let ahead = new Writer()

/** A span context with nothing but trace flags, one per flags value (see EncodedSpan.spanContext). */
const FLAGS_ONLY: SpanContext[] = []
function flagsOnly (traceFlags: number): SpanContext {
  return FLAGS_ONLY[traceFlags & 0xff] ??= Object.freeze({ traceId: '', spanId: '', traceFlags: traceFlags & 0xff })
}

/**
 * A finished span as the batch keeps it until export: its OTLP bytes (a range of a shared chunk)
 * and the little the batch processor and the grouping by resource and scope read. The span's own
 * objects (attributes, strings, status) are let go when it ends instead of waiting up to a
 * schedule delay in the queue, where they outlived young-generation collections, were copied and
 * promoted, and then had to be marked and swept by the old generation's.
 */
export class EncodedSpan {
  readonly resource: ReadableSpan['resource']
  readonly instrumentationScope: ReadableSpan['instrumentationScope']
  /** Where the bytes are: `chunk[start, end)`. */
  readonly chunk: Buffer
  readonly start: number
  readonly end: number
  readonly #flags: SpanContext

  constructor (s: ReadableSpan, chunk: Buffer, start: number, end: number) {
    this.resource = s.resource
    this.instrumentationScope = s.instrumentationScope
    this.#flags = flagsOnly(s.spanContext().traceFlags)
    this.chunk = chunk
    this.start = start
    this.end = end
  }

  /**
   * What the batch processor reads: the span's trace flags (it queues sampled spans only). Its ids
   * are in the bytes; kept here too, they and the header string a parent's id is cut from lived
   * until the export, long enough to be promoted to the old generation.
   */
  spanContext (): SpanContext { return this.#flags }

  /** The span's `Span` message, tag included. */
  get bytes (): Uint8Array { return this.chunk.subarray(this.start, this.end) }
}

/**
 * One finished span, encoded now, while its objects are still in the CPU's caches: a batch encoded
 * later, after hundreds of requests, spent most of its time fetching them back. `encodeSpans`
 * copies these bytes as they are.
 */
export function encodeSpan (s: ReadableSpan): EncodedSpan {
  let w = ahead
  if (w.buf.length - w.pos < 4096) {
    // A fresh chunk: the encoded spans in the old one keep it alive until they are exported.
    w = ahead = new Writer(CHUNK_BYTES)
  }
  const start = w.pos
  span(w, s)
  return new EncodedSpan(s, w.buf, start, w.pos)
}

/** The ExportTraceServiceRequest for `spans`, as OTLP/protobuf bytes (a fresh copy: the caller may keep it). */
export function encodeSpans (spans: readonly Batched[]): Uint8Array {
  const w = writer
  w.pos = 0
  for (const [resource, byScope] of group(spans)) {
    w.tag(RequestField.resourceSpans, LEN)
    const rs = w.begin(3)
    w.tag(ResourceSpansField.resource, LEN)
    const r = w.begin(1)
    attributes(w, resource.attributes, ResourceField.attributes)
    w.tag(ResourceField.droppedAttributes, VARINT); w.uint32(0)
    w.end(r, 1)
    for (const [scope, list] of byScope) {
      w.tag(ResourceSpansField.scopeSpans, LEN)
      const ss = w.begin(3)
      w.tag(ScopeSpansField.scope, LEN)
      const sc = w.begin(1)
      w.tag(ScopeField.name, LEN); w.string(scope.name)
      if (scope.version !== undefined && scope.version !== '') { w.tag(ScopeField.version, LEN); w.string(scope.version) }
      // Scopes may carry attributes (newer SDKs); written as the SDK's serializer does.
      const extra = scope as { attributes?: Attributes, droppedAttributesCount?: number }
      if (extra.attributes !== undefined) attributes(w, extra.attributes, ScopeField.attributes)
      if (extra.droppedAttributesCount !== undefined && extra.droppedAttributesCount !== 0) { w.tag(ScopeField.droppedAttributes, VARINT); w.uint32(extra.droppedAttributesCount) }
      w.end(sc, 1)
      // Spans that ended one after the other sit side by side in a chunk: each such run is copied
      // at once (a copy a span was a native call a span).
      let chunk: Buffer | undefined
      let from = 0
      let to = 0
      const copyRun = (): void => {
        if (chunk !== undefined) w.copy(chunk.subarray(from, to))
        chunk = undefined
      }
      for (const s of list) {
        if (!(s instanceof EncodedSpan)) {
          copyRun()
          span(w, s)
        } else if (s.chunk === chunk && s.start === to) {
          to = s.end
        } else {
          copyRun()
          chunk = s.chunk
          from = s.start
          to = s.end
        }
      }
      copyRun()
      if (scope.schemaUrl !== undefined && scope.schemaUrl !== '') { w.tag(ScopeSpansField.schemaUrl, LEN); w.string(scope.schemaUrl) }
      w.end(ss, 3)
    }
    if (resource.schemaUrl !== undefined && resource.schemaUrl !== '') { w.tag(ResourceSpansField.schemaUrl, LEN); w.string(resource.schemaUrl) }
    w.end(rs, 3)
  }
  const out = new Uint8Array(w.pos)
  out.set(w.buf.subarray(0, w.pos))
  if (w.buf.length > KEEP_BYTES) writer = new Writer()
  return out
}

/** What the OTLP/HTTP transport calls: our encoding out, the SDK's decoding of the collector's answer in. */
export const spanSerializer: ISerializer<ReadableSpan[], IExportTraceServiceResponse> = {
  serializeRequest: encodeSpans,
  deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
}
