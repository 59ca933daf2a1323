// Prometheus metrics of one proxy (prom-client); labels bounded: no paths, no peer ports.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from './prom.ts'
import { unexpectedErrorsCounter } from './faults.ts'

export class ProxyMetrics {
  readonly registry = new Registry()
  readonly requests = new Counter({
    name: 'remora_requests_total',
    help: 'Requests handled, by direction, destination, HTTP status and proxy error reason.',
    labelNames: ['direction', 'authority', 'status', 'grpc_status', 'reason'] as const,
    registers: [this.registry],
  })

  readonly duration = new Histogram({
    name: 'remora_request_duration_seconds',
    help: 'Time from the request arriving to the response completing.',
    labelNames: ['direction', 'authority'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  })

  readonly endpoints = new Gauge({
    name: 'remora_endpoints',
    help: 'Endpoints per service in the endpoint table.',
    labelNames: ['authority'] as const,
    registers: [this.registry],
  })

  readonly tableVersion = new Gauge({
    name: 'remora_endpoint_table_version',
    help: 'Version of the endpoint table (increments on every update).',
    registers: [this.registry],
  })

  readonly discoveryConnected = new Gauge({
    name: 'remora_discovery_connected',
    help: '1 while this sidecar holds a connection to the control plane, else 0.',
    registers: [this.registry],
  })

  readonly discoveryWatches = new Gauge({
    name: 'remora_discovery_watches',
    help: 'Authorities this sidecar watches on the control plane.',
    registers: [this.registry],
  })

  readonly discoveryUpdates = new Counter({
    name: 'remora_discovery_updates_total',
    help: 'Messages received from the control plane, by type (snapshot, delta, absent).',
    labelNames: ['type'] as const,
    registers: [this.registry],
  })

  readonly discoveryReconnects = new Counter({
    name: 'remora_discovery_reconnects_total',
    help: 'Connections to the control plane lost (the sidecar reconnects with backoff, keeping its table).',
    registers: [this.registry],
  })

  readonly certificateExpiry = new Gauge({
    name: 'remora_certificate_expiry_timestamp_seconds',
    help: "When this sidecar's workload certificate expires, as a Unix time (alert if it comes within hours: renewal is failing).",
    registers: [this.registry],
  })

  readonly certificateRenewals = new Counter({
    name: 'remora_certificate_requests_total',
    help: 'Workload certificate requests to the control plane, by result: issued (first), renewed, failed.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  })

  readonly tlsFailures = new Counter({
    name: 'remora_tls_handshake_failures_total',
    help: 'TLS handshakes that failed, by direction and reason (untrusted certificate, expired, no client certificate, protocol version, identity mismatch, plaintext to a strict port, …).',
    labelNames: ['direction', 'reason'] as const,
    registers: [this.registry],
  })

  readonly peerRequests = new Counter({
    name: 'remora_inbound_requests_by_peer_total',
    help: 'Inbound requests by the caller\'s verified SPIFFE ID ("unauthenticated" for plaintext callers) and app port.',
    labelNames: ['client_id', 'port'] as const,
    registers: [this.registry],
  })

  readonly denied = new Counter({
    name: 'remora_authorization_denied_total',
    help: 'Inbound requests refused by authorization, by app port and the rule that refused.',
    labelNames: ['port', 'rule'] as const,
    registers: [this.registry],
  })

  readonly tcpOpened = new Counter({
    name: 'remora_tcp_connections_opened_total',
    help: 'TCP connections accepted by a listener (outbound: from the app; inbound: from peers and clients).',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  })

  readonly tcpClosed = new Counter({
    name: 'remora_tcp_connections_closed_total',
    help: 'TCP connections closed, by listener.',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  })

  readonly tcpBytes = new Counter({
    name: 'remora_tcp_bytes_total',
    help: 'Bytes on accepted TCP connections (TLS included), counted when they close: received from or sent to the other end.',
    labelNames: ['direction', 'flow'] as const,
    registers: [this.registry],
  })

  readonly tcpDuration = new Histogram({
    name: 'remora_tcp_connection_duration_seconds',
    help: 'How long accepted TCP connections stayed open.',
    labelNames: ['direction'] as const,
    buckets: [0.01, 0.1, 1, 10, 60, 300, 1800, 3600],
    registers: [this.registry],
  })

  readonly connectionsOverLimit = new Counter({
    name: 'remora_downstream_connections_over_limit_total',
    help: 'Client connections closed on arrival because the listener already had REMORA_MAX_CONNECTIONS open.',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  })

  readonly detectTimeouts = new Counter({
    name: 'remora_protocol_detect_timeouts_total',
    help: 'Redirected connections whose client sent nothing within REMORA_DETECT_TIMEOUT, carried as opaque TCP, by original destination port.',
    labelNames: ['direction', 'port'] as const,
    registers: [this.registry],
  })

  readonly flowsOpened = new Counter({
    name: 'remora_tcp_flows_opened_total',
    help: 'Opaque TCP connections carried (L4), by destination (a service key, an app port `:<port>`, or `passthrough`) and peer identity.',
    labelNames: ['direction', 'authority', 'peer'] as const,
    registers: [this.registry],
  })

  readonly flowsClosed = new Counter({
    name: 'remora_tcp_flows_closed_total',
    help: 'Opaque TCP connections ended, by why (empty when both sides closed).',
    labelNames: ['direction', 'authority', 'peer', 'reason'] as const,
    registers: [this.registry],
  })

  readonly flowsRefused = new Counter({
    name: 'remora_tcp_flows_refused_total',
    help: 'Opaque TCP connections the sidecar refused or could not connect, by why (registry-only, no endpoints, forbidden, connect refused, …).',
    labelNames: ['direction', 'authority', 'reason'] as const,
    registers: [this.registry],
  })

  readonly flowBytes = new Counter({
    name: 'remora_tcp_flow_bytes_total',
    help: 'Bytes of opaque TCP connections: sent (from the side that opened it) and received (back to it).',
    labelNames: ['direction', 'authority', 'peer', 'flow'] as const,
    registers: [this.registry],
  })

  readonly flowDuration = new Histogram({
    name: 'remora_tcp_flow_duration_seconds',
    help: 'How long opaque TCP connections stayed open.',
    labelNames: ['direction', 'authority'] as const,
    buckets: [0.01, 0.1, 1, 10, 60, 300, 1800, 3600],
    registers: [this.registry],
  })

  readonly retries = new Counter({
    name: 'remora_retries_total',
    help: 'Attempts retried, by destination and why the attempt failed.',
    labelNames: ['authority', 'reason'] as const,
    registers: [this.registry],
  })

  readonly timeouts = new Counter({
    name: 'remora_timeouts_total',
    help: 'Requests answered with a timeout (request timeout or gRPC deadline).',
    labelNames: ['direction', 'authority'] as const,
    registers: [this.registry],
  })

  readonly downstreamTimeouts = new Counter({
    name: 'remora_downstream_timeouts_total',
    help: 'Client connections ended by a timer, by listener and kind (h2-idle: no stream open for REMORA_DOWNSTREAM_IDLE_TIMEOUT; h2-drain: still open REMORA_DRAIN_TIMEOUT after GOAWAY; h2-ping: a PING unanswered, e.g. after HTTP/2 refused the connection; headers: an HTTP/1.1 request header not complete within REMORA_REQUEST_HEADERS_TIMEOUT; body: a request body slower than REMORA_REQUEST_BODY_TIMEOUT and REMORA_REQUEST_BODY_MIN_RATE allow).',
    labelNames: ['direction', 'kind'] as const,
    registers: [this.registry],
  })

  readonly h2ResetFloods = new Counter({
    name: 'remora_h2_reset_floods_total',
    help: 'HTTP/2 client connections closed with GOAWAY ENHANCE_YOUR_CALM for cancelling more streams than REMORA_MAX_STREAM_RESETS in 10 s (rapid reset).',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  })

  readonly ejections = new Counter({
    name: 'remora_endpoint_ejections_total',
    help: 'Endpoints taken out of rotation by failure accrual.',
    labelNames: ['authority'] as const,
    registers: [this.registry],
  })

  readonly shed = new Counter({
    name: 'remora_requests_shed_total',
    help: 'Requests refused at once because the concurrency limit and its queue were full, or the rate limit was used up.',
    labelNames: ['direction', 'authority', 'reason'] as const,
    registers: [this.registry],
  })

  readonly spansExported = new Counter({
    name: 'remora_spans_exported_total',
    help: 'Spans the collector accepted.',
    registers: [this.registry],
  })

  readonly spansDropped = new Counter({
    name: 'remora_spans_dropped_total',
    help: 'Spans lost instead of slowing traffic: the export queue was full or the collector failed.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  })

  readonly inflight = new Gauge({
    name: 'remora_requests_in_flight',
    help: 'Requests being proxied right now.',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  })

  readonly unexpectedErrors = unexpectedErrorsCounter(this.registry)

  constructor () {
    collectDefaultMetrics({ register: this.registry, prefix: 'remora_' })
  }
}
