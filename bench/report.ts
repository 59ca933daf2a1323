// Turns bench results into the printed tables and the pass/fail list of the issue's targets.
import type { LoadResult } from './loadgen.ts'
import type { OrigDstResult } from './origdst.ts'
import { median, type StartupResult } from './startup.ts'
import type { IdleConnsResult } from './idle.ts'
import type { GrpcUnaryResult } from './grpc.ts'
import type { ProcUsage } from './sample.ts'
import type { TcpBulkResult, TcpFirstByteResult } from './tcp.ts'

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
  /** TCP: the opaque-TCP cases (tcp.ts, origdst.ts), which fill the fields below instead of the HTTP phases. */
  proto: 'HTTP/1.1' | 'h2' | 'gRPC' | 'TCP' | 'start-up'
  /** Fixed-rate latency run. */
  fixed?: Phase
  /** Max-throughput run. */
  throughput?: Phase
  throughputSkipped?: string
  tcpBulk?: TcpBulkResult
  tcpFirstByte?: TcpFirstByteResult
  origDst?: OrigDstResult
  startup?: StartupResult
  idleConns?: IdleConnsResult
  grpcUnary?: GrpcUnaryResult
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

/** Issue 19's targets for the two-hop path. */
export const TWO_HOPS_MIN_RATIO = 0.5
export const ADDED_P50_MAX_MS = 0.5
export const ADDED_P99_MAX_MS = 3
export const SIDECAR_VCPU_MAX = 0.15
export const SIDECAR_RSS_MAX_RATIO = 1.3

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
  // Two hops against HAProxy's two hops, plaintext and with TLS between the hops (remora: mTLS, 1 % traced).
  for (const [id, other, what] of [['remora-2', 'haproxy-2', 'plaintext'], ['remora-2-mtls', 'haproxy-2-tls', 'mTLS (HAProxy: TLS between its hops)']] as const) {
    const mine = by(id)?.throughput
    const theirs = by(other)?.throughput
    const target = `two remora hops ≥ ${TWO_HOPS_MIN_RATIO}× HAProxy two hops, ${what}`
    if (mine === undefined || theirs === undefined) { out.push({ target, met: null, detail: 'not measured (case skipped or failed)' }); continue }
    const r = mine.rps / theirs.rps
    out.push({ target, met: r >= TWO_HOPS_MIN_RATIO, disturbed: disturbed(mine, theirs), detail: `${int(mine.rps)} vs ${int(theirs.rps)} req/s = ${r.toFixed(2)}×` })
  }
  // The production path at a steady rate: mTLS between the sidecars, 1 % of requests traced.
  const direct = by('direct')?.fixed
  const secure = by('remora-2-mtls')?.fixed
  const latency = `two hops (mTLS, 1 % traced) add ≤ ${ADDED_P50_MAX_MS} ms p50 and ≤ ${ADDED_P99_MAX_MS} ms p99 over direct at ${rate} req/s`
  const cpu = `each sidecar ≤ ${SIDECAR_VCPU_MAX} vCPU at ${rate} req/s (two hops, mTLS, 1 % traced)`
  const rss = `each sidecar's RSS ≤ ${SIDECAR_RSS_MAX_RATIO}× a bare Node HTTP/2 + TLS server at ${rate} req/s (two hops, mTLS, 1 % traced)`
  if (secure === undefined) {
    for (const target of [latency, cpu, rss]) out.push({ target, met: null, detail: 'not measured (case skipped or failed)' })
  } else {
    if (direct === undefined) out.push({ target: latency, met: null, detail: 'direct not measured' })
    else {
      const d50 = secure.p50 - direct.p50
      const d99 = secure.p99 - direct.p99
      out.push({ target: latency, met: d50 <= ADDED_P50_MAX_MS && d99 <= ADDED_P99_MAX_MS && secure.errors === 0, disturbed: disturbed(direct, secure), detail: `p50 ${ms(secure.p50)} vs ${ms(direct.p50)} ms (${delta(secure.p50, direct.p50)}), p99 ${ms(secure.p99)} vs ${ms(direct.p99)} ms (${delta(secure.p99, direct.p99)})${secure.errors > 0 ? `, ${secure.errors} errors` : ''}` })
    }
    const busiest = Math.max(...secure.usage.map((u) => u.cpuPct)) / 100
    out.push({ target: cpu, met: busiest <= SIDECAR_VCPU_MAX, disturbed: disturbed(secure), detail: secure.usage.map((u) => `${u.label} ${(u.cpuPct / 100).toFixed(2)} vCPU`).join(', ') })
    const startup = by('startup')?.startup
    if (startup === undefined) out.push({ target: rss, met: null, detail: `the bare server is measured by the start-up case (--only …,startup); sidecars: ${secure.usage.map((u) => `${u.peakRssMb.toFixed(1)} MB`).join(', ')}` })
    else {
      const bare = median(startup.bareRssMb)
      const peak = Math.max(...secure.usage.map((u) => u.peakRssMb))
      out.push({ target: rss, met: peak <= SIDECAR_RSS_MAX_RATIO * bare, disturbed: disturbed(secure), detail: `peak ${secure.usage.map((u) => `${u.label} ${u.peakRssMb.toFixed(1)} MB`).join(', ')} vs bare ${bare.toFixed(1)} MB = ${(peak / bare).toFixed(2)}×` })
    }
  }
  out.push(tcpBulkTarget(by('tcp-bulk')?.tcpBulk))
  out.push(...startupTargets(by('startup')?.startup))
  out.push(idleTarget(by('idle-conns')?.idleConns))
  out.push(grpcTarget(by('grpc-unary')?.grpcUnary))
  return out
}

/** Issue 19: an idle sidecar within 1.15× a bare Node HTTP/2 + TLS server; spawn to ready within 250 ms with mTLS. */
export const IDLE_RSS_MAX_RATIO = 1.15
export const READY_MTLS_MAX_MS = 250

function startupTargets (s: StartupResult | undefined): Target[] {
  const rssTarget = `idle sidecar RSS ≤ ${IDLE_RSS_MAX_RATIO}× a bare Node HTTP/2 + TLS server`
  const readyTarget = `spawn to /ready ≤ ${READY_MTLS_MAX_MS} ms with mTLS (key, CSR, signed certificate from a local control plane)`
  if (s === undefined) return [rssTarget, readyTarget].map((target) => ({ target, met: null, detail: 'not measured (case skipped or failed)' }))
  const idle = median(s.mtls.idleRssMb)
  const bare = median(s.bareRssMb)
  const ready = median(s.mtls.readyMs)
  return [
    { target: rssTarget, met: idle <= IDLE_RSS_MAX_RATIO * bare, detail: `${idle.toFixed(1)} vs ${bare.toFixed(1)} MB = ${(idle / bare).toFixed(2)}× (medians of ${s.runs}, the sidecar as in a pod, mTLS)` },
    { target: readyTarget, met: ready <= READY_MTLS_MAX_MS, detail: `median ${ready.toFixed(0)} ms of ${s.runs} (plaintext ${median(s.plaintext.readyMs).toFixed(0)} ms)` },
  ]
}

/** Opaque TCP through two sidecars must keep this share of direct bulk throughput (mTLS, each direction). */
export const TCP_BULK_MIN_RATIO = 0.8

/** Opaque TCP bulk through two mTLS sidecars against direct, each direction. */
function tcpBulkTarget (bulk: TcpBulkResult | undefined): Target {
  const target = `opaque TCP bulk through two sidecars (mTLS) ≥ ${TCP_BULK_MIN_RATIO}× direct, each direction`
  const path = (n: string): TcpBulkResult['paths'][number] | undefined => bulk?.paths.find((p) => p.name === n)
  const [direct, mtls, plain] = [path('direct'), path('mtls'), path('plaintext')]
  if (bulk === undefined || direct === undefined || mtls === undefined) return { target, met: null, detail: 'not measured (case skipped or failed)' }
  const down = mtls.down.mbps / direct.down.mbps
  const up = mtls.up.mbps / direct.up.mbps
  const plainText = plain === undefined ? '' : `; plaintext sidecars ${ratio(plain.down.mbps, direct.down.mbps)} down, ${ratio(plain.up.mbps, direct.up.mbps)} up`
  return {
    target,
    met: down >= TCP_BULK_MIN_RATIO && up >= TCP_BULK_MIN_RATIO,
    disturbed: bulk.otherLoadPct >= DISTURBED_PCT,
    detail: `down ${mtls.down.mbps.toFixed(0)} vs ${direct.down.mbps.toFixed(0)} MB/s = ${down.toFixed(2)}×, up ${mtls.up.mbps.toFixed(0)} vs ${direct.up.mbps.toFixed(0)} MB/s = ${up.toFixed(2)}×${plainText}`,
  }
}

const pctPair = (a: number | undefined, b: number | undefined): string => `${a === undefined ? '–' : a.toFixed(0)} / ${b === undefined ? '–' : b.toFixed(0)}`
const us = (ns: number): string => Number.isFinite(ns) ? (ns / 1000).toFixed(ns < 10_000 ? 2 : 1) : '–'

/** The start-up case's section: spawn → ready and idle RSS, against a bare Node process. */
/** Issue 19: gRPC unary through two sidecars keeps this share of direct. */
export const GRPC_MIN_RATIO = 0.5

function grpcTarget (g: GrpcUnaryResult | undefined): Target {
  const target = `gRPC unary through two sidecars ≥ ${GRPC_MIN_RATIO}× direct`
  if (g === undefined) return { target, met: null, detail: 'not measured (case skipped or failed)' }
  const r = g.mesh.rps / g.direct.rps
  return { target, met: r >= GRPC_MIN_RATIO && g.mesh.errors === 0, detail: `${int(g.mesh.rps)} vs ${int(g.direct.rps)} calls/s = ${r.toFixed(2)}× (h2load -c10 -m10, mean of ${g.rounds} alternating rounds; p50 ${ms(g.mesh.p50)} vs ${ms(g.direct.p50)} ms)${g.mesh.errors > 0 ? `, ${g.mesh.errors} errors` : ''}` }
}

/** Issue 19: 10,000 idle connections held with flat memory. */
export const IDLE_CONNECTIONS = 10_000

function idleTarget (r: IdleConnsResult | undefined): Target {
  const target = `${IDLE_CONNECTIONS.toLocaleString('en-US')} idle connections held with flat memory`
  if (r === undefined) return { target, met: null, detail: 'not measured (case skipped or failed)' }
  // Flat: no more than 5 % (or 5 MB) growth while they are held.
  const flat = r.laterRssMb <= Math.max(r.heldRssMb * 1.05, r.heldRssMb + 5)
  return {
    target,
    met: r.connections >= IDLE_CONNECTIONS && r.failed === 0 && flat,
    detail: `${r.connections.toLocaleString('en-US')} open, ${r.failed} failed; client sidecar RSS ${r.baseRssMb.toFixed(1)} → ${r.heldRssMb.toFixed(1)} MB (${r.kbPerConnection.toFixed(1)} KB per connection), ${r.laterRssMb.toFixed(1)} MB after ${r.holdS} s more`,
  }
}

/** The gRPC unary case's section: calls/s and latency, direct and through two sidecars. */
function grpcSection (results: CaseResult[]): string[] {
  const c = results.find((r) => r.id === 'grpc-unary')
  if (c === undefined) return []
  if (c.grpcUnary === undefined) return ['', `gRPC unary: ${c.skipped ?? c.error ?? 'not measured'}`]
  const g = c.grpcUnary
  return ['', `gRPC unary — h2load -c10 -m10 posting one ~100-byte message per call to a grpc-js server, mean of ${g.rounds} alternating rounds`, table(['path', 'calls/s', 'p50 ms', 'p99 ms', 'errors', '× direct'], [
    ['direct', int(g.direct.rps), ms(g.direct.p50), ms(g.direct.p99), String(g.direct.errors), '1.00×'],
    ['two remora sidecars (port declared grpc)', int(g.mesh.rps), ms(g.mesh.p50), ms(g.mesh.p99), String(g.mesh.errors), ratio(g.mesh.rps, g.direct.rps)],
  ])]
}

function startupSection (results: CaseResult[]): string[] {
  const c = results.find((r) => r.id === 'startup')
  if (c === undefined) return []
  const s = c.startup
  const lines = ['Start-up and idle footprint — the sidecar as the image runs it (esbuild bundle), spawned once per run; idle RSS read 5 s after ready']
  if (s === undefined) return [...lines, `  ${c.skipped !== undefined ? `skipped: ${c.skipped}` : 'FAILED (see above)'}`, '']
  const range = (xs: number[], f: (n: number) => string): string => `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`
  const whole = (n: number): string => n.toFixed(0)
  const tenth = (n: number): string => n.toFixed(1)
  const bare = median(s.bareRssMb)
  lines.push(table(['process', 'spawn → ready ms, median (range)', 'idle RSS MB, median (range)', '× bare node'], [
    ['sidecar, local mode (mesh file, plaintext)', range(s.plaintext.readyMs, whole), range(s.plaintext.idleRssMb, tenth), ratio(median(s.plaintext.idleRssMb), bare)],
    ['sidecar as in a pod (control plane, mTLS: CSR signed, token file)', range(s.mtls.readyMs, whole), range(s.mtls.idleRssMb, tenth), ratio(median(s.mtls.idleRssMb), bare)],
    ['bare node: http2.createSecureServer, nothing else', '–', range(s.bareRssMb, tenth), '1.00×'],
  ]))
  lines.push(`  ${s.runs} runs, interleaved; the sidecar loads ${(s.loadsBytes / 1e6).toFixed(2)} MB of JavaScript at start`, '')
  return lines
}

/** The opaque-TCP cases' sections: bulk throughput, first byte, the original-destination lookup. */
function tcpSections (results: CaseResult[]): string[] {
  const lines: string[] = []
  const failed = (r: CaseResult | undefined): string | undefined => r === undefined ? undefined : r.skipped !== undefined ? `skipped: ${r.skipped}` : r.error !== undefined ? 'FAILED (see above)' : undefined
  const bulkCase = results.find((r) => r.id === 'tcp-bulk')
  const fbCase = results.find((r) => r.id === 'tcp-first-byte')
  const odCase = results.find((r) => r.id === 'origdst')

  if (bulkCase !== undefined) {
    const b = bulkCase.tcpBulk
    lines.push(`Opaque TCP bulk throughput — app → client (down) and client → app (up), one connection per transfer${b === undefined ? '' : ` of ${b.mib} MiB, median of ${b.reps} interleaved repetitions`};`)
    lines.push('  through the sidecars: CONNECT bulk:7000 (a service declared opaque) to the client sidecar → server sidecar → app; MB/s = 10^6 bytes/s')
    if (b === undefined) {
      lines.push(`  ${failed(bulkCase) ?? 'no result'}`, '')
    } else {
      const direct = b.paths.find((p) => p.name === 'direct')
      const rows = b.paths.map((p) => [
        p.label,
        p.down.mbps.toFixed(0),
        p.name === 'direct' ? '–' : ratio(p.down.mbps, direct?.down.mbps),
        `${Math.min(...p.down.runs).toFixed(0)}–${Math.max(...p.down.runs).toFixed(0)}`,
        p.up.mbps.toFixed(0),
        p.name === 'direct' ? '–' : ratio(p.up.mbps, direct?.up.mbps),
        `${Math.min(...p.up.runs).toFixed(0)}–${Math.max(...p.up.runs).toFixed(0)}`,
        p.name === 'direct' ? '–' : `${pctPair(p.down.cpuPct['client sidecar'], p.down.cpuPct['server sidecar'])} | ${pctPair(p.up.cpuPct['client sidecar'], p.up.cpuPct['server sidecar'])}`,
        `${pctPair(p.down.cpuPct.app, p.down.cpuPct.client)} | ${pctPair(p.up.cpuPct.app, p.up.cpuPct.client)}`,
      ])
      lines.push(table(['path', 'down MB/s', '× direct', 'down range', 'up MB/s', '× direct', 'up range', 'sidecar CPU % client/server, down | up', 'app/client CPU %, down | up'], rows))
      lines.push(`  peak sidecar RSS MB: ${b.rss.map((u) => `${u.label} ${u.peakRssMb.toFixed(0)}`).join(', ')}; other load ${b.otherLoadPct}%`, '')
    }
  }

  if (fbCase !== undefined) {
    const f = fbCase.tcpFirstByte
    lines.push(`Opaque TCP first byte of a server-speaks-first app (a greeting on accept, as MySQL) — ${f === undefined ? '' : `${f.samples} sequential connections per path, interleaved; `}from connect()`)
    lines.push(`  (through the sidecars: from the CONNECT request, greet:${f?.servicePort ?? 3306}, a port in REMORA_OPAQUE_PORTS: no detection wait) to the greeting's first byte; each a new TCP (+ TLS) connection`)
    if (f === undefined) {
      lines.push(`  ${failed(fbCase) ?? 'no result'}`, '')
    } else {
      const direct = f.paths.find((p) => p.name === 'direct')
      const rows = f.paths.map((p) => [p.label, String(p.n), ms(p.p50), ms(p.p90), ms(p.p99), ms(p.max), p.name === 'direct' ? '–' : delta(p.p50, direct?.p50), p.name === 'direct' ? '–' : delta(p.p99, direct?.p99), String(p.errors)])
      lines.push(table(['path', 'connections', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'Δp50 vs direct', 'Δp99 vs direct', 'errors'], rows))
      for (const p of f.paths) if (p.firstError !== undefined) lines.push(`  ${p.label}: first error: ${p.firstError}`)
      lines.push(`  other load ${f.otherLoadPct}%`, '')
    }
  }

  if (odCase !== undefined) {
    const d = odCase.origDst
    lines.push('Original destination per connection — originalDstLookup().lookup(socket): getsockopt(SO_ORIGINAL_DST) through koffi, as the listener calls it on accept')
    if (d === undefined) {
      lines.push(`  ${failed(odCase) ?? 'no result'}`, '')
    } else {
      lines.push(`  ${d.mode === 'netns' ? d.note : `WARNING: ${d.note}`}`)
      const kinds = [
        ...(d.redirected === undefined ? [] : [['redirected (answer: 192.0.2.10:3306)', d.redirected] as const]),
        ...(d.direct === undefined ? [] : [[`not redirected (answer: ${d.direct.sample === 'undefined' ? 'ENOENT → undefined' : `${d.direct.sample}, its own address`})`, d.direct] as const]),
      ]
      const rows = kinds.map(([label, k]) => [
        label,
        String(k.connections),
        `${us(k.firstNs.p50)} / ${us(k.firstNs.p90)} / ${us(k.firstNs.p99)}`,
        us(k.againNs),
        us(k.loopNs),
        `${k.connectToFirstByteUs.p50.toFixed(0)} / ${k.connectToFirstByteUs.p99.toFixed(0)}`,
        `${(k.firstNs.p50 / 1000 / k.connectToFirstByteUs.p50 * 100).toFixed(1)}%`,
      ])
      lines.push(table(['connections', 'n', 'first call µs p50/p90/p99', 'again µs', 'hot loop µs/call', 'loopback connect → first byte µs p50/p99', 'first call / connect→byte'], rows))
      lines.push('  first call: on a fresh accepted socket (includes node\'s first getpeername/getsockname); again: a second call on it; hot loop: back to back on one socket')
      lines.push(`  loading the lookup (koffi, libc, the signature): ${d.loadMs.toFixed(1)} ms once per process`, '')
    }
  }
  return lines
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
  if (results.some((r) => r.proto === 'HTTP/1.1' || r.proto === 'h2')) lines.push(`HTTP runs: ${o.warmupS}s warm-up + ${o.durationS}s measured each; app answers ${'~100'}-byte bodies; RSS = peak, CPU = % of one core over the run`)
  lines.push('')

  const httpResults = results.filter((r) => r.proto === 'HTTP/1.1' || r.proto === 'h2')
  if (httpResults.length > 0) {
    lines.push(`Max throughput — HTTP/1.1: wrk -t1 -c${o.connections}; h2: h2load -c10 -m10 (ratios compare h2 rows with HAProxy h2 only)`)
    const rows: string[][] = []
    for (const r of httpResults) {
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
    for (const r of httpResults) {
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
  }
  lines.push(...tcpSections(results))
  lines.push(...startupSection(results))
  lines.push(...grpcSection(results))
  const noisy = results.filter((r) => disturbed(r.throughput, r.fixed) || [r.tcpBulk, r.tcpFirstByte].some((x) => (x?.otherLoadPct ?? 0) >= DISTURBED_PCT))
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
