// One opaque TCP connection on the record: an access-log line and the L4 metrics when it ends.
import type { Logger } from 'pino'
import type { Direction } from './access-log.ts'
import type { ProxyMetrics } from './metrics.ts'

export class TcpRecord {
  readonly direction: Direction
  /** Where the app was going (`host:port` or the CONNECT authority) or, inbound, the app port. */
  readonly destination: string
  readonly #start = performance.now()
  /** Bounded label: the service key, `:<app port>`, or `passthrough`. */
  metricAuthority = 'unknown'
  /** The other side's verified SPIFFE ID (outbound: the peer sidecar; inbound: the caller). */
  peer: string | undefined
  /** Why it is carried opaquely: `port`, `service`, `tls`, `unknown`, `timeout`, `remora-tcp`. */
  cause: string
  /** Where the bytes went: a peer sidecar, the original destination, or the local app. */
  endpoint: string | undefined
  /** `mesh`, `passthrough` (not in the mesh, allow-any), `app` (inbound). */
  route: string | undefined
  sni: string | undefined
  error: string | undefined
  /** Stops whatever would end this record early (set by the owner of the connection). */
  detach: () => void = () => {}
  #opened = false
  #done = false

  constructor (direction: Direction, destination: string, cause: string) {
    this.direction = direction
    this.destination = destination
    this.cause = cause
  }

  /** The connection to the other side is up: it counts as an opened flow from now. */
  opened (metrics: ProxyMetrics): void {
    if (this.#opened) return
    this.#opened = true
    metrics.flowsOpened.inc({ direction: this.direction, authority: this.metricAuthority, peer: this.peer ?? '' })
  }

  end (log: Logger | undefined, metrics: ProxyMetrics, bytesSent: number, bytesReceived: number): void {
    if (this.#done) return
    this.#done = true
    const seconds = (performance.now() - this.#start) / 1000
    const labels = { direction: this.direction, authority: this.metricAuthority, peer: this.peer ?? '' }
    if (this.#opened) {
      metrics.flowsClosed.inc({ ...labels, reason: this.error ?? '' })
      metrics.flowBytes.inc({ ...labels, flow: 'sent' }, bytesSent)
      metrics.flowBytes.inc({ ...labels, flow: 'received' }, bytesReceived)
      metrics.flowDuration.observe({ direction: this.direction, authority: this.metricAuthority }, seconds)
    } else {
      metrics.flowsRefused.inc({ direction: this.direction, authority: this.metricAuthority, reason: this.error ?? 'client closed' })
    }
    log?.info({
      access: this.direction,
      proto: 'TCP',
      destination: this.destination,
      authority: this.metricAuthority,
      route: this.route,
      cause: this.cause,
      sni: this.sni,
      peer: this.peer,
      endpoint: this.endpoint,
      duration_ms: Math.round(seconds * 1e6) / 1000,
      bytes_sent: bytesSent,
      bytes_received: bytesReceived,
      error: this.error,
    })
  }
}
