// The spans of one hop, with OpenTelemetry semantic-convention attributes for HTTP and gRPC:
// inbound, one SERVER span; outbound, one span for the request as the app made it (its whole time
// and final status) with one CLIENT span per attempt under it, so a retried request is one trace.
import { ROOT_CONTEXT, trace, type Attributes } from '@opentelemetry/api'
import { MeshSpan } from './mesh-span.ts'
import { SpanKind, SpanStatusCode, type Headers, type Span, type Tracing } from './tracing.ts'

/** What a span reads of a request (http/exchange.ts's Exchange has all of it). */
export interface TracedRequest {
  readonly method: string
  readonly path: string
  readonly authority: string
  readonly origProto: 'HTTP/1.1' | 'HTTP/2'
  readonly grpc: boolean
  readonly headers: Headers
  readonly peerIdentity?: string
}

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
function named (ex: TracedRequest): Named {
  const rpc = ex.grpc ? grpcParts(ex.path) : undefined
  return { name: rpc === undefined ? ex.method : `${rpc[0]}/${rpc[1]}`, rpc }
}

/**
 * Attributes are built only for spans that record: an unsampled request should cost next to
 * nothing, and these objects were most of what it cost (samplers here do not read attributes).
 */
function baseAttributes (ex: TracedRequest, rpc: Named['rpc']): Attributes {
  const [host, port] = splitAuthority(ex.authority)
  const queryAt = ex.path.indexOf('?')
  const attributes: Attributes = {
    'http.request.method': ex.method,
    'url.path': queryAt < 0 ? ex.path : ex.path.slice(0, queryAt),
    'url.scheme': 'http',
    'server.address': host,
    'network.protocol.version': ex.origProto === 'HTTP/1.1' ? '1.1' : '2',
  }
  // Required on CLIENT spans: the port the app asked for, else the scheme's default (http: 80).
  attributes['server.port'] = port ?? 80
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
export function startServerSpan (tracing: Tracing, ex: TracedRequest, peerAddress: string | undefined): Span | undefined {
  if (!tracing.traces(ex.headers)) return undefined
  const { name, rpc } = named(ex)
  const span = tracing.start(name, SpanKind.SERVER, tracing.extract(ex.headers))
  if (span?.isRecording() === true) {
    const attributes = baseAttributes(ex, rpc)
    if (peerAddress !== undefined) attributes['network.peer.address'] = peerAddress
    // The client as the conventions define it: the first X-Forwarded-For hop a proxy in front
    // recorded, else whoever connected (the calling pod's sidecar, on a mesh hop).
    const client = clientAddress(ex.headers['x-forwarded-for']) ?? peerAddress
    if (client !== undefined) attributes['client.address'] = client
    // The caller's verified SPIFFE ID (mTLS); the CLIENT span carries the one it expected of us.
    if (ex.peerIdentity !== undefined) attributes['remora.peer.identity'] = ex.peerIdentity
    record(span, attributes)
  }
  tracing.inject(span, ex.headers)
  return span
}

function clientAddress (forwarded: string | string[] | undefined): string | undefined {
  const v = Array.isArray(forwarded) ? forwarded[0] : forwarded
  const hop = v?.split(',')[0].trim()
  return hop === undefined || hop === '' ? undefined : hop
}

/**
 * The outbound request as the app made it: one span across every attempt, from the request's
 * arrival to its last byte, ending with the status the app got. Its parent is the app's context;
 * without one it is the trace's root, so a retried request is still one trace. It ends only after
 * its attempts' spans have (the caller's stream can close a moment before the upstream's), so
 * every attempt lies inside it.
 */
export class RequestSpan {
  readonly span: Span
  readonly #tracing: Tracing
  readonly #ex: TracedRequest
  #open = 0
  #end: (() => void) | undefined

  private constructor (tracing: Tracing, ex: TracedRequest, span: Span) {
    this.#tracing = tracing
    this.#ex = ex
    this.span = span
  }

  static start (tracing: Tracing, ex: TracedRequest): RequestSpan | undefined {
    if (!tracing.traces(ex.headers)) return undefined
    const { name, rpc } = named(ex)
    const span = tracing.start(name, SpanKind.INTERNAL, tracing.extract(ex.headers))
    if (span === undefined) return undefined
    if (span.isRecording()) record(span, baseAttributes(ex, rpc))
    return new RequestSpan(tracing, ex, span)
  }

  /**
   * One attempt's CLIENT span, child of this one; the peer gets it as parent. `backoffMs` is how
   * long the call waited before this attempt. Call `attemptEnded` once it has ended.
   */
  startAttempt (attempt: number, endpoint: AttemptTarget, backoffMs: number): Span | undefined {
    const { name, rpc } = named(this.#ex)
    const span = this.#tracing.start(name, SpanKind.CLIENT, trace.setSpan(ROOT_CONTEXT, this.span))
    if (span === undefined) return undefined
    this.#open++
    if (span.isRecording()) {
      const attributes = baseAttributes(this.#ex, rpc)
      attributes['network.peer.address'] = endpoint.host
      attributes['network.peer.port'] = endpoint.port
      attributes['remora.endpoint'] = endpoint.key
      attributes['remora.peer.identity'] = endpoint.identity
      attributes['remora.attempt'] = attempt
      if (attempt > 1) {
        attributes['http.request.resend_count'] = attempt - 1
        attributes['remora.retry.backoff_ms'] = Math.round(backoffMs * 1000) / 1000
      }
      record(span, attributes)
    }
    return span
  }

  attemptEnded (): void {
    if (--this.#open === 0 && this.#end !== undefined) this.#end()
  }

  /** The app's answer is complete (or the app is gone): ends now, or when the last attempt ends. */
  end (status: number, grpcStatus: string | undefined, error: string | undefined): void {
    const end = (): void => endSpan(this.span, 'request', status, grpcStatus, error)
    if (this.#open === 0) end()
    else this.#end = end
  }
}

export interface AttemptTarget { readonly host: string, readonly port: number, readonly key: string, readonly identity: string }

export type SpanRole = 'server' | 'client' | 'request'

/**
 * Sets the outcome and ends the span. A CLIENT or request span is in error for any 4xx/5xx, a
 * non-OK gRPC status or a proxy reason; a SERVER span only for 5xx, a server-fault gRPC status, or
 * a failure that is not a 4xx answer (the conventions leave a server's 4xx unset: the caller erred).
 */
export function endSpan (span: Span | undefined, role: SpanRole, status: number, grpcStatus: string | undefined, error: string | undefined): void {
  if (span === undefined) return
  if (!span.isRecording()) { span.end(); return }
  if (status > 0) span.setAttribute('http.response.status_code', status)
  if (grpcStatus !== undefined) span.setAttribute('rpc.grpc.status_code', Number(grpcStatus))
  if (error !== undefined) span.setAttribute('remora.proxy_error', error)
  const grpcNotOk = grpcStatus !== undefined && grpcStatus !== '0'
  const failed = role === 'server'
    ? status >= 500 || (grpcNotOk && SERVER_FAULTS.has(grpcStatus)) || (error !== undefined && !(status >= 400 && status < 500))
    : status >= 400 || grpcNotOk || error !== undefined
  if (failed) {
    span.setAttribute('error.type', error ?? (grpcNotOk ? grpcStatus : String(status)))
    span.setStatus({ code: SpanStatusCode.ERROR, message: error ?? (grpcNotOk ? `grpc-status ${grpcStatus}` : `HTTP ${status}`) })
  }
  span.end()
}

/** gRPC codes that are the server's fault (the conventions' list for SERVER spans). */
const SERVER_FAULTS = new Set(['2', '4', '12', '13', '14', '15'])
