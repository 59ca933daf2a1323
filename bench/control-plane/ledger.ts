// bench:control's ledger: the endpoint changes the bench applies to the fake API, the arrivals the
// simulated sidecars report, and the delivery latencies between the two.
import type { FakeKubeApi } from '../../test/harness/kube-api.ts'
import { now } from './clock.ts'
import { keyOf, sliceOf, type SvcModel } from './cluster.ts'
import type { Arrival } from './protocol.ts'

export type PhaseName = 'steady' | 'hot' | 'burst'

export interface Change {
  phase: PhaseName
  svc: SvcModel
  key: string
  op: 0 | 1
  /** How many earlier changes of the same service, key and op: the n-th arrival per watcher is this one's. */
  n: number
  t: number
}

/** Every change the bench made, every arrival the workers saw, and the latencies between them. */
export class Ledger {
  readonly changes: Change[] = []
  readonly #occurrences = new Map<string, number>()
  /** Arrival times per sidecar, authority, key and op, in order. */
  readonly #arrivals = new Map<string, number[]>()
  readonly #watchers: Map<string, number[]>

  constructor (watchers: Map<string, number[]>) {
    this.#watchers = watchers
  }

  /** Flips one endpoint of `svc` (ready ⇄ not ready) in the fake API; returns the change. */
  flip (api: FakeKubeApi, svc: SvcModel, phase: PhaseName, pick: () => number): Change {
    const readyCount = svc.ready.filter(Boolean).length
    // Keep at least half the endpoints ready: never an empty list (which falls back to draining endpoints).
    const candidates = svc.ready.map((r, e) => ({ r, e })).filter(({ r }) => r ? readyCount > Math.ceil(svc.ips.length / 2) : true)
    const { e } = candidates[Math.floor(pick() * candidates.length)]
    svc.ready[e] = !svc.ready[e]
    const op: 0 | 1 = svc.ready[e] ? 1 : 0
    const key = keyOf(svc.ips[e])
    const id = `${svc.authority}\t${key}\t${op}`
    const n = this.#occurrences.get(id) ?? 0
    this.#occurrences.set(id, n + 1)
    const slice = sliceOf(svc)
    const t = now()
    api.apply(slice)
    svc.lastChange = t
    const c: Change = { phase, svc, key, op, n, t }
    this.changes.push(c)
    return c
  }

  add (arrivals: Arrival[]): void {
    for (const [sid, authority, key, op, t] of arrivals) {
      const id = `${sid}\t${authority}\t${key}\t${op}`
      const list = this.#arrivals.get(id)
      if (list === undefined) this.#arrivals.set(id, [t])
      else list.push(t)
    }
  }

  /** Per delivery latencies (ms) of these changes, the per-change time until its last watcher had it, and what is still missing. */
  latencies (changes: Change[]): { each: number[], last: number[], missing: number, expected: number, lastArrival: number } {
    const each: number[] = []
    const last: number[] = []
    let missing = 0
    let expected = 0
    let lastArrival = 0
    for (const c of changes) {
      let worst = 0
      let complete = true
      for (const sid of this.#watchers.get(c.svc.authority) ?? []) {
        expected++
        const t = this.#arrivals.get(`${sid}\t${c.svc.authority}\t${c.key}\t${c.op}`)?.[c.n]
        if (t === undefined) { missing++; complete = false; continue }
        each.push(t - c.t)
        lastArrival = Math.max(lastArrival, t)
        worst = Math.max(worst, t - c.t)
      }
      if (complete) last.push(worst)
    }
    return { each, last, missing, expected, lastArrival }
  }
}
