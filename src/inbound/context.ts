// What the inbound side needs of its sidecar: its config (app ports, mTLS, authorization), the
// app's limits, connections and protocols, and telemetry (proxy/context.ts provides it).
import type { Logger } from 'pino'
import type { ProxyConfig } from '../config/proxy-config.ts'
import type { RequestLog } from '../http/exchange.ts'
import type { ProxyMetrics } from '../telemetry/metrics.ts'
import type { Tracing } from '../telemetry/tracing.ts'
import type { H2Sessions } from '../transport/h2-sessions.ts'
import type { Http1Origins } from '../http/origin-http1.ts'
import type { AppProtocols } from './app-protocol.ts'
import type { InboundLimits } from './limits.ts'
import type { Destinations } from '../transport/destinations.ts'

export interface InboundContext extends RequestLog {
  readonly config: ProxyConfig
  readonly log: Logger
  readonly metrics: ProxyMetrics
  readonly inboundLimits: InboundLimits
  readonly tracing: Tracing
  /** One h2 connection per local h2 app port. */
  readonly appH2: H2Sessions
  readonly appH1: Http1Origins
  /** What each `auto` app port speaks, detected once and remembered. */
  readonly appProtocols: AppProtocols
  /** Where each accepted connection was going: a redirected client's original app port. */
  readonly destinations: Destinations
  /** Told of every read on an opaque TCP flow (traffic that no request record counts). */
  readonly relayed: () => void
}
