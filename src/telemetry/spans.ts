// The spans of one hop, with OpenTelemetry semantic-convention attributes for HTTP and gRPC.
import type { Attributes, Context } from '@opentelemetry/api'
import type { Exchange } from '../http/exchange.ts'
import { MeshSpan } from './mesh-span.ts'
import { logIds, SpanKind, SpanStatusCode, type Span, type Tracing } from './tracing.ts'

/** "/pkg.Service/Method" → ["pkg.Service", "Method"] */
function grpcParts (path: string): [string, string] | undefined {
  const m = /^\/([^/]+)\/([^/?]+)$/.exec(path)
  return m === null ? undefined : [m[1], m[2]]
}

/** "host:port" → ["host", port]; a bracketed IPv6 host keeps its brackets, as the authority has them. */
export function splitAuthority (authority: string): [string, number | undefined] {
  const colon = authority.lastIndexOf(':')
  if (colon < 0 || colon === authority.length - 1 || authority.indexOf(']', colon) >= 0) return [authority, undefined]
  for (let i = colon + 1; i < authority.length; i++) {
    const c = authority.charCodeAt(i)
    if (c < 48 || c > 57) return [authority, undefined]
  }
  return [authority.slice(0, colon), Number(authority.slice(colon + 1))]
}

/** A request's span name and its gRPC service and method, if it is a gRPC call. */
interface Named { readonly name: string, readonly rpc: [string, string] | undefined }

/** Span name per the conventions: `pkg.Service/Method` for gRPC, the method for HTTP. */
function named (ex: Exchange): Named {
  const rpc = ex.grpc ? grpcParts(ex.path) : undefined
  return { name: rpc === undefined ? ex.method : `${rpc[0]}/${rpc[1]}`, rpc }
}

/**
 * Attributes are built only for spans that record: an unsampled request should cost next to
 * nothing, and these objects were most of what it cost (samplers here do not read attributes).
 */
function baseAttributes (ex: Exchange, rpc: Named['rpc']): Attributes {
  const [host, port] = splitAuthority(ex.authority)
  const queryAt = ex.path.indexOf('?')
  const attributes: Attributes = {
    'http.request.method': ex.method,
    'url.path': queryAt < 0 ? ex.path : ex.path.slice(0, queryAt),
    'url.scheme': 'http',
    'server.address': host,
    'network.protocol.version': ex.origProto === 'HTTP/1.1' ? '1.1' : '2',
  }
  if (port !== undefined) attributes['server.port'] = port
  if (rpc !== undefined) {
    attributes['rpc.system'] = 'grpc'
    attributes['rpc.service'] = rpc[0]
    attributes['rpc.method'] = rpc[1]
  }
  return attributes
}

/** Gives a recording span the attributes built for it: remora's span takes the object as it is. */
function record (span: Span, attributes: Attributes): void {
  if (span instanceof MeshSpan) span.takeAttributes(attributes)
  else span.setAttributes(attributes)
}

/** The inbound sidecar's SERVER span; the app's request carries it as the parent from here on. */
export function startServerSpan (tracing: Tracing, ex: Exchange, peerAddress: string | undefined): Span | undefined {
  if (!tracing.traces(ex.headers)) return undefined
  const { name, rpc } = named(ex)
  const span = tracing.start(name, SpanKind.SERVER, tracing.extract(ex.headers))
  if (span?.isRecording() === true) {
    const attributes = baseAttributes(ex, rpc)
    if (peerAddress !== undefined) attributes['network.peer.address'] = peerAddress
    // The caller's verified SPIFFE ID (mTLS); the CLIENT span carries the one it expected of us.
    if (ex.peerIdentity !== undefined) attributes['remora.peer.identity'] = ex.peerIdentity
    record(span, attributes)
  }
  tracing.inject(span, ex.headers)
  return span
}

/** One outbound attempt's CLIENT span, child of the app's context; the peer gets it as parent. */
export function startClientSpan (tracing: Tracing, ex: Exchange, parent: Context, attempt: number, endpoint: { host: string, port: number, key: string, identity: string }): Span | undefined {
  if (!tracing.enabled) return undefined
  const { name, rpc } = named(ex)
  const span = tracing.start(name, SpanKind.CLIENT, parent)
  if (span?.isRecording() === true) {
    const attributes = baseAttributes(ex, rpc)
    attributes['network.peer.address'] = endpoint.host
    attributes['network.peer.port'] = endpoint.port
    attributes['remora.endpoint'] = endpoint.key
    attributes['remora.peer.identity'] = endpoint.identity
    if (attempt > 1) attributes['http.request.resend_count'] = attempt - 1
    record(span, attributes)
  }
  return span
}

/** Sets the outcome and ends the span: errors are 5xx, gRPC non-OK (on CLIENT spans), or a proxy reason. */
export function endSpan (span: Span | undefined, kind: 'server' | 'client', status: number, grpcStatus: string | undefined, error: string | undefined): void {
  if (span === undefined) return
  if (!span.isRecording()) { span.end(); return }
  if (status > 0) span.setAttribute('http.response.status_code', status)
  if (grpcStatus !== undefined) span.setAttribute('rpc.grpc.status_code', Number(grpcStatus))
  const grpcFailed = grpcStatus !== undefined && grpcStatus !== '0' && (kind === 'client' || ['2', '4', '12', '13', '14', '15'].includes(grpcStatus))
  if (error !== undefined) {
    span.setAttribute('error.type', error)
    span.setAttribute('remora.proxy_error', error)
  }
  if (status >= 500 || (kind === 'client' && status >= 400) || grpcFailed || error !== undefined) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: error ?? (grpcStatus !== undefined && grpcStatus !== '0' ? `grpc-status ${grpcStatus}` : `HTTP ${status}`) })
    if (error === undefined) span.setAttribute('error.type', grpcStatus !== undefined && grpcStatus !== '0' ? grpcStatus : String(status))
  }
  span.end()
}

/** A request the outbound sidecar refused before any attempt (unknown authority, overloaded): still a CLIENT span, in error. */
export function refusedSpan (tracing: Tracing, ex: Exchange, status: number, reason: string): void {
  if (!tracing.traces(ex.headers)) return
  const { name, rpc } = named(ex)
  const span = tracing.start(name, SpanKind.CLIENT, tracing.extract(ex.headers))
  if (span?.isRecording() === true) record(span, baseAttributes(ex, rpc))
  ex.record.traceIds = logIds(span)
  endSpan(span, 'client', status, undefined, reason)
}
