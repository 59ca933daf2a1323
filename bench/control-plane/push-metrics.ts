// bench:control's reading of the control plane's own /metrics over a phase: pushes, push latency
// buckets, messages by type, GC, event-loop lag and heap (scraped with the harness's parser).
import { promNumber, samples, value, type MetricFamily } from '../../test/harness/metrics.ts'

export interface PushSummary {
  /** Catalog changes pushed in the window. */
  count: number
  meanMs: number
  /** Upper bound of the bucket holding the p50 / p99 (the histogram's resolution). */
  p50LeMs: number | null
  p99LeMs: number | null
  maxLeMs: number | null
  messages: Record<string, number>
  gcMs: number
  loopLagP99Ms: number
  loopLagMaxMs: number
  heapUsedMb: number
  slowWatchResets: number
}

const PUSH = 'remora_control_push_duration_seconds'

/** What the control plane counted between two scrapes (gauges: as of the second). */
export function pushSummary (before: MetricFamily[], after: MetricFamily[]): PushSummary {
  const d = (name: string, labels: Record<string, string> = {}): number => value(after, name, labels) - value(before, name, labels)
  const buckets = samples(after, `${PUSH}_bucket`)
    .map((m) => ({ le: promNumber(m.labels?.le ?? ''), n: d(`${PUSH}_bucket`, m.labels) }))
    .sort((a, b) => a.le - b.le)
  const count = d(`${PUSH}_count`)
  const le = (q: number): number | null => {
    if (count === 0) return null
    const b = buckets.find((x) => x.n >= q * count)
    return b === undefined ? null : b.le * 1000
  }
  const messages: Record<string, number> = {}
  for (const m of samples(after, 'remora_control_pushes_total')) messages[m.labels?.type ?? ''] = d('remora_control_pushes_total', m.labels)
  return {
    count,
    meanMs: count === 0 ? 0 : d(`${PUSH}_sum`) / count * 1000,
    p50LeMs: le(0.5),
    p99LeMs: le(0.99),
    maxLeMs: le(1),
    messages,
    // Every kind of collection (minor, major, incremental, weakcb) together.
    gcMs: d('nodejs_gc_duration_seconds_sum') * 1000,
    loopLagP99Ms: value(after, 'nodejs_eventloop_lag_p99_seconds') * 1000,
    loopLagMaxMs: value(after, 'nodejs_eventloop_lag_max_seconds') * 1000,
    heapUsedMb: value(after, 'nodejs_heap_size_used_bytes') / 2 ** 20,
    slowWatchResets: d('remora_control_slow_watch_resets_total'),
  }
}
