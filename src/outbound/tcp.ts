// Outbound opaque TCP: a connection that is no HTTP goes to its destination's service — per
// connection to one endpoint's sidecar over mTLS (ALPN remora-tcp/1 + transport header) — or, not
// in the mesh, straight to where it was going (allow-any) or nowhere (registry-only).
import net, { type Socket } from 'node:net'
import tls from 'node:tls'
import type { Duplex } from 'node:stream'
import type { Endpoint, Service } from '../mesh/service.ts'
import { endpointAuthority } from '../mesh/service.ts'
import type { Destination } from '../transport/destinations.ts'
import type { OpaqueCause } from '../transport/listener.ts'
import { encodeTcpHeader, TCP_ALPN } from '../transport/tcp-header.ts'
import { pipeTcp } from '../transport/tcp-pipe.ts'
import { whenUp } from '../transport/dial.ts'
import { peerIdentityCheck } from '../transport/h2-sessions.ts'
import { TcpRecord } from '../telemetry/tcp-record.ts'
import { sniOf } from '../transport/client-hello.ts'
import type { OutboundContext } from './context.ts'
import { parseHostPort } from '../parse/host-port.ts'

/** How many endpoints a connection tries before it gives up (each failed connect tries another). */
const MAX_CONNECT_TRIES = 3

export function carryOutbound (ctx: OutboundContext, socket: Socket, cause: OpaqueCause, dest: Destination): void {
  const record = new TcpRecord('outbound', dest.authority, cause.kind)
  if (cause.kind === 'tls') record.sni = cause.sni
  socket.pause()
  // Carried without detection (egress, opaque ports, tunnels): the first bytes still name a TLS server.
  if (cause.kind !== 'tls') socket.once('data', (chunk: Buffer) => { if (chunk[0] === 0x16) record.sni = sniOf(chunk) })
  let gone = false
  // Until bytes flow, the app closing (or being refused) ends the record; then pipeTcp does.
  const onGone = (): void => {
    gone = true
    record.end(ctx.config.accessLog ? ctx.log : undefined, ctx.metrics, 0, 0)
  }
  socket.once('close', onGone)
  record.detach = () => socket.off('close', onGone)
  const route = (service: Service | undefined, discoveryError?: string): void => {
    if (gone) return
    if (service !== undefined) { toService(ctx, socket, record, service, dest); return }
    if (ctx.config.outboundPolicy === 'registry-only') {
      record.route = 'refused'
      record.error = `registry-only: ${dest.authority} is not in the mesh${discoveryError === undefined ? '' : ` (${discoveryError})`}`
      ctx.log.debug({ destination: dest.authority }, 'outbound connection refused: not in the mesh and REMORA_OUTBOUND_POLICY=registry-only')
      socket.resetAndDestroy()
      return
    }
    passThrough(ctx, socket, record, dest)
  }
  let found
  try { found = ctx.resolver.resolve(dest.authority) } catch (err) { route(undefined, (err as Error).message); return }
  if (found instanceof Promise) found.then((s) => route(s), (err: Error) => route(undefined, err.message))
  else route(found)
}

/** Not in the mesh (allow-any): to the original destination, or the CONNECT authority by DNS, untouched. */
function passThrough (ctx: OutboundContext, socket: Socket, record: TcpRecord, dest: Destination): void {
  record.route = 'passthrough'
  record.metricAuthority = 'passthrough'
  record.endpoint = dest.authority
  let target = dest.address
  if (target === undefined) {
    try { target = parseHostPort(dest.authority) } catch (err) {
      record.error = (err as Error).message
      socket.resetAndDestroy()
      return
    }
  }
  const upstream = net.connect({ host: target.host, port: target.port, noDelay: true, allowHalfOpen: true, timeout: ctx.config.connectTimeout })
  connectThen(ctx, socket, upstream, record, 'connect', undefined, () => {})
}

function toService (ctx: OutboundContext, socket: Socket, record: TcpRecord, service: Service, dest: Destination, tried = new Set<string>()): void {
  record.route = 'mesh'
  record.metricAuthority = service.key
  const endpoint = pick(ctx, service, dest, tried)
  if (endpoint === undefined) {
    record.error = tried.size === 0 ? `no endpoints: ${service.key}` : `${record.error ?? 'connect failed'} (tried ${tried.size})`
    socket.resetAndDestroy()
    return
  }
  tried.add(endpoint.key)
  record.endpoint = endpoint.key
  record.peer = endpoint.identity
  const timeout = service.policy.connectTimeoutMs > 0 ? service.policy.connectTimeoutMs : ctx.config.connectTimeout
  const { host, port } = endpoint.address
  const tlsContext = ctx.peerTls
  const upstream: Duplex & { setTimeout: Socket['setTimeout'] } = tlsContext === undefined
    ? net.connect({ host, port, noDelay: true, allowHalfOpen: true, timeout })
    : tls.connect({ host, port, timeout, secureContext: tlsContext(), minVersion: 'TLSv1.3', ALPNProtocols: [TCP_ALPN], servername: '', checkServerIdentity: peerIdentityCheck(endpoint.identity), allowHalfOpen: true } as tls.ConnectionOptions)
  const state = ctx.endpoints.get(endpoint)
  state.inflight++
  upstream.once('close', () => { state.inflight-- })
  const started = performance.now()
  const observe = (outcome: 'success' | 'failure'): void => { ctx.endpoints.record(endpoint, service.endpoints, outcome, performance.now() - started, Date.now(), service.policy.circuit) }
  connectThen(ctx, socket, upstream, record, tlsContext === undefined ? 'connect' : 'secureConnect', endpoint.targetPort, () => observe('success'), (err) => {
    // Nothing relayed yet: another endpoint may do (balanced per connection, as for HTTP).
    observe('failure')
    record.error = err
    if (tried.size < MAX_CONNECT_TRIES && !socket.destroyed) toService(ctx, socket, record, service, dest, tried)
    else { record.error = `${err} (tried ${tried.size})`; socket.resetAndDestroy() }
  })
}

function pick (ctx: OutboundContext, service: Service, dest: Destination, tried: ReadonlySet<string>): Endpoint | undefined {
  // A connection to one pod's IP goes to that pod, not to any of its service.
  const pinned = service.endpoints.find((e) => endpointAuthority(e) === dest.authority)
  if (pinned !== undefined) return tried.has(pinned.key) ? undefined : pinned
  const live = service.endpoints.filter((e) => e.weight > 0 && !tried.has(e.key))
  if (live.length === 0) return undefined
  const available = ctx.endpoints.available(live, Date.now())
  return ctx.policies[service.policy.balancer].pick(service.key, available.length > 0 ? available : live, tried)
}

/**
 * Once `upstream` is connected (and, to a peer, the transport header written), bytes flow both
 * ways; a failure before that goes to `retry` (or ends the app's connection).
 */
function connectThen (ctx: OutboundContext, socket: Socket, upstream: Duplex & { setTimeout: Socket['setTimeout'] }, record: TcpRecord, event: 'connect' | 'secureConnect', targetPort: number | undefined, onConnected: () => void, retry?: (err: string) => void): void {
  const failed = (why: string): void => {
    if (retry !== undefined) { retry(why); return }
    record.error = why
    socket.resetAndDestroy()
  }
  whenUp(socket, upstream, event, () => {
    if (event === 'secureConnect' && (upstream as tls.TLSSocket).alpnProtocol !== TCP_ALPN) {
      upstream.destroy()
      failed(`peer did not accept ALPN ${TCP_ALPN}`)
      return
    }
    onConnected()
    if (targetPort !== undefined) upstream.write(encodeTcpHeader({ port: targetPort }))
    record.opened(ctx.metrics)
    record.detach()
    pipeTcp(socket, upstream, ctx.config.tcpIdleTimeout, (r) => {
      if (r.error !== undefined) record.error = r.error
      record.end(ctx.config.accessLog ? ctx.log : undefined, ctx.metrics, r.bytesUp, r.bytesDown)
    }, ctx.relayed)
    socket.resume()
  }, failed)
}
