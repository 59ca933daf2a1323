// What the outbound side needs of its sidecar: the table, balancing and per-service state, the
// connections to peers, tunnels and telemetry (proxy/context.ts provides it).
import type { Logger } from 'pino'
import type { EndpointStates } from '../balancer/endpoint-state.ts'
import type { BalancerPolicy } from '../balancer/policy.ts'
import type { Resolver } from '../discovery/endpoint-table.ts'
import type { RequestLog } from '../http/exchange.ts'
import type { BalancerName } from '../mesh/policy.ts'
import type { ProxyMetrics } from '../telemetry/metrics.ts'
import type { Tracing } from '../telemetry/tracing.ts'
import type { H2Sessions } from '../transport/h2-sessions.ts'
import type { ServiceStates } from './service-state.ts'
import type { Tunnels } from './tunnel.ts'
import type { ProxyConfig } from '../config/proxy-config.ts'
import type { Destinations } from '../transport/destinations.ts'
import type { SecureContext } from 'node:tls'
import type { Http1Origins } from '../http/origin-http1.ts'
import type { PeerHttp1 } from '../http/peer-http1.ts'

export interface OutboundContext extends RequestLog {
  readonly log: Logger
  readonly metrics: ProxyMetrics
  /** Authority → service; with the control plane, possibly after asking it. */
  readonly resolver: Resolver
  readonly endpoints: EndpointStates
  readonly policies: Readonly<Record<BalancerName, BalancerPolicy>>
  readonly services: ServiceStates
  readonly tracing: Tracing
  /** One h2 connection per peer sidecar: HTTP/2 and gRPC, upgrades, requests with trailers. */
  readonly peers: H2Sessions
  /** Pools of HTTP/1.1 connections per peer sidecar: requests from HTTP/1.1 apps. */
  readonly peerH1: PeerHttp1
  readonly tunnels: Tunnels
  readonly config: ProxyConfig
  /** Where each accepted connection was going (redirected, or a CONNECT tunnel's target). */
  readonly destinations: Destinations
  /** With mTLS: this sidecar's current TLS context for connections to peers; undefined: mTLS off. */
  readonly peerTls: (() => SecureContext | undefined) | undefined
  /** HTTP/1.1 to destinations outside the mesh (allow-any), by DNS. */
  readonly egressH1: Http1Origins
  /** HTTP/2 (h2c) to destinations outside the mesh, one connection each. */
  readonly egressH2: H2Sessions
  /** Told of every read on an opaque TCP flow (traffic that no request record counts). */
  readonly relayed: () => void
}
