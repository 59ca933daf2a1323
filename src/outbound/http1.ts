// Outbound HTTP/1.1 from the app: origin-form (Host), absolute-form and CONNECT as a plain HTTP
// proxy, and Upgrade; each request becomes an Exchange routed to a peer sidecar.
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { ProxyErrors, type ProxyErrorReason } from '../errors.ts'
import type { Service } from '../discovery/service.ts'
import { fromHttp1 } from '../http/exchange.ts'
import { MeshHeader } from '../http/headers.ts'
import { H1Sink, RawSocketSink, respondError, statusLine, type ResponseSink } from '../http/response-sink.ts'
import type { ProxyContext } from '../proxy/context.ts'
import { routeOutbound } from './route.ts'

export function createOutboundHttp1 (ctx: ProxyContext): http.Server {
  const server = http.createServer({ requireHostHeader: false, keepAliveTimeout: 65_000, headersTimeout: 60_000, requestTimeout: 0 })
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handle(ctx, req, new H1Sink(res, ctx), undefined)
  })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.pause()
    if (head.length > 0) socket.unshift(head)
    handle(ctx, req, new RawSocketSink(socket), String(req.headers.upgrade))
  })
  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.pause()
    const authority = req.url ?? ''
    if (!/^[^\s/]+:\d+$/.test(authority)) {
      socket.end(statusLine(400, { [MeshHeader.proxyError]: ProxyErrors.malformedRequest.reason, 'content-length': '0', connection: 'close' }))
      return
    }
    const refuse = (why: ProxyErrorReason, detail: string): void => {
      const body = `${why.reason}: ${detail}\n${why.hint}\n`
      socket.end(statusLine(why.status, { [MeshHeader.proxyError]: why.reason, 'content-length': String(Buffer.byteLength(body)), connection: 'close' }) + body)
    }
    const open = (service: Service | undefined): void => {
      if (socket.destroyed) return
      if (service === undefined) return refuse(ProxyErrors.unknownAuthority, authority)
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) socket.unshift(head)
      ctx.tunnels.open(socket, authority)
    }
    const found = ctx.resolver.resolve(authority)
    if (found instanceof Promise) found.then(open, (err: Error) => { if (!socket.destroyed) refuse(ProxyErrors.discoveryUnavailable, `${authority}: ${err.message}`) })
    else open(found)
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || err.code === 'ECONNRESET') { socket.destroy(); return }
    const body = `${ProxyErrors.malformedRequest.reason}: ${err.code ?? err.message}\n${ProxyErrors.malformedRequest.hint}\n`
    socket.end(statusLine(400, { [MeshHeader.proxyError]: ProxyErrors.malformedRequest.reason, 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)), connection: 'close' }) + body)
  })
  return server
}

function handle (ctx: ProxyContext, req: IncomingMessage, sink: ResponseSink, upgrade: string | undefined): void {
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
    authority = req.headers.host ?? ctx.tunnels.authorityOf(req.socket)
  }
  const method = req.method ?? 'GET'
  const record = ctx.begin('outbound', method, authority ?? '', path, 'HTTP/1.1', sink)
  if (authority === undefined || authority === '') {
    record.error = ProxyErrors.malformedRequest.reason
    respondError(sink, ProxyErrors.malformedRequest, { grpc: false, detail: url.startsWith('https://') ? 'https:// URLs go through CONNECT' : 'no Host header and no absolute URL' })
    req.resume()
    return
  }
  routeOutbound(ctx, fromHttp1(req, authority, path, record, upgrade), sink)
}
