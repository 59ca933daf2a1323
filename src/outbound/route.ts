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
import { egress } from './egress.ts'

/** `redirectedTo`: the original destination of a redirected connection, used when the Host finds no service. */
export function routeOutbound (ctx: OutboundContext, ex: Exchange, sink: ResponseSink, redirectedTo?: string): void {
  // The request's span covers all of it, refusals included: it ends with what the app got.
  const span = RequestSpan.start(ctx.tracing, ex)
  if (span !== undefined) {
    ex.record.traceIds = logIds(span.span)
    sink.onClose(() => span.end(sink.status, ex.record.grpcStatus, ex.record.error))
  }
  resolveService(ctx, ex, sink, () => egress(ctx, ex, sink), (service) => {
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
  }, redirectedTo)
}

/**
 * The exchange's authority → its service, then `use`; not in the mesh → `outside` (allow-any) or the
 * caller is refused (registry-only); discovery unavailable is refused too, with the reason on its
 * access record. `redirectedTo`: a redirected connection's original destination, tried when the
 * Host names no service (`localhost`, a bare IP). A caller gone meanwhile gets nothing.
 */
export function resolveService (ctx: OutboundContext, ex: Exchange, sink: ResponseSink, outside: () => void, use: (service: Service) => void, redirectedTo?: string): void {
  let gone = false
  sink.onClose(() => { gone = true })
  const route = (service: Service | undefined): void => {
    if (gone) return
    if (service === undefined) {
      if (ctx.config.outboundPolicy === 'allow-any') return outside()
      return refuse(ex, sink, ProxyErrors.unknownAuthority, ex.authority)
    }
    ex.record.metricAuthority = service.key
    use(service)
  }
  const unavailable = (err: Error): void => {
    if (!gone) refuse(ex, sink, ProxyErrors.discoveryUnavailable, `${ex.authority}: ${err.message}`)
  }
  const fallback = redirectedTo !== undefined && redirectedTo !== ex.authority ? redirectedTo : undefined
  // First request for an authority with the control plane: the body waits (paused) for the answer.
  lookup(ctx, ex.authority, (service) => {
    if (service !== undefined || fallback === undefined) route(service)
    else lookup(ctx, fallback, route, unavailable)
  }, unavailable)
}

function lookup (ctx: OutboundContext, authority: string, then: (s: Service | undefined) => void, failed: (err: Error) => void): void {
  const found = ctx.resolver.resolve(authority)
  if (found instanceof Promise) found.then(then, failed)
  else then(found)
}
