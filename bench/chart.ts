// The benchmark as a picture (SVG, no dependencies): maximum throughput per case, and the latency
// each proxy adds at the fixed rate, as horizontal bars; remora's bars in one colour, the rest in another.
import type { CaseResult } from './report.ts'

interface Bar { label: string, value: number, remora: boolean }

const WIDTH = 900
const LABEL_W = 270
const ROW_H = 22
const BAR_MAX = WIDTH - LABEL_W - 110

function escape (s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** One panel: a title, then a bar per row scaled to the largest value; returns the SVG and its height. */
function panel (title: string, bars: Bar[], unit: (v: number) => string, y0: number): { svg: string, height: number } {
  const max = Math.max(...bars.map((b) => b.value), 1e-9)
  const parts = [`<text x="10" y="${y0 + 18}" font-size="15" font-weight="bold">${escape(title)}</text>`]
  bars.forEach((b, i) => {
    const y = y0 + 30 + i * ROW_H
    const w = Math.max(1, Math.round((Math.max(b.value, 0) / max) * BAR_MAX))
    parts.push(
      `<text x="${LABEL_W - 8}" y="${y + 15}" font-size="12" text-anchor="end">${escape(b.label)}</text>`,
      `<rect x="${LABEL_W}" y="${y + 3}" width="${w}" height="${ROW_H - 6}" fill="${b.remora ? '#d9534f' : '#5b8def'}"/>`,
      `<text x="${LABEL_W + w + 6}" y="${y + 15}" font-size="12">${escape(unit(b.value))}</text>`,
    )
  })
  return { svg: parts.join('\n'), height: 40 + bars.length * ROW_H }
}

/** The SVG for these results; undefined when no HTTP case was measured. */
export function chartSvg (results: CaseResult[], rate: number, subtitle: string): string | undefined {
  const http = results.filter((r) => r.throughput !== undefined || r.fixed !== undefined)
  const throughput: Bar[] = http.filter((r) => r.throughput !== undefined).map((r) => ({ label: r.label, value: r.throughput?.rps ?? 0, remora: r.id.startsWith('remora') }))
  const direct = results.find((r) => r.id === 'direct')?.fixed
  const added: Bar[] = direct === undefined
    ? []
    : http.filter((r) => r.fixed !== undefined && r.id !== 'direct').map((r) => ({ label: r.label, value: (r.fixed?.p99 ?? NaN) - direct.p99, remora: r.id.startsWith('remora') }))
  const grpc = results.find((r) => r.id === 'grpc-unary')?.grpcUnary
  const calls: Bar[] = grpc === undefined ? [] : [{ label: 'gRPC unary, direct', value: grpc.direct.rps, remora: false }, { label: 'gRPC unary, two remora hops', value: grpc.mesh.rps, remora: true }]
  if (throughput.length === 0 && added.length === 0 && calls.length === 0) return undefined
  const panels: string[] = []
  let y = 50
  for (const [title, bars, unit] of [
    ['Maximum throughput (req/s, higher is better)', throughput, (v: number) => Math.round(v).toLocaleString('en-US')],
    [`p99 added over direct at ${rate} req/s (ms, lower is better)`, added, (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(2)} ms`],
    ['gRPC unary calls/s (higher is better)', calls, (v: number) => Math.round(v).toLocaleString('en-US')],
  ] as const) {
    if (bars.length === 0) continue
    const p = panel(title, bars, unit, y)
    panels.push(p.svg)
    y += p.height + 10
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y + 10}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="24" font-size="18" font-weight="bold">remora bench</text>`,
    `<text x="10" y="42" font-size="12" fill="#555">${escape(subtitle)}</text>`,
    ...panels,
    '</svg>',
    '',
  ].join('\n')
}
