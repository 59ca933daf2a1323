// The balancing policies by name, behind one interface (as Envoy registers its LB factories).
import type { Endpoint } from '../mesh/service.ts'
import type { EndpointStates } from './endpoint-state.ts'
import type { BalancerName } from '../mesh/policy.ts'

export interface BalancerPolicy {
  /** Picks one of `candidates` (never empty), preferring endpoints not in `avoid` (already tried). */
  pick (serviceKey: string, candidates: readonly Endpoint[], avoid: ReadonlySet<string>): Endpoint
}

/** Retries prefer endpoints not tried yet; if every one was tried, any will do. */
export function preferUntried (candidates: readonly Endpoint[], avoid: ReadonlySet<string>): readonly Endpoint[] {
  if (avoid.size === 0) return candidates
  const fresh = candidates.filter((e) => !avoid.has(e.key))
  return fresh.length > 0 ? fresh : candidates
}

/** One endpoint at random, in proportion to weight. */
export function weightedRandom (endpoints: readonly Endpoint[], random: () => number): Endpoint {
  let total = 0
  for (const e of endpoints) total += e.weight
  let r = random() * total
  for (const e of endpoints) {
    r -= e.weight
    if (r < 0) return e
  }
  return endpoints[endpoints.length - 1]
}

/** Power of two choices: two distinct weighted-random endpoints, the cheaper one wins. */
export function twoChoices (endpoints: readonly Endpoint[], cost: (e: Endpoint) => number, random: () => number): Endpoint {
  if (endpoints.length === 1) return endpoints[0]
  const a = weightedRandom(endpoints, random)
  let b = weightedRandom(endpoints, random)
  for (let i = 0; i < 3 && b === a; i++) b = weightedRandom(endpoints, random)
  if (b === a) b = endpoints[(endpoints.indexOf(a) + 1) % endpoints.length]
  return cost(b) < cost(a) ? b : a
}

export class PeakEwma implements BalancerPolicy {
  readonly #states: EndpointStates
  readonly #random: () => number
  constructor (states: EndpointStates, random: () => number = Math.random) { this.#states = states; this.#random = random }
  pick (_service: string, candidates: readonly Endpoint[], avoid: ReadonlySet<string>): Endpoint {
    const now = this.#states.now()
    return twoChoices(preferUntried(candidates, avoid), (e) => this.#states.get(e).cost(e.weight, now), this.#random)
  }
}

export class LeastRequest implements BalancerPolicy {
  readonly #states: EndpointStates
  readonly #random: () => number
  constructor (states: EndpointStates, random: () => number = Math.random) { this.#states = states; this.#random = random }
  pick (_service: string, candidates: readonly Endpoint[], avoid: ReadonlySet<string>): Endpoint {
    return twoChoices(preferUntried(candidates, avoid), (e) => (this.#states.get(e).inflight + 1) / Math.max(e.weight, 1), this.#random)
  }
}

/** Weighted round-robin: each endpoint appears `weight` times in the cycle (smooth enough for small weights). */
export class RoundRobin implements BalancerPolicy {
  readonly #next = new Map<string, number>()
  pick (service: string, candidates: readonly Endpoint[], avoid: ReadonlySet<string>): Endpoint {
    const list = preferUntried(candidates, avoid)
    let total = 0
    for (const e of list) total += e.weight
    const n = this.#next.get(service) ?? 0
    this.#next.set(service, (n + 1) % 1_000_000_007)
    let slot = n % total
    for (const e of list) {
      slot -= e.weight
      if (slot < 0) return e
    }
    return list[0]
  }
}

export function createPolicies (states: EndpointStates, random: () => number = Math.random): Readonly<Record<BalancerName, BalancerPolicy>> {
  return Object.freeze({
    'p2c-ewma': new PeakEwma(states, random),
    'least-request': new LeastRequest(states, random),
    'round-robin': new RoundRobin(),
  })
}
