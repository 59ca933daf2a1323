// Load generators as child processes: wrk (HTTP/1.1 max throughput), h2load (h2 max throughput), fixed-rate.ts (a set rate).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FixedRateOptions, FixedRateResult } from './fixed-rate.ts'
import { runToEnd } from './procs.ts'
import { percentile } from './stats.ts'

export interface LoadResult {
  rps: number
  /** Milliseconds. */
  p50: number
  p99: number
  p999?: number
  requests: number
  errors: number
  /** The generator's own words, when something looked wrong. */
  note?: string
}

export interface RunContext {
  tmp: string
  cpus?: string
  /** Unique per run, for output file names. */
  seq: () => number
}

/** "1.23ms", "456.00us", "1.02s", "2.00m" → milliseconds. */
export function parseWrkTime (raw: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(raw.trim())
  if (m === null) return NaN
  const scale: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 }
  return Number(m[1]) * scale[m[2]]
}

export function parseWrk (out: string): LoadResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN)
  const p50 = parseWrkTime(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? '')
  const p99 = parseWrkTime(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? '')
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0)
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const sockErrors = sock === null ? 0 : sock.slice(1).reduce((a, b) => a + Number(b), 0)
  const result: LoadResult = { rps, p50, p99, requests, errors: non2xx + sockErrors }
  if (!Number.isFinite(rps) || result.errors > 0) result.note = out.trim().split('\n').slice(-6).join(' | ')
  return result
}

export async function wrk (ctx: RunContext, url: string, host: string | undefined, connections: number, seconds: number): Promise<LoadResult> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '--timeout', '5s']
  if (host !== undefined) args.push('-H', `Host: ${host}`)
  args.push(url)
  const { output } = await runToEnd('wrk', 'wrk', args, { cpus: ctx.cpus, logFile: join(ctx.tmp, `wrk-${ctx.seq()}.out`), timeoutMs: (seconds + 20) * 1000 })
  return parseWrk(output)
}

export interface H2Options {
  clients: number
  streams: number
  seconds: number
  /** Unmeasured time at the start of the same run (h2load --warm-up-time). */
  warmupSeconds?: number
  /** Requests per second per client (h2load --rps); undefined = as fast as possible. */
  rps?: number
  authority?: string
  /** A file whose bytes each request posts (h2load -d), e.g. a gRPC message. */
  data?: string
  /** Extra request headers, `name: value`. */
  headers?: string[]
}

/** h2load with prior-knowledge h2c; latency percentiles come from its per-request --log-file. */
export async function h2load (ctx: RunContext, url: string, o: H2Options): Promise<LoadResult> {
  const n = ctx.seq()
  const logFile = join(ctx.tmp, `h2load-${n}.log`)
  const args = [`-c${o.clients}`, `-m${o.streams}`, `-D${o.seconds}`, `--log-file=${logFile}`]
  if (o.warmupSeconds !== undefined) args.push(`--warm-up-time=${o.warmupSeconds}`)
  if (o.rps !== undefined) args.push(`--rps=${o.rps}`)
  if (o.authority !== undefined) args.push(`--header=:authority: ${o.authority}`)
  for (const h of o.headers ?? []) args.push(`--header=${h}`)
  if (o.data !== undefined) args.push(`--data=${o.data}`)
  args.push(url)
  const { output } = await runToEnd('h2load', 'h2load', args, { cpus: ctx.cpus, logFile: join(ctx.tmp, `h2load-${n}.out`), timeoutMs: (o.seconds + (o.warmupSeconds ?? 0) + 20) * 1000 })
  const rps = Number(/finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(output)?.[1] ?? NaN)
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(output)
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output)
  const done = Number(req?.[3] ?? 0)
  const errors = Number(req?.[5] ?? 0) + Number(req?.[6] ?? 0) + Number(req?.[7] ?? 0) + Number(status?.[3] ?? 0) + Number(status?.[4] ?? 0)
  let lat = new Float64Array(0)
  try {
    const rows = readFileSync(logFile, 'utf8').split('\n').filter((l) => l !== '').map((l) => l.split('\t'))
    lat = Float64Array.from(rows.filter((r) => r[1] !== '-1').map((r) => Number(r[2]) / 1000)).sort()
  } catch { /* no log: percentiles stay NaN */ }
  const result: LoadResult = { rps, p50: percentile(lat, 50), p99: percentile(lat, 99), p999: percentile(lat, 99.9), requests: done, errors }
  if (!Number.isFinite(rps) || errors > 0) result.note = output.trim().split('\n').slice(0, 12).join(' | ')
  return result
}

export async function fixedRate (ctx: RunContext, o: FixedRateOptions): Promise<FixedRateResult & { note?: string }> {
  const file = new URL('./fixed-rate.ts', import.meta.url).pathname
  const n = ctx.seq()
  const { output } = await runToEnd('fixed-rate', process.execPath, [file, JSON.stringify(o)], {
    cpus: ctx.cpus,
    logFile: join(ctx.tmp, `fixed-rate-${n}.out`),
    timeoutMs: o.warmupMs + o.durationMs + 30_000,
  })
  const line = output.trim().split('\n').filter((l) => l.startsWith('{')).pop()
  if (line === undefined) throw new Error(`fixed-rate load generator failed:\n${output.slice(-2000)}`)
  const result = JSON.parse(line) as FixedRateResult & { note?: string }
  if (result.errors > 0) result.note = `${result.errors} failed requests`
  if (result.maxLagMs > 50) result.note = `${result.note ?? ''} generator fell behind by up to ${result.maxLagMs} ms`.trim()
  return result
}
