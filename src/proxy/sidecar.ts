// `remora proxy`: wires the listeners, endpoint table and connections together; drains on SIGTERM.
import type http from 'node:http'
import { networkInterfaces } from 'node:os'
import type http2 from 'node:http2'
import type { Logger } from 'pino'
import type { Environment } from '../config/env.ts'
import type { HostPort } from '../mesh/host-port.ts'
import type { Service } from '../mesh/service.ts'
import { resourceAttributes, Tracing } from '../telemetry/tracing.ts'
import { RemoraError } from '../errors.ts'
import type { ProxyConfig } from '../config/proxy-config.ts'
import { createAdminServer } from '../admin/server.ts'
import { EndpointStates } from '../balancer/endpoint-state.ts'
import { createPolicies } from '../balancer/policy.ts'
import { ServiceStates } from '../outbound/service-state.ts'
import { InboundLimits } from '../inbound/limits.ts'
import { EndpointTable } from '../discovery/endpoint-table.ts'
import { DiscoveryClient } from '../discovery/control-client.ts'
import { Http1Origins } from '../http/origin-http1.ts'
import { PeerHttp1 } from '../http/peer-http1.ts'
import { AppProtocols } from '../inbound/app-protocol.ts'
import { createInboundHttp1, peerConnectionsClosed } from '../inbound/http1.ts'
import { createInboundHttp2, createInboundMtls, serverTls } from '../inbound/http2.ts'
import { acceptOpaque } from '../inbound/tcp.ts'
import { AppProber } from '../inbound/app-probe.ts'
import { carryOutbound } from '../outbound/tcp.ts'
import { Destinations } from '../transport/destinations.ts'
import { originalDstLookup } from '../transport/original-dst.ts'
import { WorkloadIdentity } from '../identity/workload-identity.ts'
import { createOutboundHttp1 } from '../outbound/http1.ts'
import { createOutboundHttp2 } from '../outbound/http2.ts'
import { Tunnels } from '../outbound/tunnel.ts'
import { ProxyMetrics } from '../telemetry/metrics.ts'
import { H2Sessions } from '../transport/h2-sessions.ts'
import type { TlsReason } from '../transport/tls-errors.ts'
import { SniffingListener, type OpaqueKind } from '../transport/listener.ts'
import { ProxyContext } from './context.ts'
import { compactWhenIdle } from './idle-compaction.ts'

export interface Sidecar {
  readonly ctx: ProxyContext
  readonly addresses: { readonly outbound: HostPort, readonly inbound: HostPort, readonly admin: HostPort }
  /** Stop accepting, let in-flight work finish (up to the grace period), then close everything. */
  shutdown (why: string): Promise<void>
  /** Settles once the sidecar has stopped, whoever asked (signal, admin /shutdown). */
  readonly stopped: Promise<void>
}

export async function startSidecar (config: ProxyConfig, log: Logger, env: Environment = process.env): Promise<Sidecar> {
  const metrics = new ProxyMetrics()
  const tracing = await Tracing.start({ serviceName: config.workload ?? 'remora-proxy', resource: resourceAttributes(config.placement), env, metrics, log })
  const table = new EndpointTable()
  const endpoints = new EndpointStates()
  const identity = config.mtls !== undefined && config.controlAddr !== undefined
    ? new WorkloadIdentity(config.mtls, config.controlAddr, config.workload, log, metrics)
    : undefined
  const discovery = config.controlAddr !== undefined
    ? new DiscoveryClient({ address: config.controlAddr, workload: config.workload, idleMs: config.discoveryIdle, timeoutMs: config.discoveryTimeout, connectTimeoutMs: config.connectTimeout, table, log, metrics, tls: identity === undefined ? undefined : () => identity.controlTls() })
    : undefined
  const destinations = new Destinations()
  const onPeerTlsFailure = (reason: TlsReason): void => { metrics.tlsFailures.inc({ direction: 'outbound', reason }) }
  const ctx = new ProxyContext({
    config,
    log,
    metrics,
    table,
    resolver: discovery ?? table,
    endpoints,
    policies: createPolicies(endpoints),
    services: new ServiceStates(),
    inboundLimits: new InboundLimits(config.inbound),
    tracing,
    peers: new H2Sessions(log, config.connectTimeout, identity === undefined ? undefined : () => identity.current?.context, onPeerTlsFailure),
    peerH1: new PeerHttp1(log, config.connectTimeout, identity === undefined ? undefined : { context: () => identity.current?.context, onTlsFailure: onPeerTlsFailure }),
    appH2: new H2Sessions(log, config.connectTimeout),
    appH1: new Http1Origins(config.connectTimeout, log),
    egressH1: new Http1Origins(config.connectTimeout, log),
    egressH2: new H2Sessions(log, config.connectTimeout),
    appProtocols: new AppProtocols(log, config.connectTimeout),
    tunnels: new Tunnels(destinations),
    destinations,
    peerTls: identity === undefined ? undefined : () => identity.current?.context,
  })
  table.on('update', (state) => {
    metrics.tableVersion.set(state.version)
    metrics.endpoints.reset()
    for (const s of state.services) metrics.endpoints.set({ authority: s.key }, s.endpoints.length)
    // Endpoints that left the table lose their health state; their in-flight requests finish.
    endpoints.retain(new Set(state.services.flatMap((s) => s.endpoints.map((e) => e.key))))
  })
  let listening = false
  let stopping: Promise<void> | undefined
  let markStopped: () => void = () => {}
  const stopped = new Promise<void>((resolve) => { markStopped = resolve })
  // The app's probes the injector rewrote to /app-health on the admin port (strict mTLS would refuse kubelet).
  const appProber = new AppProber(config.appProbes)
  const admin = createAdminServer({ registry: metrics.registry, config, endpoints: () => table.state }, {
    ready: () => {
      if (ctx.draining) return { ready: false, why: 'draining: shutting down' }
      if (identity !== undefined && identity.current === undefined) return { ready: false, why: `no workload certificate yet (asking the control plane at ${discovery?.source.slice('control:'.length) ?? '?'})` }
      if (discovery !== undefined && !discovery.synced) return { ready: false, why: `not connected to the control plane at ${discovery.source.slice('control:'.length)} yet` }
      if (!table.loaded) return { ready: false, why: 'endpoint table not loaded yet' }
      if (!listening) return { ready: false, why: 'listeners not bound yet' }
      return { ready: true, why: `ready: endpoint table version ${table.state.version} from ${table.state.source}` }
    },
    shutdown: () => { void shutdown('admin /shutdown') },
    appHealth: (name, userAgent) => appProber.run(name, userAgent),
  })

  const adminAddress = await listenAdmin(admin, config.adminAddr)
  // Loaded only in local mode (a pod's sidecar never reads a mesh file).
  const fileSource = discovery === undefined ? new (await import('../discovery/file-source.ts')).MeshFileSource(config.meshFile as string, log) : undefined
  await fileSource?.start(table)
  // With mTLS: the certificate first (the discovery connection and the inbound port present it).
  const creds = await identity?.start()
  discovery?.start()

  // Redirected connections (iptables, `remora init`) say where they were going; without the lookup only HTTP routes (by Host).
  const lookup = originalDstLookup()
  if (!lookup.available) log.warn({ why: lookup.why }, 'original destinations cannot be read: redirected connections route by Host / :authority only (HTTP); opaque TCP needs it')
  const listenerOptions = {
    originalDst: lookup.available ? lookup : undefined,
    destinations,
    detectTimeoutMs: config.detectTimeout,
    maxConnections: config.maxConnections,
  }
  const outH1 = createOutboundHttp1(ctx)
  const outH2 = createOutboundHttp2(ctx)
  const outbound = new SniffingListener('outbound', { http1: outH1, h2: outH2, opaque: (socket, cause, dest) => { if (dest !== undefined) carryOutbound(ctx, socket, cause, dest); else socket.destroy() } }, log, metrics, {
    ...listenerOptions,
    opaquePorts: new Set(config.opaquePorts),
    opaqueDestination: (dest) => opaqueDestination(ctx.resolver.resolve(dest.authority)),
  })
  const inH1 = createInboundHttp1(ctx)
  const inH2 = createInboundHttp2(ctx)
  const mtls = creds === undefined ? undefined : createInboundMtls(ctx, creds)
  // New handshakes get the renewed certificate; connections already open keep theirs until they close.
  identity?.on('rotated', (c) => mtls?.tls.setSecureContext(serverTls(c)))
  const inbound = new SniffingListener('inbound', { http1: inH1, h2: inH2, tls: mtls?.tls, opaque: (socket, cause, dest) => acceptOpaque(ctx, socket, cause, dest) }, log, metrics, {
    ...listenerOptions,
    // The app's own opaque ports and the server-first ones: a non-meshed client's connection is not held for detection.
    opaquePorts: new Set([...config.opaquePorts, ...config.appPorts.filter((p) => p.protocol === 'opaque').map((p) => p.port)]),
  })
  const h2Sessions = trackSessions([outH2, inH2, ...(mtls === undefined ? [] : [mtls.h2])])

  const addresses = {
    outbound: await outbound.listen(config.outboundAddr),
    inbound: await inbound.listen(config.inboundAddr),
    admin: adminAddress,
  }
  ctx.tunnels.bind(addresses.outbound)
  // `remora init` redirects IPv6 too (to ::1 and the pod's IPv6 address): the IPv4 defaults get an IPv6 twin.
  const twins = await Promise.all([bindTwin(outbound, addresses.outbound, log), bindTwin(inbound, addresses.inbound, log)])
  listening = true
  log.info({ workload: config.workload, identity: config.identity, ...addresses, ipv6: twins.filter((a) => a !== undefined), appPorts: config.appPorts.map((p) => p.port), services: table.state.services.length }, 'sidecar ready')
  // Ask each `auto` app port now, so the first request rarely waits; an app not up yet is asked on its
  // first request. Never a server-first port: an HTTP/2 preface there counts as a bad client (MySQL blocks the host).
  ctx.appProtocols.warm(config.appPorts.filter((p) => p.protocol === 'auto' && !config.opaquePorts.includes(p.port)).map((p) => p.port))
  const compaction = compactWhenIdle(() => ctx, log)

  function shutdown (why: string): Promise<void> {
    stopping ??= (async () => {
      ctx.draining = true
      compaction.stop()
      log.info({ why, inflight: ctx.inflight, graceMs: config.shutdownGrace }, 'draining: no new connections; in-flight requests may finish')
      outbound.stopAccepting()
      inbound.stopAccepting()
      // GOAWAY tells peers to open new streams elsewhere; streams already accepted finish here.
      for (const s of h2Sessions) s.close()
      // The app's idle connections to the outbound port close now; inbound HTTP/1.1 connections stay
      // open until the end, each answer saying `Connection: close` (peers' pools: see peerConnectionsClosed).
      outH1.closeIdleConnections()
      const grace = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), config.shutdownGrace).unref())
      const peersGone = Promise.all([inH1, ...(mtls === undefined ? [] : [mtls.h1])].map((s) => peerConnectionsClosed(s)))
      const result = await Promise.race([Promise.all([ctx.whenIdle(), peersGone]).then(() => 'idle' as const), grace])
      if (result === 'timeout') log.warn({ inflight: ctx.inflight }, 'grace period over; closing requests still in flight')
      await fileSource?.stop()
      discovery?.stop()
      identity?.stop()
      // Every upstream connection pool: closed gently for a second, then destroyed.
      const pools = [ctx.peers, ctx.peerH1, ctx.appH2, ctx.appH1, ctx.egressH1, ctx.egressH2]
      await Promise.race([Promise.all(pools.map((p) => p.close())), new Promise((resolve) => setTimeout(resolve, 1000).unref())])
      for (const p of pools) p.destroy()
      await Promise.race([tracing.shutdown(), new Promise((resolve) => setTimeout(resolve, 2000).unref())])
      outbound.destroyAll()
      inbound.destroyAll()
      admin.close()
      admin.closeAllConnections()
      log.info({ why }, 'sidecar stopped')
      markStopped()
    })()
    return stopping
  }

  return { ctx, addresses, shutdown, stopped }
}

/**
 * A redirected destination that skips detection: a service declared opaque, or no service at all
 * (egress: passed through or refused as the bytes come). Unresolvable (discovery down): detected.
 */
function opaqueDestination (found: Service | undefined | Promise<Service | undefined>): OpaqueKind | undefined | Promise<OpaqueKind | undefined> {
  const kind = (s: Service | undefined): OpaqueKind | undefined => s === undefined ? 'egress' : s.protocol === 'opaque' ? 'service' : undefined
  if (found instanceof Promise) return found.then(kind, () => undefined)
  return kind(found)
}

/**
 * The IPv6 twin of an IPv4 loopback or wildcard listener (::1, or :: for IPv6 only), when this
 * host has IPv6; not binding it only costs IPv6 clients, so it is a warning, not a stop.
 */
async function bindTwin (listener: SniffingListener, bound: HostPort, log: Logger): Promise<HostPort | undefined> {
  const twin = bound.host === '127.0.0.1' ? '::1' : bound.host === '0.0.0.0' ? '::' : undefined
  if (twin === undefined || !hasIpv6()) return undefined
  try {
    return await listener.listen({ host: twin, port: bound.port })
  } catch (err) {
    log.warn({ listener: listener.name, err: (err as Error).message }, 'no IPv6 twin for this listener: IPv6 clients (redirected or not) cannot reach it')
    return undefined
  }
}

function hasIpv6 (): boolean {
  return Object.values(networkInterfaces()).some((list) => list?.some((a) => a.family === 'IPv6') === true)
}

function trackSessions (servers: Array<http2.Http2Server | http2.Http2SecureServer>): Set<http2.ServerHttp2Session> {
  const sessions = new Set<http2.ServerHttp2Session>()
  for (const server of servers) {
    server.on('session', (s: http2.ServerHttp2Session) => {
      sessions.add(s)
      s.once('close', () => sessions.delete(s))
    })
  }
  return sessions
}

function listenAdmin (server: http.Server, addr: HostPort): Promise<HostPort> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new RemoraError('REMORA_LISTEN', `admin listener cannot bind ${addr.host}:${addr.port}: ${err.code ?? err.message}`)))
    server.listen(addr.port, addr.host, () => {
      const a = server.address() as { address: string, port: number }
      resolve({ host: a.address, port: a.port })
    })
  })
}
