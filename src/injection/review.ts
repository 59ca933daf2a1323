// The admission webhook's answer to one AdmissionReview (admission.k8s.io/v1), pure: the review in, the review
// out. A Pod to inject gets the JSON Patch from its spec to what injectPod makes of it, so the webhook and
// `remora inject` make the same pod. The webhook is registered with failurePolicy Ignore: a review it cannot make
// sense of is allowed unchanged (status.message says why), never refused; only a pod `remora inject` would refuse
// (an invalid remora.dev/* annotation, say) is refused, with the same message.
import { RemoraError } from '../errors.ts'
import { injectPod, type MeshWide } from './pod.ts'
import { diff, type PatchOp } from './patch.ts'

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1'

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)
const str = (v: unknown): string | undefined => typeof v === 'string' && v !== '' ? v : undefined

export interface AdmissionResponse {
  readonly uid: string
  readonly allowed: boolean
  readonly patchType?: 'JSONPatch'
  /** base64 of the JSON Patch document. */
  readonly patch?: string
  readonly status?: { readonly code?: number, readonly reason?: string, readonly message: string }
}

export interface AdmissionReviewOut {
  readonly apiVersion: typeof ADMISSION_API_VERSION
  readonly kind: 'AdmissionReview'
  readonly response: AdmissionResponse
}

/** What the webhook did with one review (for its log line and metrics). */
export type ReviewOutcome = 'injected' | 'skipped' | 'refused' | 'malformed' | 'not-a-pod'

export interface ReviewResult {
  readonly review: AdmissionReviewOut
  readonly outcome: ReviewOutcome
  /** The pod, as named in messages: `Pod demo/web-7d9f8-*`. */
  readonly object?: string
  /** Why it was not injected, or the problem. */
  readonly why?: string
  /** The operations sent (injected only). */
  readonly ops?: readonly PatchOp[]
}

const answer = (uid: string, outcome: ReviewOutcome, response: Omit<AdmissionResponse, 'uid'>, extra: Partial<ReviewResult> = {}): ReviewResult => ({
  review: { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, ...response } },
  outcome,
  ...extra,
})

/** Allowed unchanged, saying why: what a review the webhook cannot use gets (failurePolicy Ignore: never block). */
const allowAsIs = (uid: string, outcome: ReviewOutcome, message: string, extra: Partial<ReviewResult> = {}): ReviewResult =>
  answer(uid, outcome, { allowed: true, status: { message } }, { why: message, ...extra })

/**
 * The workload a pod belongs to, as `remora inject` names it from the workload's own YAML (the sidecar's
 * OTEL_SERVICE_NAME): a ReplicaSet's pod is its Deployment's (the ReplicaSet's name without the pod-template-hash),
 * a CronJob's Job's pod its CronJob's (the Job's name without the schedule's `-<minutes>`), any other controller's
 * pod that controller's; a bare pod is its own (its name, or generateName without the trailing `-`).
 */
export function workloadOf (metadata: Json): string | undefined {
  const owners = Array.isArray(metadata.ownerReferences) ? metadata.ownerReferences.filter(isObject) : []
  const owner = owners.find((o) => o.controller === true) ?? owners[0]
  const ownerName = owner === undefined ? undefined : str(owner.name)
  if (owner !== undefined && ownerName !== undefined) {
    const labels = isObject(metadata.labels) ? metadata.labels : {}
    const hash = str(labels['pod-template-hash'])
    if (owner.kind === 'ReplicaSet' && hash !== undefined && ownerName.endsWith(`-${hash}`)) return ownerName.slice(0, -hash.length - 1)
    if (owner.kind === 'Job' && /-\d{8,}$/.test(ownerName)) return ownerName.replace(/-\d{8,}$/, '')
    return ownerName
  }
  return str(metadata.name) ?? str(metadata.generateName)?.replace(/-$/, '')
}

/**
 * The answer to a parsed request body. Not an AdmissionReview v1 with a request and its uid, or not a Pod
 * CREATE: allowed unchanged with status.message saying what was wrong (the uid echoed when there is one).
 */
export function reviewAdmission (body: unknown, mesh: MeshWide): ReviewResult {
  if (!isObject(body)) return allowAsIs('', 'malformed', 'not an AdmissionReview: the body is not a JSON object')
  const request = isObject(body.request) ? body.request : undefined
  const uid = str(request?.uid) ?? ''
  if (body.apiVersion !== ADMISSION_API_VERSION || body.kind !== 'AdmissionReview') {
    return allowAsIs(uid, 'malformed', `not an AdmissionReview ${ADMISSION_API_VERSION}: got kind ${JSON.stringify(body.kind)} apiVersion ${JSON.stringify(body.apiVersion)} (register the webhook with admissionReviewVersions: [v1])`)
  }
  if (request === undefined) return allowAsIs(uid, 'malformed', 'the AdmissionReview has no request')
  if (uid === '') return allowAsIs(uid, 'malformed', 'the AdmissionReview request has no uid')
  const kind = isObject(request.kind) ? request.kind : {}
  const resource = isObject(request.resource) ? request.resource : {}
  const isPod = kind.kind === 'Pod' && (kind.group ?? '') === '' && resource.resource === 'pods' && (request.subResource ?? '') === ''
  if (!isPod) {
    return allowAsIs(uid, 'not-a-pod', `only pods are injected; got ${String(kind.kind ?? 'no kind')} (resource ${String(resource.resource ?? '?')}${str(request.subResource) === undefined ? '' : `/${String(request.subResource)}`}): allowed unchanged; the webhook's rules should select CREATE of pods only`)
  }
  if (request.operation !== 'CREATE') return allowAsIs(uid, 'not-a-pod', `only pods being created are injected; got operation ${JSON.stringify(request.operation)}: allowed unchanged`)
  const pod = request.object
  if (!isObject(pod)) return allowAsIs(uid, 'malformed', 'the AdmissionReview request has no object (the pod)')
  const metadata = isObject(pod.metadata) ? pod.metadata : {}
  const namespace = str(metadata.namespace) ?? str(request.namespace)
  const name = str(metadata.name) ?? (str(metadata.generateName) !== undefined ? `${String(metadata.generateName)}*` : str(request.name) ?? '(no name)')
  const object = `Pod ${namespace === undefined ? '' : `${namespace}/`}${name}`
  const workload = workloadOf(metadata) ?? str(request.name) ?? 'unknown'
  try {
    const result = injectPod({ metadata, spec: pod.spec }, mesh, { object, workload })
    if (!result.injected) return allowAsIs(uid, 'skipped', result.why, { object })
    const ops = diff(pod.spec, result.spec, ['spec'])
    return answer(uid, 'injected', { allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(ops)).toString('base64') }, { object, ops })
  } catch (err) {
    if (!(err instanceof RemoraError)) throw err
    // A pod `remora inject` would refuse (an invalid remora.dev/* annotation, a container named remora-init, an
    // app port that is the sidecar's): refused with that message, rather than started without the sidecar in a
    // meshed namespace. The message reaches kubectl, or the ReplicaSet's events.
    return answer(uid, 'refused', { allowed: false, status: { code: 400, reason: 'BadRequest', message: `remora injector: ${err.message}` } }, { object, why: err.message })
  }
}
