// The checks about the cluster itself: the API server answers, is new enough for native sidecars, and (before an
// install) lets the caller create what `kubectl apply -k k8s/` creates.
import { kubernetesVersion } from './certs.ts'
import { fail, ok, warn, type CheckResult } from './result.ts'
import { field, statusMessage, str, Unreachable, type KubeClient } from './kube.ts'

const API = 'kubernetes-api'
const VERSION = 'kubernetes-version'
const RBAC = 'pre-install permissions'

/** Native sidecars (an init container with restartPolicy: Always) are on by default from this version. */
export const MIN_KUBERNETES = Object.freeze({ major: 1, minor: 29 })

/**
 * Every kind of object the install (the kustomize base, k8s/) creates, with where: the caller needs create on each.
 * test/check keeps this list in step with k8s/.
 */
export const INSTALL_OBJECTS: ReadonlyArray<{ readonly kind: string, readonly group: string, readonly resource: string, readonly namespaced: boolean }> = Object.freeze([
  { kind: 'Namespace', group: '', resource: 'namespaces', namespaced: false },
  { kind: 'ClusterRole', group: 'rbac.authorization.k8s.io', resource: 'clusterroles', namespaced: false },
  { kind: 'ClusterRoleBinding', group: 'rbac.authorization.k8s.io', resource: 'clusterrolebindings', namespaced: false },
  { kind: 'MutatingWebhookConfiguration', group: 'admissionregistration.k8s.io', resource: 'mutatingwebhookconfigurations', namespaced: false },
  { kind: 'Role', group: 'rbac.authorization.k8s.io', resource: 'roles', namespaced: true },
  { kind: 'RoleBinding', group: 'rbac.authorization.k8s.io', resource: 'rolebindings', namespaced: true },
  { kind: 'ServiceAccount', group: '', resource: 'serviceaccounts', namespaced: true },
  { kind: 'Deployment', group: 'apps', resource: 'deployments', namespaced: true },
  { kind: 'PodDisruptionBudget', group: 'policy', resource: 'poddisruptionbudgets', namespaced: true },
  { kind: 'Service', group: '', resource: 'services', namespaced: true },
  // The base creates none, but a CA brought by the user (REMORA_CA=secret:) is a Secret there.
  { kind: 'Secret', group: '', resource: 'secrets', namespaced: true },
])

/** GET /version: the API server answers, and with what version. Undefined version: nothing else can be checked. */
export async function checkApi (kube: KubeClient): Promise<{ results: CheckResult[], reachable: boolean }> {
  const check = 'the API server answers'
  let r
  try {
    r = await kube.get('/version')
  } catch (err) {
    if (!(err instanceof Unreachable)) throw err
    return { results: [fail(API, check, `cannot reach ${kube.server} (${err.message}); is the cluster up, and is the kubeconfig's current context the right one (kubectl config current-context)?`)], reachable: false }
  }
  if (r.status === 401) return { results: [fail(API, check, `${kube.server} refused the kubeconfig's credentials (401): log in again or refresh the kubeconfig`)], reachable: false }
  if (r.status !== 200) return { results: [fail(API, check, `${kube.server} answered GET /version with ${statusMessage(r)}`)], reachable: false }
  const results = [ok(API, check, `${kube.server}, ${str(r.body.gitVersion) ?? 'version unknown'}`)]
  const v = kubernetesVersion(r.body)
  const vcheck = `Kubernetes is ${MIN_KUBERNETES.major}.${MIN_KUBERNETES.minor} or later`
  if (v === undefined) {
    results.push(warn(VERSION, vcheck, `cannot read a version in /version (gitVersion ${JSON.stringify(r.body.gitVersion)}); remora's sidecar needs native sidecars (Kubernetes ${MIN_KUBERNETES.major}.${MIN_KUBERNETES.minor})`))
  } else if (v.major < MIN_KUBERNETES.major || (v.major === MIN_KUBERNETES.major && v.minor < MIN_KUBERNETES.minor)) {
    results.push(fail(VERSION, vcheck, `the API server is ${v.major}.${v.minor}: native sidecars (the proxy as an init container with restartPolicy: Always) need ${MIN_KUBERNETES.major}.${MIN_KUBERNETES.minor}; upgrade the cluster (remora has no fallback for older clusters yet: on ${v.major}.${v.minor} injected pods never start)`))
  } else {
    results.push(ok(VERSION, vcheck, `${v.major}.${v.minor}`))
  }
  return { results, reachable: true }
}

/** One SelfSubjectAccessReview per kind of object the install creates (cluster-wide, or in `namespace`). */
export async function checkInstallPermissions (kube: KubeClient, namespace: string): Promise<CheckResult[]> {
  return Promise.all(INSTALL_OBJECTS.map(async (o): Promise<CheckResult> => {
    const where = o.namespaced ? `in ${namespace}` : 'cluster-wide'
    const qualified = o.group === '' ? o.resource : `${o.resource}.${o.group}`
    const check = `can create ${o.resource} ${where}`
    const resourceAttributes = { verb: 'create', group: o.group, resource: o.resource, ...(o.namespaced && { namespace }) }
    let r
    try {
      r = await kube.create('/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: { resourceAttributes } })
    } catch (err) {
      if (!(err instanceof Unreachable)) throw err
      return fail(RBAC, check, `cannot ask the API server (${err.message})`)
    }
    if (r.status !== 201 && r.status !== 200) return fail(RBAC, check, `the SelfSubjectAccessReview was refused: ${statusMessage(r)}`)
    if (field(r.body, 'status', 'allowed') === true) return ok(RBAC, check)
    const reason = str(field(r.body, 'status', 'reason'))
    return fail(RBAC, check, `you may not create ${qualified} ${where}${reason === undefined || reason === '' ? '' : ` (${reason})`}: the install creates ${o.kind} objects; ask a cluster admin to install remora, or to grant you create on ${qualified}${o.namespaced ? ` in ${namespace}` : ''}`)
  }))
}
