import type { BudgetPolicy } from '../mesh/policy.ts'

const WINDOW_S = 10

export class RetryBudget {
  readonly #policy: BudgetPolicy
  /** Per-second buckets over the window: [second, requests, retries]. */
  readonly #buckets: Array<[number, number, number]> = []

  constructor (policy: BudgetPolicy) { this.#policy = policy }

  #bucket (now: number): [number, number, number] {
    const second = Math.floor(now / 1000)
    let last = this.#buckets.at(-1)
    if (last === undefined || last[0] !== second) {
      last = [second, 0, 0]
      this.#buckets.push(last)
      while (this.#buckets.length > 0 && this.#buckets[0][0] <= second - WINDOW_S) this.#buckets.shift()
    }
    return last
  }

  /** Every original request deposits into the budget. */
  request (now: number = Date.now()): void { this.#bucket(now)[1]++ }

  /** Takes one retry from the budget if there is room; false means "do not retry". */
  tryRetry (now: number = Date.now()): boolean {
    const current = this.#bucket(now)
    let requests = 0
    let retries = 0
    for (const [, req, ret] of this.#buckets) { requests += req; retries += ret }
    if (retries + 1 > this.#policy.ratio * requests + this.#policy.minPerSecond * WINDOW_S) return false
    current[2]++
    return true
  }
}
