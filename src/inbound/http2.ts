// Inbound HTTP/2: streams from peer sidecars (with the target port and original protocol in-band)
// and from non-meshed h2c clients.
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2'
import { ProxyErrors } from '../errors.ts'
import { first, forwardable, isGrpc, MeshHeader } from '../http/headers.ts'
import { H2Sink, respondError } from '../http/response-sink.ts'
import { fromHttp2 } from '../http/exchange.ts'
import type { ProxyContext } from '../proxy/context.ts'
import { H2_SETTINGS } from '../transport/h2-sessions.ts'
import { routeInbound } from './route.ts'

export function createInboundHttp2 (ctx: ProxyContext): http2.Http2Server {
  const server = http2.createServer({ settings: H2_SETTINGS, maxSessionMemory: 64 })
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
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
    routeInbound(ctx, fromHttp2(stream, headers, forwarded, authority, origProto, record, first(headers[MeshHeader.upgrade])), port, sink)
  })
  server.on('sessionError', (err) => ctx.log.debug({ err: err.message }, 'inbound h2 session error'))
  return server
}
