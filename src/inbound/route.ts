// Inbound routing: an exchange for one of this workload's app ports → the local app, in the
// protocol the app speaks (restoring HTTP/1.1 for requests that crossed the mesh as h2 streams).
import type { OutgoingHttpHeaders } from 'node:http2'
import { ProxyErrors } from '../errors.ts'
import type { Exchange } from '../http/exchange.ts'
import type { Headers } from '../http/headers.ts'
import { APP_REASONS, relayOverH2 } from '../http/relay-h2.ts'
import { respondError, type ResponseSink } from '../http/response-sink.ts'
import type { ProxyContext } from '../proxy/context.ts'
import { upgradeToApp } from './app-upgrade.ts'

export function routeInbound (ctx: ProxyContext, ex: Exchange, port: number | undefined, sink: ResponseSink): void {
  const appPort = port === undefined ? ctx.config.appPorts[0] : ctx.config.appPorts.find((p) => p.port === port)
  if (appPort === undefined) {
    const reason = ProxyErrors.targetPortRefused
    ex.record.error = reason.reason
    respondError(sink, reason, { grpc: ex.grpc, detail: port === undefined ? 'this workload declares no app ports' : `port ${port}` })
    ex.body?.resume()
    return
  }
  ex.record.metricAuthority = `:${appPort.port}`
  ex.record.endpoint = `127.0.0.1:${appPort.port}`
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
  relayOverH2(ctx.appH2.get({ host: '127.0.0.1', port: appPort.port }), h2headers, ex, sink, APP_REASONS)
}
