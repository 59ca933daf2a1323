// Bounded load through a sidecar for the resilience tests: N requests, at most C in flight, each
// outcome kept (status, proxy error, when it started and how long it took) so tests can count.
import { readFileSync } from 'node:fs'
import type http from 'node:http'
import { Pool } from 'undici'
import type { Teardown } from './mesh.ts'

export interface Outcome {
  /** HTTP status, or 0 when the request failed without a response. */
  status: number
  proxyError: string | undefined
  body: string
  /** ms since the load started, when the request was sent and when its answer was complete. */
  sentAt: number
  doneAt: number
  error: string | undefined
}

export interface LoadOptions {
  method?: string
  path?: (i: number) => string
  body?: (i: number) => Buffer | string | undefined
  headers?: Record<string, string>
  /** Keep going until this returns true (checked before each new request), instead of a count. */
  until?: () => boolean
  /** Called with each outcome as it comes (a test can act once some are in), `i` the request's number. */
  onOutcome?: (o: Outcome, i: number) => void
}

/** An undici Pool with `connections` HTTP/1.1 connections to a sidecar's outbound listener. */
export function pool (t: Teardown, url: string, connections: number): Pool {
  const p = new Pool(url, { connections, pipelining: 1 })
  t.teardown(() => p.destroy())
  return p
}

/** Sends `count` requests with Host `host`, at most `concurrency` in flight; resolves with every outcome in order. */
export async function drive (p: Pool, host: string, count: number, concurrency: number, options: LoadOptions = {}): Promise<Outcome[]> {
  const out: Outcome[] = []
  const start = performance.now()
  let next = 0
  const one = async (i: number): Promise<Outcome> => {
    const sentAt = performance.now() - start
    try {
      const res = await p.request({
        method: (options.method ?? 'GET') as 'GET',
        path: options.path?.(i) ?? `/r/${i}`,
        headers: { host, ...options.headers },
        body: options.body?.(i),
      })
      const body = await res.body.text()
      const pe = res.headers['remora-proxy-error']
      return { status: res.statusCode, proxyError: Array.isArray(pe) ? pe[0] : pe, body, sentAt, doneAt: performance.now() - start, error: undefined }
    } catch (err) {
      return { status: 0, proxyError: undefined, body: '', sentAt, doneAt: performance.now() - start, error: (err as Error).message }
    }
  }
  const worker = async (): Promise<void> => {
    while (next < count && options.until?.() !== true) {
      const i = next++
      out[i] = await one(i)
      options.onOutcome?.(out[i], i)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return out.filter((o) => o !== undefined)
}

/** Counts by status (and proxy error), e.g. { '200': 1990, '503 overloaded': 10 }. */
export function tally (outcomes: readonly Outcome[]): Record<string, number> {
  const t: Record<string, number> = {}
  for (const o of outcomes) {
    const key = o.status === 0 ? `error ${o.error ?? ''}` : o.proxyError !== undefined ? `${o.status} ${o.proxyError}` : String(o.status)
    t[key] = (t[key] ?? 0) + 1
  }
  return t
}

/** What an app saw: requests received and the `remora-attempt` header of each. */
export class Seen {
  requests = 0
  readonly attempts = new Map<string, number>()
  /** Records one request; returns its attempt number. */
  note (req: http.IncomingMessage): number {
    this.requests++
    const a = String(req.headers['remora-attempt'] ?? 'none')
    this.attempts.set(a, (this.attempts.get(a) ?? 0) + 1)
    return Number(a)
  }
}

/** Resident set size of a process in MiB, from /proc (Linux). */
export function rssMiB (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? Number.NaN : Math.round(Number(m[1]) / 1024)
}
