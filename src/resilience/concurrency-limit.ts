// A concurrency limit with a bounded queue, fair between the callers (sources) that share it: a
// freed slot goes to the waiting source holding the fewest slots, and a full queue makes room for a
// newcomer by shedding the newest waiter of the source with the most waiting.
import type { LimitPolicy } from '../mesh/policy.ts'

export type Admission = { readonly admitted: true, release: () => void } | { readonly admitted: false }

interface Waiter {
  readonly seq: number
  readonly start: () => void
  readonly evicted: (() => void) | undefined
}

/** Idle sources kept (see #forget). */
const KEEP_IDLE_SOURCES = 64

interface Source {
  active: number
  readonly waiting: Waiter[]
}

/**
 * Why fair, and why this way: one caller's slow or abusive requests (a slow body on each of 2,000
 * connections) used to take every slot and every queue place, and every other caller, mesh traffic
 * included, got 503 until the attack ended. A hard per-caller cap would cost a single busy caller
 * capacity it could use; this stays work-conserving (an idle slot is never kept back) and still
 * guarantees that another caller's request gets a queue place and the next free slot.
 */
export class ConcurrencyLimit {
  readonly #policy: LimitPolicy
  #active = 0
  #queued = 0
  #seq = 0
  readonly #sources = new Map<string, Source>()
  /** Sources with a waiter, the only ones a freed slot or an eviction looks at. */
  readonly #waiting = new Set<Source>()

  constructor (policy: LimitPolicy) { this.#policy = policy }

  get active (): number { return this.#active }
  get queued (): number { return this.#queued }

  /**
   * Calls `start` (now or when a slot frees up) with the function that frees the slot again.
   * Returns false when the queue is full (and no source has more waiting than this one); else a
   * cancel function for while it is queued. `source` names the caller (one slot pool, fair between
   * sources); `evicted` is called if a waiter is later shed to make room for a fairer one.
   */
  acquire (start: (release: () => void) => void, source = '', evicted?: () => void): false | (() => void) {
    const s = this.#source(source)
    if (this.#active < this.#policy.maxConcurrent) {
      this.#take(s)
      start(this.#releaser(source, s))
      return () => {}
    }
    if (this.#queued >= this.#policy.maxQueued && !this.#makeRoom(s)) {
      this.#forget(source, s)
      return false
    }
    const waiter: Waiter = { seq: this.#seq++, start: () => { this.#take(s); start(this.#releaser(source, s)) }, evicted }
    s.waiting.push(waiter)
    this.#waiting.add(s)
    this.#queued++
    return () => {
      const i = s.waiting.indexOf(waiter)
      if (i < 0) return
      s.waiting.splice(i, 1)
      this.#queued--
      if (s.waiting.length === 0) this.#waiting.delete(s)
      this.#forget(source, s)
    }
  }

  #source (name: string): Source {
    let s = this.#sources.get(name)
    if (s === undefined) { s = { active: 0, waiting: [] }; this.#sources.set(name, s) }
    return s
  }

  /**
   * A source with nothing active or waiting is dropped once there are many (a few callers are kept,
   * so a steady caller, or the outbound limit's one, is not made and dropped on every request).
   */
  #forget (name: string, s: Source): void {
    if (s.active === 0 && s.waiting.length === 0 && this.#sources.size > KEEP_IDLE_SOURCES) this.#sources.delete(name)
  }

  #take (s: Source): void {
    this.#active++
    s.active++
  }

  /** Sheds the newest waiter of the source with the most waiting, when it has more than `s`. */
  #makeRoom (s: Source): boolean {
    let heaviest: Source | undefined
    for (const w of this.#waiting) if (heaviest === undefined || w.waiting.length > heaviest.waiting.length) heaviest = w
    if (heaviest === undefined || heaviest.waiting.length <= s.waiting.length + 1 || heaviest === s) return false
    const victim = heaviest.waiting.pop() as Waiter
    this.#queued--
    if (heaviest.waiting.length === 0) this.#waiting.delete(heaviest)
    victim.evicted?.()
    return true
  }

  #releaser (name: string, s: Source): () => void {
    let released = false
    return () => {
      if (released) return
      released = true
      this.#active--
      s.active--
      this.#forget(name, s)
      this.#next()
    }
  }

  /** The next waiter: from the source holding the fewest slots; between equals, the longest waiting. */
  #next (): void {
    let best: Source | undefined
    for (const w of this.#waiting) {
      if (best === undefined || w.active < best.active || (w.active === best.active && w.waiting[0].seq < best.waiting[0].seq)) best = w
    }
    if (best === undefined) return
    const waiter = best.waiting.shift() as Waiter
    this.#queued--
    if (best.waiting.length === 0) this.#waiting.delete(best)
    waiter.start()
  }
}
