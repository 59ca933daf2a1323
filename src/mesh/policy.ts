// What a service's policy says (balancing, timeouts, retries, circuit breaking, limits) and an
// inbound port's: the vocabulary; the defaults and the mechanisms live in resilience/ and balancer/.

export type BalancerName = 'p2c-ewma' | 'least-request' | 'round-robin'

export const BALANCERS: readonly BalancerName[] = ['p2c-ewma', 'least-request', 'round-robin']

/**
 * What may be retried besides the always-safe failures (the request never reached the app:
 * connection refused, REFUSED_STREAM, GOAWAY before processing), which are retried for any method.
 */
export const RETRY_ON = ['5xx', 'gateway-error', 'reset', 'unavailable', 'resource-exhausted', 'internal', 'deadline-exceeded', 'cancelled'] as const

export type RetryOn = typeof RETRY_ON[number]

// A retry budget per service: retries may add at most `ratio` of the requests seen in the last
// window, plus `minPerSecond` — so retries never multiply an outage (Linkerd's and gRPC's idea).
export interface BudgetPolicy {
  readonly ratio: number
  readonly minPerSecond: number
}

export interface RetryPolicy {
  readonly on: readonly RetryOn[]
  /** Total attempts, the first included. */
  readonly attempts: number
  readonly budget: BudgetPolicy
  readonly backoffBaseMs: number
  readonly backoffMaxMs: number
  /** Request bodies up to this size are kept for replay; larger ones are never retried. */
  readonly maxReplayBytes: number
}

export interface CircuitPolicy {
  /** Consecutive failures that eject an endpoint. */
  readonly consecutiveFailures: number
  readonly baseEjectionMs: number
  readonly maxEjectionMs: number
  /** Never eject more than this share (0-100) of a service's endpoints. */
  readonly maxEjectedPercent: number
}

// A concurrency limit with a bounded FIFO queue: beyond both, requests fail fast instead of
// growing memory (load shedding).
export interface LimitPolicy {
  readonly maxConcurrent: number
  readonly maxQueued: number
}

// A local token-bucket rate limit (requests per second with a burst), per inbound port or caller.
export interface RatePolicy {
  readonly requestsPerSecond: number
  readonly burst: number
}

export interface ServicePolicy {
  readonly balancer: BalancerName
  /** Whole-request deadline across attempts; 0 = none (gRPC callers may still send grpc-timeout). */
  readonly requestTimeoutMs: number
  /** A stream with no bytes either way for this long is reset. */
  readonly idleTimeoutMs: number
  /** TCP connect to an endpoint's sidecar; 0 = the proxy-wide REMORA_CONNECT_TIMEOUT. */
  readonly connectTimeoutMs: number
  readonly retry: RetryPolicy
  readonly circuit: CircuitPolicy
  readonly limits: LimitPolicy
}

export interface InboundPolicy {
  readonly limits: LimitPolicy
  readonly rateLimit: RatePolicy | undefined
}
