// Fixed-rate load generator, HTTP/1.1 (undici Pool) or h2 (one node:http2 session), timer-driven: prints latency percentiles as one JSON line.
import http2 from 'node:http2'
import { once } from 'node:events'
import { Pool } from 'undici'
import { percentile } from './stats.ts'

export interface FixedRateOptions {
  origin: string
  path: string
  host?: string
  rate: number
  warmupMs: number
  durationMs: number
  /** HTTP/1.1: the pool's connection count. h2: ignored (one connection, one stream per request). */
  connections: number
  protocol?: 'h1' | 'h2'
}

export interface FixedRateResult {
  sent: number
  ok: number
  errors: number
  /** Requests completed per second in the measured window. */
  achievedRps: number
  /** How far the sender fell behind its schedule at worst, ms (large = the generator could not keep up). */
  maxLagMs: number
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
  mean: number
}

async function main (): Promise<void> {
  const o = JSON.parse(process.argv[2]) as FixedRateOptions
  const h2 = o.protocol === 'h2'
  const pool = h2 ? undefined : new Pool(o.origin, { connections: o.connections, pipelining: 1, keepAliveTimeout: 60_000 })
  const session = h2 ? http2.connect(o.origin) : undefined
  if (session !== undefined) await once(session, 'connect')
  const headers: Record<string, string> = o.host !== undefined ? { host: o.host } : {}
  const h2headers: http2.OutgoingHttpHeaders = { ':path': o.path, ...(o.host !== undefined ? { ':authority': o.host } : {}) }
  const total = Math.round(o.rate * (o.warmupMs + o.durationMs) / 1000)
  const warm = Math.round(o.rate * o.warmupMs / 1000)
  const latencies = new Float64Array(total - warm)
  let measured = 0
  let sent = 0
  let done = 0
  let errors = 0
  let maxLagMs = 0
  let measureStart = 0
  let measureEnd = 0

  const complete = (index: number, t0: bigint, ok: boolean): void => {
    const ms = Number(process.hrtime.bigint() - t0) / 1e6
    if (!ok) errors++
    else if (index >= warm) latencies[measured++] = ms
    done++
    if (index >= warm && done === total) measureEnd = performance.now()
  }
  const sendH1 = (index: number): void => {
    const t0 = process.hrtime.bigint()
    ;(pool as Pool).request({ origin: o.origin, path: o.path, method: 'GET', headers }).then(async ({ statusCode, body }) => {
      await body.dump()
      complete(index, t0, statusCode === 200)
    }, () => complete(index, t0, false))
  }
  const sendH2 = (index: number): void => {
    const t0 = process.hrtime.bigint()
    const req = (session as http2.ClientHttp2Session).request(h2headers)
    let status = 0
    let settled = false
    const settle = (ok: boolean): void => { if (!settled) { settled = true; complete(index, t0, ok) } }
    req.on('response', (h) => { status = Number(h[':status']) })
    req.on('end', () => settle(status === 200))
    req.on('error', () => settle(false))
    req.on('close', () => settle(false))
    req.resume()
  }
  const send = h2 ? sendH2 : sendH1

  const start = performance.now()
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now()
      const due = Math.min(total, Math.floor((now - start) * o.rate / 1000))
      if (due - sent > 1) maxLagMs = Math.max(maxLagMs, (due - sent - 1) * 1000 / o.rate)
      while (sent < due) {
        if (sent === warm) measureStart = performance.now()
        send(sent++)
      }
      if (sent >= total) { clearInterval(timer); resolve() }
    }
    const timer = setInterval(tick, 1)
  })
  const deadline = performance.now() + 10_000
  while (done < total && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
  if (measureEnd === 0) measureEnd = performance.now()
  await pool?.destroy()
  session?.destroy()

  const sorted = latencies.slice(0, measured).sort()
  let sum = 0
  for (const v of sorted) sum += v
  const result: FixedRateResult = {
    sent: total - warm,
    ok: measured,
    errors: errors + (total - done),
    achievedRps: Math.round(measured / ((measureEnd - measureStart) / 1000)),
    maxLagMs: Math.round(maxLagMs * 100) / 100,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted.length > 0 ? sorted[sorted.length - 1] : NaN,
    mean: sorted.length > 0 ? sum / sorted.length : NaN,
  }
  process.stdout.write(JSON.stringify(result) + '\n')
}

if (process.argv[1] === new URL(import.meta.url).pathname) {
  main().then(() => process.exit(0), (err: unknown) => {
    process.stderr.write(`fixed-rate: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}
