// Prometheus metrics of the control plane (prom-client): watchers, pushes, push latency, source errors,
// annotations without effect yet, trust-anchor writes.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from '../telemetry/prom.ts'
import { unexpectedErrorsCounter } from '../telemetry/faults.ts'

export class ControlMetrics {
  readonly registry = new Registry()
  readonly sidecars = new Gauge({
    name: 'remora_control_connections',
    help: 'HTTP/2 connections from sidecars to the discovery API.',
    registers: [this.registry],
  })

  readonly watchers = new Gauge({
    name: 'remora_control_watchers',
    help: 'Open watches (one per sidecar and authority).',
    registers: [this.registry],
  })

  readonly services = new Gauge({
    name: 'remora_control_services',
    help: 'Services (name.namespace:port) in the catalog.',
    registers: [this.registry],
  })

  readonly revision = new Gauge({
    name: 'remora_control_catalog_revision',
    help: 'Catalog revision: increments on every service change.',
    registers: [this.registry],
  })

  readonly pushes = new Counter({
    name: 'remora_control_pushes_total',
    help: 'Messages written to watches, by type (snapshot, delta, absent).',
    labelNames: ['type'] as const,
    registers: [this.registry],
  })

  readonly pushDuration = new Histogram({
    name: 'remora_control_push_duration_seconds',
    help: 'From a catalog change to its message being queued on every watch of that service (HTTP/2 framing and socket writes follow).',
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  })

  readonly slowWatchers = new Counter({
    name: 'remora_control_slow_watch_resets_total',
    help: 'Watches reset because the sidecar did not read its messages (it resubscribes and gets a snapshot).',
    registers: [this.registry],
  })

  readonly certificates = new Counter({
    name: 'remora_control_certificates_total',
    help: 'Certificate requests, by result: issued, or the error code (unauthenticated, identity_mismatch, bad_csr, …).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  })

  readonly caExpiry = new Gauge({
    name: 'remora_control_ca_expiry_timestamp_seconds',
    help: "When the issuer (intermediate) certificate expires, as a Unix time: alert well before it.",
    registers: [this.registry],
  })

  readonly sourceErrors = new Counter({
    name: 'remora_control_source_errors_total',
    help: 'Errors from the endpoint source (Kubernetes API or mesh file), by kind.',
    labelNames: ['source', 'kind'] as const,
    registers: [this.registry],
  })

  /**
   * A gauge, not a counter: it says what the cluster carries now (it goes back down when the
   * annotation or the object goes away, and a restarted control plane counts the same again), and
   * each object is logged once anyway.
   */
  readonly annotationsWithoutEffect = new Gauge({
    name: 'remora_control_annotations_without_effect',
    help: 'Objects (kind Service or Pod) carrying a remora.dev/* annotation that has no effect on the control plane (it is read at injection), by annotation.',
    labelNames: ['kind', 'annotation'] as const,
    registers: [this.registry],
  })

  readonly trustAnchorWrites = new Counter({
    name: 'remora_control_trust_anchor_writes_total',
    help: 'Writes of the trust-anchor ConfigMap into meshed namespaces, by action (create, update: put back after an edit or a new root) and result (ok, error).',
    labelNames: ['action', 'result'] as const,
    registers: [this.registry],
  })

  readonly admissionReviews = new Counter({
    name: 'remora_control_admission_reviews_total',
    help: 'AdmissionReviews the admission webhook answered, by outcome: injected, skipped (remora.dev/inject disabled, already injected, hostNetwork), refused (an invalid remora.dev/* annotation), not-a-pod, malformed.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  })

  readonly unexpectedErrors = unexpectedErrorsCounter(this.registry)

  constructor () {
    collectDefaultMetrics({ register: this.registry })
  }
}
