// What every stage of the request path shares: config, table, connections, telemetry, drain state.
import type { Logger } from 'pino'
import type { ProxyConfig } from '../config/proxy-config.ts'
import type { EndpointTable, Resolver } from '../discovery/endpoint-table.ts'
import type { EndpointStates } from '../balancer/endpoint-state.ts'
import type { BalancerName } from '../mesh/policy.ts'
import type { BalancerPolicy } from '../balancer/policy.ts'
import type { ServiceStates } from '../outbound/service-state.ts'
import type { InboundLimits } from '../inbound/limits.ts'
import type { Tracing } from '../telemetry/tracing.ts'
import type { H2Sessions } from '../transport/h2-sessions.ts'
import type { Http1Origins } from '../http/origin-http1.ts'
import type { PeerHttp1 } from '../http/peer-http1.ts'
import type { AppProtocols } from '../inbound/app-protocol.ts'
import type { Tunnels } from '../outbound/tunnel.ts'
import { AccessRecord, type Direction } from '../telemetry/access-log.ts'
import type { ProxyMetrics } from '../telemetry/metrics.ts'
import type { ResponseSink } from '../http/response-sink.ts'
import type { InboundContext } from '../inbound/context.ts'
import type { OutboundContext } from '../outbound/context.ts'
import type { Destinations } from '../transport/destinations.ts'
import type { SecureContext } from 'node:tls'

export class ProxyContext implements InboundContext, OutboundContext {
  readonly config: ProxyConfig
  readonly log: Logger
  readonly metrics: ProxyMetrics
  readonly table: EndpointTable
  /** Authority → service; with the control plane, possibly after asking it. */
  readonly resolver: Resolver
  readonly endpoints: EndpointStates
  readonly policies: Readonly<Record<BalancerName, BalancerPolicy>>
  readonly services: ServiceStates
  readonly inboundLimits: InboundLimits
  readonly tracing: Tracing
  /** One h2 connection per peer sidecar: HTTP/2 and gRPC, upgrades, requests with trailers. */
  readonly peers: H2Sessions
  /** Pools of HTTP/1.1 connections per peer sidecar: requests from HTTP/1.1 apps. */
  readonly peerH1: PeerHttp1
  /** One h2 connection per local h2 app port. */
  readonly appH2: H2Sessions
  readonly appH1: Http1Origins
  /** HTTP/1.1 to destinations outside the mesh (allow-any), by DNS. */
  readonly egressH1: Http1Origins
  readonly egressH2: H2Sessions
  /** What each `auto` app port speaks, detected once and remembered. */
  readonly appProtocols: AppProtocols
  readonly tunnels: Tunnels
  readonly destinations: Destinations
  readonly peerTls: (() => SecureContext | undefined) | undefined
  draining = false
  inflight = 0
  /** Requests begun and opaque TCP reads relayed, since start: idle compaction tells quiet from busy by it. */
  events = 0
  /** An opaque TCP flow moved bytes: no request record counts them. */
  readonly relayed = (): void => { this.events++ }
  readonly #drained: Array<() => void> = []

  constructor (init: Omit<ProxyContext, 'draining' | 'inflight' | 'events' | 'relayed' | 'begin' | 'whenIdle'>) {
    this.config = init.config
    this.log = init.log
    this.metrics = init.metrics
    this.table = init.table
    this.resolver = init.resolver
    this.endpoints = init.endpoints
    this.policies = init.policies
    this.services = init.services
    this.inboundLimits = init.inboundLimits
    this.tracing = init.tracing
    this.peers = init.peers
    this.peerH1 = init.peerH1
    this.appH2 = init.appH2
    this.appH1 = init.appH1
    this.egressH1 = init.egressH1
    this.egressH2 = init.egressH2
    this.appProtocols = init.appProtocols
    this.tunnels = init.tunnels
    this.destinations = init.destinations
    this.peerTls = init.peerTls
  }

  /** Starts the access record of one request; it ends (log line, metrics) when the caller's stream closes. */
  begin (direction: Direction, method: string, authority: string, path: string, proto: string, sink: ResponseSink): AccessRecord {
    const record = new AccessRecord(direction, method, authority, path, proto)
    this.inflight++
    this.events++
    this.metrics.inflight.inc({ direction })
    sink.onClose((completed) => {
      record.status = sink.status
      // What the caller was sent, the proxy's own answers included (a trailers-only gRPC error).
      if (sink.grpcStatus !== undefined) record.grpcStatus = sink.grpcStatus
      record.end(this.config.accessLog ? this.log : undefined, this.metrics, completed)
      if (--this.inflight === 0) for (const f of this.#drained.splice(0)) f()
    })
    return record
  }

  whenIdle (): Promise<void> {
    return this.inflight === 0 ? Promise.resolve() : new Promise((resolve) => this.#drained.push(resolve))
  }
}
