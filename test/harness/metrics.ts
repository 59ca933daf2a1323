// Test and bench harness: a sidecar's or control plane's /metrics scraped and parsed with the
// Prometheus text-format parser, and a lookup of one metric's value by name and labels.
import { createRequire } from 'node:module'

/** One sample as the parser gives it: its labels (none: absent) and its value as written. */
export interface MetricSample { labels?: Record<string, string>, value: string }

/** A metric family: its name, its HELP text, its TYPE upper-cased (COUNTER, GAUGE, HISTOGRAM, …, UNTYPED). */
export interface MetricFamily { name: string, help: string, type: string, metrics: MetricSample[] }

const require = createRequire(import.meta.url)
const parse = require('parse-prometheus-text-format') as (text: string) => MetricFamily[]

/**
 * The exposition's families. Histograms and summaries come as their series, each a family of its
 * own named as in the text (`x_bucket` with its `le`, `x_sum`, `x_count`; a summary's quantiles under
 * `x`), beside an `x` family that keeps the declared TYPE: the parser folds a histogram into one
 * sample per family and drops every series with labels besides `le`, which would lose e.g.
 * `nodejs_gc_duration_seconds_sum{kind="major"}`; read as untyped, every series keeps its labels.
 */
export function parseMetrics (text: string): MetricFamily[] {
  const declared = new Map<string, string>()
  const unfolded = text.replace(/^# TYPE (\S+) (histogram|summary)$/gm, (_line, name: string, type: string) => {
    declared.set(name, type.toUpperCase())
    return `# TYPE ${name} untyped`
  })
  // A labelled histogram's series alternate (x_bucket, x_sum, x_count, x_bucket, …): one family a name.
  const byName = new Map<string, MetricFamily>()
  for (const f of parse(unfolded)) {
    const known = byName.get(f.name)
    if (known === undefined) byName.set(f.name, { ...f, type: declared.get(f.name) ?? f.type })
    else known.metrics.push(...f.metrics)
  }
  return [...byName.values()]
}

/** GET `<adminUrl>/metrics` (a sidecar's or control plane's admin address, e.g. http://127.0.0.1:15000), parsed. */
export async function scrapeMetrics (adminUrl: string): Promise<MetricFamily[]> {
  const res = await fetch(`${adminUrl}/metrics`)
  if (!res.ok) throw new Error(`GET ${adminUrl}/metrics: HTTP ${res.status}`)
  return parseMetrics(await res.text())
}

/** The samples of `name` whose labels include every one of `labels` (all of them when none are given). */
export function samples (families: readonly MetricFamily[], name: string, labels: Record<string, string> = {}): MetricSample[] {
  const family = families.find((f) => f.name === name)
  return (family?.metrics ?? []).filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))
}

/** The sum of those samples' values (a counter over every label set, say); 0 when none match. */
export function value (families: readonly MetricFamily[], name: string, labels: Record<string, string> = {}): number {
  return samples(families, name, labels).reduce((sum, m) => sum + promNumber(m.value), 0)
}

/** A value or an `le` bound as a number: the text format writes infinities as +Inf and -Inf, which Number() reads as NaN. */
export function promNumber (text: string): number {
  return text === '+Inf' ? Infinity : text === '-Inf' ? -Infinity : Number(text)
}

/** Scrapes `adminUrl` and sums `name` over the series matching `labels`: one look at one metric. */
export async function metric (adminUrl: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  return value(await scrapeMetrics(adminUrl), name, labels)
}
