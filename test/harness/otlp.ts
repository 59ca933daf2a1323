// An OTLP/HTTP trace receiver for tests: a real HTTP server on /v1/traces that decodes the protobuf
// payload with protobufjs code generated from the official opentelemetry-proto definitions.
import http from 'node:http'
import { once } from 'node:events'
import { gunzipSync } from 'node:zlib'
import { createRequire } from 'node:module'
import { freePort, type Teardown } from './mesh.ts'

const require = createRequire(import.meta.url)
interface ProtoMessage { decode (buf: Uint8Array): unknown, toObject (m: unknown, o: object): unknown }
const root = require('@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js') as {
  opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceRequest: ProtoMessage } } } } }
}
/** ExportTraceServiceRequest, generated from the official proto definitions. */
export const Request = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest

export interface ReceivedSpan {
  service: string
  /** The exporting process's resource attributes (service.namespace, k8s.*, …). */
  resource: Record<string, string | number | boolean>
  traceId: string
  spanId: string
  parentSpanId: string
  name: string
  /** OTLP SpanKind: 1 INTERNAL, 2 SERVER, 3 CLIENT */
  kind: number
  /** Nanoseconds since the epoch, exact (OTLP's fixed64). */
  start: bigint
  end: bigint
  attributes: Record<string, string | number | boolean>
  status: { code: number, message: string }
  events: Array<{ name: string, attributes: Record<string, string | number | boolean> }>
}

interface KeyValue { key: string, value: { stringValue?: string, intValue?: string, boolValue?: boolean, doubleValue?: number } }
interface RawSpan { traceId: Buffer, spanId: Buffer, parentSpanId?: Buffer, name: string, kind: number, startTimeUnixNano: string, endTimeUnixNano: string, attributes?: KeyValue[], status?: { code?: number, message?: string }, events?: Array<{ name: string, attributes?: KeyValue[] }> }
interface RawRequest { resourceSpans?: Array<{ resource?: { attributes?: KeyValue[] }, scopeSpans?: Array<{ spans?: RawSpan[] }> }> }

function attrs (list: KeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const { key, value } of list ?? []) {
    out[key] = value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : undefined) ?? value.boolValue ?? value.doubleValue ?? ''
  }
  return out
}

export interface Receiver {
  readonly url: string
  readonly spans: ReceivedSpan[]
  /** When set, requests are held this long before the answer (a slow collector). */
  delayMs: number
  /** The path spans are accepted on (OTLP's default, or what OTEL_EXPORTER_OTLP_TRACES_ENDPOINT names). */
  path: string
  /** The headers of every accepted export request. */
  readonly requests: http.IncomingHttpHeaders[]
}

export async function startReceiver (t: Teardown): Promise<Receiver> {
  const port = await freePort()
  const receiver: Receiver = { url: `http://127.0.0.1:${port}`, spans: [], delayMs: 0, path: '/v1/traces', requests: [] }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (req.url !== receiver.path || req.headers['content-type'] !== 'application/x-protobuf') {
        res.writeHead(415).end()
        return
      }
      receiver.requests.push(req.headers)
      const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(Buffer.concat(chunks)) : Buffer.concat(chunks)
      const decoded = Request.toObject(Request.decode(body), { longs: String, defaults: true }) as RawRequest
      for (const rs of decoded.resourceSpans ?? []) {
        const resource = attrs(rs.resource?.attributes)
        const service = String(resource['service.name'] ?? '')
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) {
            receiver.spans.push({
              service,
              resource,
              traceId: Buffer.from(s.traceId).toString('hex'),
              spanId: Buffer.from(s.spanId).toString('hex'),
              parentSpanId: s.parentSpanId === undefined ? '' : Buffer.from(s.parentSpanId).toString('hex'),
              name: s.name,
              kind: s.kind,
              start: BigInt(s.startTimeUnixNano),
              end: BigInt(s.endTimeUnixNano),
              attributes: attrs(s.attributes),
              status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
              events: (s.events ?? []).map((e) => ({ name: e.name, attributes: attrs(e.attributes) })),
            })
          }
        }
      }
      setTimeout(() => { if (!res.destroyed) res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end() }, receiver.delayMs).unref()
    })
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return receiver
}
