// Outbound routing, the Logical stage: the authority the app asked for → its service in the table
// → admission under the service's concurrency limit → a call across attempts (call.ts).
import { ProxyErrors, type ProxyErrorReason } from '../errors.ts'
import type { Service } from '../discovery/service.ts'
import type { Exchange } from '../http/exchange.ts'
import { respondError, type ResponseSink } from '../http/response-sink.ts'
import type { ProxyContext } from '../proxy/context.ts'
import { OutboundCall } from './call.ts'
import { refusedSpan } from '../telemetry/spans.ts'

export function routeOutbound (ctx: ProxyContext, ex: Exchange, sink: ResponseSink): void {
  const found = ctx.resolver.resolve(ex.authority)
  if (!(found instanceof Promise)) return route(ctx, ex, sink, found)
  // First request for this authority with the control plane: the body waits (paused) for the answer.
  let gone = false
  sink.onClose(() => { gone = true })
  found.then((service) => {
    if (!gone) route(ctx, ex, sink, service)
  }, (err: Error) => {
    if (gone) return
    refuse(ctx, ex, sink, ProxyErrors.discoveryUnavailable, `${ex.authority}: ${err.message}`)
  })
}

function refuse (ctx: ProxyContext, ex: Exchange, sink: ResponseSink, why: ProxyErrorReason, detail: string): void {
  ex.record.error = why.reason
  refusedSpan(ctx.tracing, ex, why.status, why.reason)
  respondError(sink, why, { grpc: ex.grpc, detail })
  ex.body?.resume()
}

function route (ctx: ProxyContext, ex: Exchange, sink: ResponseSink, service: Service | undefined): void {
  const record = ex.record
  if (service === undefined) return refuse(ctx, ex, sink, ProxyErrors.unknownAuthority, ex.authority)
  const authority = service.authorities[1]
  record.metricAuthority = authority
  const state = ctx.services.get(service)
  const queued = state.limit.acquire((release) => {
    sink.onClose(release)
    new OutboundCall(ctx, ex, service, state, sink).start()
  })
  if (queued === false) {
    ctx.metrics.shed.inc({ direction: 'outbound', authority, reason: 'overloaded' })
    return refuse(ctx, ex, sink, ProxyErrors.overloaded, `${authority}: ${state.policy.limits.maxConcurrent} in flight and ${state.policy.limits.maxQueued} queued`)
  }
  sink.onClose(queued)
}
