// Inbound routing: an exchange for one of this workload's app ports → the local app, in the
// protocol the app speaks (restoring HTTP/1.1 for requests that crossed the mesh as h2 streams).
import type { OutgoingHttpHeaders } from 'node:http2'
import { ProxyErrors, type ProxyErrorReason } from '../errors.ts'
import type { AppPort } from '../config/mesh-file.ts'
import type { Exchange } from '../http/exchange.ts'
import type { Headers } from '../http/headers.ts'
import { APP_REASONS, relayOverH2 } from '../http/relay-h2.ts'
import { respondError, type ResponseSink } from '../http/response-sink.ts'
import type { ProxyContext } from '../proxy/context.ts'
import { upgradeToApp } from './app-upgrade.ts'
import { countBytes } from '../http/count-bytes.ts'
import { endSpan, startServerSpan } from '../telemetry/spans.ts'
import { logIds } from '../telemetry/tracing.ts'
import { LogThrottle } from '../telemetry/throttle.ts'
import { MeshHeader } from '../http/headers.ts'
import { authorize } from './authorization.ts'

export function routeInbound (ctx: ProxyContext, ex: Exchange, port: number | undefined, sink: ResponseSink): void {
  const span = startServerSpan(ctx.tracing, ex, ex.peerAddress)
  if (span !== undefined) {
    ex.record.traceIds = logIds(span)
    sink.onClose(() => endSpan(span, 'server', sink.status, ex.record.grpcStatus, ex.record.error))
  }
  const appPort = port === undefined ? ctx.config.appPorts[0] : ctx.config.appPorts.find((p) => p.port === port)
  if (appPort === undefined) {
    refuse(ctx, ex, sink, ProxyErrors.targetPortRefused, port === undefined ? 'this workload declares no app ports' : `port ${port}`)
    return
  }
  const label = `:${appPort.port}`
  ex.record.metricAuthority = label
  ex.record.endpoint = `127.0.0.1:${appPort.port}`
  if (!admit(ctx, ex, appPort.port, sink)) return
  if (!ctx.inboundLimits.allow(appPort.port)) {
    shed(ctx, ex, sink, ProxyErrors.rateLimited, label, `${ctx.inboundLimits.policy.rateLimit?.requestsPerSecond ?? 0} requests/s on port ${appPort.port}`)
    return
  }
  const queued = ctx.inboundLimits.concurrency(appPort.port).acquire((release) => {
    sink.onClose(release)
    forward(ctx, ex, appPort, sink)
  })
  if (queued === false) {
    const { maxConcurrent, maxQueued } = ctx.inboundLimits.policy.limits
    shed(ctx, ex, sink, ProxyErrors.overloaded, label, `port ${appPort.port}: ${maxConcurrent} in flight and ${maxQueued} queued`)
    return
  }
  sink.onClose(queued)
}

const denials = new LogThrottle()

/** mTLS (strict ports) and authorization: who the caller is, and whether it may call this port. */
function admit (ctx: ProxyContext, ex: Exchange, port: number, sink: ResponseSink): boolean {
  const mtls = ctx.config.mtls
  if (mtls?.inbound === 'strict' && ex.mtls !== true) {
    ctx.metrics.tlsFailures.inc({ direction: 'inbound', reason: 'plaintext' })
    refuse(ctx, ex, sink, ProxyErrors.mtlsRequired, `port ${port} accepts only mTLS from mesh sidecars`)
    return false
  }
  const caller = ex.peerIdentity
  const decision = authorize(ctx.config.authorization, port, caller)
  if (!decision.allowed) {
    ctx.metrics.denied.inc({ port: String(port), rule: decision.rule })
    denials.run(`${caller ?? '-'} ${port} ${decision.rule}`, (suppressed) => ctx.log.warn({ caller: caller ?? 'unauthenticated', from: ex.peerAddress, port, rule: decision.rule, suppressed }, 'inbound request denied by authorization'))
    refuse(ctx, ex, sink, ProxyErrors.forbidden, `${caller ?? 'an unauthenticated caller'} may not call port ${port} (${decision.rule})`)
    return false
  }
  ctx.metrics.peerRequests.inc({ client_id: caller ?? 'unauthenticated', port: String(port) })
  // The app learns who called from the verified certificate only (whatever the caller sent was stripped).
  if (caller !== undefined) ex.headers[MeshHeader.clientId] = caller
  return true
}

function refuse (ctx: ProxyContext, ex: Exchange, sink: ResponseSink, reason: ProxyErrorReason, detail: string): void {
  ex.record.error = reason.reason
  respondError(sink, reason, { grpc: ex.grpc, detail })
  ex.body?.resume()
}

function shed (ctx: ProxyContext, ex: Exchange, sink: ResponseSink, reason: ProxyErrorReason, label: string, detail: string): void {
  ctx.metrics.shed.inc({ direction: 'inbound', authority: label, reason: reason.reason })
  refuse(ctx, ex, sink, reason, detail)
}

function forward (ctx: ProxyContext, ex: Exchange, appPort: AppPort, sink: ResponseSink): void {
  const headers: Headers = ex.headers
  if (ex.upgrade !== undefined) {
    upgradeToApp(appPort.port, ex, headers, sink, ctx.config.connectTimeout)
    return
  }
  const http1 = appPort.protocol === 'http1' || (appPort.protocol === 'auto' && ex.origProto === 'HTTP/1.1')
  if (http1) {
    ctx.appH1.forward(appPort.port, ex, headers, sink)
    return
  }
  const h2headers: OutgoingHttpHeaders = {
    ...headers,
    ':method': ex.method,
    ':path': ex.path,
    ':authority': ex.authority,
    ':scheme': 'http',
  }
  if (ex.body !== null) countBytes(ex.body, (n) => { ex.record.bytesIn += n })
  relayOverH2(ctx.appH2.get({ host: '127.0.0.1', port: appPort.port }), h2headers, ex, ex.body, sink, APP_REASONS)
}
