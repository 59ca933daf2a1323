// Per-service and per-inbound-port resilience policy: safe defaults, overridable in the mesh file
// (and, with the control plane, in `remora.dev/*` Service annotations).
import type { InboundPolicy, RetryOn, ServicePolicy } from '../mesh/policy.ts'

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
