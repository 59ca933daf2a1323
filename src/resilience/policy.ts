// Per-service and per-inbound-port resilience policy: safe defaults, overridable in the mesh file
// (and, with the control plane, in `remora.dev/*` Service annotations).
import type { BalancerName } from '../balancer/policy.ts'
import type { CircuitPolicy } from '../balancer/endpoint-state.ts'
import type { BudgetPolicy } from './retry-budget.ts'
import type { LimitPolicy } from './concurrency-limit.ts'
import type { RatePolicy } from './rate-limit.ts'

/**
 * What may be retried besides the always-safe failures (the request never reached the app:
 * connection refused, REFUSED_STREAM, GOAWAY before processing), which are retried for any method.
 */
export const RETRY_ON = ['5xx', 'gateway-error', 'reset', 'unavailable', 'resource-exhausted', 'internal', 'deadline-exceeded', 'cancelled'] as const
export type RetryOn = typeof RETRY_ON[number]

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

export const DEFAULT_SERVICE_POLICY: ServicePolicy = Object.freeze({
  balancer: 'p2c-ewma',
  requestTimeoutMs: 0,
  idleTimeoutMs: 300_000,
  connectTimeoutMs: 0,
  retry: Object.freeze({
    on: Object.freeze([]) as readonly RetryOn[],
    attempts: 3,
    budget: Object.freeze({ ratio: 0.2, minPerSecond: 10 }),
    backoffBaseMs: 25,
    backoffMaxMs: 250,
    maxReplayBytes: 64 * 1024,
  }),
  circuit: Object.freeze({ consecutiveFailures: 7, baseEjectionMs: 1000, maxEjectionMs: 60_000, maxEjectedPercent: 50 }),
  limits: Object.freeze({ maxConcurrent: 1024, maxQueued: 1024 }),
})

export const DEFAULT_INBOUND_POLICY: InboundPolicy = Object.freeze({
  limits: Object.freeze({ maxConcurrent: 1024, maxQueued: 1024 }),
  rateLimit: undefined,
})

/** RFC 9110 §9.2.2: methods whose repetition has the same effect as one request. */
export const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

const GRPC_CODES: Partial<Record<RetryOn, number>> = { cancelled: 1, 'deadline-exceeded': 4, 'resource-exhausted': 8, internal: 13, unavailable: 14 }

/** Would this response be retried under `on` (before the budget and attempt count are checked)? */
export function retriableResponse (on: readonly RetryOn[], method: string, grpc: boolean, status: number, grpcStatus: number | undefined): boolean {
  if (grpc) {
    if (grpcStatus === undefined) return false
    return on.some((o) => GRPC_CODES[o] === grpcStatus)
  }
  if (!IDEMPOTENT.has(method)) return false
  if (on.includes('5xx') && status >= 500) return true
  return on.includes('gateway-error') && (status === 502 || status === 503 || status === 504)
}
