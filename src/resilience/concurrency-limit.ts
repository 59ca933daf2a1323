import type { LimitPolicy } from '../mesh/policy.ts'

export type Admission = { readonly admitted: true, release: () => void } | { readonly admitted: false }

export class ConcurrencyLimit {
  readonly #policy: LimitPolicy
  #active = 0
  readonly #queue: Array<() => void> = []

  constructor (policy: LimitPolicy) { this.#policy = policy }

  get active (): number { return this.#active }
  get queued (): number { return this.#queue.length }

  /**
   * Calls `start` (now or when a slot frees up) with the function that frees the slot again.
   * Returns false when the queue is full too; returns a cancel function while queued.
   */
  acquire (start: (release: () => void) => void): false | (() => void) {
    if (this.#active < this.#policy.maxConcurrent) {
      this.#active++
      start(this.#releaser())
      return () => {}
    }
    if (this.#queue.length >= this.#policy.maxQueued) return false
    const waiter = (): void => { this.#active++; start(this.#releaser()) }
    this.#queue.push(waiter)
    return () => {
      const i = this.#queue.indexOf(waiter)
      if (i >= 0) this.#queue.splice(i, 1)
    }
  }

  #releaser (): () => void {
    let released = false
    return () => {
      if (released) return
      released = true
      this.#active--
      const next = this.#queue.shift()
      if (next !== undefined) next()
    }
  }
}
