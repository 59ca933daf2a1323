// Inbound routing: an exchange for one of this workload's app ports → the local app, in the
// protocol the app speaks (declared per port, or detected once per `auto` port: app-protocol.ts),
// whatever the caller spoke: h2 ↔ HTTP/1.1 are translated here.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2'
import type { Readable } from 'node:stream'
import { ProxyErrors, type ProxyErrorReason } from '../errors.ts'
import type { AppPort } from '../config/mesh-file.ts'
import type { Exchange } from '../http/exchange.ts'
import { APP_REASONS, classify } from '../http/upstream-errors.ts'
import { relayOverH2 } from '../http/relay-h2.ts'
import type { ResponseSink } from '../http/response-sink.ts'
import type { InboundContext } from './context.ts'
import { upgradeToApp } from './app-upgrade.ts'
import { countBytes } from '../http/count-bytes.ts'
import { endSpan, startServerSpan } from '../telemetry/spans.ts'
import { logIds } from '../telemetry/tracing.ts'
import { LogThrottle } from '../telemetry/throttle.ts'
import { MeshHeader } from '../http/headers.ts'
import { authorize } from './authorization.ts'
import type { AppWire } from './app-protocol.ts'
import { refuse } from '../http/refuse.ts'

export function routeInbound (ctx: InboundContext, ex: Exchange, port: number | undefined, sink: ResponseSink): void {
  const span = startServerSpan(ctx.tracing, ex, ex.peerAddress)
  if (span !== undefined) {
    ex.record.traceIds = logIds(span)
    sink.onClose(() => endSpan(span, 'server', sink.status, ex.record.grpcStatus, ex.record.error))
  }
  const appPort = port === undefined ? ctx.config.appPorts[0] : ctx.config.appPorts.find((p) => p.port === port)
  if (appPort === undefined) {
    refuse(ex, sink, ProxyErrors.targetPortRefused, port === undefined ? 'this workload declares no app ports' : `port ${port}`)
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
  const { maxConcurrent, maxQueued } = ctx.inboundLimits.policy.limits
  // Fair between callers (resilience/concurrency-limit.ts): a caller is its mesh identity, else its address.
  const source = ex.peerIdentity ?? ex.peerAddress ?? ''
  const queued = ctx.inboundLimits.concurrency(appPort.port).acquire((release) => {
    sink.onClose(release)
    forward(ctx, ex, appPort, sink)
  }, source, () => {
    shed(ctx, ex, sink, ProxyErrors.overloaded, label, `port ${appPort.port}: its queue place went to a caller with fewer requests waiting (${maxConcurrent} in flight, ${maxQueued} queued)`)
  })
  if (queued === false) {
    shed(ctx, ex, sink, ProxyErrors.overloaded, label, `port ${appPort.port}: ${maxConcurrent} in flight and ${maxQueued} queued`)
    return
  }
  sink.onClose(queued)
}

const denials = new LogThrottle()

/** mTLS (strict ports) and authorization: who the caller is, and whether it may call this port. */
function admit (ctx: InboundContext, ex: Exchange, port: number, sink: ResponseSink): boolean {
  const mtls = ctx.config.mtls
  if (mtls?.inbound === 'strict' && ex.mtls !== true) {
    ctx.metrics.tlsFailures.inc({ direction: 'inbound', reason: 'plaintext' })
    refuse(ex, sink, ProxyErrors.mtlsRequired, `port ${port} accepts only mTLS from mesh sidecars`)
    return false
  }
  const caller = ex.peerIdentity
  const decision = authorize(ctx.config.authorization, port, caller)
  if (!decision.allowed) {
    ctx.metrics.denied.inc({ port: String(port), rule: decision.rule })
    denials.run(`${caller ?? '-'} ${port} ${decision.rule}`, (suppressed) => ctx.log.warn({ caller: caller ?? 'unauthenticated', from: ex.peerAddress, port, rule: decision.rule, suppressed }, 'inbound request denied by authorization'))
    refuse(ex, sink, ProxyErrors.forbidden, `${caller ?? 'an unauthenticated caller'} may not call port ${port} (${decision.rule})`)
    return false
  }
  ctx.metrics.peerRequests.inc({ client_id: caller ?? 'unauthenticated', port: String(port) })
  // The app learns who called from the verified certificate only (whatever the caller sent was stripped).
  if (caller !== undefined) ex.headers[MeshHeader.clientId] = caller
  return true
}


function shed (ctx: InboundContext, ex: Exchange, sink: ResponseSink, reason: ProxyErrorReason, label: string, detail: string): void {
  ctx.metrics.shed.inc({ direction: 'inbound', authority: label, reason: reason.reason })
  refuse(ex, sink, reason, detail)
}

function forward (ctx: InboundContext, ex: Exchange, appPort: AppPort, sink: ResponseSink): void {
  if (ex.upgrade !== undefined) {
    upgradeToApp(appPort.port, ex, ex.headers, sink, ctx.config.connectTimeout)
    return
  }
  // A declared protocol is spoken as declared; `auto` speaks what the app was found to speak.
  if (appPort.protocol !== 'auto') {
    toApp(ctx, ex, appPort.port, appPort.protocol === 'http1' ? 'http1' : 'http2', false, sink)
    return
  }
  const known = ctx.appProtocols.known(appPort.port)
  if (known !== undefined) toApp(ctx, ex, appPort.port, known, true, sink)
  else whenDetected(ctx, ex, appPort.port, sink)
}

/** The first requests to an `auto` port wait for its one probe; their bodies wait unread meanwhile. */
function whenDetected (ctx: InboundContext, ex: Exchange, port: number, sink: ResponseSink): void {
  let gone = false
  sink.onClose(() => { gone = true })
  const release = holdTrailers(ex.body)
  ctx.appProtocols.detect(port).then((d) => {
    if (gone) return
    toApp(ctx, ex, port, d.protocol, true, sink)
    release()
  }, (err: NodeJS.ErrnoException) => {
    if (gone) return
    // The app could not be asked (refused, timed out): answered as a failed connection would be.
    refuse(ex, sink, classify(err, APP_REASONS), err.message)
  })
}

/**
 * An h2 caller's request trailers are announced ('trailers') when they arrive, read or not; while
 * the body waits for detection nobody listens yet. Keeps them, and announces them again once the
 * relay listens.
 */
function holdTrailers (body: Readable | null): () => void {
  if (body === null) return () => {}
  let held: IncomingHttpHeaders | undefined
  const keep = (trailers: IncomingHttpHeaders): void => { held = trailers }
  body.once('trailers', keep)
  return () => {
    body.off('trailers', keep)
    if (held !== undefined) body.emit('trailers', held)
  }
}

/**
 * To the app in `wire`, translating when the caller spoke the other protocol: HTTP/1.1 through the
 * undici pool, HTTP/2 as a stream on the port's one h2 connection. `detected`: `wire` came from
 * detection, so a connection that contradicts it makes the port forget it.
 */
function toApp (ctx: InboundContext, ex: Exchange, port: number, wire: AppWire, detected: boolean, sink: ResponseSink): void {
  if (wire === 'http1') {
    ctx.appH1.forward(`http://127.0.0.1:${port}`, ex, ex.headers, sink, APP_REASONS, detected ? (why) => ctx.appProtocols.forget(port, why) : undefined)
    return
  }
  const h2headers: OutgoingHttpHeaders = {
    ...ex.headers,
    ':method': ex.method,
    ':path': ex.path,
    ':authority': ex.authority,
    ':scheme': 'http',
  }
  if (ex.body !== null) countBytes(ex.body, (n) => { ex.record.bytesIn += n })
  const session = ctx.appH2.get({ host: '127.0.0.1', port })
  if (detected) ctx.appProtocols.watch(port, session)
  relayOverH2(session, h2headers, ex, ex.body, sink, APP_REASONS)
}
