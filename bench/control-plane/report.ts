// bench:control's report: delivery latencies as distributions, the JSON written to bench/results/,
// the printed table, and whether the run failed (a watch wrong or a change never delivered).
import os from 'node:os'
import { percentile } from '../stats.ts'
import type { Options } from './options.ts'
import type { Outcome } from './scenario.ts'

interface Dist { n: number, p50: number, p90: number, p99: number, max: number }

function dist (values: number[]): Dist | null {
  if (values.length === 0) return null
  const v = Float64Array.from(values).sort()
  const r = (x: number): number => Math.round(x * 10) / 10
  return { n: v.length, p50: r(percentile(v, 50)), p90: r(percentile(v, 90)), p99: r(percentile(v, 99)), max: r(v[v.length - 1]) }
}

/** How the run was set up, for the report's head. */
export interface Setup { o: Options, layout: string, readyMs: number }

export type Report = ReturnType<typeof buildReport>

export function buildReport ({ o, layout, readyMs }: Setup, run: Outcome) {
  const { ledger, steady, burst, subscribe, counts, mismatches } = run
  const steadyRandom = ledger.latencies(steady.result.filter((c) => c.phase === 'steady'))
  const steadyHot = ledger.latencies(steady.result.filter((c) => c.phase === 'hot'))
  const steadyAll = ledger.latencies(steady.result)
  const burstLat = ledger.latencies(burst.result)
  const burstEndToEnd = burst.result.length === 0 ? 0 : burstLat.lastArrival - burst.result[0].t
  const latency = (l: typeof steadyAll) => ({ perDelivery: dist(l.each), perChangeAllWatchers: dist(l.last), missing: l.missing, deliveries: l.expected })
  return {
    when: new Date().toISOString(),
    node: process.version,
    cpus: `${os.availableParallelism()} × ${os.cpus()[0]?.model ?? '?'}`,
    options: o,
    layout,
    simulation: `${o.workers} worker processes (node:http2 clients), ${o.concurrency} connecting at once per worker`,
    controlPlane: o.src ? 'TypeScript via type stripping (src/cli.ts)' : 'the esbuild bundle (npm run build), as the image ships it',
    readyMs: Math.round(readyMs),
    subscription: { ...subscribe.result, ms: Math.round(subscribe.result.ms) },
    latencyMs: {
      steadyRandom: latency(steadyRandom),
      steadyHot: latency(steadyHot),
      steadyAll: latency(steadyAll),
      burst: { ...latency(burstLat), allDeliveredMs: Math.round(burstEndToEnd), fakeApiApplyMs: Math.round(run.applyMs) },
    },
    phases: { idle: run.idle.usage, subscribe: subscribe.usage, subscribedIdle: run.held.usage, steady: steady.usage, burst: burst.usage },
    changes: { steady: steady.result.filter((c) => c.phase === 'steady').length, hot: steady.result.filter((c) => c.phase === 'hot').length, burst: burst.result.length },
    correctness: { watches: run.watches, mismatches: mismatches.length, examples: mismatches.slice(0, 10), messages: counts, lastErrors: run.lastErrors },
  }
}

/** A watch that does not hold its service's endpoints, a change some watcher never got, or a broken stream. */
export function failed (r: Report): boolean {
  const m = r.correctness.messages
  return r.correctness.mismatches > 0 || r.latencyMs.steadyAll.missing > 0 || r.latencyMs.burst.missing > 0 || m.gaps > 0 || m.absent > 0 || m.streamEnds > 0
}

/** The printed table. */
export function format (r: Report, o: Options): string {
  const pad = (s: string, n: number): string => s.length >= n ? s : s + ' '.repeat(n - s.length)
  const lpad = (s: string, n: number): string => s.length >= n ? s : ' '.repeat(n - s.length) + s
  const ms = (x: number | null | undefined): string => x === null || x === undefined ? '-' : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x < 10 ? 1 : 0)} ms`
  const lines: string[] = []
  lines.push('', `remora control: ${o.sidecars} sidecars × ${o.watches} watches, ${o.services} services × ${o.endpoints} endpoints — ${r.controlPlane}`)
  lines.push(`simulation: ${r.simulation}; ${r.layout}`)
  lines.push(`start-up: ready (first full view of ${o.services} Services / ${o.services * o.endpoints} Pods) in ${ms(r.readyMs)}; ` +
    `subscription: ${r.subscription.answered}/${r.subscription.watches} watches with their snapshot in ${ms(r.subscription.ms)}`)
  lines.push('', 'latency, EndpointSlice applied → delta parsed by the sidecar')
  lines.push(`  ${pad('', 44)}${['n', 'p50', 'p90', 'p99', 'max'].map((h) => lpad(h, 9)).join('')}   missing`)
  const row = (label: string, d: Dist | null, missing: number | string): void => {
    lines.push(`  ${pad(label, 44)}${d === null ? lpad('-', 9).repeat(5) : [String(d.n), ms(d.p50), ms(d.p90), ms(d.p99), ms(d.max)].map((x) => lpad(x, 9)).join('')}   ${missing}`)
  }
  const L = r.latencyMs
  row('steady, random services (per delivery)', L.steadyRandom.perDelivery, L.steadyRandom.missing)
  row('steady, hot service (per delivery)', L.steadyHot.perDelivery, L.steadyHot.missing)
  row('steady, hot fan-out (until all have it)', L.steadyHot.perChangeAllWatchers, '')
  row('steady, all deliveries', L.steadyAll.perDelivery, L.steadyAll.missing)
  row('steady, per change until all watchers', L.steadyAll.perChangeAllWatchers, '')
  row(`burst of ${o.burst} (per delivery)`, L.burst.perDelivery, L.burst.missing)
  row('burst, per change until all watchers', L.burst.perChangeAllWatchers, '')
  lines.push(`  burst: the fake API applied the ${o.burst} changes in ${ms(L.burst.fakeApiApplyMs)} and sent them together; burst latencies count from then. Sent → last delivery: ${ms(L.burst.allDeliveredMs)}`)
  const target = L.steadyAll.perDelivery
  if (target !== null) lines.push(`  target "a change reaches every watching sidecar in under 1 s at p99": steady p99 ${ms(target.p99)}, burst p99 ${ms(L.burst.perDelivery?.p99)} → ${target.p99 < 1000 && (L.burst.perDelivery?.p99 ?? 0) < 1000 ? 'met' : 'MISSED'}`)
  lines.push('', 'control plane per phase (CPU % of one core; RSS peak; push = one catalog change written to all its watches, from /metrics;',
    '  heap, GC, loop lag: the control plane\'s own metrics; sim = the simulation workers together (CPU, worst event-loop delay);',
    '  API = the bench process serving the fake Kubernetes API; other = CPU used meanwhile by processes outside this bench)')
  const head = ['phase', 'time', 'CPU', 'CPU s', 'RSS', 'heap', 'GC', 'loop lag max', 'pushes', 'push mean', 'push p99≤', 'msgs', 'sim CPU', 'sim lag max', 'API CPU', 'other']
  const widths = [16, 8, 8, 8, 10, 9, 9, 13, 8, 10, 10, 9, 10, 12, 9, 7]
  lines.push('  ' + head.map((h, i) => i === 0 ? pad(h, widths[i]) : lpad(h, widths[i])).join(''))
  const labels: Record<string, string> = { idle: 'idle, no watch', subscribe: 'subscribing', subscribedIdle: 'idle, subscribed', steady: 'steady changes', burst: 'burst' }
  for (const [k, u] of Object.entries(r.phases)) {
    const msgs = Object.values(u.push.messages).reduce((a, b) => a + b, 0)
    const cells = [
      labels[k] ?? k, `${u.seconds.toFixed(1)} s`, `${u.control.cpuPct.toFixed(0)} %`, u.controlCpuS.toFixed(2), `${u.control.peakRssMb.toFixed(0)} MiB`,
      `${u.push.heapUsedMb.toFixed(0)} MiB`, ms(u.push.gcMs), ms(u.push.loopLagMaxMs), String(u.push.count), ms(u.push.meanMs), ms(u.push.p99LeMs), String(msgs),
      `${u.sim.reduce((a, x) => a + x.cpuPct, 0).toFixed(0)} %`, ms(u.simLoopDelayMaxMs), `${u.benchCpuPct.toFixed(0)} %`, `${u.otherLoadPct} %`,
    ]
    lines.push('  ' + cells.map((c, i) => i === 0 ? pad(c, widths[i]) : lpad(c, widths[i])).join(''))
  }
  const c = r.correctness
  const m = c.messages
  lines.push('', `correctness: ${c.watches} watches checked against the cluster: ${c.mismatches === 0 ? 'all hold exactly the ready endpoints' : `${c.mismatches} MISMATCHES`}`)
  lines.push(`  messages received: ${m.snapshot} snapshots, ${m.delta} deltas, ${m.absent} absent, ${(m.bytes / 2 ** 20).toFixed(1)} MiB; ` +
    `gaps ${m.gaps}, re-snapshots ${m.resnapshot}, bad messages ${m.badMessages}, bad status ${m.badStatus}, stream errors ${m.streamErrors}, streams ended ${m.streamEnds}, session errors ${m.sessionErrors}`)
  for (const x of c.examples) lines.push(`  mismatch: sidecar ${x.sidecar} ${x.authority}: expected ${x.expected} endpoints, has ${x.got}; missing ${x.missing.join(' ')} extra ${x.extra.join(' ')}`)
  for (const e of c.lastErrors) lines.push(`  worker error: ${e}`)
  return lines.join('\n') + '\n'
}
