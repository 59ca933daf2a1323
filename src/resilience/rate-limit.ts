import type { RatePolicy } from '../mesh/policy.ts'

export class TokenBucket {
  readonly #policy: RatePolicy
  #tokens: number
  #stamp: number

  constructor (policy: RatePolicy, now: number = Date.now()) {
    this.#policy = policy
    this.#tokens = policy.burst
    this.#stamp = now
  }

  take (now: number = Date.now()): boolean {
    this.#tokens = Math.min(this.#policy.burst, this.#tokens + ((now - this.#stamp) / 1000) * this.#policy.requestsPerSecond)
    this.#stamp = now
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }
}
