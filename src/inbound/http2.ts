// Inbound HTTP/2: streams from peer sidecars (with the target port and original protocol in-band)
// and from non-meshed h2c clients.
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import { ProxyErrors } from '../errors.ts'
import { first, forwardable, isGrpc, MeshHeader } from '../http/headers.ts'
import { H2Sink, respondError } from '../http/response-sink.ts'
import { fromHttp2 } from '../http/exchange.ts'
import type { InboundContext } from './context.ts'
import { createDownstreamH2Server } from '../transport/h2-server.ts'
import { routeInbound } from './route.ts'
import tls, { type TLSSocket } from 'node:tls'
import { TCP_ALPN } from '../transport/tcp-header.ts'
import { PEER_H1_ALPN } from '../transport/peer-http1.ts'
import type http from 'node:http'
import { createInboundHttp1 } from './http1.ts'
import { fromPeer, targetPort } from './in-band.ts'
import { acceptPeerTcp } from './tcp.ts'
import type { Credentials } from '../identity/workload-identity.ts'
import { spiffeIdOf } from '../identity/svid.ts'
import { tlsReason } from '../transport/tls-errors.ts'
import { LogThrottle } from '../telemetry/throttle.ts'
import { upgradeAllowed } from '../http/upgrades.ts'
import { guardRequestBody } from '../http/body-rate.ts'

export function createInboundHttp2 (ctx: InboundContext): http2.Http2Server {
  // Without mTLS, peer sidecars connect here too (one connection each carries all their requests): the peer limit.
  const server = createDownstreamH2Server(ctx, 'inbound', ctx.config.mtls === undefined)
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => onStream(ctx, stream, headers, undefined))
  server.on('sessionError', (err) => ctx.log.debug({ err: err.message }, 'inbound h2 session error'))
  return server
}

/**
 * Inbound mTLS from peer sidecars: TLS 1.3, a client certificate that chains to the trust anchors
 * required, the caller's SPIFFE ID read once per connection. ALPN h2 goes to `h2` (the HTTP
 * streams); ALPN remora-http/1.1 to `h1` (HTTP/1.1 apps' requests); ALPN remora-tcp/1 is opaque
 * TCP (inbound/tcp.ts).
 */
export function createInboundMtls (ctx: InboundContext, creds: Credentials): { tls: tls.Server, h2: http2.Http2Server, h1: http.Server } {
  const h2 = createDownstreamH2Server(ctx, 'inbound', true)
  const server = tls.createServer({ ...serverTls(creds), allowHalfOpen: true })
  const peers = new WeakMap<http2.Http2Session, string>()
  const h1Peers = new WeakMap<object, string>()
  const h1 = createInboundHttp1(ctx, (socket) => h1Peers.get(socket))
  server.on('secureConnection', (socket: TLSSocket) => {
    let identity: string
    try {
      identity = spiffeIdOf(socket.getPeerCertificate())
    } catch {
      // Chains to the anchors but is no X.509-SVID (no, or several, URI SANs): no mesh identity.
      ctx.metrics.tlsFailures.inc({ direction: 'inbound', reason: 'identity-mismatch' })
      socket.destroy()
      return
    }
    if (socket.alpnProtocol === TCP_ALPN) { acceptPeerTcp(ctx, socket, identity, socket.remoteAddress); return }
    if (socket.alpnProtocol === PEER_H1_ALPN) {
      h1Peers.set(socket, identity)
      h1.emit('connection', socket)
      return
    }
    h2.emit('connection', socket)
  })
  h2.on('session', (session: http2.ServerHttp2Session) => {
    // http2 hands out a proxy of the socket; its methods reach the real one.
    try { peers.set(session, spiffeIdOf((session.socket as TLSSocket).getPeerCertificate())) } catch { session.destroy() }
  })
  h2.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const identity = stream.session === undefined ? undefined : peers.get(stream.session)
    if (identity === undefined) { stream.close(http2.constants.NGHTTP2_REFUSED_STREAM); return }
    onStream(ctx, stream, headers, identity)
  })
  h2.on('sessionError', (err) => ctx.log.debug({ err: err.message }, 'inbound h2 session error'))
  const throttle = new LogThrottle()
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    // A client certificate that fails verification ends as a bare reset: the why is on the socket.
    const verify = socket.authorizationError as Error | string | null | undefined
    const reason = tlsReason(verify === null || verify === undefined ? undefined : { code: typeof verify === 'string' ? verify : (verify as NodeJS.ErrnoException).code ?? verify.message }) ?? tlsReason(err) ?? 'other'
    ctx.metrics.tlsFailures.inc({ direction: 'inbound', reason })
    throttle.run(reason, (suppressed) => ctx.log.warn({ reason, from: socket.remoteAddress, err: verify !== null && verify !== undefined ? String(verify) : err.code ?? err.message, suppressed }, 'inbound TLS handshake refused'))
  })
  return { tls: server, h2, h1 }
}

export function serverTls (creds: Credentials): tls.TlsOptions {
  return { key: creds.key, cert: creds.cert, ca: [...creds.ca], requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', ALPNProtocols: ['h2', PEER_H1_ALPN, TCP_ALPN] }
}

function onStream (ctx: InboundContext, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, peerIdentity: string | undefined): void {
  {
    const sink = new H2Sink(stream)
    const method = headers[':method'] ?? 'GET'
    const path = headers[':path'] ?? '/'
    const authority = headers[':authority'] ?? first(headers.host) ?? ''
    const rawPort = first(headers[MeshHeader.targetPort])
    // Every remora-* header but those read here is dropped (in-band.ts: who counts as a peer).
    const peer = fromPeer(ctx.config.mtls !== undefined, rawPort, peerIdentity)
    const origProto = peer && headers[MeshHeader.origProto] === 'HTTP/1.1' ? 'HTTP/1.1' : 'HTTP/2'
    const record = ctx.begin('inbound', method, authority, path, origProto, sink)
    const grpc = isGrpc(headers)
    const port = targetPort(rawPort, ctx.destinations.of(stream.session?.socket)?.port)
    if (port === null) {
      record.error = ProxyErrors.malformedRequest.reason
      respondError(sink, ProxyErrors.malformedRequest, { grpc, detail: `${MeshHeader.targetPort}: "${rawPort}" is not a port` })
      stream.resume()
      return
    }
    const forwarded = forwardable(headers, true)
    // The one mesh header the app may see: which attempt this is, when the caller's sidecar retries.
    const attempt = peer ? first(headers[MeshHeader.attempt]) : undefined
    if (attempt !== undefined) forwarded[MeshHeader.attempt] = attempt
    // An upgrade the peer's sidecar carried, if it is one this sidecar allows too.
    const upgrade = peer ? first(headers[MeshHeader.upgrade]) : undefined
    const ex = fromHttp2(stream, headers, forwarded, authority, origProto, record, upgradeAllowed(upgrade, ctx.config.upgrades) ? upgrade : undefined, peerIdentity)
    if (!peer) guardRequestBody(ctx, 'inbound', ex, sink)
    routeInbound(ctx, ex, port, sink)
  }
}
