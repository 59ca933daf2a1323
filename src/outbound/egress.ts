// Requests to an authority that is not in the mesh, sent as an HTTP proxy would (REMORA_OUTBOUND_POLICY
// allow-any): to the authority itself, found by DNS, in the protocol the app spoke; nothing is added.
import type { OutgoingHttpHeaders } from 'node:http2'
import { ProxyErrors } from '../errors.ts'
import type { Exchange } from '../http/exchange.ts'
import { relayOverH2 } from '../http/relay-h2.ts'
import type { ResponseSink } from '../http/response-sink.ts'
import type { RelayReasons } from '../http/upstream-errors.ts'
import { refuse } from '../http/refuse.ts'
import { countBytes } from '../http/count-bytes.ts'
import { parseHostPort } from '../parse/host-port.ts'
import type { OutboundContext } from './context.ts'

/** The destination is outside the mesh: its answers are its own (mesh headers from it are not trusted). */
export const EGRESS_REASONS: RelayReasons = { refused: ProxyErrors.connectRefused, reset: ProxyErrors.upstreamReset, trustMeshHeaders: false }

export function egress (ctx: OutboundContext, ex: Exchange, sink: ResponseSink): void {
  ex.record.metricAuthority = 'passthrough'
  ex.record.endpoint = ex.authority
  if (ex.upgrade !== undefined) {
    refuse(ex, sink, ProxyErrors.unknownAuthority, `${ex.authority} is not in the mesh, and an Upgrade is passed through only in a CONNECT tunnel (or redirected by iptables)`)
    return
  }
  if (ex.origProto === 'HTTP/1.1') {
    ctx.egressH1.forward(`http://${ex.authority}`, ex, ex.headers, sink, EGRESS_REASONS)
    return
  }
  // HTTP/2 (gRPC) with prior knowledge: the app spoke h2c, so the destination is asked the same way.
  let target
  try { target = parseHostPort(/:\d+$/.test(ex.authority) && !ex.authority.endsWith(']') ? ex.authority : `${ex.authority}:80`) } catch (err) {
    refuse(ex, sink, ProxyErrors.malformedRequest, `:authority ${ex.authority}: ${(err as Error).message}`)
    return
  }
  if (ex.body !== null) countBytes(ex.body, (n) => { ex.record.bytesIn += n })
  const headers: OutgoingHttpHeaders = { ...ex.headers, ':method': ex.method, ':path': ex.path, ':authority': ex.authority, ':scheme': 'http' }
  relayOverH2(ctx.egressH2.get(target), headers, ex, ex.body, sink, EGRESS_REASONS)
}
