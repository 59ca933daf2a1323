// bench:control's scenario: idle, every sidecar subscribing, idle again, steady endpoint changes, a
// burst of them; then every watch checked against the cluster. Each phase is measured (phases.ts).
import { setTimeout as sleep } from 'node:timers/promises'
import type { FakeKubeApi } from '../../test/harness/kube-api.ts'
import { waitForQuiet } from '../sample.ts'
import { clockBase, now } from './clock.ts'
import { expectedKeys, type SvcModel } from './cluster.ts'
import { Ledger, type Change } from './ledger.ts'
import type { Options } from './options.ts'
import type { Measure, PhaseUsage } from './phases.ts'
import { noCounts, type Arrival, type Mismatch, type SidecarSpec, type WorkerCounts, type WorkerStats } from './protocol.ts'
import type { SimWorker } from './workers.ts'

export interface Stage {
  o: Options
  log: (line: string) => void
  api: FakeKubeApi
  services: SvcModel[]
  specs: SidecarSpec[]
  watchersOf: Map<string, number[]>
  /** The random choices after the watches were assigned: the changes continue the same sequence. */
  pick: () => number
  workers: SimWorker[]
  /** The control plane's discovery address, host:port. */
  discovery: string
  measure: Measure
}

export interface Phase<T> { result: T, usage: PhaseUsage }

export interface Outcome {
  ledger: Ledger
  idle: Phase<void>
  subscribe: Phase<{ ms: number, watches: number, answered: number }>
  held: Phase<void>
  steady: Phase<Change[]>
  burst: Phase<Change[]>
  /** How long the fake API took to apply the burst's changes (before they left together). */
  applyMs: number
  watches: number
  mismatches: Mismatch[]
  counts: WorkerCounts
  lastErrors: string[]
}

export async function runScenario (s: Stage): Promise<Outcome> {
  const { o, log, api, services, workers, measure, pick } = s
  const ledger = new Ledger(s.watchersOf)
  const collect = async (): Promise<void> => {
    for (const w of workers) ledger.add((await w.call<{ arrivals: Arrival[] }>({ cmd: 'collect' })).arrivals)
  }
  /** Waits until every watcher of these changes has them (or the timeout); returns when the last arrived. */
  const settle = async (changes: Change[], timeoutMs = 15_000): Promise<void> => {
    const deadline = now() + timeoutMs
    for (;;) {
      await collect()
      if (ledger.latencies(changes).missing === 0 || now() > deadline) return
      await sleep(100)
    }
  }

  /** Other engineers' tests share this machine: wait (a while) until they leave the CPUs alone. */
  const quiet = async (): Promise<void> => {
    if (!o.waitQuiet) return
    const pct = await waitForQuiet(20, o.quietWaitS * 1000, (p) => log(`  waiting up to ${o.quietWaitS} s for other processes to calm down (${p} % of a core)…`))
    if (pct >= 20) log(`  other processes still use ${pct} % of a core; measuring anyway (column "other")`)
  }

  // Idle: the catalog loaded, no sidecar yet.
  await quiet()
  log('idle (no sidecars) 3 s…')
  const idle = await measure(() => sleep(3000))

  // Subscription: every sidecar connects and opens its watches; done when every watch has its snapshot.
  log(`subscribing ${o.sidecars} sidecars × ${o.watches} watches…`)
  const perWorker = workers.map((_, i) => s.specs.filter((_, j) => j % o.workers === i))
  const subscribe = await measure(async () => {
    const start = now()
    const replies = await Promise.all(workers.map((w, i) => w.call<{ done: number, watches: number, answered: number }>({
      cmd: 'init', base: String(clockBase()), addr: s.discovery, sidecars: perWorker[i], concurrency: o.concurrency, timeoutMs: 60_000,
    })))
    return { ms: Math.max(...replies.map((r) => r.done)) - start, watches: replies.reduce((a, r) => a + r.watches, 0), answered: replies.reduce((a, r) => a + r.answered, 0) }
  })
  log(`  ${subscribe.result.answered}/${subscribe.result.watches} watches answered in ${Math.round(subscribe.result.ms)} ms`)

  log('subscribed, idle 3 s…')
  const held = await measure(() => sleep(3000))

  // Steady: `rate` changes/s on random services (each at most once per 3 s) and one on the hot service per second.
  await quiet()
  log(`steady: ${o.rate} changes/s + 1 hot change/s for ${o.durationS} s…`)
  const hot = services[0]
  const steady = await measure(async () => {
    const start = now()
    const changes: Change[] = []
    const schedule: Array<{ at: number, hot: boolean }> = []
    for (let i = 0; i < o.rate * o.durationS; i++) schedule.push({ at: start + i * 1000 / o.rate, hot: false })
    for (let k = 0; k < o.durationS; k++) schedule.push({ at: start + k * 1000 + 25, hot: true })
    schedule.sort((a, b) => a.at - b.at)
    for (const { at, hot: isHot } of schedule) {
      const wait = at - now()
      if (wait > 1) await sleep(wait)
      if (isHot) {
        changes.push(ledger.flip(api, hot, 'hot', pick))
        continue
      }
      let svc: SvcModel
      do svc = services[1 + Math.floor(pick() * (o.services - 1))]
      while (now() - svc.lastChange < 3000)
      changes.push(ledger.flip(api, svc, 'steady', pick))
    }
    await settle(changes)
    return changes
  })

  // Burst: many services at once (the hot one among them), in one turn of the event loop.
  log(`burst: ${o.burst} changes at once…`)
  await quiet()
  let applyMs = 0
  const burst = await measure(async () => {
    const chosen = new Set<number>(o.burst > 0 ? [0] : [])
    while (chosen.size < o.burst) chosen.add(1 + Math.floor(pick() * (o.services - 1)))
    const changes = [...chosen].map((i) => ledger.flip(api, services[i], 'burst', pick))
    // The fake API's watch response is corked until the loop ends: the changes leave together, now.
    const sent = now()
    applyMs = changes.length === 0 ? 0 : sent - changes[0].t
    for (const c of changes) c.t = sent
    await settle(changes)
    return changes
  })

  // Correctness: every watch holds exactly the ready endpoints of its service.
  await sleep(500)
  await collect()
  const expected: Record<string, string[]> = {}
  for (const svc of services) expected[svc.authority] = expectedKeys(svc)
  const verified = await Promise.all(workers.map((w) => w.call<{ mismatches: Mismatch[], watches: number }>({ cmd: 'verify', expected })))
  const stats = (await Promise.all(workers.map((w) => w.call<{ stats: WorkerStats }>({ cmd: 'stats' })))).map((x) => x.stats)
  const counts = stats.reduce<WorkerCounts>((acc, x) => {
    for (const k of Object.keys(acc) as Array<keyof WorkerCounts>) acc[k] += x.counts[k]
    return acc
  }, noCounts())
  return {
    ledger,
    idle,
    subscribe,
    held,
    steady,
    burst,
    applyMs,
    watches: verified.reduce((a, v) => a + v.watches, 0),
    mismatches: verified.flatMap((v) => v.mismatches),
    counts,
    lastErrors: stats.map((x) => x.lastError).filter((e) => e !== undefined),
  }
}
