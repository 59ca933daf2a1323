// Outbound routing, the Logical stage: the authority the app asked for → its service in the table
// → admission under the service's concurrency limit → a call across attempts (call.ts). CONNECT
// tunnels resolve and are refused through the same path.
import { ProxyErrors } from '../errors.ts'
import type { Service } from '../mesh/service.ts'
import type { Exchange } from '../http/exchange.ts'
import type { ResponseSink } from '../http/response-sink.ts'
import { refuse } from '../http/refuse.ts'
import type { OutboundContext } from './context.ts'
import { OutboundCall } from './call.ts'
import { RequestSpan } from '../telemetry/spans.ts'
import { logIds } from '../telemetry/tracing.ts'

export function routeOutbound (ctx: OutboundContext, ex: Exchange, sink: ResponseSink): void {
  // The request's span covers all of it, refusals included: it ends with what the app got.
  const span = RequestSpan.start(ctx.tracing, ex)
  if (span !== undefined) {
    ex.record.traceIds = logIds(span.span)
    sink.onClose(() => span.end(sink.status, ex.record.grpcStatus, ex.record.error))
  }
  resolveService(ctx, ex, sink, (service) => {
    const authority = service.key
    const state = ctx.services.get(service)
    const queued = state.limit.acquire((release) => {
      sink.onClose(release)
      new OutboundCall(ctx, ex, service, state, sink, span).start()
    })
    if (queued === false) {
      ctx.metrics.shed.inc({ direction: 'outbound', authority, reason: 'overloaded' })
      refuse(ex, sink, ProxyErrors.overloaded, `${authority}: ${state.policy.limits.maxConcurrent} in flight and ${state.policy.limits.maxQueued} queued`)
      return
    }
    sink.onClose(queued)
  })
}

/**
 * The exchange's authority → its service, then `use`; or the caller is refused (unknown authority,
 * discovery unavailable) with the reason on its access record. A caller gone meanwhile gets nothing.
 */
export function resolveService (ctx: OutboundContext, ex: Exchange, sink: ResponseSink, use: (service: Service) => void): void {
  const found = ctx.resolver.resolve(ex.authority)
  const route = (service: Service | undefined): void => {
    if (service === undefined) return refuse(ex, sink, ProxyErrors.unknownAuthority, ex.authority)
    ex.record.metricAuthority = service.key
    use(service)
  }
  if (!(found instanceof Promise)) return route(found)
  // First request for this authority with the control plane: the body waits (paused) for the answer.
  let gone = false
  sink.onClose(() => { gone = true })
  found.then((service) => {
    if (!gone) route(service)
  }, (err: Error) => {
    if (!gone) refuse(ex, sink, ProxyErrors.discoveryUnavailable, `${ex.authority}: ${err.message}`)
  })
}
