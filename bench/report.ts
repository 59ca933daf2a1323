// Turns bench results into the printed tables and the pass/fail list of the issue's targets.
import type { LoadResult } from './loadgen.ts'
import type { ProcUsage } from './sample.ts'

export type Phase = LoadResult & {
  usage: ProcUsage[]
  app: ProcUsage
  /** CPU that processes outside the bench (and steal) used during the run, % of one core. */
  otherLoadPct: number
  /** TCP connections the app accepted during the run (a proxy should reuse a handful). */
  appConnections: number
}

export interface CaseResult {
  id: string
  label: string
  proto: 'HTTP/1.1' | 'h2'
  /** Fixed-rate latency run. */
  fixed?: Phase
  /** Max-throughput run. */
  throughput?: Phase
  throughputSkipped?: string
  skipped?: string
  error?: string
}

export interface Target {
  target: string
  met: boolean | null
  detail: string
  /** Other processes used ≥ 20% of a core during a run this verdict rests on: re-run to be sure. */
  disturbed?: boolean
}

const DISTURBED_PCT = 20
const disturbed = (...phases: Array<Phase | undefined>): boolean => phases.some((p) => (p?.otherLoadPct ?? 0) >= DISTURBED_PCT)

const SIDECAR_RSS_LIMIT_MB = 60

const int = (n: number): string => Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–'
const ms = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : n < 10 ? n.toFixed(2) : n.toFixed(1)
const ratio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? '–' : `${(a / b).toFixed(2)}×`
const delta = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) ? '–' : `${a - b >= 0 ? '+' : ''}${(a - b).toFixed(2)}`
const joined = (usage: ProcUsage[], f: (u: ProcUsage) => string): string => usage.length === 0 ? '–' : usage.map(f).join(' / ')

/** Requests per second per fully used proxy core: throughput ÷ the proxies' summed CPU share. */
export function perCore (p: Phase | undefined): number | undefined {
  if (p === undefined || p.usage.length === 0) return undefined
  const cores = p.usage.reduce((s, u) => s + u.cpuPct, 0) / 100
  return cores > 0 ? p.rps / cores : undefined
}

/** Rows of two cells (a label and a message: skipped, failed) span the table instead of setting widths. */
function table (header: string[], rows: string[][], rightFrom = 1): string {
  const full = rows.filter((r) => r.length > 2)
  const widths = header.map((h, i) => Math.max(h.length, ...(i === 0 ? rows : full).map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.length <= 2
    ? `${cells[0].padEnd(widths[0])}  ${cells[1] ?? ''}`
    : cells.map((c, i) => i < rightFrom ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ').trimEnd()
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

function verdict (met: boolean | null): string {
  return met === null ? '[ n/a ]' : met ? '[ MET ]' : '[ MISS]'
}

export function evaluateTargets (results: CaseResult[], rate: number): Target[] {
  const by = (id: string): CaseResult | undefined => results.find((r) => r.id === id)
  const out: Target[] = []
  const remora1 = by('remora-1')?.throughput
  const haproxy1 = by('haproxy-1')?.throughput
  const naive = by('naive')?.throughput

  // One remora hop against another proxy: both the raw throughput and the throughput per proxy core must reach `min`×.
  const versus = (target: string, other: Phase | undefined, min: number, showCores: boolean): Target => {
    if (remora1 === undefined || other === undefined) return { target, met: null, detail: 'not measured (case skipped or failed)' }
    const raw = remora1.rps / other.rps
    const core = (perCore(remora1) ?? NaN) / (perCore(other) ?? NaN)
    const cores = showCores ? `${int(perCore(remora1) ?? NaN)} vs ${int(perCore(other) ?? NaN)} = ` : ''
    return {
      target,
      met: raw >= min && core >= min,
      disturbed: disturbed(remora1, other),
      detail: `${int(remora1.rps)} vs ${int(other.rps)} req/s = ${raw.toFixed(2)}×; per proxy core ${cores}${core.toFixed(2)}× (both must be ≥ ${min})`,
    }
  }
  out.push(versus('one remora hop ≥ 0.5× HAProxy throughput on one core', haproxy1, 0.5, true))
  out.push(versus('one remora hop ≥ 2× the naive http.request proxy', naive, 2, false))
  const direct = by('direct')?.fixed
  for (const id of ['remora-2', 'remora-2-log']) {
    const two = by(id)?.fixed
    const name = `two hops${id.endsWith('log') ? ' (access log on)' : ''} add ≤ 0.5 ms p50 and ≤ 2 ms p99 over direct at ${rate} req/s`
    if (direct === undefined || two === undefined) {
      out.push({ target: name, met: null, detail: 'not measured (case skipped or failed)' })
      continue
    }
    const d50 = two.p50 - direct.p50
    const d99 = two.p99 - direct.p99
    out.push({ target: name, met: d50 <= 0.5 && d99 <= 2 && two.errors === 0, disturbed: disturbed(direct, two), detail: `p50 ${ms(two.p50)} vs ${ms(direct.p50)} ms (${delta(two.p50, direct.p50)}), p99 ${ms(two.p99)} vs ${ms(direct.p99)} ms (${delta(two.p99, direct.p99)})${two.errors > 0 ? `, ${two.errors} errors` : ''}` })
  }
  for (const id of ['remora-2', 'remora-2-log']) {
    const two = by(id)?.fixed
    const name = `sidecar RSS ≤ ${SIDECAR_RSS_LIMIT_MB} MB at ${rate} req/s${id.endsWith('log') ? ' (access log on)' : ''}`
    if (two === undefined) { out.push({ target: name, met: null, detail: 'not measured (case skipped or failed)' }); continue }
    const peak = Math.max(...two.usage.map((u) => u.peakRssMb))
    out.push({ target: name, met: peak <= SIDECAR_RSS_LIMIT_MB, disturbed: disturbed(two), detail: `peak ${two.usage.map((u) => `${u.label} ${u.peakRssMb.toFixed(1)} MB`).join(', ')}` })
  }
  return out
}

export function formatReport (results: CaseResult[], meta: { remora: string, node: string, cpus: number, cpuModel?: string, pinning: string, options: { durationS: number, warmupS: number, connections: number, rate: number }, seconds: number }, rate: number): { text: string, targets: Target[] } {
  const by = (id: string): CaseResult | undefined => results.find((r) => r.id === id)
  const ref = (id: string): Phase | undefined => by(id)?.throughput
  const lines: string[] = []
  const o = meta.options
  lines.push('')
  lines.push(`remora bench — node ${meta.node}, ${meta.cpus} CPUs${meta.cpuModel !== undefined ? ` (${meta.cpuModel})` : ''}, ${meta.seconds} s`)
  lines.push(`remora: ${meta.remora}`)
  lines.push(`pinning: ${meta.pinning}`)
  lines.push(`runs: ${o.warmupS}s warm-up + ${o.durationS}s measured each; app answers ${'~100'}-byte bodies; RSS = peak, CPU = % of one core over the run`)
  lines.push('')

  lines.push(`Max throughput — HTTP/1.1: wrk -t1 -c${o.connections}; h2: h2load -c10 -m10 (ratios compare h2 rows with HAProxy h2 only)`)
  const rows: string[][] = []
  for (const r of results) {
    if (r.skipped !== undefined || r.error !== undefined || r.throughput === undefined) {
      rows.push([r.label, r.skipped !== undefined ? `skipped: ${r.skipped}` : r.error !== undefined ? 'FAILED (see above)' : `skipped: ${r.throughputSkipped ?? '?'}`])
      continue
    }
    const p = r.throughput
    const h2 = r.proto === 'h2'
    rows.push([
      r.label,
      int(p.rps),
      ms(p.p50),
      ms(p.p99),
      joined(p.usage, (u) => u.peakRssMb.toFixed(0)),
      joined(p.usage, (u) => u.cpuPct.toFixed(0)),
      int(perCore(p) ?? NaN),
      p.app.cpuPct.toFixed(0),
      String(p.otherLoadPct),
      String(p.appConnections),
      h2 ? '–' : ratio(p.rps, ref('direct')?.rps),
      ratio(p.rps, ref(h2 ? 'haproxy-1-h2' : 'haproxy-1')?.rps),
      h2 ? '–' : ratio(p.rps, ref('nginx-1')?.rps),
      String(p.errors),
    ])
  }
  lines.push(table(['case', 'req/s', 'p50 ms', 'p99 ms', 'proxy RSS MB', 'proxy CPU %', 'req/s per proxy core', 'app CPU %', 'other load %', 'app conns', '× direct', '× haproxy 1hop', '× nginx 1hop', 'errors'], rows))
  lines.push('')

  lines.push(`Latency at a fixed ${rate} req/s — fixed-rate.ts: HTTP/1.1 over an undici Pool (16 connections), h2 over one node:http2 connection`)
  const direct = by('direct')?.fixed
  const frows: string[][] = []
  for (const r of results) {
    if (r.fixed === undefined) { frows.push([r.label, r.skipped !== undefined ? `skipped: ${r.skipped}` : 'FAILED (see above)']); continue }
    const p = r.fixed
    const h2 = r.proto === 'h2'
    frows.push([
      r.label,
      int(p.rps),
      ms(p.p50),
      ms(p.p99),
      ms(p.p999),
      h2 ? '–' : delta(p.p50, direct?.p50),
      h2 ? '–' : delta(p.p99, direct?.p99),
      joined(p.usage, (u) => u.peakRssMb.toFixed(1)),
      joined(p.usage, (u) => u.cpuPct.toFixed(0)),
      String(p.otherLoadPct),
      String(p.errors),
    ])
  }
  lines.push(table(['case', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'Δp50 vs direct', 'Δp99 vs direct', 'proxy RSS MB', 'proxy CPU %', 'other load %', 'errors'], frows))
  lines.push('')
  const noisy = results.filter((r) => disturbed(r.throughput, r.fixed))
  if (noisy.length > 0) {
    lines.push(`warning: other processes used ≥ 20% of a core ("other load %") during: ${noisy.map((r) => r.id).join(', ')}.`)
    lines.push('         Those numbers are disturbed, tails especially; re-run on a quiet machine.', '')
  }
  const notes = results.flatMap((r) => [r.throughput?.note, r.fixed?.note].filter((n) => n !== undefined).map((n) => `  ${r.label}: ${n}`))
  for (const r of results) {
    const p = r.throughput ?? r.fixed
    if (p !== undefined && p.appConnections > 500) notes.push(`  ${r.label}: the app accepted ${p.appConnections} connections during one run: upstream connections are not reused`)
  }
  if (notes.length > 0) lines.push('notes:', ...notes, '')

  const targets = evaluateTargets(results, rate)
  lines.push('Targets (from the issue)')
  for (const t of targets) lines.push(`  ${verdict(t.met)} ${t.target}\n          ${t.detail}${t.disturbed === true ? '\n          (* measured while other processes used ≥ 20% of a core: re-run to confirm)' : ''}`)
  lines.push('')
  return { text: lines.join('\n'), targets }
}
