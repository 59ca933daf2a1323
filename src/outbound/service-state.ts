// Per-service runtime state on the outbound side: its retry budget and concurrency limit, renewed
// when a table update changes the service's policy.
import type { Service } from '../mesh/service.ts'
import { ConcurrencyLimit } from '../resilience/concurrency-limit.ts'
import { RetryBudget } from '../resilience/retry-budget.ts'
import type { ServicePolicy } from '../mesh/policy.ts'

export interface ServiceState {
  readonly policy: ServicePolicy
  readonly budget: RetryBudget
  readonly limit: ConcurrencyLimit
}

export class ServiceStates {
  readonly #states = new Map<string, ServiceState>()

  get (service: Service): ServiceState {
    const key = service.key
    const s = this.#states.get(key)
    if (s !== undefined && s.policy === service.policy) return s
    if (s !== undefined && JSON.stringify(s.policy) === JSON.stringify(service.policy)) {
      const kept = { ...s, policy: service.policy }
      this.#states.set(key, kept)
      return kept
    }
    const fresh = { policy: service.policy, budget: new RetryBudget(service.policy.retry.budget), limit: new ConcurrencyLimit(service.policy.limits) }
    this.#states.set(key, fresh)
    return fresh
  }
}
