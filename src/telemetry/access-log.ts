// The access log: one JSON line per request, and the golden metrics from the same record.
import type { Logger } from 'pino'
import type { ProxyMetrics } from './metrics.ts'

export type Direction = 'inbound' | 'outbound'

export class AccessRecord {
  readonly direction: Direction
  readonly method: string
  readonly authority: string
  readonly path: string
  readonly proto: string
  readonly #start = performance.now()
  /** Bounded label for metrics: a known service's name or an app port, never raw input. */
  metricAuthority = 'unknown'
  status = 0
  grpcStatus: string | undefined
  bytesIn = 0
  bytesOut = 0
  endpoint: string | undefined
  error: string | undefined
  /** Attempts made (retries + 1), and why each retried attempt failed. */
  /** Ids of the span this request was traced under (sampled only), for log correlation. */
  traceIds: { trace_id?: string, span_id?: string } = {}
  attempts = 1
  readonly retried: string[] = []
  #done = false

  constructor (direction: Direction, method: string, authority: string, path: string, proto: string) {
    this.direction = direction
    this.method = method
    this.authority = authority
    this.path = path
    this.proto = proto
  }

  end (log: Logger | undefined, metrics: ProxyMetrics, completed: boolean): void {
    if (this.#done) return
    this.#done = true
    const seconds = (performance.now() - this.#start) / 1000
    if (!completed && this.error === undefined) this.error = this.status === 0 ? 'client cancelled' : 'stream reset'
    metrics.inflight.dec({ direction: this.direction })
    metrics.requests.inc({
      direction: this.direction,
      authority: this.metricAuthority,
      status: String(this.status),
      grpc_status: this.grpcStatus ?? '',
      reason: this.error ?? '',
    })
    metrics.duration.observe({ direction: this.direction, authority: this.metricAuthority }, seconds)
    log?.info({
      access: this.direction,
      method: this.method,
      authority: this.authority,
      path: this.path,
      proto: this.proto,
      status: this.status,
      grpc_status: this.grpcStatus,
      duration_ms: Math.round(seconds * 1e6) / 1000,
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
      endpoint: this.endpoint,
      error: this.error,
      attempts: this.attempts,
      retried: this.retried.length > 0 ? this.retried : undefined,
      ...this.traceIds,
    })
  }
}
