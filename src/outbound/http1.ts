// Outbound HTTP/1.1 from the app: origin-form (Host), absolute-form and CONNECT as a plain HTTP
// proxy, and Upgrade; each request becomes an Exchange routed to a peer sidecar.
import type http from 'node:http'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { ProxyErrors } from '../errors.ts'
import { fromHttp1 } from '../http/exchange.ts'
import { MeshHeader } from '../http/headers.ts'
import { H1Sink, RawSocketSink, respondError, type ResponseSink } from '../http/response-sink.ts'
import { statusLine } from '../http/status-line.ts'
import type { OutboundContext } from './context.ts'
import { resolveService, routeOutbound } from './route.ts'
import { refuse } from '../http/refuse.ts'
import { guardRequestBody } from '../http/body-rate.ts'
import type { Socket } from 'node:net'
import type { Destination } from '../transport/destinations.ts'
import { carryOutbound } from './tcp.ts'
import { acceptsUpgrade } from '../http/upgrades.ts'
import { headersTimedOut, isHeadersTimeout } from '../http/header-timeout.ts'
import { createHttp1Server, type CountedResponse } from '../http/h1-server.ts'
import { afterLastAnswer, answerAfterPending, faultyFraming } from '../http/h1-framing.ts'

export function createOutboundHttp1 (ctx: OutboundContext): http.Server {
  const server = createHttp1Server(ctx.config.http1IdleTimeout, ctx.config.requestHeadersTimeout)
  server.on('request', (req: IncomingMessage, res: CountedResponse) => {
    if (!afterLastAnswer(req)) handle(ctx, req, new H1Sink(res, ctx), undefined, faultyFraming(req, res))
  })
  // Only the upgrades a user enabled, never h2c nor one with a body (http/upgrades.ts); any other
  // request with Upgrade is a plain one. (Set on the server: @types/node knows it as an option only.)
  Object.assign(server, { shouldUpgradeCallback: (req: IncomingMessage) => acceptsUpgrade(req, ctx.config.upgrades) })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (afterLastAnswer(req)) { socket.end(() => socket.destroy()); return }
    const sink = new RawSocketSink(socket)
    sink.hold(head)
    handle(ctx, req, sink, String(req.headers.upgrade), faultyFraming(req))
  })
  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (afterLastAnswer(req)) { socket.end(() => socket.destroy()); return }
    socket.pause()
    // A tunnel is one request on the record: refused ones say why, open ones log when they close.
    const authority = req.url ?? ''
    const sink = new RawSocketSink(socket)
    const record = ctx.begin('outbound', 'CONNECT', authority, authority, 'HTTP/1.1', sink)
    const ex = fromHttp1(req, authority, authority, record, undefined)
    const port = Number(/:(\d{1,5})$/.exec(authority)?.[1] ?? 0)
    if (!/^[^\s/]+:\d+$/.test(authority) || port < 1 || port > 65535) {
      refuse(ex, sink, ProxyErrors.malformedRequest, `CONNECT needs host:port with a port 1-65535, got "${authority}"`)
      return
    }
    const dest: Destination = { authority, port, via: 'connect' }
    const open = (how: 'detect' | 'opaque'): void => {
      if (socket.destroyed) return
      sink.established()
      if (head.length > 0) socket.unshift(head)
      // Opaque (not in the mesh, a server-first port, a service declared opaque): carried as it is,
      // with no wait for a first byte; else it re-enters the listener to be detected.
      if (how === 'opaque') carryOutbound(ctx, socket as Socket, { kind: 'tunnel' }, dest)
      else ctx.tunnels.open(socket, authority)
    }
    resolveService(ctx, ex, sink, () => open('opaque'), (service) => {
      open(service.protocol === 'opaque' || ctx.config.opaquePorts.includes(dest.port) ? 'opaque' : 'detect')
    })
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (isHeadersTimeout(err)) { headersTimedOut(socket, ctx.metrics, 'outbound'); return }
    if (!socket.writable || err.code === 'ECONNRESET') { socket.destroy(); return }
    const body = `${ProxyErrors.malformedRequest.reason}: ${err.code ?? err.message}\n${ProxyErrors.malformedRequest.hint}\n`
    answerAfterPending(socket, statusLine(400, { [MeshHeader.proxyError]: ProxyErrors.malformedRequest.reason, 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)), connection: 'close' }) + body)
  })
  return server
}

function handle (ctx: OutboundContext, req: IncomingMessage, sink: ResponseSink, upgrade: string | undefined, faulty: string | undefined): void {
  const url = req.url ?? '/'
  let authority: string | undefined
  let path = url
  if (url.startsWith('http://')) {
    // Only the authority goes through URL: it would resolve %2e%2e segments and re-encode the path,
    // and the app gets the path byte for byte and the Host the client named (`web`, not `web:80`).
    const [, host = '', rest = ''] = /^http:\/\/([^/?]*)(.*)$/s.exec(url) ?? []
    try {
      authority = new URL(`http://${host}`).host
      path = rest.startsWith('/') ? rest : `/${rest}`
    } catch { authority = undefined }
  } else if (url.startsWith('/') || url === '*') {
    // The request's own Host wins (the app must see what the client sent); a CONNECT tunnel's
    // target stands in only for a request without one.
    authority = req.headers.host ?? ctx.destinations.of(req.socket)?.authority
  }
  const method = req.method ?? 'GET'
  const record = ctx.begin('outbound', method, authority ?? '', path, 'HTTP/1.1', sink)
  if (authority === undefined || authority === '') {
    record.error = ProxyErrors.malformedRequest.reason
    respondError(sink, ProxyErrors.malformedRequest, { grpc: false, detail: url.startsWith('https://') ? 'https:// URLs go through CONNECT' : 'no Host header and no absolute URL' })
    req.resume()
    return
  }
  const ex = fromHttp1(req, authority, path, record, upgrade)
  if (faulty !== undefined) { refuse(ex, sink, ProxyErrors.malformedRequest, faulty); return }
  guardRequestBody(ctx, 'outbound', ex, sink)
  const dest = ctx.destinations.of(req.socket)
  routeOutbound(ctx, ex, sink, dest?.via === 'redirect' ? dest.authority : undefined)
}
