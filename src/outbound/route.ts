// Outbound routing: the authority the app asked for (Logical) → one endpoint (Endpoint) → its
// sidecar over the shared h2 connection, carrying the target port and original protocol in-band.
import type { OutgoingHttpHeaders } from 'node:http2'
import { ProxyErrors } from '../errors.ts'
import type { Exchange } from '../http/exchange.ts'
import { MeshHeader } from '../http/headers.ts'
import { PEER_REASONS, relayOverH2 } from '../http/relay-h2.ts'
import { respondError, type ResponseSink } from '../http/response-sink.ts'
import type { ProxyContext } from '../proxy/context.ts'

export function routeOutbound (ctx: ProxyContext, ex: Exchange, sink: ResponseSink): void {
  const record = ex.record
  const service = ctx.table.resolve(ex.authority)
  if (service === undefined) {
    record.error = ProxyErrors.unknownAuthority.reason
    respondError(sink, ProxyErrors.unknownAuthority, { grpc: ex.grpc, detail: ex.authority })
    ex.body?.resume()
    return
  }
  record.metricAuthority = service.authorities[1]
  const endpoint = ctx.balancer.pick(service)
  if (endpoint === undefined) {
    record.error = ProxyErrors.noEndpoints.reason
    respondError(sink, ProxyErrors.noEndpoints, { grpc: ex.grpc, detail: service.authorities[1] })
    ex.body?.resume()
    return
  }
  record.endpoint = endpoint.key
  const headers: OutgoingHttpHeaders = {
    ...ex.headers,
    ':method': ex.method,
    ':path': ex.path,
    ':authority': ex.authority,
    ':scheme': 'http',
    [MeshHeader.targetPort]: String(endpoint.targetPort),
  }
  if (ex.origProto === 'HTTP/1.1') headers[MeshHeader.origProto] = 'HTTP/1.1'
  if (ex.upgrade !== undefined) headers[MeshHeader.upgrade] = ex.upgrade
  relayOverH2(ctx.peers.get(endpoint.address), headers, ex, sink, PEER_REASONS)
}
