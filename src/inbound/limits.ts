// Inbound protection of the local app: a concurrency limit with a bounded queue and an optional
// token-bucket rate limit, per app port.
import { ConcurrencyLimit } from '../resilience/concurrency-limit.ts'
import type { InboundPolicy } from '../mesh/policy.ts'
import { TokenBucket } from '../resilience/rate-limit.ts'

export class InboundLimits {
  readonly policy: InboundPolicy
  readonly #concurrency = new Map<number, ConcurrencyLimit>()
  readonly #rate = new Map<number, TokenBucket>()

  constructor (policy: InboundPolicy) { this.policy = policy }

  concurrency (port: number): ConcurrencyLimit {
    let l = this.#concurrency.get(port)
    if (l === undefined) { l = new ConcurrencyLimit(this.policy.limits); this.#concurrency.set(port, l) }
    return l
  }

  /** False when the port's rate limit is used up; always true without one. */
  allow (port: number): boolean {
    const rate = this.policy.rateLimit
    if (rate === undefined) return true
    let b = this.#rate.get(port)
    if (b === undefined) { b = new TokenBucket(rate); this.#rate.set(port, b) }
    return b.take()
  }
}
