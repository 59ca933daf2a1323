// What the balancer knows of each endpoint: requests in flight, peak-EWMA latency, and failure
// accrual (consecutive failures → ejection with jittered exponential backoff → probe → restore).
import type { Endpoint } from '../mesh/service.ts'
import type { CircuitPolicy } from '../mesh/policy.ts'

/** Latency assumed for an endpoint never measured: optimistic, so new endpoints get tried. */
const DEFAULT_RTT_MS = 10
/** How quickly old latency is forgotten (peak EWMA decay, as Linkerd does). */
const DECAY_MS = 10_000

export class EndpointState {
  readonly key: string
  inflight = 0
  #rttMs = DEFAULT_RTT_MS
  #stamp = 0
  consecutiveFailures = 0
  /** 0 while in rotation; else the time the ejection ends. */
  ejectedUntil = 0
  /** Consecutive ejections: the backoff exponent. */
  ejections = 0
  /** After an ejection ends, one request at a time probes the endpoint. */
  probing = false

  constructor (key: string) { this.key = key }

  get rttMs (): number { return this.#rttMs }

  /** Peak EWMA: a slower sample takes effect at once; faster ones pull the estimate down over time. */
  observe (latencyMs: number, now: number): void {
    if (latencyMs > this.#rttMs || this.#stamp === 0) {
      this.#rttMs = latencyMs
    } else {
      const w = Math.exp(-(now - this.#stamp) / DECAY_MS)
      this.#rttMs = this.#rttMs * w + latencyMs * (1 - w)
    }
    this.#stamp = now
  }

  /**
   * Expected cost of sending one more request here. The estimate decays while nothing is observed
   * (as tower's peak-EWMA does), so one slow start or old peak is not held against an endpoint for
   * ever: it gets tried again, and a fresh sample sets it right.
   */
  cost (weight: number, now: number): number {
    const idle = now - this.#stamp
    const rtt = this.#stamp === 0 || idle <= 0 ? this.#rttMs : this.#rttMs * Math.exp(-idle / DECAY_MS)
    return (rtt * (this.inflight + 1)) / Math.max(weight, 1)
  }

  isEjected (now: number): boolean { return this.ejectedUntil > now }
}

export type Outcome = 'success' | 'failure'

export class EndpointStates {
  readonly #states = new Map<string, EndpointState>()
  readonly #random: () => number
  /** The clock latency samples and decay are measured on (a test passes its own). */
  readonly now: () => number

  constructor (random: () => number = Math.random, now: () => number = Date.now) {
    this.#random = random
    this.now = now
  }

  get (endpoint: Endpoint): EndpointState {
    let s = this.#states.get(endpoint.key)
    if (s === undefined) {
      s = new EndpointState(endpoint.key)
      this.#states.set(endpoint.key, s)
    }
    return s
  }

  /** Forgets endpoints that left the table (their in-flight requests finish on their own). */
  retain (keys: ReadonlySet<string>): void {
    for (const key of this.#states.keys()) if (!keys.has(key)) this.#states.delete(key)
  }

  /**
   * Endpoints that may take a request now: weight > 0, not ejected, and — for one whose ejection
   * just ended — not already carrying its probe.
   */
  available (endpoints: readonly Endpoint[], now: number): Endpoint[] {
    const out: Endpoint[] = []
    for (const e of endpoints) {
      if (e.weight <= 0) continue
      const s = this.get(e)
      if (s.isEjected(now)) continue
      if (s.ejections > 0 && s.probing && s.inflight > 0) continue
      out.push(e)
    }
    return out
  }

  /** Records an attempt's end; returns 'ejected' when this failure took the endpoint out. */
  record (endpoint: Endpoint, all: readonly Endpoint[], outcome: Outcome, latencyMs: number, now: number, policy: CircuitPolicy): 'ejected' | 'restored' | undefined {
    const s = this.get(endpoint)
    s.observe(latencyMs, now)
    if (outcome === 'success') {
      s.consecutiveFailures = 0
      const wasProbing = s.ejections > 0
      s.ejections = 0
      s.probing = false
      return wasProbing ? 'restored' : undefined
    }
    s.consecutiveFailures++
    // Attempts sent before the ejection ended (in flight when it began) are old news: only the
    // probe may extend an ejection, else a burst of in-flight failures doubles the backoff each.
    if (s.ejections > 0 && now - latencyMs < s.ejectedUntil) return undefined
    const probeFailed = s.ejections > 0 && s.probing
    if (!probeFailed && s.consecutiveFailures < policy.consecutiveFailures) return undefined
    const ejectedNow = all.filter((e) => e.key !== endpoint.key && this.get(e).isEjected(now)).length
    if (!probeFailed && (ejectedNow + 1) * 100 > policy.maxEjectedPercent * all.length) return undefined
    const backoff = Math.min(policy.maxEjectionMs, policy.baseEjectionMs * 2 ** s.ejections)
    s.ejectedUntil = now + backoff * (0.75 + this.#random() * 0.5)
    s.ejections++
    s.probing = true
    return 'ejected'
  }
}
