// Turns the policy keys of a mesh-file service or workload (already schema-checked) into policy.
import { parseDuration } from '../parse/duration.ts'
import { DEFAULT_INBOUND_POLICY, DEFAULT_SERVICE_POLICY } from './policy.ts'
import type { BalancerName, InboundPolicy, RetryOn, ServicePolicy } from '../mesh/policy.ts'

export interface RawServicePolicy {
  balancer?: BalancerName
  timeout?: string
  idleTimeout?: string
  connectTimeout?: string
  retry?: { on?: RetryOn[], attempts?: number, budget?: { ratio?: number, minPerSecond?: number }, backoff?: { base?: string, max?: string }, maxReplayBytes?: number }
  circuitBreaker?: { consecutiveFailures?: number, baseEjection?: string, maxEjection?: string, maxEjectedPercent?: number }
  limits?: { maxConcurrent?: number, maxQueued?: number }
}

export interface RawInboundPolicy {
  maxConcurrent?: number
  maxQueued?: number
  rateLimit?: { requestsPerSecond: number, burst?: number }
}

const ms = (raw: string | undefined, fallback: number): number => raw === undefined ? fallback : parseDuration(raw)

export function servicePolicy (raw: RawServicePolicy): ServicePolicy {
  const d = DEFAULT_SERVICE_POLICY
  const r = raw.retry ?? {}
  const c = raw.circuitBreaker ?? {}
  return {
    balancer: raw.balancer ?? d.balancer,
    requestTimeoutMs: ms(raw.timeout, d.requestTimeoutMs),
    idleTimeoutMs: ms(raw.idleTimeout, d.idleTimeoutMs),
    connectTimeoutMs: ms(raw.connectTimeout, d.connectTimeoutMs),
    retry: {
      on: r.on ?? d.retry.on,
      attempts: r.attempts ?? d.retry.attempts,
      budget: { ratio: r.budget?.ratio ?? d.retry.budget.ratio, minPerSecond: r.budget?.minPerSecond ?? d.retry.budget.minPerSecond },
      backoffBaseMs: ms(r.backoff?.base, d.retry.backoffBaseMs),
      backoffMaxMs: ms(r.backoff?.max, d.retry.backoffMaxMs),
      maxReplayBytes: r.maxReplayBytes ?? d.retry.maxReplayBytes,
    },
    circuit: {
      consecutiveFailures: c.consecutiveFailures ?? d.circuit.consecutiveFailures,
      baseEjectionMs: ms(c.baseEjection, d.circuit.baseEjectionMs),
      maxEjectionMs: ms(c.maxEjection, d.circuit.maxEjectionMs),
      maxEjectedPercent: c.maxEjectedPercent ?? d.circuit.maxEjectedPercent,
    },
    limits: {
      maxConcurrent: raw.limits?.maxConcurrent ?? d.limits.maxConcurrent,
      maxQueued: raw.limits?.maxQueued ?? d.limits.maxQueued,
    },
  }
}

export function inboundPolicy (raw: RawInboundPolicy | undefined): InboundPolicy {
  const d = DEFAULT_INBOUND_POLICY
  return {
    limits: { maxConcurrent: raw?.maxConcurrent ?? d.limits.maxConcurrent, maxQueued: raw?.maxQueued ?? d.limits.maxQueued },
    rateLimit: raw?.rateLimit === undefined ? undefined : { requestsPerSecond: raw.rateLimit.requestsPerSecond, burst: raw.rateLimit.burst ?? Math.max(1, Math.ceil(raw.rateLimit.requestsPerSecond)) },
  }
}
