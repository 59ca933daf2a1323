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
import { acceptsUpgrade } from '../http/upgrades.ts'
import { headersTimedOut, headersTimeoutOptions, isHeadersTimeout, startHeadersTimeout } from '../http/header-timeout.ts'
import { afterLastAnswer, answerAfterPending, faultyFraming } from '../http/h1-framing.ts'
import { refuse } from '../http/refuse.ts'
import { guardRequestBody } from '../http/body-rate.ts'

export function createInboundHttp1 (ctx: InboundContext): http.Server {
  const server = http.createServer({ requireHostHeader: false, keepAliveTimeout: ctx.config.http1IdleTimeout, ...headersTimeoutOptions(ctx.config.requestHeadersTimeout), requestTimeout: 0 })
  startHeadersTimeout(server)
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!afterLastAnswer(req)) handle(ctx, req, new H1Sink(res, ctx), undefined, faultyFraming(req, res, true))
  })
  // Only the upgrades a user enabled, never h2c nor one with a body (http/upgrades.ts); any other
  // request with Upgrade is a plain one. (Set on the server: @types/node knows it as an option only.)
  Object.assign(server, { shouldUpgradeCallback: (req: IncomingMessage) => acceptsUpgrade(req, ctx.config.upgrades) })
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (afterLastAnswer(req)) { socket.end(() => socket.destroy()); return }
    const sink = new RawSocketSink(socket)
    sink.hold(head)
    handle(ctx, req, sink, String(req.headers.upgrade), faultyFraming(req, undefined, true))
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (isHeadersTimeout(err)) { headersTimedOut(socket, ctx.metrics, 'inbound'); return }
    if (!socket.writable || err.code === 'ECONNRESET') { socket.destroy(); return }
    answerAfterPending(socket, statusLine(400, { [MeshHeader.proxyError]: ProxyErrors.malformedRequest.reason, 'content-length': '0', connection: 'close' }))
  })
  return server
}

function handle (ctx: InboundContext, req: IncomingMessage, sink: ResponseSink, upgrade: string | undefined, faulty: string | undefined): void {
  const method = req.method ?? 'GET'
  const authority = req.headers.host ?? ''
  const path = req.url ?? '/'
  const record = ctx.begin('inbound', method, authority, path, 'HTTP/1.1', sink)
  const ex = fromHttp1(req, authority, path, record, upgrade)
  if (faulty !== undefined) { refuse(ex, sink, ProxyErrors.malformedRequest, faulty); return }
  guardRequestBody(ctx, 'inbound', ex, sink)
  routeInbound(ctx, ex, ctx.destinations.of(req.socket)?.port, sink)
}
