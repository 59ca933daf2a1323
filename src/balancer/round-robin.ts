// Round-robin over a service's endpoints (weight 0 endpoints are skipped); state survives table updates.
import type { Endpoint, Service } from '../discovery/service.ts'

export interface Balancer {
  pick (service: Service): Endpoint | undefined
}

export class RoundRobin implements Balancer {
  readonly #next = new Map<string, number>()

  pick (service: Service): Endpoint | undefined {
    const eligible = service.endpoints.filter((e) => e.weight > 0)
    if (eligible.length === 0) return undefined
    const key = service.authorities[1]
    const n = this.#next.get(key) ?? 0
    this.#next.set(key, (n + 1) % 1_000_000_007)
    return eligible[n % eligible.length]
  }
}
