// Inbound HTTP/1.1: from clients outside the mesh, forwarded to the app port they were going to
// (a redirected connection's original port), else the app's default port; and from peer sidecars
// (HTTP/1.1 apps' requests), which name the app port in band.
import type http from 'node:http'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { ProxyErrors } from '../errors.ts'
import { first, MeshHeader } from '../http/headers.ts'
import { H1Sink, RawSocketSink, type ResponseSink } from '../http/response-sink.ts'
import { statusLine } from '../http/status-line.ts'
import type { InboundContext } from './context.ts'
import { fromHttp1 } from '../http/exchange.ts'
import { routeInbound } from './route.ts'
import { acceptsUpgrade } from '../http/upgrades.ts'
import { headersTimedOut, isHeadersTimeout } from '../http/header-timeout.ts'
import { createHttp1Server, type CountedResponse } from '../http/h1-server.ts'
import { afterLastAnswer, answerAfterPending, faultyFraming } from '../http/h1-framing.ts'
import { refuse } from '../http/refuse.ts'
import { guardRequestBody } from '../http/body-rate.ts'
import { fromPeer, targetPort } from './in-band.ts'

/**
 * `peerOf`: this server takes mTLS connections from peer sidecars (ALPN remora-http/1.1), and says
 * which verified identity a connection has. Without it, the plaintext server: with mTLS off, a
 * request that names the target port (as every sidecar's does) is taken for a peer's.
 */
export function createInboundHttp1 (ctx: InboundContext, peerOf?: (socket: Duplex) => string | undefined): http.Server {
  const server = createHttp1Server(ctx.config.http1IdleTimeout, ctx.config.requestHeadersTimeout)
  server.on('request', (req: IncomingMessage, res: CountedResponse) => {
    if (!afterLastAnswer(req)) handle(ctx, server, req, new H1Sink(res, ctx), undefined, faultyFraming(req, res, true), peerOf)
  })
  // Only the upgrades a user enabled, never h2c nor one with a body (http/upgrades.ts); any other
  // request with Upgrade is a plain one. (Set on the server: @types/node knows it as an option only.)
  Object.assign(server, { shouldUpgradeCallback: (req: IncomingMessage) => acceptsUpgrade(req, ctx.config.upgrades) })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (afterLastAnswer(req)) { socket.end(() => socket.destroy()); return }
    const sink = new RawSocketSink(socket)
    sink.hold(head)
    handle(ctx, server, req, sink, String(req.headers.upgrade), faultyFraming(req, undefined, true), peerOf)
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (isHeadersTimeout(err)) { headersTimedOut(socket, ctx.metrics, 'inbound'); return }
    if (!socket.writable || err.code === 'ECONNRESET') { socket.destroy(); return }
    answerAfterPending(socket, statusLine(400, { [MeshHeader.proxyError]: ProxyErrors.malformedRequest.reason, 'content-length': '0', connection: 'close' }))
  })
  return server
}

/**
 * Connections on which peer sidecars sent requests, by server. A pooled connection the peer holds
 * idle may carry its next request at any moment, and HTTP/1.1 cannot tell it "not processed" if
 * this side closed first: so a draining sidecar waits for them to close — every answer while
 * draining says `Connection: close`, and peers close unused ones within 4 s (PEER_IDLE_MS).
 */
const peerConnections = new WeakMap<http.Server, { open: Set<Duplex>, closed: Array<() => void> }>()

function trackPeerConnection (server: http.Server, socket: Duplex): void {
  let peers = peerConnections.get(server)
  if (peers === undefined) peerConnections.set(server, peers = { open: new Set(), closed: [] })
  if (peers.open.has(socket)) return
  const { open, closed } = peers
  open.add(socket)
  socket.once('close', () => {
    open.delete(socket)
    if (open.size === 0) for (const f of closed.splice(0)) f()
  })
}

/** Settles once no connection from a peer sidecar is open on `server`. */
export function peerConnectionsClosed (server: http.Server): Promise<void> {
  const peers = peerConnections.get(server)
  return peers === undefined || peers.open.size === 0 ? Promise.resolve() : new Promise((resolve) => peers.closed.push(resolve))
}

function handle (ctx: InboundContext, server: http.Server, req: IncomingMessage, sink: ResponseSink, upgrade: string | undefined, faulty: string | undefined, peerOf: ((socket: Duplex) => string | undefined) | undefined): void {
  const method = req.method ?? 'GET'
  const authority = req.headers.host ?? ''
  const path = req.url ?? '/'
  const record = ctx.begin('inbound', method, authority, path, 'HTTP/1.1', sink)
  const rawPort = first(req.headers[MeshHeader.targetPort])
  const identity = peerOf?.(req.socket)
  const peer = fromPeer(ctx.config.mtls !== undefined, rawPort, identity)
  if (peer) trackPeerConnection(server, req.socket)
  const ex = fromHttp1(req, authority, path, record, upgrade, identity)
  if (faulty !== undefined) { refuse(ex, sink, ProxyErrors.malformedRequest, faulty); return }
  const port = targetPort(rawPort, ctx.destinations.of(req.socket)?.port)
  if (port === null) {
    refuse(ex, sink, ProxyErrors.malformedRequest, `${MeshHeader.targetPort}: "${rawPort}" is not a port`)
    return
  }
  // The one mesh header the app may see: which attempt this is, when the caller's sidecar retries.
  const attempt = peer ? first(req.headers[MeshHeader.attempt]) : undefined
  if (attempt !== undefined) ex.headers[MeshHeader.attempt] = attempt
  // A peer's sidecar held the app's body to the rate rule already (its outbound).
  if (!peer) guardRequestBody(ctx, 'inbound', ex, sink)
  routeInbound(ctx, ex, port, sink)
}
