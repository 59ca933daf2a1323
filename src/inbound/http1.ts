// Inbound HTTP/1.1 from clients outside the mesh: forwarded to the app port they were going to
// (a redirected connection's original port), else the app's default port.
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { ProxyErrors } from '../errors.ts'
import { MeshHeader } from '../http/headers.ts'
import { H1Sink, RawSocketSink, type ResponseSink } from '../http/response-sink.ts'
import { statusLine } from '../http/status-line.ts'
import type { InboundContext } from './context.ts'
import { fromHttp1 } from '../http/exchange.ts'
import { routeInbound } from './route.ts'

export function createInboundHttp1 (ctx: InboundContext): http.Server {
  const server = http.createServer({ keepAliveTimeout: 65_000, headersTimeout: 60_000, requestTimeout: 0 })
  server.on('request', (req: IncomingMessage, res: ServerResponse) => handle(ctx, req, new H1Sink(res, ctx), undefined))
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.pause()
    if (head.length > 0) socket.unshift(head)
    handle(ctx, req, new RawSocketSink(socket), String(req.headers.upgrade))
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (!socket.writable || err.code === 'ECONNRESET') { socket.destroy(); return }
    socket.end(statusLine(400, { [MeshHeader.proxyError]: ProxyErrors.malformedRequest.reason, 'content-length': '0', connection: 'close' }))
  })
  return server
}

function handle (ctx: InboundContext, req: IncomingMessage, sink: ResponseSink, upgrade: string | undefined): void {
  const method = req.method ?? 'GET'
  const authority = req.headers.host ?? ''
  const path = req.url ?? '/'
  const record = ctx.begin('inbound', method, authority, path, 'HTTP/1.1', sink)
  routeInbound(ctx, fromHttp1(req, authority, path, record, upgrade), ctx.destinations.of(req.socket)?.port, sink)
}
