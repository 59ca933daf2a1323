// Outbound routing, the Logical stage: the authority the app asked for → its service in the table
// → admission under the service's concurrency limit → a call across attempts (call.ts).
import { ProxyErrors } from '../errors.ts'
import type { Exchange } from '../http/exchange.ts'
import { respondError, type ResponseSink } from '../http/response-sink.ts'
import type { ProxyContext } from '../proxy/context.ts'
import { OutboundCall } from './call.ts'
import { refusedSpan } from '../telemetry/spans.ts'

export function routeOutbound (ctx: ProxyContext, ex: Exchange, sink: ResponseSink): void {
  const record = ex.record
  const service = ctx.table.resolve(ex.authority)
  if (service === undefined) {
    record.error = ProxyErrors.unknownAuthority.reason
    refusedSpan(ctx.tracing, ex, ProxyErrors.unknownAuthority.status, record.error)
    respondError(sink, ProxyErrors.unknownAuthority, { grpc: ex.grpc, detail: ex.authority })
    ex.body?.resume()
    return
  }
  const authority = service.authorities[1]
  record.metricAuthority = authority
  const state = ctx.services.get(service)
  const queued = state.limit.acquire((release) => {
    sink.onClose(release)
    new OutboundCall(ctx, ex, service, state, sink).start()
  })
  if (queued === false) {
    ctx.metrics.shed.inc({ direction: 'outbound', authority, reason: 'overloaded' })
    record.error = ProxyErrors.overloaded.reason
    refusedSpan(ctx.tracing, ex, ProxyErrors.overloaded.status, record.error)
    respondError(sink, ProxyErrors.overloaded, { grpc: ex.grpc, detail: `${authority}: ${state.policy.limits.maxConcurrent} in flight and ${state.policy.limits.maxQueued} queued` })
    ex.body?.resume()
    return
  }
  sink.onClose(queued)
}
