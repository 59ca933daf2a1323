// The one error catalog: every error a user can see, with a stable code, a cause and what to do.

/** Reasons the proxy itself answers a request (sent as `remora-proxy-error`). */
export interface ProxyErrorReason {
  /** Value of the `remora-proxy-error` header: short, stable, lower case. */
  readonly reason: string
  readonly status: number
  /** gRPC status code for gRPC callers (they cannot read an HTTP error). */
  readonly grpcStatus: number
  /** One sentence a user can act on; becomes the plain-text body. */
  readonly hint: string
}

const reason = (r: ProxyErrorReason): ProxyErrorReason => Object.freeze(r)

// gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html)
export const GrpcStatus = Object.freeze({
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5,
  PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
})

export const ProxyErrors = Object.freeze({
  unknownAuthority: reason({
    reason: 'unknown authority', status: 503, grpcStatus: GrpcStatus.UNAVAILABLE,
    hint: 'No service in the endpoint table has this authority (name:port), and this workload allows only mesh destinations (REMORA_OUTBOUND_POLICY=registry-only). Check the Host / :authority and the mesh file or control plane, or allow destinations outside the mesh with allow-any.',
  }),
  discoveryUnavailable: reason({
    reason: 'discovery unavailable', status: 503, grpcStatus: GrpcStatus.UNAVAILABLE,
    hint: 'The control plane cannot be reached and this sidecar has not resolved this authority before. Check that remora control runs and REMORA_CONTROL_ADDR points at it; known services keep working meanwhile.',
  }),
  noEndpoints: reason({
    reason: 'no endpoints', status: 503, grpcStatus: GrpcStatus.UNAVAILABLE,
    hint: 'The service is known but has no endpoints right now. Check that its workloads are running and listed.',
  }),
  connectRefused: reason({
    reason: 'connect refused', status: 502, grpcStatus: GrpcStatus.UNAVAILABLE,
    hint: "The destination refused the connection, or (outside the mesh) its name or route was not found. In the mesh: check that the endpoint's sidecar is running and its inbound port is right.",
  }),
  connectTimeout: reason({
    reason: 'connect timeout', status: 504, grpcStatus: GrpcStatus.UNAVAILABLE,
    hint: 'The peer sidecar did not accept a connection in time. Check the network path to the endpoint.',
  }),
  peerIdentityMismatch: reason({
    reason: 'peer identity mismatch', status: 502, grpcStatus: GrpcStatus.UNAVAILABLE,
    hint: 'The peer sidecar presented a valid mesh certificate, but for another workload than the endpoint table expects for that address (a stale endpoint, or an impostor). The request was not sent; another endpoint may be tried.',
  }),
  peerTlsFailed: reason({
    reason: 'peer tls failed', status: 502, grpcStatus: GrpcStatus.UNAVAILABLE,
    hint: "The mTLS handshake with the peer sidecar failed (untrusted or expired certificate, protocol version). Check that both sidecars use the same control plane's CA; remora_tls_handshake_failures_total says why.",
  }),
  mtlsRequired: reason({
    reason: 'mtls required', status: 403, grpcStatus: GrpcStatus.PERMISSION_DENIED,
    hint: 'This port accepts only mutual TLS from mesh sidecars (REMORA_INBOUND_MTLS=strict). Call it through your own sidecar, or set the workload to permissive.',
  }),
  forbidden: reason({
    reason: 'forbidden', status: 403, grpcStatus: GrpcStatus.PERMISSION_DENIED,
    hint: "This workload's authorization policy does not allow the caller on this port. Check REMORA_AUTHZ_DEFAULT / REMORA_AUTHZ_ALLOW (or the mesh file's authorization) of the called workload.",
  }),
  upstreamReset: reason({
    reason: 'upstream reset', status: 502, grpcStatus: GrpcStatus.UNAVAILABLE,
    hint: 'The upstream closed or reset the stream before answering. Check the upstream logs; the request may be retried if it is idempotent.',
  }),
  appUnavailable: reason({
    reason: 'app unavailable', status: 503, grpcStatus: GrpcStatus.UNAVAILABLE,
    hint: 'The local app refused the connection on its port. Check that the app is running and listening on 127.0.0.1.',
  }),
  appReset: reason({
    reason: 'app reset', status: 502, grpcStatus: GrpcStatus.UNAVAILABLE,
    hint: 'The local app closed the connection before answering. Check the app logs.',
  }),
  timeout: reason({
    reason: 'timeout', status: 504, grpcStatus: GrpcStatus.DEADLINE_EXCEEDED,
    hint: "The upstream did not answer within the request timeout (the service's `timeout`, or the gRPC deadline). Raise it or look at why the upstream is slow.",
  }),
  overloaded: reason({
    reason: 'overloaded', status: 503, grpcStatus: GrpcStatus.RESOURCE_EXHAUSTED,
    hint: 'Too many requests in flight and the queue is full, so this one was shed at once. Retry later, or raise `limits` for the service or the inbound port.',
  }),
  rateLimited: reason({
    reason: 'rate limited', status: 429, grpcStatus: GrpcStatus.RESOURCE_EXHAUSTED,
    hint: "The inbound port's local rate limit is used up. Slow down, or raise `inbound.rateLimit` for the workload.",
  }),
  targetPortRefused: reason({
    reason: 'target port not allowed', status: 403, grpcStatus: GrpcStatus.PERMISSION_DENIED,
    hint: 'The request named an app port this workload does not declare. Check the workload ports in the mesh file.',
  }),
  bodyTimeout: reason({
    reason: 'request body timeout', status: 408, grpcStatus: GrpcStatus.DEADLINE_EXCEEDED,
    hint: 'The request body arrived too slowly: after REMORA_REQUEST_BODY_TIMEOUT it must keep coming at REMORA_REQUEST_BODY_MIN_RATE bytes/s. Send it faster, or raise those settings for slow uploads.',
  }),
  malformedRequest: reason({
    reason: 'malformed request', status: 400, grpcStatus: GrpcStatus.INTERNAL,
    hint: 'The request could not be parsed or carried as HTTP/2. Fix the named header or request line.',
  }),
})

/** Stable codes for errors that stop start-up or reject configuration. */
export type RemoraErrorCode =
  | 'REMORA_CONFIG_ENV'
  | 'REMORA_CONFIG_FLAG'
  | 'REMORA_MESH_FILE_READ'
  | 'REMORA_MESH_FILE_YAML'
  | 'REMORA_MESH_FILE_SCHEMA'
  | 'REMORA_MESH_FILE_REFERENCE'
  | 'REMORA_WORKLOAD_UNKNOWN'
  | 'REMORA_LISTEN'
  | 'REMORA_KUBE_CONFIG'
  | 'REMORA_CA'
  | 'REMORA_CERTIFICATE'
  | 'REMORA_ROLE_UNKNOWN'
  | 'REMORA_ROLE_UNAVAILABLE'
  | 'REMORA_CONFIG_ANNOTATION'
  | 'REMORA_INIT_IPTABLES_MISSING'
  | 'REMORA_INIT_PERMISSION'
  | 'REMORA_INIT_RULE_REFUSED'
  | 'REMORA_INIT_IPTABLES'
  /** remora inject: the input cannot be read (file or stdin). */
  | 'REMORA_INJECT_READ'
  /** remora inject: the input is not YAML (file, line, column). */
  | 'REMORA_INJECT_YAML'
  /** remora inject: a remora.dev/* annotation is unknown, misplaced or has an invalid value (object, annotation). */
  | 'REMORA_INJECT_ANNOTATION'
  /** remora inject: a workload the sidecar cannot be added to as written (object, container, field). */
  | 'REMORA_INJECT_OBJECT'
  /** remora check: options that do not go together (--pre with --proxy, --pod without --namespace). */
  | 'REMORA_CHECK_USAGE'

export class RemoraError extends Error {
  readonly code: RemoraErrorCode
  constructor (code: RemoraErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'RemoraError'
    this.code = code
  }
}

// Errors the parts throw to each other, classified into a reason of the catalog where they surface.

/** No TCP connection within the connect timeout (classified as `connect timeout`). */
export class ConnectTimeoutError extends Error {
  readonly code = 'ETIMEDOUT'
  constructor (target: string, ms: number) { super(`no connection to ${target} within ${ms} ms`) }
}

/** The peer presented a valid certificate, but for another workload than the endpoint table expects. */
export class PeerIdentityMismatch extends Error {
  readonly code = 'REMORA_PEER_IDENTITY'
  constructor (expected: string, got: string) { super(`peer identity mismatch: expected ${expected}, the peer presented ${got}`) }
}

/** Thrown (as a rejection) when an authority cannot be resolved because the control plane is away. */
export class DiscoveryUnavailable extends Error {}

/** Thrown when a token proves nothing; the message says why (never the token). */
export class Unauthenticated extends Error {}

export type CsrRefusedReason = 'malformed' | 'bad-signature' | 'wrong-key' | 'identity-mismatch'

/** The CA will not sign this CSR. `reason` is stable (for metrics and the wire); the message says why. */
export class CsrRefused extends Error {
  readonly reason: CsrRefusedReason
  /** The identity the caller proved (and that a certificate would have carried). */
  readonly proven: string
  /** The names the CSR asked for (URI SANs first), when it could be read. */
  readonly requested: readonly string[]

  constructor (reason: CsrRefusedReason, message: string, proven: string, requested: readonly string[] = []) {
    super(`CSR refused (${reason}): ${message}`)
    this.name = 'CsrRefused'
    this.reason = reason
    this.proven = proven
    this.requested = Object.freeze([...requested])
  }
}
