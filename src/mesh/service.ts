// The mesh's vocabulary of routing: a service (by its authorities) and its endpoints (peer sidecars).
import { authorityOf, type HostPort } from './host-port.ts'
import type { ServicePolicy } from './policy.ts'

/**
 * What the app behind a port speaks. `auto`: whatever the client spoke (HTTP/1.1 or HTTP/2), found by
 * detection; `opaque`: bytes carried as they are, never detected (databases, brokers, TLS).
 */
export type AppProtocol = 'auto' | 'http1' | 'http2' | 'grpc' | 'opaque'

export interface Endpoint {
  /** The peer sidecar's inbound listener. */
  readonly address: HostPort
  /** The app port on the peer workload; travels in-band as `remora-target-port`. */
  readonly targetPort: number
  readonly weight: number
  /** SPIFFE ID the peer must present (checked once mTLS lands). */
  readonly identity: string
  /** Stable key: address + target port. */
  readonly key: string
}

export interface Service {
  readonly name: string
  readonly namespace: string
  readonly port: number
  readonly protocol: AppProtocol
  /**
   * The service's one name, `name.namespace:port`: the key of the table, the catalog and every
   * per-service state, and the `authority` label of its metrics.
   */
  readonly key: string
  /** Every authority this service answers to: name:port, name.ns:port, name.ns.svc:port, FQDN:port. */
  readonly authorities: readonly string[]
  readonly endpoints: readonly Endpoint[]
  /** Balancing, timeouts, retries, circuit breaking, limits: defaults unless the source overrides. */
  readonly policy: ServicePolicy
}

export const CLUSTER_DOMAIN = 'cluster.local'

/** Its names with the port, then its virtual IPs (Kubernetes cluster IPs) with the port. */
export function authoritiesOf (name: string, namespace: string, port: number, addresses: readonly string[] = []): string[] {
  return [name, `${name}.${namespace}`, `${name}.${namespace}.svc`, `${name}.${namespace}.svc.${CLUSTER_DOMAIN}`, ...addresses]
    .map((h) => authorityOf(h, port))
}

/** An endpoint as a destination: its pod IP and app port (`10.1.2.3:8080`), how a redirected connection to that pod names it. */
export function endpointAuthority (e: Endpoint): string {
  return authorityOf(e.address.host, e.targetPort)
}

/** Endpoints whose address could be a destination: not loopback (local mode puts every sidecar there). */
export function addressable (e: Endpoint): boolean {
  const h = e.address.host
  return !(h.startsWith('127.') || h === '::1' || h === 'localhost')
}

/** The authorities of `s`'s pods (IP:port): a redirected connection to one of them finds `s`. */
export function podAuthorities (s: Service): string[] {
  return s.endpoints.filter(addressable).map(endpointAuthority)
}


/** `name.namespace:port`, the service's key (Service.key). */
export function serviceKeyOf (name: string, namespace: string, port: number): string {
  return `${name}.${namespace}:${port}`
}
