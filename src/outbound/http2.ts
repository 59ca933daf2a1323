// Outbound HTTP/2 from the app (h2c prior knowledge, gRPC, or h2 inside a CONNECT tunnel).
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import { ProxyErrors } from '../errors.ts'
import { forwardable, isGrpc } from '../http/headers.ts'
import { fromHttp2 } from '../http/exchange.ts'
import { H2Sink, respondError } from '../http/response-sink.ts'
import type { OutboundContext } from './context.ts'
import { createDownstreamH2Server } from '../transport/h2-server.ts'
import { routeOutbound } from './route.ts'
import { guardRequestBody } from '../http/body-rate.ts'

export function createOutboundHttp2 (ctx: OutboundContext): http2.Http2Server {
  const server = createDownstreamH2Server(ctx, 'outbound')
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    const sink = new H2Sink(stream)
    const method = headers[':method'] ?? 'GET'
    const path = headers[':path'] ?? '/'
    const dest = ctx.destinations.of(stream.session?.socket)
    const authority = headers[':authority'] ?? (headers.host as string | undefined) ?? dest?.authority ?? ''
    const record = ctx.begin('outbound', method, authority, path, 'HTTP/2', sink)
    const grpc = isGrpc(headers)
    if (authority === '' || method === 'CONNECT') {
      record.error = ProxyErrors.malformedRequest.reason
      respondError(sink, ProxyErrors.malformedRequest, { grpc, detail: method === 'CONNECT' ? 'HTTP/2 CONNECT is not supported' : 'no :authority' })
      stream.resume()
      return
    }
    const ex = fromHttp2(stream, headers, forwardable(headers, true), authority, 'HTTP/2', record)
    guardRequestBody(ctx, 'outbound', ex, sink)
    routeOutbound(ctx, ex, sink, dest?.via === 'redirect' ? dest.authority : undefined)
  })
  server.on('sessionError', (err) => ctx.log.debug({ err: err.message }, 'outbound h2 session error'))
  return server
}
