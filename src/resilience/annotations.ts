// `remora.dev/*` annotations on a Kubernetes Service → the same policy keys as the mesh file, each
// value checked with a message naming the Service and the annotation (the control plane feeds these).
import { parseDuration } from '../parse/duration.ts'
import { BALANCERS, RETRY_ON, type BalancerName, type RetryOn } from '../mesh/policy.ts'
import type { RawServicePolicy } from './policy-file.ts'

type Apply = (raw: string, policy: RawServicePolicy) => void

const duration = (raw: string): string => { parseDuration(raw); return raw.trim() }
function integer (min: number, max: number): (raw: string) => number {
  return (raw) => {
    const n = Number(raw.trim())
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`expected a whole number from ${min} to ${max}, got "${raw}"`)
    return n
  }
}
function decimal (min: number, max: number): (raw: string) => number {
  return (raw) => {
    const n = Number(raw.trim())
    if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new Error(`expected a number from ${min} to ${max}, got "${raw}"`)
    return n
  }
}

/** Every policy annotation, what it sets, and how its value is read. */
export const POLICY_ANNOTATIONS: Readonly<Record<string, { help: string, apply: Apply }>> = Object.freeze({
  'remora.dev/balancer': {
    help: BALANCERS.join(' | '),
    apply: (raw, p) => {
      const v = raw.trim() as BalancerName
      if (!BALANCERS.includes(v)) throw new Error(`expected one of ${BALANCERS.join(', ')}, got "${raw}"`)
      p.balancer = v
    },
  },
  'remora.dev/timeout': { help: 'request timeout across attempts, e.g. 2s', apply: (raw, p) => { p.timeout = duration(raw) } },
  'remora.dev/idle-timeout': { help: 'stream idle timeout, e.g. 5m', apply: (raw, p) => { p.idleTimeout = duration(raw) } },
  'remora.dev/connect-timeout': { help: 'connect timeout to an endpoint, e.g. 1s', apply: (raw, p) => { p.connectTimeout = duration(raw) } },
  'remora.dev/retry-on': {
    help: `comma-separated: ${RETRY_ON.join(', ')}`,
    apply: (raw, p) => {
      const on = raw.split(',').map((s) => s.trim()).filter((s) => s !== '')
      const bad = on.filter((o) => !(RETRY_ON as readonly string[]).includes(o))
      if (bad.length > 0) throw new Error(`unknown retry condition ${bad.map((b) => `"${b}"`).join(', ')}; known: ${RETRY_ON.join(', ')}`)
      p.retry = { ...p.retry, on: on as RetryOn[] }
    },
  },
  'remora.dev/retry-attempts': { help: 'total attempts, 1-10', apply: (raw, p) => { p.retry = { ...p.retry, attempts: integer(1, 10)(raw) } } },
  'remora.dev/retry-budget-ratio': { help: 'extra load retries may add, e.g. 0.2', apply: (raw, p) => { p.retry = { ...p.retry, budget: { ...p.retry?.budget, ratio: decimal(0, 10)(raw) } } } },
  'remora.dev/retry-budget-min-per-second': { help: 'retries always allowed per second, e.g. 10', apply: (raw, p) => { p.retry = { ...p.retry, budget: { ...p.retry?.budget, minPerSecond: decimal(0, 1e6)(raw) } } } },
  'remora.dev/retry-backoff-base': { help: 'first backoff, e.g. 25ms', apply: (raw, p) => { p.retry = { ...p.retry, backoff: { ...p.retry?.backoff, base: duration(raw) } } } },
  'remora.dev/retry-backoff-max': { help: 'longest backoff, e.g. 250ms', apply: (raw, p) => { p.retry = { ...p.retry, backoff: { ...p.retry?.backoff, max: duration(raw) } } } },
  'remora.dev/failure-accrual': { help: 'consecutive failures that eject an endpoint, e.g. 7', apply: (raw, p) => { p.circuitBreaker = { ...p.circuitBreaker, consecutiveFailures: integer(1, 1000)(raw) } } },
  'remora.dev/ejection-base': { help: 'first ejection, e.g. 1s', apply: (raw, p) => { p.circuitBreaker = { ...p.circuitBreaker, baseEjection: duration(raw) } } },
  'remora.dev/ejection-max': { help: 'longest ejection, e.g. 60s', apply: (raw, p) => { p.circuitBreaker = { ...p.circuitBreaker, maxEjection: duration(raw) } } },
  'remora.dev/max-ejected-percent': { help: '0-100', apply: (raw, p) => { p.circuitBreaker = { ...p.circuitBreaker, maxEjectedPercent: integer(0, 100)(raw) } } },
  'remora.dev/max-concurrent': { help: 'requests in flight to the service', apply: (raw, p) => { p.limits = { ...p.limits, maxConcurrent: integer(1, 1_000_000)(raw) } } },
  'remora.dev/max-queued': { help: 'requests waiting beyond max-concurrent', apply: (raw, p) => { p.limits = { ...p.limits, maxQueued: integer(0, 1_000_000)(raw) } } },
})

/**
 * remora.dev/* annotations that are recognised but do nothing where the control plane sees them (on
 * Services and running Pods), and where they do take effect: injection reads them when a pod is
 * created. They are not errors: the control plane warns once per object, so nothing is silently ignored.
 */
export const ANNOTATIONS_WITHOUT_EFFECT: Readonly<Record<string, string>> = Object.freeze({
  'remora.dev/inject': 'it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template, or label the namespace',
  'remora.dev/proxy-image': 'it is read once, when a pod is created: by the admission webhook (remora control, remora injector) or by remora inject; put it on the pod template',
})

/**
 * remora.dev/* annotations other parts read, with an effect, so not a misspelt policy key:
 * `protocol` (Services, src/control/kube-objects.ts); `default-policy` and `allow` (pods, through the
 * downward API into REMORA_AUTHZ_*, src/inbound/authorization.ts).
 */
/** Read from the pod only (remora init's skip lists): on a Service, a mistake worth saying. */
const POD_ANNOTATIONS = new Set(['remora.dev/skip-inbound-ports', 'remora.dev/skip-outbound-ports', 'remora.dev/skip-outbound-cidrs'])

const OTHER_ANNOTATIONS = new Set(['remora.dev/protocol', 'remora.dev/opaque-ports', 'remora.dev/default-policy', 'remora.dev/allow'])

/** A recognised annotation with no effect yet: which one, and the line to log. */
export interface AnnotationWarning {
  readonly annotation: string
  readonly message: string
}

/**
 * One warning per annotation in ANNOTATIONS_WITHOUT_EFFECT that `annotations` carries, whatever its
 * value; `object` names the carrier, e.g. `Service demo/web` or `Pod demo/web-1`.
 */
export function annotationsWithoutEffect (annotations: Readonly<Record<string, unknown>>, object: string): AnnotationWarning[] {
  const out: AnnotationWarning[] = []
  for (const key of Object.keys(annotations)) {
    if (!Object.hasOwn(ANNOTATIONS_WITHOUT_EFFECT, key)) continue
    out.push({ annotation: key, message: `${object}: annotation ${key} has no effect on the control plane (${ANNOTATIONS_WITHOUT_EFFECT[key]})` })
  }
  return out
}

/**
 * The policy a Service's annotations ask for. A bad value is reported and left out (the default
 * applies) so one mistake does not take the service out of the table. Annotations that do nothing
 * yet come back as `warnings`, apart from the errors.
 */
export function policyFromAnnotations (annotations: Readonly<Record<string, string>>, service: string): { policy: RawServicePolicy, errors: string[], warnings: AnnotationWarning[] } {
  const policy: RawServicePolicy = {}
  const errors: string[] = []
  for (const [key, value] of Object.entries(annotations)) {
    if (!key.startsWith('remora.dev/')) continue
    const a = POLICY_ANNOTATIONS[key]
    if (a === undefined) {
      if (POD_ANNOTATIONS.has(key)) errors.push(`Service ${service}: annotation ${key} belongs on the pod (remora init and the sidecar read it there, from the downward API); on a Service it does nothing`)
      else if (!OTHER_ANNOTATIONS.has(key) && !Object.hasOwn(ANNOTATIONS_WITHOUT_EFFECT, key)) errors.push(`Service ${service}: annotation ${key} is not known (policy annotations: ${Object.keys(POLICY_ANNOTATIONS).join(', ')})`)
      continue
    }
    try {
      a.apply(value, policy)
    } catch (err) {
      errors.push(`Service ${service}: annotation ${key}: ${(err as Error).message}; expected ${a.help}`)
    }
  }
  return { policy, errors, warnings: annotationsWithoutEffect(annotations, `Service ${service}`) }
}
