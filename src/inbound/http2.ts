// Inbound HTTP/2: streams from peer sidecars (with the target port and original protocol in-band)
// and from non-meshed h2c clients.
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import { ProxyErrors } from '../errors.ts'
import { first, forwardable, isGrpc, MeshHeader } from '../http/headers.ts'
import { H2Sink, respondError } from '../http/response-sink.ts'
import { fromHttp2 } from '../http/exchange.ts'
import type { InboundContext } from './context.ts'
import { H2_SETTINGS } from '../transport/h2-sessions.ts'
import { routeInbound } from './route.ts'
import type { TLSSocket } from 'node:tls'
import type { Credentials } from '../identity/workload-identity.ts'
import { spiffeIdOf } from '../identity/svid.ts'
import { tlsReason } from '../transport/tls-errors.ts'
import { LogThrottle } from '../telemetry/throttle.ts'

export function createInboundHttp2 (ctx: InboundContext): http2.Http2Server {
  const server = http2.createServer({ settings: H2_SETTINGS, maxSessionMemory: 64 })
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => onStream(ctx, stream, headers, undefined))
  server.on('sessionError', (err) => ctx.log.debug({ err: err.message }, 'inbound h2 session error'))
  return server
}

/**
 * Inbound mTLS from peer sidecars: TLS 1.3, ALPN h2, a client certificate that chains to the trust
 * anchors required. The caller's SPIFFE ID is read once per connection.
 */
export function createInboundHttp2Tls (ctx: InboundContext, creds: Credentials): http2.Http2SecureServer {
  const server = http2.createSecureServer({ ...serverTls(creds), settings: H2_SETTINGS, maxSessionMemory: 64, allowHTTP1: false })
  const peers = new WeakMap<http2.Http2Session, string>()
  server.on('session', (session: http2.ServerHttp2Session) => {
    const cert = (session.socket as TLSSocket).getPeerCertificate()
    try {
      peers.set(session, spiffeIdOf(cert))
    } catch {
      // Chains to the anchors but is no X.509-SVID (no, or several, URI SANs): no mesh identity.
      ctx.metrics.tlsFailures.inc({ direction: 'inbound', reason: 'identity-mismatch' })
      session.destroy()
    }
  })
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const identity = stream.session === undefined ? undefined : peers.get(stream.session)
    if (identity === undefined) { stream.close(http2.constants.NGHTTP2_REFUSED_STREAM); return }
    onStream(ctx, stream, headers, identity)
  })
  const throttle = new LogThrottle()
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    // A client certificate that fails verification ends as a bare reset: the why is on the socket.
    const verify = socket.authorizationError as Error | string | null | undefined
    const reason = tlsReason(verify === null || verify === undefined ? undefined : { code: typeof verify === 'string' ? verify : (verify as NodeJS.ErrnoException).code ?? verify.message }) ?? tlsReason(err) ?? 'other'
    ctx.metrics.tlsFailures.inc({ direction: 'inbound', reason })
    throttle.run(reason, (suppressed) => ctx.log.warn({ reason, from: socket.remoteAddress, err: verify !== null && verify !== undefined ? String(verify) : err.code ?? err.message, suppressed }, 'inbound TLS handshake refused'))
  })
  server.on('sessionError', (err) => ctx.log.debug({ err: err.message }, 'inbound h2 session error'))
  return server
}

export function serverTls (creds: Credentials): http2.SecureServerOptions {
  return { key: creds.key, cert: creds.cert, ca: [...creds.ca], requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] }
}

function onStream (ctx: InboundContext, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peerIdentity: string | undefined): void {
  {
    const sink = new H2Sink(stream)
    const method = headers[':method'] ?? 'GET'
    const path = headers[':path'] ?? '/'
    const authority = headers[':authority'] ?? first(headers.host) ?? ''
    const origProto = headers[MeshHeader.origProto] === 'HTTP/1.1' ? 'HTTP/1.1' : 'HTTP/2'
    const record = ctx.begin('inbound', method, authority, path, origProto, sink)
    const grpc = isGrpc(headers)
    const rawPort = first(headers[MeshHeader.targetPort])
    const port = rawPort === undefined ? undefined : Number(rawPort)
    if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
      record.error = ProxyErrors.malformedRequest.reason
      respondError(sink, ProxyErrors.malformedRequest, { grpc, detail: `${MeshHeader.targetPort}: "${rawPort}" is not a port` })
      stream.resume()
      return
    }
    const forwarded = forwardable(headers, true)
    // The one mesh header the app may see: which attempt this is, when the caller's sidecar retries.
    const attempt = first(headers[MeshHeader.attempt])
    if (attempt !== undefined) forwarded[MeshHeader.attempt] = attempt
    routeInbound(ctx, fromHttp2(stream, headers, forwarded, authority, origProto, record, first(headers[MeshHeader.upgrade]), peerIdentity), port, sink)
  }
}
